// The client side of a manager: one framed connection per manager address in
// each process or worker (a Channel), the mutual HMAC handshake, and the
// "manager-proxy" handle kind. A request is [id, target, method, args] and its
// answer [id, ok, value]; id 0 asks for no answer. Target 0 is the manager
// itself (create, incref, decref, expose, lookup, cancel, shutdown).
import { decode, encode, encodeView } from "./_codec.ts";
import { hmacSha256, sameBytes } from "./_hmac.ts";
import { type EncodeContext, registerHandleKind } from "./_handles.ts";
import { type Lane, Spinner, takeLane } from "./_lane.ts";
import { grantSocket } from "./_socket.ts";
import { atExit } from "./_state.ts";
import { type ByteWriter, FrameReader, joinBytes } from "./_wire.ts";
import { AuthenticationError, ProcessError, ValueError } from "./errors.ts";

/** A manager's address: a Unix socket path, or a TCP host and port. */
export type Address = string | { hostname: string; port: number };

/** How to reach a manager's server. */
export interface Endpoint {
  address: Address;
  authkey: Uint8Array;
  /** TLS: the CA certificates (PEM) to trust; an empty list trusts the system's. */
  tls?: { caCerts: string[] } | undefined;
}

/** What a proxy is made of when it travels. */
export interface ProxyDescriptor {
  /** The id of the server instance that owns the object. */
  server: string;
  objectId: number;
  typeid: string;
  /** A custom type's methods. */
  methods?: string[] | undefined;
  /** Left out by the server: the receiver fills in the endpoint it read the answer from. */
  address?: Address | undefined;
  authkey?: Uint8Array | undefined;
  tls?: { caCerts: string[] } | undefined;
}

/** A request's per-call options. */
export interface CallOptions {
  signal?: AbortSignal | undefined;
}

// --- The handshake, after Python's multiprocessing.connection deliver_challenge / answer_challenge.

const CHALLENGE = new TextEncoder().encode("#CHALLENGE#{sha256}");
const WELCOME = new TextEncoder().encode("#WELCOME#");
const FAILURE = new TextEncoder().encode("#FAILURE#");
/** How long a handshake may take. */
export const HANDSHAKE_TIMEOUT = 10_000;
/** Handshake frames are small: anything bigger is refused before it is read. */
const HANDSHAKE_MAX = 256;

/** The part of a connection the handshake needs. */
export interface Duplex {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
}

async function readExact(conn: Duplex, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const got = await conn.read(out.subarray(at));
    if (got === null) throw new AuthenticationError("Cannot authenticate: the peer hung up");
    at += got;
  }
  return out;
}

/** Reads one frame exactly (no read-ahead), refusing big ones. */
async function readSmallFrame(conn: Duplex): Promise<Uint8Array> {
  const header = await readExact(conn, 4);
  const n = new DataView(header.buffer).getUint32(0, true);
  if (n > HANDSHAKE_MAX) {
    throw new AuthenticationError(`Cannot authenticate: the peer sent a ${n}-byte handshake frame`);
  }
  return await readExact(conn, n);
}

async function writeFrame(conn: Duplex, payload: Uint8Array): Promise<void> {
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length, true);
  frame.set(payload, 4);
  for (let at = 0; at < frame.length;) at += await conn.write(frame.subarray(at));
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** Sends a challenge and checks the answer; tells the peer the verdict. */
export async function deliverChallenge(conn: Duplex, authkey: Uint8Array): Promise<void> {
  const message = new Uint8Array(CHALLENGE.length + 32);
  message.set(CHALLENGE);
  message.set(crypto.getRandomValues(new Uint8Array(32)), CHALLENGE.length);
  await writeFrame(conn, message);
  const answer = await readSmallFrame(conn);
  if (!sameBytes(answer, await hmacSha256(authkey, message))) {
    await writeFrame(conn, FAILURE).catch(() => {});
    throw new AuthenticationError(
      "Cannot authenticate the peer: its answer to the challenge is wrong",
    );
  }
  await writeFrame(conn, WELCOME);
}

/** Answers the peer's challenge; fails if the peer says the key is wrong. */
export async function answerChallenge(conn: Duplex, authkey: Uint8Array): Promise<void> {
  const message = await readSmallFrame(conn);
  if (!startsWith(message, CHALLENGE)) {
    throw new AuthenticationError("Cannot authenticate: the peer sent no challenge");
  }
  await writeFrame(conn, await hmacSha256(authkey, message));
  const verdict = await readSmallFrame(conn);
  if (!sameBytes(verdict, WELCOME)) {
    throw new AuthenticationError(
      "Cannot authenticate to the manager: it refused the authkey; pass the key the manager was started with",
    );
  }
}

/** An authkey given as a string or bytes, as bytes. */
export function toAuthkey(key: Uint8Array | string, what: string): Uint8Array {
  if (typeof key === "string") return new TextEncoder().encode(key);
  if (key instanceof Uint8Array) return key.slice();
  throw new TypeError(`Cannot ${what}: authkey must be a Uint8Array or a string`);
}

/** A readable name for an address, for messages. */
export function describeAddress(address: Address): string {
  return typeof address === "string" ? address : `${address.hostname}:${address.port}`;
}

const keys = new WeakMap<Endpoint, string>();

// Clients with different keys (or TLS settings) to one address do not share a connection.
function keyOf(endpoint: Endpoint): string {
  let key = keys.get(endpoint);
  if (key === undefined) keys.set(endpoint, key = computeKey(endpoint));
  return key;
}

function computeKey(endpoint: Endpoint): string {
  const a = endpoint.address;
  const where = typeof a === "string" ? `unix:${a}` : `tcp:${a.hostname}:${a.port}`;
  const key = Array.from(endpoint.authkey, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${where} ${key} ${endpoint.tls === undefined ? "" : endpoint.tls.caCerts.join("")}`;
}

/** Opens a raw connection to an endpoint. */
export async function dial(endpoint: Endpoint): Promise<Deno.Conn> {
  const a = endpoint.address;
  if (typeof a === "string") return await Deno.connect({ transport: "unix", path: a });
  if (endpoint.tls !== undefined) {
    const caCerts = endpoint.tls.caCerts;
    return await Deno.connectTls({
      hostname: a.hostname,
      port: a.port,
      ...(caCerts.length > 0 ? { caCerts } : {}),
    });
  }
  const conn = await Deno.connect({ hostname: a.hostname, port: a.port });
  conn.setNoDelay(true);
  return conn;
}

// --- Channels.

/**
 * Writes frames to a connection: the first straight away (a round trip then
 * costs no extra turn), and those queued meanwhile as one write when it is done.
 */
export class Outbox {
  #conn: ByteWriter;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing = false;
  #waiters: (() => void)[] = [];
  #onError: () => void;
  failed = false;

  constructor(conn: ByteWriter, onError: () => void = () => {}) {
    this.#conn = conn;
    this.#onError = onError;
  }

  /** Bytes queued and not yet handed to the connection. */
  get pendingBytes(): number {
    return this.#queuedBytes;
  }

  send(payload: Uint8Array): void {
    if (this.failed) return;
    const frame = new Uint8Array(4 + payload.length);
    new DataView(frame.buffer).setUint32(0, payload.length, true);
    frame.set(payload, 4);
    if (this.#writing) {
      this.#queue.push(frame);
      this.#queuedBytes += frame.length;
      return;
    }
    // A lane takes the frame at once in the common case: no promise at all.
    let rest = frame;
    if (this.#conn.writeNow !== undefined) {
      try {
        rest = frame.subarray(this.#conn.writeNow(frame));
      } catch {
        this.#fail();
        return;
      }
      if (rest.length === 0) return;
    }
    this.#writing = true;
    this.#pump(rest);
  }

  #fail(): void {
    this.failed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#onError();
  }

  async #pump(first: Uint8Array): Promise<void> {
    let bytes: Uint8Array | undefined = first;
    try {
      while (bytes !== undefined) {
        for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
        bytes = this.#take();
        this.#wake();
      }
    } catch {
      this.#fail();
    } finally {
      this.#writing = false;
      this.#wake();
    }
  }

  #take(): Uint8Array | undefined {
    const queue = this.#queue;
    if (queue.length === 0) return undefined;
    this.#queue = [];
    this.#queuedBytes = 0;
    return queue.length === 1 ? queue[0] : joinBytes(queue);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Settles when a write completes (or nothing is being written). */
  progress(): Promise<void> {
    if (!this.#writing) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Settles when everything queued so far has been written (or failed). */
  async drained(): Promise<void> {
    while (this.#writing) await this.progress();
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

// How long an idle connection keeps the event loop alive.
const IDLE_UNREF = 20;

/** The endpoint whose answer is being decoded: proxies in it are reached there. */
let decodingFrom: Endpoint | undefined;

const channels = new Map<string, Channel>();
/** Managers this process shut down: no reconnecting to them. */
const finished = new Set<string>();

/** One connection to one manager, shared by every proxy of it in this process. */
export class Channel {
  readonly endpoint: Endpoint;
  #key: string;
  #conn: Deno.Conn | undefined;
  #writer: Outbox | undefined;
  // With a lane (a local manager), answers are polled for; see _lane.ts.
  #lane: Lane | undefined;
  #reader: FrameReader | undefined;
  #spinner = new Spinner();
  #queue: Uint8Array[] | null = [];
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: Error | undefined;
  #referenced = true;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Settles when the handshake is done (or failed). */
  readonly opened: Promise<void>;

  constructor(endpoint: Endpoint) {
    // Only the endpoint's own fields: a proxy's descriptor may be passed in.
    this.endpoint = {
      address: endpoint.address,
      authkey: endpoint.authkey,
      ...(endpoint.tls !== undefined ? { tls: endpoint.tls } : {}),
    };
    this.#key = keyOf(endpoint);
    this.opened = this.#open();
  }

  async #open(): Promise<void> {
    let conn: Deno.Conn | undefined;
    try {
      conn = await dial(this.endpoint);
      if (this.#closed !== undefined) throw this.#closed;
      this.#conn = conn;
      const shaking = (async () => {
        await answerChallenge(conn, this.endpoint.authkey);
        await deliverChallenge(conn, this.endpoint.authkey);
      })();
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          shaking,
          new Promise((_, reject) => {
            timer = setTimeout(() => {
              reject(
                new ProcessError(
                  `Cannot connect to the manager at ${
                    describeAddress(this.endpoint.address)
                  }: it did not answer the handshake within ${HANDSHAKE_TIMEOUT} ms (is it a manager, with the same TLS setting?)`,
                ),
              );
              conn?.close();
            }, HANDSHAKE_TIMEOUT);
          }),
        ]);
      } finally {
        if (timer !== undefined) clearTimeout(timer);
        shaking.catch(() => {});
      }
    } catch (error) {
      const reason = error instanceof AuthenticationError || error instanceof ProcessError
        ? error
        : new ProcessError(
          `Cannot connect to the manager at ${describeAddress(this.endpoint.address)}: ${
            (error as Error)?.message
          }; it has shut down or the address is wrong`,
          { cause: error },
        );
      this.#fail(reason);
      throw reason;
    }
    let lane: Lane | undefined;
    if (typeof this.endpoint.address === "string") {
      try {
        lane = await takeLane(conn);
      } catch (error) {
        const reason = new ProcessError(
          `Cannot connect to the manager at ${describeAddress(this.endpoint.address)}: ${
            (error as Error)?.message
          }`,
          { cause: error },
        );
        this.#fail(reason);
        throw reason;
      }
    }
    this.#lane = lane;
    const reader = new FrameReader(lane ?? conn);
    this.#reader = reader;
    const writer = new Outbox(lane ?? conn);
    this.#writer = writer;
    const queued = this.#queue ?? [];
    this.#queue = null;
    for (const frame of queued) writer.send(frame);
    this.#updateRef();
    this.#readLoop(reader, lane);
  }

  // Answers every whole frame the lane has now.
  #drain(lane: Lane, reader: FrameReader): void {
    reader.drainNow(lane, this.#onAnswer, this.#isClosed);
  }
  #onAnswer = (frame: Uint8Array): void => this.#answer(frame);
  #isClosed = (): boolean => this.#closed !== undefined;

  async #readLoop(reader: FrameReader, lane: Lane | undefined): Promise<void> {
    let reason: Error | undefined;
    try {
      for (;;) {
        if (lane !== undefined) {
          this.#drain(lane, reader);
          if (this.#closed !== undefined) break;
          if (await lane.waitBell()) continue;
          this.#drain(lane, reader);
          await reader.next(); // everything whole was answered: a cut frame throws
          break;
        }
        const frame = await reader.next();
        if (frame === null) break;
        this.#answer(frame);
        while (reader.buffered) this.#answer(reader.nextBuffered()!);
      }
    } catch (error) {
      if (this.#closed === undefined) reason = error as Error;
    }
    this.#fail(
      new ProcessError(
        `Cannot finish the call: the connection to the manager at ${
          describeAddress(this.endpoint.address)
        } closed; the manager has shut down`,
        reason !== undefined ? { cause: reason } : undefined,
      ),
    );
  }

  #answer(frame: Uint8Array): void {
    let message: [number, boolean, unknown];
    decodingFrom = this.endpoint;
    try {
      message = decode(frame) as [number, boolean, unknown];
    } catch (error) {
      // An answer we cannot read: fail the oldest call rather than hang it.
      const first = this.#pending.keys().next();
      if (!first.done) this.#settle(first.value, false, error);
      return;
    } finally {
      decodingFrom = undefined;
    }
    this.#settle(message[0], message[1], message[2]);
  }

  #settle(id: number, ok: boolean, value: unknown): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    this.#updateRef();
    if (ok) pending.resolve(value);
    else pending.reject(value);
  }

  #fail(reason: Error): void {
    if (this.#closed === undefined) this.#closed = reason;
    if (channels.get(this.#key) === this) channels.delete(this.#key);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(this.#closed);
    this.#queue = null;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    try {
      this.#conn?.close();
    } catch { /* closed */ }
    this.#lane?.close();
  }

  // Waiting for answers keeps the event loop alive; an idle connection does
  // not. Unref lazily: toggling per call would cost two ops per round trip.
  #updateRef(): void {
    if (this.#conn === undefined || this.#closed !== undefined) return;
    if (this.#pending.size > 0) {
      if (this.#referenced) return;
      this.#referenced = true;
      try {
        this.#conn.ref();
      } catch { /* closed */ }
      return;
    }
    if (!this.#referenced || this.#idleTimer !== undefined) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#pending.size > 0 || this.#closed !== undefined || !this.#referenced) return;
      this.#referenced = false;
      try {
        this.#conn?.unref();
      } catch { /* closed */ }
    }, IDLE_UNREF);
    Deno.unrefTimer(this.#idleTimer);
  }

  #send(frame: Uint8Array): void {
    if (this.#queue !== null) this.#queue.push(frame.slice());
    else this.#writer?.send(frame);
  }

  /** Calls a method; the answer's value, or its error as a rejection. */
  request(
    target: number,
    method: string,
    args: unknown[],
    options?: CallOptions,
  ): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.#nextId++;
    let frame: Uint8Array;
    try {
      // A view of the codec's buffer: #send() copies it before the next encode.
      frame = encodeView([id, target, method, args], undefined, "the arguments");
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      if (signal !== undefined) {
        onAbort = () => {
          if (!this.#pending.delete(id)) return;
          this.#updateRef();
          this.notify(0, "cancel", [id]);
          reject(signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
      }
      this.#pending.set(id, {
        resolve: (value) => {
          if (onAbort !== undefined) signal!.removeEventListener("abort", onAbort);
          resolve(value);
        },
        reject: (error) => {
          if (onAbort !== undefined) signal!.removeEventListener("abort", onAbort);
          reject(error);
        },
      });
      this.#updateRef();
      this.#send(frame);
      // A local manager answers within microseconds: poll for it first.
      const lane = this.#lane, reader = this.#reader;
      if (lane !== undefined && reader !== undefined && this.#queue === null) {
        this.#spinner.spin(() => {
          this.#drain(lane, reader);
          return !this.#pending.has(id);
        });
      }
    });
  }

  /** Sends a request that wants no answer (incref, decref, cancel). */
  notify(target: number, method: string, args: unknown[]): void {
    if (this.#closed !== undefined) return;
    this.#send(encode([0, target, method, args]));
  }

  /** Settles when what was sent so far has been written. */
  async drained(): Promise<void> {
    await this.opened.catch(() => {});
    await this.#writer?.drained();
  }

  /** Closes the connection; calls in flight fail. */
  close(): void {
    this.#fail(
      new ProcessError(
        `Cannot use the manager at ${
          describeAddress(this.endpoint.address)
        }: this process disconnected from it`,
      ),
    );
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }
}

// A child exits right after its target returns: what it sent last (a
// dispose()'s decref, say) must be written first.
let drainsAtExit = false;

/** The open channel to a manager, made on first use. */
export function channelFor(endpoint: Endpoint): Channel {
  if (!drainsAtExit) {
    drainsAtExit = true;
    atExit.add(async () => {
      await Promise.all([...channels.values()].map((channel) => channel.drained()));
    });
  }
  const key = keyOf(endpoint);
  if (finished.has(key)) {
    throw new ValueError(
      `Cannot use the manager at ${
        describeAddress(endpoint.address)
      }: it was shut down; start a new Manager`,
    );
  }
  let channel = channels.get(key);
  if (channel === undefined || channel.closed) {
    channel = new Channel(endpoint);
    channel.opened.catch(() => {});
    channels.set(key, channel);
  }
  return channel;
}

/** The open channel to a manager if there is one. */
export function existingChannel(endpoint: Endpoint): Channel | undefined {
  return channels.get(keyOf(endpoint));
}

/** Closes this process's connection to a manager; `forever` after its shutdown. */
export function closeChannel(endpoint: Endpoint, forever: boolean): void {
  const key = keyOf(endpoint);
  if (forever) finished.add(key);
  const channel = channels.get(key);
  channels.delete(key);
  channel?.close();
}

// --- The proxy handle kind.

/** A proxy's link to its object. */
export class ProxyRef {
  readonly descriptor: ProxyDescriptor & Endpoint;
  #released = false;

  constructor(descriptor: ProxyDescriptor & Endpoint) {
    this.descriptor = descriptor;
  }

  get released(): boolean {
    return this.#released;
  }

  #check(method: string): void {
    if (this.#released) {
      throw new ValueError(
        `Cannot call ${method}() on a ${this.descriptor.typeid} proxy: it was released`,
      );
    }
  }

  #channel: Channel | undefined;

  call(method: string, args: unknown[], options?: CallOptions): Promise<unknown> {
    try {
      this.#check(method);
      let channel = this.#channel;
      if (channel === undefined || channel.closed) {
        this.#channel = channel = channelFor(this.descriptor);
      }
      return channel.request(this.descriptor.objectId, method, args, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    try {
      channelFor(this.descriptor).notify(0, "decref", [this.descriptor.objectId]);
    } catch { /* the manager is gone, and the object with it */ }
  }

  /** Dropped without release(): decref if still connected. */
  collected(): void {
    if (this.#released) return;
    existingChannel(this.descriptor)?.notify(0, "decref", [this.descriptor.objectId]);
  }

  describe(context: EncodeContext): ProxyDescriptor {
    this.#check("send");
    const d = this.descriptor;
    // The receiver's reference, counted now, so this side may release its own at once.
    channelFor(d).notify(0, "incref", [d.objectId]);
    const grants = context.grants;
    if (grants !== undefined) {
      if (typeof d.address === "string") grantSocket(grants, d.address);
      else {
        grants.net.add(`${d.address.hostname}:${d.address.port}`);
      }
    }
    return d;
  }
}

/** Each live proxy's ref. */
export const proxyRefs: WeakMap<object, ProxyRef> = new WeakMap();

const collector = new FinalizationRegistry<ProxyRef>((ref) => ref.collected());

/** Links a new proxy object to its ref; a dropped proxy gives its reference back. */
export function attach(proxy: object, ref: ProxyRef): void {
  proxyRefs.set(proxy, ref);
  collector.register(proxy, ref, ref);
}

/** Unregisters a proxy's ref from collection (it was released explicitly). */
export function detach(ref: ProxyRef): void {
  collector.unregister(ref);
}

/** Hooks set by the server (to keep proxies inert there) and by manager.ts (proxy classes). */
export const hooks: {
  serverRevive?: ((descriptor: ProxyDescriptor) => object | undefined) | undefined;
  makeProxy?: ((ref: ProxyRef) => object) | undefined;
} = {};

function validDescriptor(d: unknown): d is ProxyDescriptor {
  if (typeof d !== "object" || d === null) return false;
  const r = d as Record<string, unknown>;
  return typeof r.server === "string" && typeof r.objectId === "number" &&
    typeof r.typeid === "string" &&
    (r.methods === undefined ||
      (Array.isArray(r.methods) && r.methods.every((m) => typeof m === "string")));
}

/** The handle kind of every manager proxy. */
export const proxyKind = registerHandleKind<object, ProxyDescriptor>({
  name: "manager-proxy",
  // Proxies are made by manager.ts's classes, which this module does not load.
  module: new URL("./manager.ts", import.meta.url).href,
  describe(handle, context) {
    const ref = proxyRefs.get(handle);
    if (ref !== undefined) return ref.describe(context);
    const described = (handle as { describe?: (c: EncodeContext) => ProxyDescriptor }).describe;
    if (typeof described === "function") return described.call(handle, context);
    throw new TypeError("Cannot send a manager proxy that was not made by a manager");
  },
  revive(descriptor) {
    if (!validDescriptor(descriptor)) {
      throw new TypeError("Cannot revive a manager proxy: its descriptor is malformed");
    }
    const local = hooks.serverRevive?.(descriptor);
    if (local !== undefined) return local;
    let full = descriptor as ProxyDescriptor & Endpoint;
    if (descriptor.address === undefined || descriptor.authkey === undefined) {
      if (decodingFrom === undefined) {
        throw new TypeError("Cannot revive a manager proxy: it does not say where its manager is");
      }
      full = { ...descriptor, ...decodingFrom };
    }
    if (hooks.makeProxy === undefined) {
      throw new TypeError(
        'Cannot revive a manager proxy: its module is not loaded here; import "@seed/multiprocessing"',
      );
    }
    return hooks.makeProxy(new ProxyRef(full));
  },
});
