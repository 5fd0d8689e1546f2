/**
 * Two-way (or one-way) connections between processes and workers, as Python's
 * `multiprocessing.Pipe` and `multiprocessing.connection`.
 *
 * @example Send a message through a pipe
 * ```ts
 * import { Pipe } from "@seed/multiprocessing/pipe";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = Pipe();
 * await a.send([42, null, "hello"]);
 * assert.deepEqual(await b.recv(), [42, null, "hello"]);
 * a.close();
 * b.close();
 * ```
 *
 * @module
 */
import { decode, encodeParts, ownShort } from "./_codec.ts";
import { hmacSha256, sameBytes } from "./_hmac.ts";
import {
  type DecodeContext,
  type EncodeContext,
  type HandleKind,
  markHandleClass,
  registerHandleKind,
} from "./_handles.ts";
import {
  connectTo,
  exportRoute,
  flushNow,
  grantSocket,
  laneMemoryOf,
  Link,
  newId,
  unexportRoute,
  withLaneMemory,
} from "./_socket.ts";
import { waitFor } from "./_wait.ts";
import { joinBytes } from "./_wire.ts";
import {
  AuthenticationError,
  BufferTooShort,
  EOFError,
  TimeoutError,
  ValueError,
} from "./errors.ts";

const OBJ = 1;
const BYTES = 2;
const OP = [new Uint8Array(), new Uint8Array([OBJ]), new Uint8Array([BYTES])];
// A reader that falls behind by this much stops the writer (backpressure).
const HIGH_WATER = 4 << 20;
// Messages this large are sent from the caller's buffer without a copy.
const LARGE = 1 << 16;

interface Message {
  kind: number;
  data: Uint8Array;
  /** `data` is from encodeShort (or encodeParts): take it with ownShort() to keep it past this turn. */
  short?: boolean;
}

/** The message, with bytes of its own. */
function owned(message: Message): Message {
  return message.short ? { kind: message.kind, data: ownShort(message.data) } : message;
}

/** Options of {@linkcode Connection.prototype.recv}. */
export interface RecvOptions {
  /** Give up after this many milliseconds with `TimeoutError`. */
  timeout?: number | undefined;
  /** Give up when this signal aborts, with its reason. */
  signal?: AbortSignal | undefined;
}

/** Options of {@linkcode listen} and {@linkcode connect}. */
export interface ConnectOptions {
  /**
   * A shared secret: both sides prove they know it (HMAC challenge) before
   * anything is exchanged.
   */
  authkey?: Uint8Array | string | undefined;
}

/** A Unix socket path, or a TCP host and port. */
export type Address = string | { hostname: string; port: number };

// ---------------------------------------------------------------- hub

type Slot =
  | { t: "local"; end: Connection<unknown, unknown> }
  | { t: "remote"; link: Link }
  | { t: "pending"; buffer: Message[]; eof: boolean }
  | { t: "closed" };

/** Makes a Listener: module-private (set by its static block). */
let makeListener: (address: Address, key: Uint8Array | undefined) => Listener;

/** Module-private access to a Connection's internals (set by its static block). */
let ends: {
  local(hub: PipeHub, slot: number, readable: boolean, writable: boolean): Connection;
  overLink(link: Link | Promise<Link>, readable: boolean, writable: boolean): Connection;
  revive(descriptor: EndDescriptor, context: DecodeContext): Connection;
  push(end: Connection, message: Message): Promise<void> | undefined;
  eof(end: Connection): void;
  setFeeder(end: Connection, link: Link): void;
  describe(end: Connection, context: EncodeContext): EndDescriptor;
};

/** The bytes of `buf`, with `offset` checked to fall within them. */
function bytesAt(buf: ArrayBufferView | ArrayBuffer, offset: number, what: string): Uint8Array {
  const bytes = buf instanceof ArrayBuffer
    ? new Uint8Array(buf)
    : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!Number.isInteger(offset) || offset < 0 || offset > bytes.length) {
    throw new RangeError(
      `Cannot ${what}: offset ${offset} is outside the buffer of ${bytes.length} bytes`,
    );
  }
  return bytes;
}

/** The meeting point of a pipe's two ends, in the process that made it. */
class PipeHub {
  readonly id: string = newId("p");
  slots: [Slot, Slot] = [{ t: "closed" }, { t: "closed" }];
  #path: string | undefined;

  get path(): string {
    this.#path ??= exportRoute(this.id, (link, hello) => this.#attach(link, Number(hello[1])));
    return this.#path;
  }

  /** Sends a message from slot `from` to the other slot. */
  deliver(from: number, message: Message): Promise<void> | undefined {
    const to = this.slots[1 - from]!;
    switch (to.t) {
      case "local":
        return ends.push(to.end, owned(message));
      case "remote":
        to.link.sendParts([OP[message.kind]!, message.data]);
        return to.link.pace();
      case "pending":
        to.buffer.push(owned(message));
        return undefined;
    }
  }

  /** The end in slot `i` is gone: the other sees EOF once it has read everything. */
  closeSlot(i: number): void {
    const slot = this.slots[i]!;
    if (slot.t === "closed") return;
    if (slot.t === "remote") slot.link.close();
    this.slots[i] = { t: "closed" };
    const other = this.slots[1 - i]!;
    if (other.t === "local") ends.eof(other.end);
    else if (other.t === "remote") other.link.closeAfterFlush();
    else if (other.t === "pending") other.eof = true;
    if (this.slots[0].t === "closed" && this.slots[1].t === "closed" && this.#path !== undefined) {
      unexportRoute(this.id);
    }
  }

  /**
   * The end for slot `i` went to a process or worker that is gone: if it
   * never connected, it never will. (If it did, its socket closed with it, and
   * what it sent before is still read.)
   */
  abandon(i: number): void {
    if (this.slots[i]!.t === "pending") this.closeSlot(i);
  }

  /** A remote end (or the upstream of a relay) is now in slot `i`. */
  #attach(link: Link, i: number): void {
    const slot = this.slots[i];
    if (slot === undefined || slot.t !== "pending") {
      link.close();
      return;
    }
    this.attachLink(i, link, slot);
  }

  attachLink(i: number, link: Link, slot: { buffer: Message[]; eof: boolean }): void {
    this.slots[i] = { t: "remote", link };
    for (const message of slot.buffer) {
      link.sendParts([OP[message.kind]!, message.data]);
    }
    if (slot.eof) {
      link.closeAfterFlush();
      this.slots[i] = { t: "closed" };
      if (this.slots[1 - i]!.t === "closed") unexportRoute(this.id);
      return;
    }
    const other = this.slots[1 - i]!;
    if (other.t === "local") ends.setFeeder(other.end, link);
    link.start((frame) => {
      const wait = this.deliver(i, { kind: frame[0]!, data: frame.subarray(1) });
      if (wait !== undefined) {
        link.pause();
        wait.then(() => link.resume());
      }
    }, () => this.closeSlot(i));
  }
}

// ---------------------------------------------------------------- connection

interface EndDescriptor {
  path: string;
  id: string;
  slot: number;
  readable: boolean;
  writable: boolean;
  /** For a worker: where its lane memory is. */
  memory?: number;
  token?: string;
}

const connectionKind: HandleKind<Connection<unknown, unknown>, EndDescriptor> = registerHandleKind({
  name: "connection",
  module: import.meta.url,
  describe: (end, context) => ends.describe(end, context),
  revive: (descriptor, context) => ends.revive(descriptor, context),
});

/**
 * One end of a pipe or of a {@linkcode listen}/{@linkcode connect} connection,
 * as Python's `multiprocessing.connection.Connection`.
 *
 * Handing an end to another process or worker (as a `Process` argument or
 * inside a message) moves it: this object is detached, and the end works over
 * there.
 *
 * @typeParam S What this end sends.
 * @typeParam R What this end receives.
 *
 * @example Both ends in one program
 * ```ts
 * import { Pipe } from "@seed/multiprocessing/pipe";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = Pipe<string, number>();
 * await b.send(1);
 * assert.equal(await a.recv(), 1);
 * a.close();
 * b.close();
 * ```
 */
export class Connection<S = unknown, R = unknown> implements Disposable {
  // What the rest of this module may do with an end, kept off the public API.
  static {
    ends = {
      local: (hub, slot, readable, writable) => Connection.#local(hub, slot, readable, writable),
      overLink: (link, readable, writable) => Connection.#overLink(link, readable, writable),
      revive: (descriptor, context) => Connection.#revive(descriptor, context),
      push: (end, message) => end.#push(message),
      eof: (end) => end.#endOfStream(),
      setFeeder: (end, link) => end.#setFeeder(link),
      describe: (end, context) => end.#describe(context),
    };
  }
  #readable: boolean;
  #writable: boolean;
  #state: "open" | "closed" | "moved" = "open";

  /**
   * Writes what is queued now rather than at the next turn of the event loop
   * (for the pool's workers, whose next task may take a while).
   *
   * @ignore
   */
  [flushNow](): void {
    this.#link?.writer.flushNow();
  }
  // Where sends go: the hub (this end is local to it) or a link.
  #hub: PipeHub | undefined;
  #slot = 0;
  #link: Link | undefined;
  #connecting: Promise<Link> | undefined;
  #inbox: Message[] = [];
  #head = 0;
  #inboxBytes = 0;
  #eof = false;
  #error: unknown = undefined;
  #waiters = new Set<{ wake(): void }>();
  #space: { promise: Promise<void>; resolve: () => void } | undefined;
  // The link whose frames fill this end's inbox: held (ref'd) while someone waits.
  #feeder: Link | undefined;

  #setFeeder(link: Link): void {
    this.#feeder = link;
    if (this.#waiters.size > 0) link.hold();
  }

  /** Not for users: ends come from {@linkcode Pipe}, {@linkcode connect} and `accept`. */
  private constructor(readable: boolean, writable: boolean) {
    this.#readable = readable;
    this.#writable = writable;
  }

  /** Whether {@linkcode Connection.prototype.close} was called (or the end moved). */
  get closed(): boolean {
    return this.#state !== "open";
  }

  /** Whether this end can receive. */
  get readable(): boolean {
    return this.#readable;
  }

  /** Whether this end can send. */
  get writable(): boolean {
    return this.#writable;
  }

  static #local<S, R>(
    hub: PipeHub,
    slot: number,
    readable: boolean,
    writable: boolean,
  ): Connection<S, R> {
    const end = new Connection<S, R>(readable, writable);
    end.#hub = hub;
    end.#slot = slot;
    hub.slots[slot] = { t: "local", end: end as Connection<unknown, unknown> };
    return end;
  }

  static #overLink<S, R>(
    link: Link | Promise<Link>,
    readable: boolean,
    writable: boolean,
  ): Connection<S, R> {
    const end = new Connection<S, R>(readable, writable);
    if (link instanceof Link) end.#useLink(link);
    else {
      end.#connecting = link;
      link.then((ready) => {
        end.#connecting = undefined;
        if (end.#state === "closed") ready.closeAfterFlush();
        else if (end.#state === "open") end.#useLink(ready);
      }, (error) => end.#fail(error));
    }
    return end;
  }

  static #revive(descriptor: EndDescriptor, context: DecodeContext): Connection<unknown, unknown> {
    const { path, id, slot, readable, writable } = descriptor;
    const lane = laneMemoryOf(descriptor, context);
    return Connection.#overLink(connectTo(path, [id, slot], lane), readable, writable);
  }

  #useLink(link: Link): void {
    this.#link = link;
    this.#feed(link);
  }

  #feed(link: Link): void {
    this.#setFeeder(link);
    link.start((frame) => {
      const wait = this.#push({ kind: frame[0]!, data: frame.subarray(1) });
      if (wait !== undefined) {
        link.pause();
        wait.then(() => link.resume());
      }
    }, (error) => {
      if (error !== undefined) this.#fail(error);
      else this.#endOfStream();
    });
  }

  #fail(error: unknown): void {
    this.#error ??= new EOFError(
      `Connection failed: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
    this.#endOfStream();
  }

  #push(message: Message): Promise<void> | undefined {
    if (this.#state !== "open") return undefined;
    this.#inbox.push(message);
    this.#inboxBytes += message.data.length;
    this.#wake();
    if (this.#inboxBytes <= HIGH_WATER) return undefined;
    if (this.#space === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      this.#space = { promise, resolve };
    }
    return this.#space.promise;
  }

  #endOfStream(): void {
    this.#eof = true;
    this.#wake();
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter.wake();
  }

  #take(): Message | undefined {
    if (this.#head >= this.#inbox.length) return undefined;
    const message = this.#inbox[this.#head]!;
    this.#inbox[this.#head++] = undefined as unknown as Message;
    if (this.#head > 1024 && this.#head * 2 > this.#inbox.length) {
      this.#inbox = this.#inbox.slice(this.#head);
      this.#head = 0;
    }
    this.#inboxBytes -= message.data.length;
    if (this.#space !== undefined && this.#inboxBytes <= HIGH_WATER / 2) {
      const space = this.#space;
      this.#space = undefined;
      space.resolve();
    }
    return message;
  }

  #check(action: string, direction?: "send" | "recv"): void {
    if (this.#state === "moved") {
      throw new ValueError(
        `Cannot ${action}: the connection was handed to another process or worker`,
      );
    }
    if (this.#state === "closed") {
      throw new ValueError(`Cannot ${action}: the connection is closed`);
    }
    if (direction === "send" && !this.#writable) {
      throw new ValueError(`Cannot ${action}: this end of a one-way pipe only receives`);
    }
    if (direction === "recv" && !this.#readable) {
      throw new ValueError(`Cannot ${action}: this end of a one-way pipe only sends`);
    }
  }

  #out(message: Message): Promise<void> {
    if (this.#hub !== undefined) return this.#hub.deliver(this.#slot, message) ?? Promise.resolve();
    const link = this.#link;
    if (link !== undefined) return this.#write(link, message);
    if (this.#connecting !== undefined) {
      const kept = owned(message);
      return this.#connecting.then((ready) => this.#write(ready, kept));
    }
    if (this.#eof) return Promise.reject(new ValueError("Cannot send: the other end is closed"));
    return Promise.reject(new ValueError("Cannot send: the connection is not connected"));
  }

  // An encoding in parts (see encodeParts): written as one frame over a link,
  // joined anywhere else.
  #outParts(parts: Uint8Array[]): Promise<void> {
    const link = this.#link;
    if (this.#hub === undefined && link !== undefined) {
      return this.#writeFrame(link, [OP[OBJ]!, ...parts]);
    }
    return this.#out({ kind: OBJ, data: joinBytes(parts) });
  }

  #writeNow(link: Link, message: Message): Promise<void> {
    if (link.closed) return Promise.reject(new ValueError("Cannot send: the other end is closed"));
    return link.sendParts([OP[message.kind]!, message.data]).catch((error) => {
      throw new ValueError("Cannot send: the connection broke", { cause: error });
    });
  }

  #write(link: Link, message: Message): Promise<void> {
    return this.#writeFrame(link, [OP[message.kind]!, message.data]);
  }

  // One frame of parts, paced: settles when the reader is not far behind.
  #writeFrame(link: Link, parts: Uint8Array[]): Promise<void> {
    if (link.closed) {
      return Promise.reject(new ValueError("Cannot send: the other end is closed"));
    }
    link.sendParts(parts);
    return link.pace() ?? Promise.resolve();
  }

  /**
   * Sends an object: a structured-clone copy arrives, with handles (queues,
   * connection ends) working on the other side.
   *
   * @param obj What to send.
   * @returns Settles when the message is queued for writing; waits while the
   * reader is far behind.
   * @throws {DataCloneError} When `obj` cannot be serialized; nothing is sent.
   * @throws {ValueError} When this end is closed, moved or receive-only.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * await a.send(new Map([[1, "one"]]));
   * assert.deepEqual(await b.recv(), new Map([[1, "one"]]));
   * a.close();
   * b.close();
   * ```
   */
  send(obj: S): Promise<void> {
    try {
      this.#check("send", "send");
      const context: EncodeContext = { commit: [] };
      // Copied once, into the frame or the inbox (see owned()); sealed bytes
      // (a pool's tasks and results) go into the frame from where they are.
      const parts = encodeParts(obj, context, "message");
      const sent = parts.length === 1
        ? this.#out({ kind: OBJ, data: parts[0]!, short: true })
        : this.#outParts(parts);
      for (const commit of context.commit!) commit();
      return sent;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Sends bytes as one message (`buf[offset, offset + size)`). A message of
   * 64 KiB or more over a connection to another process or worker is written
   * straight from `buf`: leave `buf` alone until the promise settles. Smaller
   * ones are copied at once.
   *
   * @param buf The bytes.
   * @param offset Where to start in `buf`.
   * @param size How many bytes; the rest of `buf` by default.
   * @returns Settles when the message is queued for writing (a large one:
   * written).
   * @throws {RangeError} When `offset` or `size` fall outside `buf`.
   * @throws {ValueError} When this end is closed, moved or receive-only.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * await a.sendBytes(new Uint8Array([1, 2, 3, 4]), 1, 2);
   * assert.deepEqual(await b.recvBytes(), new Uint8Array([2, 3]));
   * a.close();
   * b.close();
   * ```
   */
  sendBytes(buf: ArrayBufferView | ArrayBuffer, offset = 0, size?: number): Promise<void> {
    try {
      this.#check("send bytes", "send");
      const bytes = bytesAt(buf, offset, "send bytes");
      const length = size ?? bytes.length - offset;
      if (!Number.isInteger(length) || length < 0 || offset + length > bytes.length) {
        throw new RangeError(
          `Cannot send bytes: size ${size} from offset ${offset} runs past the buffer of ${bytes.length} bytes`,
        );
      }
      const view = bytes.subarray(offset, offset + length);
      // A large message over a socket is written from the caller's buffer, and
      // the promise settles once it is written: no copy. Otherwise copy now.
      if (length >= LARGE && this.#hub === undefined && this.#link !== undefined) {
        return this.#writeNow(this.#link, { kind: BYTES, data: view });
      }
      return this.#out({ kind: BYTES, data: view.slice() });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #next(options: RecvOptions | undefined, what: string): Promise<Message> {
    try {
      this.#check(what, "recv");
    } catch (error) {
      return Promise.reject(error);
    }
    // A reply that is about to arrive is taken without a wake-up.
    if (this.#head >= this.#inbox.length && !this.#eof) {
      this.#feeder?.spin(() => this.#head < this.#inbox.length || this.#eof);
    }
    return waitFor<Message>(
      options,
      what,
      (settle) => this.#wait(settle),
      () => {
        if (this.#state !== "open") this.#check(what);
        const message = this.#take();
        if (message !== undefined) return message;
        if (this.#eof) {
          throw this.#error ??
            new EOFError(`Cannot ${what}: the other end is closed and everything sent was read`);
        }
        return undefined;
      },
      () => new TimeoutError(`Cannot ${what}: nothing arrived within ${options?.timeout} ms`),
    );
  }

  #wait(settle: (ok: boolean) => void): () => void {
    const waiter = { wake: () => settle(true) };
    this.#waiters.add(waiter);
    if (this.#waiters.size === 1) this.#holdFeeder(true);
    return () => {
      this.#waiters.delete(waiter);
      if (this.#waiters.size === 0) this.#holdFeeder(false);
    };
  }

  #holdFeeder(hold: boolean): void {
    const feeder = this.#feeder;
    if (feeder === undefined) return;
    if (hold) feeder.hold();
    else feeder.letGo();
  }

  /**
   * Receives the next message as an object.
   *
   * @param options How long to wait at most.
   * @returns The object sent (bytes sent with `sendBytes` come as a `Uint8Array`).
   * @throws {EOFError} When the other end is closed and everything was read.
   * @throws {TimeoutError} When `timeout` passes first.
   * @throws {ValueError} When this end is closed, moved or send-only.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import { EOFError } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * await a.send("last");
   * a.close();
   * assert.equal(await b.recv(), "last");
   * await assert.rejects(b.recv(), EOFError);
   * b.close();
   * ```
   */
  async recv(options?: RecvOptions): Promise<R> {
    const message = await this.#next(options, "receive");
    if (message.kind === BYTES) return message.data as R;
    return decode(message.data) as R;
  }

  /**
   * Receives the next message as bytes.
   *
   * @param maxlength The longest message accepted; a longer one closes this end.
   * @returns The message's bytes (an object message comes encoded).
   * @throws {EOFError} When the other end is closed and everything was read.
   * @throws {ValueError} When the message is longer than `maxlength`, or this
   * end is closed, moved or send-only.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * await a.sendBytes(new Uint8Array(0));
   * assert.equal((await b.recvBytes()).length, 0);
   * a.close();
   * b.close();
   * ```
   */
  async recvBytes(maxlength?: number): Promise<Uint8Array> {
    if (maxlength !== undefined && (!Number.isInteger(maxlength) || maxlength < 0)) {
      throw new RangeError(
        `Cannot receive bytes: maxlength ${maxlength} must be a non-negative integer`,
      );
    }
    const message = await this.#next(undefined, "receive bytes");
    if (maxlength !== undefined && message.data.length > maxlength) {
      this.close();
      throw new ValueError(
        `Cannot receive bytes: the message of ${message.data.length} bytes is longer than maxlength ${maxlength}; the connection is closed`,
      );
    }
    return message.data;
  }

  /**
   * Receives the next message into `buf` at `offset`.
   *
   * @param buf Where to put the bytes.
   * @param offset Where in `buf` to start.
   * @returns The message's length in bytes.
   * @throws {BufferTooShort} When the message does not fit; it carries the message.
   * @throws {EOFError} When the other end is closed and everything was read.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * await a.sendBytes(new Uint8Array([7, 8]));
   * const buf = new Uint8Array(4);
   * assert.equal(await b.recvBytesInto(buf, 1), 2);
   * assert.deepEqual(buf, new Uint8Array([0, 7, 8, 0]));
   * a.close();
   * b.close();
   * ```
   */
  async recvBytesInto(buf: ArrayBufferView | ArrayBuffer, offset = 0): Promise<number> {
    const bytes = bytesAt(buf, offset, "receive bytes");
    const message = await this.#next(undefined, "receive bytes");
    if (message.data.length > bytes.length - offset) {
      throw new BufferTooShort(
        `Cannot receive bytes: the message of ${message.data.length} bytes does not fit in ${
          bytes.length - offset
        } bytes`,
        message.data,
      );
    }
    bytes.set(message.data, offset);
    return message.data.length;
  }

  /**
   * Whether a message (or EOF) is ready to read, waiting up to `timeout` ms.
   *
   * @param timeout How long to wait; `0` only looks.
   * @returns `true` when `recv()` would not wait.
   * @throws {ValueError} When this end is closed, moved or send-only.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * assert.equal(await b.poll(), false);
   * await a.send(1);
   * assert.equal(await b.poll(1000), true);
   * a.close();
   * b.close();
   * ```
   */
  async poll(timeout = 0): Promise<boolean> {
    this.#check("poll", "recv");
    const ready = () => this.#head < this.#inbox.length || this.#eof ? true : undefined;
    if (ready() || timeout <= 0) return ready() ?? false;
    try {
      return await waitFor<boolean>(
        { timeout },
        "poll",
        (settle) => this.#wait(settle),
        ready,
        () => new TimeoutError("poll timed out"),
      );
    } catch (error) {
      if (error instanceof TimeoutError) return false;
      throw error;
    }
  }

  /**
   * Closes this end. The other end sees EOF once it has read what was sent.
   * A no-op on a closed or moved end.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * a.close();
   * assert.equal(a.closed, true);
   * b.close();
   * ```
   */
  close(): void {
    if (this.#state !== "open") return;
    this.#state = "closed";
    this.#drop();
  }

  #drop(): void {
    this.#inbox = [];
    this.#head = 0;
    this.#inboxBytes = 0;
    this.#space?.resolve();
    this.#space = undefined;
    if (this.#hub !== undefined) this.#hub.closeSlot(this.#slot);
    else this.#link?.closeAfterFlush();
    this.#wake();
  }

  /** Closes this end. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Receives objects until the other end is closed.
   *
   * @returns An iterator of the objects received.
   *
   * @example
   * ```ts
   * import { Pipe } from "@seed/multiprocessing/pipe";
   * import assert from "node:assert/strict";
   *
   * const [a, b] = Pipe();
   * await a.send(1);
   * await a.send(2);
   * a.close();
   * const got = [];
   * for await (const x of b) got.push(x);
   * assert.deepEqual(got, [1, 2]);
   * b.close();
   * ```
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<R, void, undefined> {
    for (;;) {
      let value: R;
      try {
        value = await this.recv();
      } catch (error) {
        if (error instanceof EOFError && this.#error === undefined) return;
        throw error;
      }
      yield value;
    }
  }

  #describe(context: EncodeContext): EndDescriptor {
    this.#check("hand over the connection");
    let hub = this.#hub;
    let slot = this.#slot;
    if (hub === undefined) {
      // A socket end moves by becoming a relay: a hub here with the link upstream.
      hub = new PipeHub();
      slot = 1;
    }
    const path = hub.path;
    if (context.grants !== undefined) grantSocket(context.grants, path);
    const target = hub;
    const targetSlot = slot;
    const commit = () => this.#moveTo(target, targetSlot);
    if (context.commit !== undefined) context.commit.push(commit);
    else queueMicrotask(commit);
    // The child this end went to died before it connected: it never will.
    context.lost?.push(() => target.abandon(targetSlot));
    const descriptor = {
      path,
      id: hub.id,
      slot,
      readable: this.#readable,
      writable: this.#writable,
    };
    // A worker's link to the hub, here, goes through memory it is sent.
    return withLaneMemory(descriptor, context);
  }

  #moveTo(hub: PipeHub, slot: number): void {
    if (this.#state !== "open") return;
    this.#state = "moved";
    const buffer = this.#inbox.slice(this.#head);
    const pending = { t: "pending" as const, buffer, eof: this.#eof && this.#error === undefined };
    if (this.#hub !== undefined) {
      hub.slots[slot] = pending;
      if (pending.eof && hub.slots[1 - slot]!.t === "closed") pending.eof = true;
    } else {
      hub.slots[slot] = pending;
      const upstream = { t: "pending" as const, buffer: [] as Message[], eof: false };
      hub.slots[1 - slot] = upstream;
      const link = this.#link;
      if (link !== undefined) {
        if (this.#eof) {
          hub.slots[1 - slot] = { t: "closed" };
          pending.eof = true;
        } else {
          hub.attachLink(1 - slot, link, upstream);
        }
      } else if (this.#connecting !== undefined) {
        this.#connecting.then(
          (ready) => hub.attachLink(1 - slot, ready, upstream),
          () => hub.closeSlot(1 - slot),
        );
      } else {
        hub.slots[1 - slot] = { t: "closed" };
        pending.eof = true;
      }
    }
    this.#inbox = [];
    this.#head = 0;
    this.#waiters.clear();
  }
}

/**
 * Makes a pipe: two connected {@linkcode Connection}s. With `duplex = false`
 * the first end only receives and the second only sends (Python's order).
 *
 * @typeParam A What the first end sends (and the second receives).
 * @typeParam B What the second end sends (and the first receives).
 * @param duplex Whether both ends send and receive.
 * @returns The two ends.
 *
 * @example A one-way pipe
 * ```ts
 * import { Pipe } from "@seed/multiprocessing/pipe";
 * import assert from "node:assert/strict";
 *
 * const [reader, writer] = Pipe(false);
 * assert.equal(reader.writable, false);
 * await writer.send("hi");
 * assert.equal(await reader.recv(), "hi");
 * reader.close();
 * writer.close();
 * ```
 */
export function Pipe<A = unknown, B = unknown>(
  duplex = true,
): [Connection<A, B>, Connection<B, A>] {
  const hub = new PipeHub();
  return [
    ends.local(hub, 0, true, duplex) as Connection<A, B>,
    ends.local(hub, 1, duplex, true) as Connection<B, A>,
  ];
}

// ---------------------------------------------------------------- listen / connect

function keyBytes(authkey: Uint8Array | string | undefined): Uint8Array | undefined {
  if (authkey === undefined) return undefined;
  if (typeof authkey === "string") return new TextEncoder().encode(authkey);
  if (authkey instanceof Uint8Array) return authkey;
  throw new TypeError("Cannot use authkey: it must be a Uint8Array or a string");
}

async function readFrame(link: Link): Promise<Uint8Array> {
  const frame = await link.reader.nextOwned();
  if (frame === null) {
    throw new AuthenticationError("Cannot authenticate: the other side closed the connection");
  }
  return frame;
}

const WELCOME = new TextEncoder().encode("#WELCOME#");
const FAILURE = new TextEncoder().encode("#FAILURE#");

// Python's deliver_challenge / answer_challenge, both ways.
async function challenge(link: Link, key: Uint8Array): Promise<void> {
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  await link.send(nonce);
  const answer = await readFrame(link);
  if (!sameBytes(answer, await hmacSha256(key, nonce))) {
    await link.send(FAILURE).catch(() => {});
    throw new AuthenticationError(
      "Cannot accept the connection: the other side gave the wrong authkey digest",
    );
  }
  await link.send(WELCOME);
}

async function answer(link: Link, key: Uint8Array): Promise<void> {
  const nonce = await readFrame(link);
  await link.send(await hmacSha256(key, nonce));
  const verdict = await readFrame(link);
  if (!sameBytes(verdict, WELCOME)) {
    throw new AuthenticationError("Cannot connect: the other side refused our authkey digest");
  }
}

/** Server side of the handshake: a mode byte first, so mismatched keys fail both sides. */
async function serverHandshake(link: Link, key: Uint8Array | undefined): Promise<void> {
  await link.send(new Uint8Array([key === undefined ? 0 : 1]));
  const mode = await readFrame(link);
  if (mode[0] !== (key === undefined ? 0 : 1)) {
    throw new AuthenticationError(
      "Cannot accept the connection: one side has an authkey and the other has not",
    );
  }
  if (key === undefined) return;
  await challenge(link, key);
  await answer(link, key);
}

async function clientHandshake(link: Link, key: Uint8Array | undefined): Promise<void> {
  const mode = await readFrame(link);
  await link.send(new Uint8Array([key === undefined ? 0 : 1]));
  if (mode[0] !== (key === undefined ? 0 : 1)) {
    throw new AuthenticationError("Cannot connect: one side has an authkey and the other has not");
  }
  if (key === undefined) return;
  await answer(link, key);
  await challenge(link, key);
}

/**
 * Accepts connections made with {@linkcode connect}, as Python's
 * `multiprocessing.connection.Listener`. Made by {@linkcode listen}.
 *
 * @example
 * ```ts
 * import { connect, listen } from "@seed/multiprocessing/pipe";
 * import assert from "node:assert/strict";
 *
 * await using listener = listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([connect(listener.address), listener.accept()]);
 * await client.send("hi");
 * assert.equal(await server.recv(), "hi");
 * client.close();
 * server.close();
 * ```
 */
export class Listener implements AsyncDisposable {
  static {
    makeListener = (address, key) => Listener.#make(address, key);
  }

  #listener: Deno.Listener;
  #key: Uint8Array | undefined;
  #address: Address;
  #closed = false;

  /** Not for users: call {@linkcode listen}. */
  private constructor(listener: Deno.Listener, address: Address, key: Uint8Array | undefined) {
    this.#listener = listener;
    this.#address = address;
    this.#key = key;
  }

  static #make(address: Address, key: Uint8Array | undefined): Listener {
    if (typeof address === "string") {
      const listener = Deno.listen({ transport: "unix", path: address });
      return new Listener(listener, address, key);
    }
    if (typeof address !== "object" || address === null || typeof address.port !== "number") {
      throw new TypeError("Cannot listen: the address must be a socket path or { hostname, port }");
    }
    const listener = Deno.listen({ hostname: address.hostname, port: address.port });
    const real = listener.addr as Deno.NetAddr;
    return new Listener(listener, { hostname: real.hostname, port: real.port }, key);
  }

  /** The address connections reach: the real port when port 0 was asked. */
  get address(): Address {
    return typeof this.#address === "string" ? this.#address : { ...this.#address };
  }

  /**
   * Waits for the next connection and authenticates it.
   *
   * @param options How long to wait at most.
   * @returns The server side of the connection.
   * @throws {AuthenticationError} When the client's authkey differs.
   * @throws {ValueError} When the listener is closed.
   */
  async accept(options?: RecvOptions): Promise<Connection> {
    if (this.#closed) throw new ValueError("Cannot accept: the listener is closed");
    const signal = options?.signal;
    if (signal?.aborted) throw signal.reason;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = new Promise<never>((_, reject) => {
      if (options?.timeout !== undefined) {
        timer = setTimeout(
          () => reject(new TimeoutError("Cannot accept: no connection came in time")),
          options.timeout,
        );
      }
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    try {
      const conn = await Promise.race([this.#listener.accept(), stop]);
      const link = new Link(conn);
      link.hold();
      try {
        await serverHandshake(link, this.#key);
      } catch (error) {
        await link.closeAfterFlush();
        throw error;
      } finally {
        link.letGo();
      }
      return ends.overLink(link, true, true);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  /** Stops listening (and removes the socket file). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* closed */ }
    if (typeof this.#address === "string") {
      try {
        Deno.removeSync(this.#address);
      } catch { /* Deno removed it */ }
    }
  }

  /** Stops listening. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /**
   * Connections as they come, until the listener is closed.
   *
   * @returns An iterator of accepted connections.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Connection, void, undefined> {
    while (!this.#closed) {
      try {
        yield await this.accept();
      } catch (error) {
        if (this.#closed) return;
        if (error instanceof AuthenticationError) continue;
        throw error;
      }
    }
  }
}

/**
 * Listens for {@linkcode connect}ions on a Unix socket path or a TCP address,
 * as Python's `multiprocessing.connection.Listener`.
 *
 * @param address A socket path, or `{ hostname, port }` (port 0 picks one).
 * @param options The authkey both sides must share.
 * @returns The listener.
 *
 * @example
 * ```ts
 * import { connect, listen } from "@seed/multiprocessing/pipe";
 * import assert from "node:assert/strict";
 *
 * const path = Deno.makeTempDirSync() + "/mp.sock";
 * await using listener = listen(path, { authkey: "secret" });
 * const [client, server] = await Promise.all([
 *   connect(path, { authkey: "secret" }),
 *   listener.accept(),
 * ]);
 * await server.send(42);
 * assert.equal(await client.recv(), 42);
 * client.close();
 * server.close();
 * ```
 */
export function listen(address: Address, options?: ConnectOptions): Listener {
  return makeListener(address, keyBytes(options?.authkey));
}

/**
 * Connects to a {@linkcode listen}ing address, as Python's
 * `multiprocessing.connection.Client`.
 *
 * @param address A socket path, or `{ hostname, port }`.
 * @param options The authkey both sides must share.
 * @returns The client side of the connection.
 * @throws {AuthenticationError} When the authkeys differ.
 *
 * @example
 * ```ts
 * import { connect, listen } from "@seed/multiprocessing/pipe";
 * import assert from "node:assert/strict";
 *
 * await using listener = listen({ hostname: "127.0.0.1", port: 0 });
 * const [client, server] = await Promise.all([connect(listener.address), listener.accept()]);
 * await client.sendBytes(new Uint8Array([1]));
 * assert.deepEqual(await server.recvBytes(), new Uint8Array([1]));
 * client.close();
 * server.close();
 * ```
 */
export async function connect(address: Address, options?: ConnectOptions): Promise<Connection> {
  const key = keyBytes(options?.authkey);
  const conn = typeof address === "string"
    ? await Deno.connect({ transport: "unix", path: address })
    : await Deno.connect({ hostname: address.hostname, port: address.port });
  const link = new Link(conn);
  link.hold();
  try {
    await clientHandshake(link, key);
  } catch (error) {
    link.close();
    throw error;
  } finally {
    link.letGo();
  }
  return ends.overLink(link, true, true);
}

// Instances cross to other processes and workers as handles.
markHandleClass(Connection, connectionKind);
