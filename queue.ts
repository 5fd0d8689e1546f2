/**
 * Queues shared by processes and workers, as Python's `multiprocessing.Queue`,
 * `JoinableQueue` and `SimpleQueue`.
 *
 * @example Put and get in one program
 * ```ts
 * import { Queue } from "@seed/multiprocessing/queue";
 * import assert from "node:assert/strict";
 *
 * await using q = new Queue<number[]>();
 * await q.put([1, 2]);
 * assert.deepEqual(await q.get(), [1, 2]);
 * ```
 *
 * @module
 */
import { decode, encode, encodeShort, ownShort } from "./_codec.ts";
import {
  type DecodeContext,
  type EncodeContext,
  type HandleKind,
  markHandleClass,
  registerHandleKind,
} from "./_handles.ts";
import {
  beforeSend,
  connectTo,
  exitHooks,
  exportRoute,
  grantSocket,
  laneMemoryOf,
  type Link,
  newId,
  unexportRoute,
  withLaneMemory,
} from "./_socket.ts";
import { waitFor, type WaitOptions } from "./_wait.ts";
import { SharedRing } from "./_ring.ts";
import { RECORD_MAX } from "./_wire.ts";
import { Empty, Full, ProcessError, ShutDown, ValueError } from "./errors.ts";

/** Options of a call that can wait: {@linkcode Queue.prototype.put}, `get`. */
export interface QueueWaitOptions {
  /** Give up after this many milliseconds (`Full` / `Empty`). */
  timeout?: number | undefined;
  /** Give up when this signal aborts, with its reason. */
  signal?: AbortSignal | undefined;
}

/** Options of {@linkcode Queue.prototype.shutdown}. */
export interface ShutdownOptions {
  /**
   * Drop what is left at once, instead of letting `get` drain it.
   *
   * @default {false}
   */
  immediate?: boolean | undefined;
}

// Frames between a client (a process using a queue made elsewhere) and the hub
// (the process that made it). Item frames carry the encoded item after the op.
const PUT = 1; // client: an item (unbounded queue: no reply)
const PUTS = 6; // client: items, each a u32 length and the item (unbounded queue)
const CREDIT = 2; // client: u32 more items wanted, u32 unused, u8 starving
const RETURN = 3; // client: dropped what it held (answer to RECALL)
const ACK = 5; // client: u32 n, then n float64 sequence numbers of items taken
const CALL = 4; // client: codec [id, op, arg]
const OWNER = 7; // client (a worker given the queue's ring): u32 its lock id, its first frame
const ITEM = 16; // hub: float64 sequence number, then the item
const ITEMS = 20; // hub: items, each a float64 sequence number, a u32 length and the item
const REPLY = 17; // hub: codec [id, error name or "", value or message]
const RECALL = 18; // hub: give back the items not yet taken
const NOTICE = 19; // hub: codec ["shutdown", immediate] | ["drained"]

// Items a client may hold ahead of its getters.
// (A larger window means fewer credit and ack frames: 4096 gave a worker
// consumer a fifth more items per second than 1024.)
const WINDOW = 4096;
// Bytes of items the hub lets a client hold: a window of large items would
// otherwise be gigabytes.
const WINDOW_BYTES = 1 << 22;
// The ring an unbounded queue shares with the workers of its own process:
// they put and take there, not through the hub (which relays each item twice
// and competes with them for the cores). Its memory is touched as it is used.
const RING_BYTES = 1 << 22;
// The hub's lock id on its ring; a worker's is random, above it.
const HUB_OWNER = 1;
const RESOLVED = Promise.resolve();
const OP_PUT = new Uint8Array([PUT]);
const OP_RETURN = new Uint8Array([RETURN]);
const ITEM_HEADER = new Uint8Array([ITEM, 0, 0, 0, 0, 0, 0, 0, 0]);
const ITEM_HEADER_VIEW = new DataView(ITEM_HEADER.buffer);
const NO_PREFIX = new Uint8Array(0);
// An item's sequence number, as an ITEMS record's prefix (copied at once).
const SEQ_PREFIX = new Uint8Array(8);
const SEQ_PREFIX_VIEW = new DataView(SEQ_PREFIX.buffer);

function seqPrefix(seq: number): Uint8Array {
  SEQ_PREFIX_VIEW.setFloat64(0, seq, true);
  return SEQ_PREFIX;
}

function viewOf(frame: Uint8Array): DataView {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
}

/**
 * Checks a batch frame (FrameWriter.writeRecord) from byte 1 on: records of
 * `prefix` bytes, a u32 length and that many bytes, ending with the frame.
 */
function wholeRecords(view: DataView, prefix: number): boolean {
  let at = 1;
  while (at < view.byteLength) {
    at += prefix + 4;
    if (at > view.byteLength) return false;
    at += view.getUint32(at - 4, true);
  }
  return at === view.byteLength;
}

/** Wakes one waiting getter, the longest waiting (a Set keeps insertion order). */
function wakeOne(getters: Set<{ wake(): void }>): void {
  for (const getter of getters) return getter.wake();
}

function control(op: number, a: number, b: number, c = 0): Uint8Array {
  const frame = new Uint8Array(10);
  const view = new DataView(frame.buffer);
  frame[0] = op;
  view.setUint32(1, a, true);
  view.setUint32(5, b, true);
  frame[9] = c;
  return frame;
}

function readControl(frame: Uint8Array): [number, number, number] {
  const view = viewOf(frame);
  return [view.getUint32(1, true), view.getUint32(5, true), frame[9]!];
}

/**
 * An item's bytes, which may be a view of the codec's buffer (encodeShort):
 * whoever keeps them past this turn takes them with ownShort().
 */
function encodeItem(item: unknown): { data: Uint8Array; commit: (() => void)[] } {
  const context: EncodeContext = { commit: [] };
  const data = encodeShort(item, context, "item");
  return { data, commit: context.commit! };
}

function errorByName(name: string, message: string): Error {
  switch (name) {
    case "Full":
      return new Full(message);
    case "Empty":
      return new Empty(message);
    case "ShutDown":
      return new ShutDown(message);
    case "ValueError":
      return new ValueError(message);
    case "TypeError":
      return new TypeError(message);
    default:
      return new ProcessError(message);
  }
}

function validTimeout(options: WaitOptions | undefined, what: string): void {
  const timeout = options?.timeout;
  if (timeout !== undefined && (typeof timeout !== "number" || Number.isNaN(timeout))) {
    throw new TypeError(
      `Cannot ${what} with timeout ${String(timeout)}: it must be a number of milliseconds`,
    );
  }
}

/** What a queue object does, wherever the queue lives. */
interface Impl {
  readonly id: string;
  readonly maxsize: number;
  put(data: Uint8Array, nowait: boolean, options?: WaitOptions): Promise<void>;
  get(nowait: boolean, options?: WaitOptions): Promise<Uint8Array>;
  /**
   * The next item if one is here now (no waiting, no errors).
   *
   * @param short The caller decodes it at once: it may be a buffer reused by the next take.
   */
  take(short?: boolean): Uint8Array | undefined;
  call(op: string, arg?: unknown): Promise<unknown>;
  describe(context: EncodeContext): string;
  sync(): Promise<void>;
  dispose(): void;
}

// ---------------------------------------------------------------- hub

interface Client {
  link: Link;
  credit: number;
  /** Items sent and not yet taken, in the order sent. */
  inflight: SeqQueue;
  starving: boolean;
  recalled: boolean;
  held: boolean;
  /** Its lock id on the ring: a worker that puts and takes there itself. */
  owner?: number | undefined;
}

/**
 * Items with their sequence numbers, taken from the front: two arrays and a
 * head index (shift() on a long array is O(n)). The hub's queue, a client's
 * items in flight and a client's buffer are each one.
 */
class SeqQueue {
  #seqs: number[] = [];
  #items: Uint8Array[] = [];
  #head = 0;
  /** The bytes of the items. */
  bytes = 0;

  get size(): number {
    return this.#seqs.length - this.#head;
  }

  /** The first item's sequence number (when there is one). */
  get firstSeq(): number {
    return this.#seqs[this.#head]!;
  }

  /** The first item (when there is one). */
  get first(): Uint8Array {
    return this.#items[this.#head]!;
  }

  push(seq: number, item: Uint8Array): void {
    this.#seqs.push(seq);
    this.#items.push(item);
    this.bytes += item.length;
  }

  /** Puts an item in sequence order: one handed out again goes back to its place. */
  insert(seq: number, item: Uint8Array): void {
    const seqs = this.#seqs;
    if (this.size === 0 || seqs[seqs.length - 1]! < seq) return this.push(seq, item);
    let at = seqs.length;
    while (at > this.#head && seqs[at - 1]! > seq) at--;
    seqs.splice(at, 0, seq);
    this.#items.splice(at, 0, item);
    this.bytes += item.length;
  }

  /** Puts items back in sequence order, all at once (a dead client's). */
  merge(entries: [number, Uint8Array][]): void {
    entries.sort((a, b) => a[0] - b[0]);
    const seqs: number[] = [];
    const items: Uint8Array[] = [];
    let i = 0;
    for (let at = this.#head; at < this.#seqs.length; at++) {
      const seq = this.#seqs[at]!;
      for (; i < entries.length && entries[i]![0] < seq; i++) {
        seqs.push(entries[i]![0]);
        items.push(entries[i]![1]);
      }
      seqs.push(seq);
      items.push(this.#items[at]!);
    }
    for (; i < entries.length; i++) {
      seqs.push(entries[i]![0]);
      items.push(entries[i]![1]);
    }
    this.#seqs = seqs;
    this.#items = items;
    this.#head = 0;
    for (const [, item] of entries) this.bytes += item.length;
  }

  /** Takes the first item (there must be one). */
  shift(): Uint8Array {
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as unknown as Uint8Array;
    this.bytes -= item.length;
    if (this.#head === this.#seqs.length) this.clear();
    else if (this.#head > 4096 && this.#head * 2 > this.#seqs.length) {
      this.#seqs = this.#seqs.slice(this.#head);
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes the item with `seq`: the first one, as a rule (items are taken in order). */
  remove(seq: number): void {
    if (this.size > 0 && this.firstSeq === seq) return void this.shift();
    const at = this.#seqs.indexOf(seq, this.#head);
    if (at < 0) return;
    this.bytes -= this.#items[at]!.length;
    this.#seqs.splice(at, 1);
    this.#items.splice(at, 1);
  }

  entries(): [number, Uint8Array][] {
    const entries: [number, Uint8Array][] = [];
    for (let i = this.#head; i < this.#seqs.length; i++) {
      entries.push([this.#seqs[i]!, this.#items[i]!]);
    }
    return entries;
  }

  clear(): void {
    this.#seqs = [];
    this.#items = [];
    this.#head = 0;
    this.bytes = 0;
  }
}

interface Putter {
  data: Uint8Array;
  admit(): void;
  refuse(error: Error): void;
  client?: Client | undefined;
  id?: number | undefined;
}

/** The queue itself, in the process that made it. */
class Hub implements Impl {
  readonly id: string = newId("q");
  readonly maxsize: number;
  // Items in sequence order: a returned item goes back to its place, so items
  // reach getters in the order they were put, as far as the getters allow.
  // Once there is a ring, the items are in it, and here are those that did
  // not fit or were returned: they come after the ring's, and the ring's
  // spilled count includes them, so no one puts past them (SharedRing.offer).
  #queue = new SeqQueue();
  #ring: SharedRing | undefined;
  /** Items taken here (a getter's wake took one when this grew). */
  #taken = 0;
  #retrying = false;
  #watching = false;
  #seq = 0;
  #clients = new Set<Client>();
  #getters = new Set<{ wake(): void }>();
  #putters: Putter[] = [];
  #unfinished = 0;
  #joiners = new Set<() => void>();
  #shut = false;
  #path: string | undefined;
  #disposed = false;

  constructor(maxsize: number) {
    this.maxsize = maxsize;
    hubs.set(this.id, this);
  }

  #size(): number {
    let size = this.#queue.size + (this.#ring?.size ?? 0);
    for (const client of this.#clients) size += client.inflight.size;
    return size;
  }

  #roomFor(): boolean {
    return this.maxsize <= 0 || this.#size() < this.maxsize;
  }

  #add(data: Uint8Array): void {
    // The main thread never waits for the ring's lock: it alone frees a dead holder's.
    if (this.#ring?.offer(data, HUB_OWNER, false) !== "ok") this.#keep(data);
  }

  /** Holds an item here: there is no ring, or it goes after the ring's (spilled). */
  #keep(data: Uint8Array): void {
    this.#queue.push(++this.#seq, data);
    this.#unfinished++;
  }

  /** Takes the first item here (there must be one). */
  #shift(): Uint8Array {
    this.#ring?.countSpilled(-1);
    return this.#queue.shift();
  }

  #hasItems(): boolean {
    return this.#queue.size > 0 || (this.#ring !== undefined && this.#ring.size > 0);
  }

  #unfinishedCount(): number {
    return this.#unfinished + (this.#ring?.puts ?? 0);
  }

  /** Whether it was shut down. */
  get shut(): boolean {
    return this.#shut;
  }

  /**
   * The ring's memory, for a worker of this process (made the first time).
   * Only an unbounded queue has one: a bounded queue's puts wait for room.
   */
  ringMemory(): SharedArrayBuffer | undefined {
    if (this.maxsize > 0 || this.#disposed) return undefined;
    if (this.#ring === undefined) {
      this.#ring = new SharedRing(RING_BYTES);
      this.#ring.countSpilled(this.#queue.size);
      if (this.#shut) this.#ring.shutDown();
      this.#pump(); // moves them in
    }
    return this.#ring.memory;
  }

  /**
   * Moves items from here into the ring while they fit (they are its next);
   * not while a ring's worker may still be receiving one sent from here (an
   * item too large for the ring): it would take the ring's first.
   */
  #moveIn(ring: SharedRing): void {
    for (const client of this.#clients) {
      if (client.owner !== undefined && client.inflight.size > 0) return;
    }
    while (this.#queue.size > 0 && ring.putSpilled(this.#queue.first, HUB_OWNER)) {
      this.#queue.shift();
    }
  }

  /** Pumps again soon: the ring's lock was busy. */
  #retry(ring: SharedRing): void {
    if (this.#retrying) return;
    this.#retrying = true;
    ring.whenUnlocked(5).then(() => {
      this.#retrying = false;
      this.#pump();
    });
  }

  /** Whether someone here waits for what workers put into the ring. */
  #wantsRing(): boolean {
    if (this.#disposed) return false;
    if (this.#getters.size > 0) return true;
    for (const client of this.#clients) {
      if (client.owner === undefined && client.credit > 0 && !client.recalled) return true;
    }
    return false;
  }

  // A worker's put into the ring, or take from it, sends nothing here: while
  // someone here waits for an item, or items here wait for room, wait on the
  // ring. (Its waitAsync keeps nothing alive: getters hold the clients' links.)
  async #watch(ring: SharedRing): Promise<void> {
    this.#watching = true;
    try {
      while (!this.#disposed && (this.#queue.size > 0 || this.#wantsRing())) {
        const epoch = ring.epoch;
        const takes = ring.takes;
        this.#pump();
        if (this.#queue.size > 0) await ring.waitForTake(takes, 50);
        else if (this.#wantsRing()) await ring.waitForPut(epoch, 50);
      }
    } finally {
      this.#watching = false;
    }
  }

  describe(context: EncodeContext): string {
    if (this.#disposed) throw new ValueError("Cannot hand over the queue: it was disposed");
    this.#path ??= exportRoute(this.id, (link) => this.#accept(link));
    if (context.grants !== undefined) grantSocket(context.grants, this.#path);
    return this.#path;
  }

  #accept(link: Link): void {
    if (this.#disposed) return link.close();
    const client: Client = {
      link,
      credit: 0,
      inflight: new SeqQueue(),
      starving: false,
      recalled: false,
      held: false,
    };
    this.#clients.add(client);
    this.#holdClients();
    link.start(
      (frame) => this.#onFrame(client, frame),
      () => this.#lost(client),
      () => this.#pump(),
    );
  }

  // While someone here waits for an item, the clients that may send one keep us alive.
  #holdClients(): void {
    const hold = this.#getters.size > 0;
    for (const client of this.#clients) {
      if (client.held === hold) continue;
      client.held = hold;
      if (hold) client.link.hold();
      else client.link.letGo();
    }
  }

  #lost(client: Client): void {
    if (!this.#clients.delete(client)) return;
    // Its thread has ended: if it held the ring's lock, the ring is whole again.
    if (client.owner !== undefined) this.#ring?.recover(client.owner);
    // What the dead client had not taken goes back to the front, in order.
    if (client.inflight.size > 0) this.#requeue(client.inflight, client);
    this.#putters = this.#putters.filter((putter) => putter.client !== client);
    this.#pump();
  }

  #requeue(returned: SeqQueue, from: Client): void {
    // (A ring's worker's are still counted.)
    if (from.owner === undefined) this.#ring?.countSpilled(returned.size);
    this.#queue.merge(returned.entries());
  }

  #onFrame(client: Client, frame: Uint8Array): void {
    switch (frame[0]) {
      case PUT:
        // Pumped when the burst is handled (the link's idle callback).
        this.#received(client, frame.subarray(1));
        return;
      case PUTS: {
        const view = viewOf(frame);
        if (!wholeRecords(view, 0)) return client.link.close();
        for (let at = 1; at < frame.length;) {
          const length = view.getUint32(at, true);
          this.#received(client, frame.subarray(at + 4, at + 4 + length));
          at += 4 + length;
        }
        return;
      }
      case OWNER: {
        const owner = frame.length === 5 ? viewOf(frame).getUint32(1, true) : 0;
        if (this.#ring === undefined || owner <= HUB_OWNER || client.owner !== undefined) {
          return client.link.close();
        }
        client.owner = owner;
        return;
      }
      case ACK: {
        const view = viewOf(frame);
        const n = view.getUint32(1, true);
        const before = client.inflight.size;
        for (let i = 0; i < n; i++) client.inflight.remove(view.getFloat64(5 + 8 * i, true));
        if (client.owner !== undefined) this.#ring!.countSpilled(client.inflight.size - before);
        return;
      }
      case CREDIT: {
        const [more, , starving] = readControl(frame);
        if (!client.recalled) {
          client.credit += more;
          if (starving) client.starving = true;
        }
        break;
      }
      case RETURN: {
        // Its acks came first: what is still in flight it did not take.
        const back = client.inflight;
        client.inflight = new SeqQueue();
        client.credit = 0;
        client.recalled = false;
        if (back.size > 0) this.#requeue(back, client);
        break;
      }
      case CALL: {
        const [id, op, arg] = decode(frame.subarray(1)) as [number, string, unknown];
        this.#remoteCall(client, id, op, arg);
        break;
      }
      default:
        client.link.close();
        return;
    }
    this.#pump();
  }

  /** An item a client put. A ring's worker counted it as spilled (SharedRing.offer). */
  #received(client: Client, data: Uint8Array): void {
    if (client.owner === undefined) {
      if (!this.#shut) this.#add(data);
    } else if (this.#shut) this.#ring!.countSpilled(-1);
    else this.#keep(data);
  }

  #reply(client: Client, id: number, error: unknown, value?: unknown): void {
    const body = error === undefined ? [id, "", value] : [
      id,
      error instanceof Error ? error.name : "Error",
      error instanceof Error ? error.message : String(error),
    ];
    client.link.sendParts([new Uint8Array([REPLY]), encode(body)]);
  }

  #remoteCall(client: Client, id: number, op: string, arg: unknown): void {
    if (op === "put" || op === "putNowait") {
      const data = arg as Uint8Array;
      this.#offer({
        data,
        client,
        id,
        admit: () => this.#reply(client, id, undefined),
        refuse: (error) => this.#reply(client, id, error),
      }, op === "putNowait");
      return;
    }
    if (op === "cancel") {
      const index = this.#putters.findIndex((p) => p.client === client && p.id === arg);
      if (index >= 0) {
        const [putter] = this.#putters.splice(index, 1);
        putter!.refuse(new Full("cancelled"));
      }
      return;
    }
    this.call(op, arg).then(
      (value) => this.#reply(client, id, undefined, value),
      (error) => this.#reply(client, id, error),
    );
  }

  #offer(putter: Putter, nowait: boolean): void {
    if (this.#shut) return putter.refuse(new ShutDown("Cannot put to queue as it is shut down"));
    if (this.#putters.length === 0 && this.#roomFor()) {
      this.#add(putter.data);
      putter.admit();
      this.#pump();
      return;
    }
    if (nowait) {
      return putter.refuse(
        new Full(`Cannot put to queue as it is full: maxsize is ${this.maxsize}`),
      );
    }
    this.#putters.push(putter);
  }

  /** Hands items to waiting getters and clients, admits waiting putters. */
  #pump(): void {
    const ring = this.#ring;
    for (;;) {
      if (ring !== undefined && this.#queue.size > 0) this.#moveIn(ring);
      while (this.#hasItems()) {
        if (this.#getters.size > 0) {
          const before = this.#taken;
          wakeOne(this.#getters);
          if (this.#taken !== before) continue;
        }
        const client = this.#pick();
        if (client === undefined) break;
        let item: Uint8Array | null | undefined;
        if (client.owner === undefined) item = this.#next();
        else {
          // (Too large for the ring.) It stays counted as spilled until taken,
          // so that no one puts into the ring ahead of it meanwhile.
          this.#nextSeq = this.#queue.firstSeq;
          item = this.#queue.shift();
        }
        if (item === null) break;
        if (item === undefined) continue; // the ring's last went meanwhile
        const seq = this.#nextSeq;
        client.credit--;
        client.starving = false;
        client.inflight.push(seq, item);
        // Small items share frames. Headers are copied at once: one scratch
        // serves every item.
        if (item.length <= RECORD_MAX) client.link.sendRecord(ITEMS, seqPrefix(seq), item);
        else {
          ITEM_HEADER_VIEW.setFloat64(1, seq, true);
          client.link.sendParts([ITEM_HEADER, item]);
        }
      }
      let admitted = false;
      while (this.#putters.length > 0 && this.#roomFor()) {
        const putter = this.#putters.shift()!;
        this.#add(putter.data);
        putter.admit();
        admitted = true;
      }
      if (!admitted || !this.#hasItems()) break;
    }
    if (ring !== undefined && !this.#watching && (this.#queue.size > 0 || this.#wantsRing())) {
      void this.#watch(ring);
    }
    if (this.#hasItems()) return;
    let hungry = this.#getters.size > 0;
    for (const client of this.#clients) if (client.starving) hungry = true;
    if (!hungry) return;
    if (this.#shut) {
      for (const getter of [...this.#getters]) getter.wake();
      for (const client of this.#clients) {
        if (!client.starving) continue;
        client.starving = false;
        client.link.sendParts([new Uint8Array([NOTICE]), encode(["drained"])]);
      }
      return;
    }
    // Someone waits and nothing is here: take back what idle clients hold.
    for (const client of this.#clients) {
      if (client.starving || client.recalled || client.inflight.size === 0) continue;
      client.recalled = true;
      client.credit = 0;
      client.link.sendParts([new Uint8Array([RECALL])]);
    }
  }

  #pick(): Client | undefined {
    let best: Client | undefined;
    // A ring's worker takes the ring's items itself: it is sent only an item
    // too large for the ring, when that is next.
    const ring = this.#ring;
    const sendToRing = ring !== undefined && ring.size === 0 && this.#queue.size > 0 &&
      !ring.fits(this.#queue.first.length);
    for (const client of this.#clients) {
      if (client.credit <= 0 || client.recalled) continue;
      if (client.owner !== undefined && !sendToRing) continue;
      // Past its bytes, a client gets more as it takes what it has (its acks).
      if (client.inflight.bytes >= WINDOW_BYTES && client.inflight.size > 0) continue;
      if (client.starving) return client;
      best ??= client;
    }
    return best;
  }

  put(data: Uint8Array, nowait: boolean, options?: WaitOptions): Promise<void> {
    data = ownShort(data);
    if (this.maxsize <= 0 && !this.#shut) {
      this.#add(data);
      this.#pump();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const signal = options?.signal;
      const onAbort = () => {
        remove();
        reject(signal!.reason);
      };
      const settle = () => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const putter: Putter = {
        data,
        admit: () => {
          settle();
          resolve();
        },
        refuse: (error) => {
          settle();
          reject(error);
        },
      };
      const remove = () => {
        settle();
        const index = this.#putters.indexOf(putter);
        if (index >= 0) this.#putters.splice(index, 1);
      };
      this.#offer(putter, nowait);
      if (!this.#putters.includes(putter)) return;
      if (options?.timeout !== undefined) {
        timer = setTimeout(() => {
          remove();
          reject(new Full(`Cannot put to queue as it is full: maxsize is ${this.maxsize}`));
        }, Math.max(0, options.timeout));
      }
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #nextSeq = 0;

  /**
   * Takes the next item: the ring's, else one here; its sequence number is
   * then in #nextSeq. Null: the ring's lock was busy (a pump comes soon).
   */
  #next(short = false): Uint8Array | null | undefined {
    const ring = this.#ring;
    if (ring !== undefined && ring.size > 0) {
      const item = ring.tryTake(HUB_OWNER, false, short);
      if (item === null) this.#retry(ring);
      if (item !== undefined) {
        this.#nextSeq = ++this.#seq;
        return item;
      }
    }
    if (this.#queue.size === 0) return undefined;
    this.#nextSeq = this.#queue.firstSeq;
    return this.#shift();
  }

  take(short = false): Uint8Array | undefined {
    const item = this.#next(short);
    if (item == null) return undefined;
    this.#taken++;
    // (An item from the ring leaves nothing to do here unless items here wait for room.)
    if (this.#ring === undefined || this.#queue.size > 0) queueMicrotask(this.#pumpLater);
    return item;
  }

  #pumpLater = () => this.#pump();

  get(nowait: boolean, options?: WaitOptions): Promise<Uint8Array> {
    const attempt = () => {
      const item = this.take();
      if (item !== undefined) return item;
      if (this.#shut) throw new ShutDown("Cannot get from queue as it is shut down and empty");
      if (nowait) throw new Empty("Cannot get from queue as it is empty");
      return undefined;
    };
    return waitFor<Uint8Array>(
      options,
      "get from queue",
      (settle) => {
        const getter = { wake: () => settle(true) };
        this.#getters.add(getter);
        this.#holdClients();
        this.#pump();
        return () => {
          this.#getters.delete(getter);
          this.#holdClients();
        };
      },
      attempt,
      () => new Empty(`Cannot get from queue as it is empty after ${options?.timeout} ms`),
    );
  }

  call(op: string, arg?: unknown): Promise<unknown> {
    switch (op) {
      case "qsize":
        return Promise.resolve(this.#size());
      case "empty":
        return Promise.resolve(this.#size() === 0);
      case "full":
        return Promise.resolve(this.maxsize > 0 && this.#size() >= this.maxsize);
      case "getNowait":
        return this.get(true);
      case "taskDone": {
        const unfinished = this.#unfinishedCount();
        if (unfinished <= 0) {
          return Promise.reject(
            new ValueError(
              "Cannot mark a task done: taskDone() was called more times than items were put",
            ),
          );
        }
        this.#unfinished--;
        if (unfinished === 1) { for (const joiner of [...this.#joiners]) joiner(); }
        return Promise.resolve();
      }
      case "join":
        if (this.#unfinishedCount() === 0) return Promise.resolve();
        return new Promise<void>((resolve) => {
          const joiner = () => {
            this.#joiners.delete(joiner);
            resolve();
          };
          this.#joiners.add(joiner);
        });
      case "shutdown":
        return this.#shutdown(Boolean(arg));
      case "sync":
        return Promise.resolve();
      default:
        return Promise.reject(new TypeError(`Cannot call ${op} on a queue`));
    }
  }

  async #shutdown(immediate: boolean): Promise<void> {
    this.#shut = true;
    const ring = this.#ring;
    ring?.shutDown();
    if (immediate) {
      let dropped = this.#queue.size;
      ring?.countSpilled(-this.#queue.size);
      this.#queue.clear();
      if (ring !== undefined) {
        let cleared: number | null;
        while ((cleared = ring.clear(HUB_OWNER, false)) === null) await ring.whenUnlocked(5);
        dropped += cleared;
      }
      for (const client of this.#clients) {
        dropped += client.inflight.size;
        if (client.owner !== undefined) ring?.countSpilled(-client.inflight.size);
        client.inflight = new SeqQueue();
      }
      // What was dropped is done with (the ring's count of puts stays as it is).
      this.#unfinished = Math.max(-(ring?.puts ?? 0), this.#unfinished - dropped);
      if (this.#unfinishedCount() === 0) { for (const joiner of [...this.#joiners]) joiner(); }
    }
    for (const putter of this.#putters.splice(0)) {
      putter.refuse(new ShutDown("Cannot put to queue as it is shut down"));
    }
    for (const client of this.#clients) {
      client.link.sendParts([new Uint8Array([NOTICE]), encode(["shutdown", immediate])]).catch(
        () => {},
      );
    }
    for (const getter of [...this.#getters]) getter.wake();
    this.#pump();
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    hubs.delete(this.id);
    if (this.#path !== undefined) unexportRoute(this.id);
    for (const client of this.#clients) client.link.close();
    this.#clients.clear();
  }
}

const hubs = new Map<string, Hub>();

// ---------------------------------------------------------------- client

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** A queue made in another process, reached over its socket. */
class Remote implements Impl {
  readonly id: string;
  readonly maxsize: number;
  readonly path: string;
  #link: Link | undefined;
  #connecting: Promise<Link> | undefined;
  // Items received and not yet taken, in sequence order.
  #buffer = new SeqQueue();
  #granted = 0;
  #taken: number[] = [];
  #ackQueued = false;
  #getters = new Set<{ wake(): void }>();
  #calls = new Map<number, Pending>();
  #nextCall = 0;
  #shut = false;
  #drained = false;
  #lost: Error | undefined;
  #users = 0;
  // The queue's ring, for a worker of the hub's process: used once the hub
  // knows our lock id (it frees our lock if this thread dies holding it).
  #ring: SharedRing | undefined;
  #owner = 0;
  #ringReady = false;
  #watching = false;
  /** A starving credit went to the hub and nothing came back yet. */
  #asked = false;

  constructor(
    path: string,
    id: string,
    maxsize: number,
    lane?: { token: string; memory: SharedArrayBuffer },
    ring?: SharedArrayBuffer,
    shut = false,
  ) {
    this.path = path;
    this.id = id;
    this.maxsize = maxsize;
    this.#shut = shut;
    if (ring !== undefined) {
      this.#ring = new SharedRing(ring);
      this.#owner = HUB_OWNER + 1 + Math.floor(Math.random() * (2 ** 31 - HUB_OWNER - 2));
    }
    exitHooks.add(this.#atExit);
    this.#connecting = connectTo(path, [id], lane);
    this.#connecting.then((link) => {
      this.#connecting = undefined;
      if (this.#users < 0) return void link.closeAfterFlush();
      this.#link = link;
      if (this.#getters.size > 0 || this.#calls.size > 0) link.hold();
      link.start((frame) => this.#onFrame(frame), (error) => this.#onLost(error));
      if (this.#ring !== undefined) {
        // The first frame (puts made meanwhile are sent after it).
        link.sendParts([control(OWNER, this.#owner, 0).subarray(0, 5)]);
        link.writer.flushNow();
        this.#ringReady = true;
        if (this.#getters.size > 0) void this.#watch(this.#ring);
      }
    }, (error) => this.#onLost(error));
  }

  /** Whether the hub has nothing for us: shut down, and the ring and its spill empty. */
  #ringDrained(ring: SharedRing): boolean {
    return ring.shut && ring.size === 0 && ring.spilled === 0 && this.#buffer.size === 0;
  }

  // While getters wait: wake them when the ring has an item, and ask the hub
  // for what went around the ring. (waitAsync keeps nothing alive: the
  // getters hold the link.)
  async #watch(ring: SharedRing): Promise<void> {
    if (this.#watching) return;
    this.#watching = true;
    try {
      while (this.#getters.size > 0 && this.#lost === undefined) {
        const epoch = ring.epoch;
        if (ring.size > 0 || this.#ringDrained(ring)) {
          const waiting = this.#getters.size;
          wakeOne(this.#getters);
          // Another thread took it first: wait for the next.
          if (this.#getters.size === waiting) await ring.waitForPut(epoch, 1);
          continue;
        }
        if (ring.spilled > 0 && !this.#asked) {
          this.#asked = true;
          this.#topUp(true);
          this.flushTaken();
        }
        await ring.waitForPut(epoch, 50);
      }
    } finally {
      this.#watching = false;
    }
  }

  retain(): void {
    this.#users++;
  }

  #putAny = false;

  // Before the program ends: acknowledge what was taken, and wait until the
  // hub has everything put from here, so a parent that joined this child
  // knows the items are in the queue.
  #atExit = async (): Promise<void> => {
    this.flushTaken();
    await this.sync();
  };

  /** Settles once the hub has received everything put from here. */
  async sync(): Promise<void> {
    if (!this.#putAny || this.#lost !== undefined) return;
    this.#putAny = false;
    await this.call("sync").catch(() => {});
  }

  // Taken items are acknowledged before the program ends, so the hub does not
  // hand them out again when the connection closes.
  /** @ignore */
  flushTaken = (): void => {
    this.#ackQueued = false;
    unacked.delete(this);
    const taken = this.#taken;
    if (taken.length === 0) return;
    this.#taken = [];
    const frame = new Uint8Array(5 + 8 * taken.length);
    const view = new DataView(frame.buffer);
    frame[0] = ACK;
    view.setUint32(1, taken.length, true);
    for (let i = 0; i < taken.length; i++) view.setFloat64(5 + 8 * i, taken[i]!, true);
    this.#send([frame]);
    // Written now, not at the next turn: an ack must reach the hub before
    // anything this program sends afterwards on another connection.
    this.#link?.writer.flushNow();
  };

  #send(parts: Uint8Array[]): Promise<void> {
    const link = this.#link;
    if (link !== undefined) {
      link.sendParts(parts);
      return link.pace() ?? Promise.resolve();
    }
    if (this.#lost !== undefined) return Promise.reject(this.#lost);
    const kept = parts.map(ownShort); // sent later: views of the codec's buffer would be stale
    return this.#connecting!.then((ready) => ready.sendParts(kept));
  }

  #onLost(error: unknown): void {
    this.#lost ??= new ProcessError(
      `Cannot use the queue: the process that made it has ended${
        error instanceof Error ? ` (${error.message})` : ""
      }`,
      { cause: error },
    );
    for (const call of this.#calls.values()) call.reject(this.#lost);
    this.#calls.clear();
    for (const getter of [...this.#getters]) getter.wake();
  }

  #receive(seq: number, data: Uint8Array): void {
    this.#granted--;
    this.#buffer.insert(seq, data);
  }

  #onFrame(frame: Uint8Array): void {
    this.#asked = false; // whatever the hub sends answers a starving credit, or ends it
    switch (frame[0]) {
      case ITEM:
        this.#receive(viewOf(frame).getFloat64(1, true), frame.subarray(9));
        wakeOne(this.#getters);
        return;
      case ITEMS: {
        const view = viewOf(frame);
        if (!wholeRecords(view, 8)) return void this.#link?.close();
        for (let at = 1; at < frame.length;) {
          const length = view.getUint32(at + 8, true);
          this.#receive(view.getFloat64(at, true), frame.subarray(at + 12, at + 12 + length));
          at += 12 + length;
        }
        wakeOne(this.#getters);
        return;
      }
      case REPLY: {
        const [id, name, value] = decode(frame.subarray(1)) as [number, string, unknown];
        const call = this.#calls.get(id);
        if (call === undefined) return;
        this.#calls.delete(id);
        if (this.#calls.size === 0 && this.#getters.size === 0) this.#link?.letGo();
        if (name === "") call.resolve(value);
        else call.reject(errorByName(name, String(value)));
        return;
      }
      case RECALL: {
        this.#buffer.clear();
        this.#granted = 0;
        this.flushTaken();
        this.#send([OP_RETURN]);
        if (this.#getters.size > 0) this.#topUp(true);
        return;
      }
      case NOTICE: {
        const [what, immediate] = decode(frame.subarray(1)) as [string, boolean];
        this.#shut = true;
        if (what === "drained" || immediate) this.#drained = true;
        if (immediate) {
          this.#buffer.clear();
        }
        for (const getter of [...this.#getters]) getter.wake();
        return;
      }
    }
  }

  #topUp(starving: boolean): void {
    const buffered = this.#buffer.size;
    const more = Math.max(0, WINDOW - buffered - this.#granted);
    if (more === 0 && !starving) return;
    this.#granted += more;
    this.#send([control(CREDIT, more, 0, starving ? 1 : 0)]);
  }

  take(short = false): Uint8Array | undefined {
    if (this.#buffer.size === 0) {
      // Patient: a thread that dies holding the lock is recovered by the hub.
      return this.#ringReady
        ? this.#ring!.tryTake(this.#owner, true, short) ?? undefined
        : undefined;
    }
    this.#taken.push(this.#buffer.firstSeq);
    const item = this.#buffer.shift();
    const buffered = this.#buffer.size;
    // With a ring, the hub sends only what went around it, and only when asked.
    if (this.#ring === undefined && buffered + this.#granted <= WINDOW / 2) {
      this.#topUp(false);
      this.flushTaken(); // rides with the credit
    } else if (!this.#ackQueued) {
      // Tell the hub what was taken within a millisecond or two, and before
      // this program sends anything at all, waits for an item or exits: a
      // taken item must not be handed out again if this process dies after
      // acting on it. (An ack per turn cost more than the items themselves.)
      this.#ackQueued = true;
      unacked.add(this);
      beforeSend.hook = flushAcks;
      if (!acksTimed) {
        acksTimed = true;
        AbortSignal.timeout(1).onabort = flushAcks;
      }
    }
    return item;
  }

  put(data: Uint8Array, nowait: boolean, options?: WaitOptions): Promise<void> {
    if (this.#lost !== undefined) return Promise.reject(this.#lost);
    if (this.#shut) return Promise.reject(new ShutDown("Cannot put to queue as it is shut down"));
    if (this.maxsize <= 0) {
      const ring = this.#ring;
      if (ring !== undefined) {
        const put = ring.shut
          ? "shut"
          : this.#ringReady
          ? ring.offer(data, this.#owner)
          : "spilled";
        if (put === "ok") return RESOLVED;
        if (put === "shut") {
          this.#shut = true;
          return Promise.reject(new ShutDown("Cannot put to queue as it is shut down"));
        }
        // Spilled: to the hub, which moves it into the ring after the ring's.
        // (offer() counted it; until then, count it here.)
        if (!this.#ringReady) ring.countSpilled();
      }
      this.#putAny = true;
      const link = this.#link;
      if (link === undefined || data.length > RECORD_MAX) return this.#send([OP_PUT, data]);
      link.sendRecord(PUTS, NO_PREFIX, data);
      return link.pace() ?? Promise.resolve();
    }
    this.#putAny = true;
    const id = ++this.#nextCall;
    const reply = this.#call(id, nowait ? "putNowait" : "put", ownShort(data));
    if (nowait || (options?.timeout === undefined && options?.signal === undefined)) {
      return reply.then(() => {});
    }
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let giveUp: Error | undefined;
      const signal = options.signal;
      const cancel = (error: Error) => {
        giveUp ??= error;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#send([new Uint8Array([CALL]), encode([++this.#nextCall, "cancel", id])]);
      };
      const onAbort = () => cancel(signal!.reason);
      reply.then(() => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, (error) => reject(giveUp ?? error));
      if (options.timeout !== undefined) {
        timer = setTimeout(
          () => cancel(new Full(`Cannot put to queue as it is full: maxsize is ${this.maxsize}`)),
          Math.max(0, options.timeout),
        );
      }
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #call(id: number, op: string, arg?: unknown): Promise<unknown> {
    if (this.#lost !== undefined) return Promise.reject(this.#lost);
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      if (this.#calls.size === 1 && this.#getters.size === 0) this.#link?.hold();
      this.#send([new Uint8Array([CALL]), encode([id, op, arg])]).catch((error) => {
        this.#calls.delete(id);
        reject(error);
      });
    });
  }

  call(op: string, arg?: unknown): Promise<unknown> {
    return this.#call(++this.#nextCall, op, arg);
  }

  get(nowait: boolean, options?: WaitOptions): Promise<Uint8Array> {
    const attempt = () => {
      const item = this.take();
      if (item !== undefined) return item;
      if (this.#lost !== undefined) throw this.#lost;
      if (this.#drained || (this.#ringReady && this.#ringDrained(this.#ring!))) {
        throw new ShutDown("Cannot get from queue as it is shut down and empty");
      }
      return undefined;
    };
    if (nowait) {
      try {
        const item = attempt();
        if (item !== undefined) return Promise.resolve(item);
      } catch (error) {
        return Promise.reject(error);
      }
      return this.call("getNowait") as Promise<Uint8Array>;
    }
    return waitFor<Uint8Array>(
      options,
      "get from queue",
      (settle) => {
        const getter = { wake: () => settle(true) };
        this.#getters.add(getter);
        if (this.#getters.size === 1 && this.#calls.size === 0) this.#link?.hold();
        if (this.#ringReady) void this.#watch(this.#ring!); // it asks the hub when need be
        else {
          this.#asked = true;
          this.#topUp(true);
        }
        this.flushTaken(); // idle now: the hub may as well know
        return () => {
          this.#getters.delete(getter);
          if (this.#getters.size === 0 && this.#calls.size === 0) this.#link?.letGo();
        };
      },
      attempt,
      () => new Empty(`Cannot get from queue as it is empty after ${options?.timeout} ms`),
    );
  }

  describe(context: EncodeContext): string {
    if (context.grants !== undefined) grantSocket(context.grants, this.path);
    return this.path;
  }

  dispose(): void {
    if (--this.#users > 0) return;
    this.#users = -1;
    remotes.delete(this.id);
    this.flushTaken();
    exitHooks.delete(this.#atExit);
    if (this.#link !== undefined) this.#link.closeAfterFlush();
  }
}

const remotes = new Map<string, Remote>();
const unacked = new Set<Remote>();
// Whether a timer will flush the acks. An AbortSignal's, not setTimeout: in
// Deno 2.9.6 the first setTimeout of a process or worker loads Node's timers
// (5-10 ms), which held up a consumer's first item by as much.
let acksTimed = false;

function flushAcks(): void {
  acksTimed = false;
  if (beforeSend.hook === flushAcks) beforeSend.hook = undefined;
  for (const remote of [...unacked]) remote.flushTaken();
}

// ---------------------------------------------------------------- handle kind

interface QueueDescriptor {
  path: string;
  id: string;
  maxsize: number;
  type: "Queue" | "JoinableQueue" | "SimpleQueue";
  /** For a worker of the process that made the queue: where its lane memory is. */
  memory?: number;
  token?: string;
  /** For a worker of the process that made the queue: where the queue's ring is. */
  ring?: number;
  /** The queue was shut down when it was handed over. */
  shut?: true;
}

/** Module-private access to queue internals, filled by the classes' static blocks. */
const queues = {} as {
  describe(queue: Queue<unknown>, context: EncodeContext): QueueDescriptor;
  revive(
    descriptor: QueueDescriptor,
    context: DecodeContext,
  ): Queue<unknown> | SimpleQueue<unknown>;
  impl(queue: Queue<unknown>): Impl;
  wrap(queue: Queue<unknown>): SimpleQueue<unknown>;
  describeSimple(queue: SimpleQueue<unknown>, context: EncodeContext): QueueDescriptor;
};

const queueKind: HandleKind<Queue<unknown> | SimpleQueue<unknown>, QueueDescriptor> =
  registerHandleKind({
    name: "queue",
    module: import.meta.url,
    describe: (queue, context) =>
      queue instanceof SimpleQueue
        ? queues.describeSimple(queue, context)
        : queues.describe(queue, context),
    revive: (descriptor, context) => queues.revive(descriptor, context),
  });

let reviving: Impl | undefined;
let wrapping: Queue<unknown> | undefined;

function implFor(descriptor: QueueDescriptor, context: DecodeContext): Impl {
  const hub = hubs.get(descriptor.id);
  if (hub !== undefined) return hub;
  let remote = remotes.get(descriptor.id);
  if (remote === undefined) {
    const lane = laneMemoryOf(descriptor, context);
    const ring = descriptor.ring === undefined ? undefined : context.shared?.[descriptor.ring];
    remote = new Remote(
      descriptor.path,
      descriptor.id,
      descriptor.maxsize,
      lane,
      ring,
      descriptor.shut === true,
    );
    remotes.set(descriptor.id, remote);
  }
  remote.retain();
  return remote;
}

/**
 * A FIFO queue that any process or worker it reaches can put to and get
 * from, as Python's `multiprocessing.Queue`. Hand it to a child as a
 * `Process` argument or inside a message; items cross by structured clone.
 *
 * The process that made the queue holds its items; it must live as long as
 * others use the queue.
 *
 * @typeParam T The items.
 *
 * @example
 * ```ts
 * import { Queue } from "@seed/multiprocessing/queue";
 * import { Empty } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * await using q = new Queue<string>(2);
 * await q.put("a");
 * await q.put("b");
 * assert.equal(await q.full(), true);
 * assert.equal(await q.get(), "a");
 * assert.equal(await q.getNowait(), "b");
 * await assert.rejects(q.getNowait(), Empty);
 * ```
 */
export class Queue<T = unknown> implements AsyncDisposable {
  // What the rest of this module may do with a queue, kept off the public API.
  static {
    queues.describe = (queue, context) => queue.#describe(context);
    queues.revive = (descriptor, context) => Queue.#revive(descriptor, context);
    queues.impl = (queue) => queue.#impl;
  }

  #impl: Impl;
  #closed = false;
  #disposed = false;

  /**
   * Makes a queue.
   *
   * @param maxsize The most items it holds; `0` or less: no limit.
   * @throws {TypeError} When `maxsize` is not a number.
   */
  constructor(maxsize = 0) {
    if (reviving !== undefined) {
      this.#impl = reviving;
      reviving = undefined;
      return;
    }
    if (typeof maxsize !== "number" || Number.isNaN(maxsize)) {
      throw new TypeError(
        `Cannot make a queue with maxsize ${String(maxsize)}: it must be a number`,
      );
    }
    this.#impl = new Hub(maxsize > 0 ? Math.floor(maxsize) : 0);
  }

  /** The most items the queue holds; `0`: no limit. */
  get maxsize(): number {
    return this.#impl.maxsize;
  }

  #describe(context: EncodeContext): QueueDescriptor {
    const path = this.#impl.describe(context);
    const type = this instanceof JoinableQueue ? "JoinableQueue" : "Queue";
    const descriptor = { path, id: this.#impl.id, maxsize: this.#impl.maxsize, type } as const;
    // Only the queue's maker listens at `path`: a worker of it gets lane memory,
    // and the ring of an unbounded queue.
    const impl = this.#impl;
    if (!(impl instanceof Hub)) return descriptor;
    const ring = context.shared === undefined ? undefined : impl.ringMemory();
    // A put there fails at once (it would be dropped here).
    const withLane = withLaneMemory(
      impl.shut ? { ...descriptor, shut: true as const } : descriptor,
      context,
    );
    return ring === undefined ? withLane : { ...withLane, ring: context.shared!.push(ring) - 1 };
  }

  static #revive(
    descriptor: QueueDescriptor,
    context: DecodeContext,
  ): Queue<unknown> | SimpleQueue<unknown> {
    reviving = implFor(descriptor, context);
    try {
      if (descriptor.type === "JoinableQueue") return new JoinableQueue();
      if (descriptor.type === "SimpleQueue") return queues.wrap(new Queue());
      return new Queue();
    } finally {
      reviving = undefined;
    }
  }

  #checkPut(): void {
    if (this.#disposed) throw new ValueError("Cannot put to queue: it was disposed");
    if (this.#closed) throw new ValueError("Cannot put to queue: it is closed");
  }

  /**
   * Puts an item, waiting while the queue is full.
   *
   * @param item What to put; copied by structured clone now.
   * @param options How long to wait at most.
   * @returns Settles when the item is in the queue (or on its way to it).
   * @throws {Full} When `timeout` passes while the queue stays full.
   * @throws {ShutDown} When the queue was shut down.
   * @throws {DataCloneError} When `item` cannot be serialized; nothing is put.
   * @throws {ValueError} When this queue object was closed.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import { Full } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue(1);
   * await q.put(1);
   * await assert.rejects(q.put(2, { timeout: 10 }), Full);
   * ```
   */
  put(item: T, options?: QueueWaitOptions): Promise<void> {
    try {
      this.#checkPut();
      validTimeout(options, "put to queue");
      if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
      const { data, commit } = encodeItem(item);
      const done = this.#impl.put(data, false, options);
      for (const run of commit) run();
      return done;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Puts an item without waiting.
   *
   * @param item What to put.
   * @returns Settles when the item is in the queue.
   * @throws {Full} When the queue is full.
   * @throws {ShutDown} When the queue was shut down.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import { Full } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue(1);
   * await q.putNowait("x");
   * await assert.rejects(q.putNowait("y"), Full);
   * ```
   */
  putNowait(item: T): Promise<void> {
    try {
      this.#checkPut();
      const { data, commit } = encodeItem(item);
      const done = this.#impl.put(data, true);
      for (const run of commit) run();
      return done;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Takes the next item, waiting while the queue is empty.
   *
   * @param options How long to wait at most.
   * @returns The item.
   * @throws {Empty} When `timeout` passes while the queue stays empty.
   * @throws {ShutDown} When the queue was shut down and is drained.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import { Empty } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue();
   * await assert.rejects(q.get({ timeout: 10 }), Empty);
   * ```
   */
  get(options?: QueueWaitOptions): Promise<T> {
    try {
      this.#checkGet();
      // An item at hand: no waiting machinery (a consumer's main cost).
      const item = options === undefined ? this.#impl.take(true) : undefined;
      if (item !== undefined) return Promise.resolve(decode(item) as T);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#impl.get(false, options).then((item) => decode(item) as T);
  }

  #checkGet(): void {
    if (this.#disposed) throw new ValueError("Cannot get from queue: it was disposed");
  }

  /**
   * Takes the next item without waiting.
   *
   * @returns The item.
   * @throws {Empty} When the queue is empty.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue();
   * await q.put(1);
   * assert.equal(await q.getNowait(), 1);
   * ```
   */
  async getNowait(): Promise<T> {
    this.#checkGet();
    return decode(await this.#impl.get(true)) as T;
  }

  /**
   * The number of items in the queue (approximate while others use it).
   *
   * @returns The count.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue();
   * await q.put(1);
   * assert.equal(await q.qsize(), 1);
   * ```
   */
  qsize(): Promise<number> {
    return this.#impl.call("qsize") as Promise<number>;
  }

  /**
   * Whether the queue is empty (approximate while others use it).
   *
   * @returns `true` when empty.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue();
   * assert.equal(await q.empty(), true);
   * ```
   */
  empty(): Promise<boolean> {
    return this.#impl.call("empty") as Promise<boolean>;
  }

  /**
   * Whether the queue is full (approximate while others use it).
   *
   * @returns `true` when full.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue(1);
   * await q.put(0);
   * assert.equal(await q.full(), true);
   * ```
   */
  full(): Promise<boolean> {
    return this.#impl.call("full") as Promise<boolean>;
  }

  /**
   * This side puts no more; what it put is still delivered. Later `put`s
   * reject with `ValueError`; `get` still works.
   *
   * @returns Settles when this side's items are handed over.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import { ValueError } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue();
   * await q.put(1);
   * await q.close();
   * await assert.rejects(q.put(2), ValueError);
   * assert.equal(await q.get(), 1);
   * ```
   */
  close(): Promise<void> {
    this.#closed = true;
    return this.#impl.sync();
  }

  /**
   * Shuts the queue down for everyone (Python 3.13's `Queue.shutdown`):
   * later `put`s reject with `ShutDown`; `get`s drain what is left, then reject
   * with `ShutDown`. With `immediate`, what is left is dropped at once.
   *
   * @param options Whether to drop what is left.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import { ShutDown } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue();
   * await q.put(1);
   * await q.shutdown();
   * assert.equal(await q.get(), 1);
   * await assert.rejects(q.get(), ShutDown);
   * ```
   */
  async shutdown(options?: ShutdownOptions): Promise<void> {
    await this.#impl.call("shutdown", Boolean(options?.immediate));
  }

  /**
   * Yields items until the queue is shut down and drained.
   *
   * @returns An iterator of the items.
   *
   * @example
   * ```ts
   * import { Queue } from "@seed/multiprocessing/queue";
   * import assert from "node:assert/strict";
   *
   * await using q = new Queue<number>();
   * await q.put(1);
   * await q.put(2);
   * await q.shutdown();
   * const got = [];
   * for await (const x of q) got.push(x);
   * assert.deepEqual(got, [1, 2]);
   * ```
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      try {
        yield await this.get();
      } catch (error) {
        if (error instanceof ShutDown) return;
        throw error;
      }
    }
  }

  /**
   * Closes this queue object and releases what it holds here: in the process
   * that made the queue, the queue itself (others can no longer reach it).
   */
  [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return Promise.resolve();
    this.#closed = true;
    this.#disposed = true;
    this.#impl.dispose();
    return Promise.resolve();
  }
}

/**
 * A {@linkcode Queue} that counts unfinished tasks, as Python's
 * `multiprocessing.JoinableQueue`: each `get` is matched by a `taskDone()`,
 * and `join()` waits until every item put was done.
 *
 * @typeParam T The items.
 *
 * @example
 * ```ts
 * import { JoinableQueue } from "@seed/multiprocessing/queue";
 * import { ValueError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * await using q = new JoinableQueue<string>();
 * await q.put("job");
 * await q.get();
 * await q.taskDone();
 * await q.join();
 * await assert.rejects(q.taskDone(), ValueError);
 * ```
 */
export class JoinableQueue<T = unknown> extends Queue<T> {
  /**
   * Makes a joinable queue.
   *
   * @param maxsize The most items it holds; `0` or less: no limit.
   */
  constructor(maxsize = 0) {
    super(maxsize);
  }

  /**
   * Marks one item taken with `get` as done.
   *
   * @throws {ValueError} When called more times than items were put.
   *
   * @example
   * ```ts
   * import { JoinableQueue } from "@seed/multiprocessing/queue";
   *
   * await using q = new JoinableQueue();
   * await q.put(1);
   * await q.get();
   * await q.taskDone();
   * ```
   */
  async taskDone(): Promise<void> {
    await queues.impl(this).call("taskDone");
  }

  /**
   * Waits until every item put has been marked done.
   *
   * @example
   * ```ts
   * import { JoinableQueue } from "@seed/multiprocessing/queue";
   *
   * await using q = new JoinableQueue();
   * await q.join();
   * ```
   */
  async join(): Promise<void> {
    await queues.impl(this).call("join");
  }
}

/**
 * A plain queue with `put`, `get`, `empty` and `close` only, as Python's
 * `multiprocessing.SimpleQueue`.
 *
 * @typeParam T The items.
 *
 * @example
 * ```ts
 * import { SimpleQueue } from "@seed/multiprocessing/queue";
 * import assert from "node:assert/strict";
 *
 * await using q = new SimpleQueue<number>();
 * await q.put(7);
 * assert.equal(await q.get(), 7);
 * assert.equal(await q.empty(), true);
 * ```
 */
export class SimpleQueue<T = unknown> implements AsyncDisposable {
  #queue: Queue<T>;

  /** Makes a simple queue. */
  constructor() {
    this.#queue = (wrapping as Queue<T> | undefined) ?? new Queue<T>();
    wrapping = undefined;
  }

  static {
    queues.wrap = (queue) => {
      wrapping = queue;
      return new SimpleQueue();
    };
    queues.describeSimple = (simple, context) => ({
      ...queues.describe(simple.#queue, context),
      type: "SimpleQueue",
    });
  }

  /**
   * Puts an item.
   *
   * @param item What to put.
   * @throws {DataCloneError} When `item` cannot be serialized.
   */
  put(item: T): Promise<void> {
    return this.#queue.put(item);
  }

  /**
   * Takes the next item, waiting while empty.
   *
   * @returns The item.
   */
  get(): Promise<T> {
    return this.#queue.get();
  }

  /**
   * Whether the queue is empty.
   *
   * @returns `true` when empty.
   */
  empty(): Promise<boolean> {
    return this.#queue.empty();
  }

  /**
   * This side puts no more.
   *
   * @returns Settles when this side's items are handed over.
   */
  close(): Promise<void> {
    return this.#queue.close();
  }

  /** Releases what this queue object holds here. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.#queue[Symbol.asyncDispose]();
  }
}

// Instances cross to other processes and workers as handles.
markHandleClass(Queue, queueKind);
markHandleClass(SimpleQueue, queueKind);
