// Unix sockets for queues and pipes. Each process or worker that owns a queue
// or pipe end others can reach runs one listener, in a private temp dir, and
// routes each new connection by its first frame (the hello) to the owner. A
// Link is one framed connection: a read loop, a coalescing writer, and ref
// counting so an idle link does not keep the event loop alive.
import { decode, encode } from "./_codec.ts";
import type { DecodeContext, EncodeContext } from "./_handles.ts";
import {
  type LaneBase,
  offerLane,
  readExactly,
  SabLane,
  sabLaneMemory,
  Spinner,
  takeLane,
  writeAll,
} from "./_lane.ts";
import { atExit, self } from "./_state.ts";
import { FrameReader, FrameWriter, handled } from "./_wire.ts";

/** Where an owner is reached: the listener's path and the owner's id. */
export interface Address {
  path: string;
  id: string;
}

type Route = (link: Link, hello: unknown[]) => void;

// Queued bytes above which a writer waits for the write in flight.
const PACE = 1 << 16;
// Frames up to this size are copied out of a lane's read buffer, unless
// more than BURST bytes came at once.
const SMALL_FRAME = 1 << 10;
const BURST = 1 << 12;

const routes = new Map<string, Route>();
let listener: Deno.Listener | undefined;
let listenPath = "";
let dir: string | undefined;
let counter = 0;

/** A fresh id for an owner in this process. */
export function newId(prefix: string): string {
  return `${prefix}${++counter}.${crypto.randomUUID().slice(0, 8)}`;
}

/** Makes `id` reachable by other processes; returns the listener's path. */
export function exportRoute(id: string, route: Route): string {
  routes.set(id, route);
  if (listener === undefined) {
    dir ??= makeSocketDir();
    listenPath = `${dir}/s${Deno.pid}.sock`;
    try {
      listener = Deno.listen({ transport: "unix", path: listenPath });
    } catch (error) {
      removeDir(); // no --allow-net, say: nothing is left behind
      throw error;
    }
    listener.unref();
    acceptLoop(listener);
    hookUnload();
  }
  return listenPath;
}

/** Stops routing to `id`; the listener closes once nothing is exported. */
export function unexportRoute(id: string): void {
  if (!routes.delete(id) || routes.size > 0 || listener === undefined) return;
  const closing = listener;
  listener = undefined;
  try {
    closing.close();
  } catch { /* already closed */ }
  removeDir();
}

/**
 * A private temp dir for sockets, in memory (tmpfs) where there is one:
 * lanes keep their files beside the sockets. Deno 2.9 lets a program into
 * /dev/shm only when it holds every permission (write access alone is not
 * enough): else the dir is in the system's temp folder.
 */
export function makeSocketDir(prefix = "seed-mp-"): string {
  const shm = "/dev/shm";
  let made: string | undefined;
  if (
    Deno.build.os === "linux" &&
    Deno.permissions.querySync({ name: "write", path: shm }).state === "granted"
  ) {
    try {
      made = Deno.makeTempDirSync({ dir: shm, prefix: `${prefix}${Deno.pid}-` });
    } catch { /* no tmpfs here */ }
  }
  made ??= Deno.makeTempDirSync({ prefix: `${prefix}${Deno.pid}-` });
  sweepSocketDirs(made.slice(0, made.lastIndexOf("/")));
  return made;
}

// A socket dir holds its program's socket while the program lives.
const STALE_MS = 60_000;

/**
 * Removes the socket dirs in `base` that programs left: empty, and untouched
 * for a minute. A program that ends on an uncaught error skips "unload", which
 * removes its dir; its socket and lane files go, the dir stays. A dir whose
 * program is alive (where /proc can tell) is kept.
 */
export function sweepSocketDirs(base: string): void {
  // Only where reading is granted: asking would prompt the user.
  const readable = (path: string) =>
    Deno.permissions.querySync({ name: "read", path }).state === "granted";
  if (!readable(base)) return;
  const procs = Deno.build.os === "linux" && readable("/proc");
  let names: string[];
  try {
    names = [...Deno.readDirSync(base)].map((entry) => entry.name);
  } catch {
    return; // gone, or not ours to read (/dev/shm needs --allow-all)
  }
  for (const name of names) {
    const pid = Number(/^seed-mp-(\d+)-/.exec(name)?.[1]);
    if (!(pid > 0) || pid === Deno.pid) continue;
    const path = `${base}/${name}`;
    try {
      if (Date.now() - (Deno.statSync(path).mtime?.getTime() ?? Infinity) < STALE_MS) continue;
    } catch {
      continue;
    }
    if (procs) {
      try {
        Deno.statSync(`/proc/${pid}`);
        continue; // alive
      } catch (error) {
        // Gone, or unknown (/proc needs --allow-all): the dir's state decides.
        const { NotFound, NotCapable } = Deno.errors;
        if (!(error instanceof NotFound || error instanceof NotCapable)) continue;
      }
    }
    try {
      Deno.removeSync(path); // fails unless empty
    } catch { /* in use, not ours, or gone */ }
  }
}

/**
 * Lets a child reach the sockets and lanes of the listener at `path`: adds
 * read and write of its directory and the socket's net permission.
 */
export function grantSocket(
  grants: { read: Set<string>; write: Set<string>; net: Set<string> },
  path: string,
): void {
  const folder = path.slice(0, path.lastIndexOf("/")) || "/";
  grants.read.add(folder);
  grants.write.add(folder);
  grants.net.add(`unix:${path}`);
}

function removeDir(): void {
  if (dir === undefined) return;
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* gone */ }
  dir = undefined;
}

let unloadHooked = false;
function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    try {
      listener?.close();
    } catch { /* closed */ }
    removeDir();
  });
}

async function acceptLoop(server: Deno.Listener): Promise<void> {
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await server.accept();
    } catch {
      return; // closed
    }
    laneFor(conn).then((lane) => routeLink(new Link(conn, lane)), () => {
      try {
        conn.close();
      } catch { /* closed */ }
    });
  }
}

// The first byte a connecting side sends: it wants a file lane, or it has a
// SharedArrayBuffer lane (a token follows).
const WANT_FILES = 0x46;
const HAS_MEMORY = 0x53;

/** Lane memory made for a worker, by token, until the worker connects. */
const memories = new Map<string, SharedArrayBuffer>();

/** Where a worker finds its lane memory: an index into its shared buffers, and a token. */
export interface LaneMemoryRef {
  memory: number;
  token: string;
}

/**
 * `descriptor`, with lane memory for the connection a worker will make to
 * this process's listener when `context` goes to a worker: the memory travels
 * in the worker's start message (`context.shared`), the reference in the
 * descriptor. It is dropped if the worker never connects, or if the encode
 * fails.
 */
export function withLaneMemory<D extends object>(
  descriptor: D,
  context: EncodeContext,
): D | D & LaneMemoryRef {
  if (context.shared === undefined) return descriptor;
  const token = crypto.randomUUID();
  const memory = sabLaneMemory();
  memories.set(token, memory);
  const forget = () => void memories.delete(token);
  context.lost?.push(forget);
  // An encode that fails drops the commit hooks it added: this one says so.
  const mark = () => {};
  context.commit?.push(mark);
  queueMicrotask(() => {
    if (!context.commit?.includes(mark)) forget();
  });
  return { ...descriptor, memory: context.shared.push(memory) - 1, token };
}

/** The lane memory a reference in a descriptor names, on the worker's side. */
export function laneMemoryOf(
  ref: Partial<LaneMemoryRef>,
  context: DecodeContext,
): { token: string; memory: SharedArrayBuffer } | undefined {
  const memory = ref.memory === undefined ? undefined : context.shared?.[ref.memory];
  return memory !== undefined && ref.token !== undefined ? { token: ref.token, memory } : undefined;
}

async function laneFor(conn: Deno.Conn): Promise<LaneBase | undefined> {
  conn.unref(); // a client that never speaks must not keep this program alive
  const kind = await readExactly(conn, 1);
  if (kind?.[0] === WANT_FILES) return await offerLane(conn, dir!);
  const size = kind?.[0] === HAS_MEMORY ? await readExactly(conn, 1) : null;
  const token = size === null ? null : await readExactly(conn, size[0]!);
  if (token === null) throw new Error("not a link, or closed");
  const key = new TextDecoder().decode(token);
  const memory = memories.get(key);
  if (memory === undefined) throw new Error("no such lane");
  memories.delete(key);
  return new SabLane(conn, memory, 0);
}

function routeLink(link: Link): void {
  link.start((frame) => {
    // The first frame names the owner; the owner then takes the link over.
    let hello: unknown[];
    try {
      hello = decode(frame) as unknown[];
    } catch {
      link.close();
      return;
    }
    const route = routes.get(String(hello[0]));
    if (route === undefined) {
      link.close();
      return;
    }
    route(link, hello);
  });
}

/** Connects to an owner, sends the hello frame, and returns the link. */
export async function connectTo(
  path: string,
  hello: unknown[],
  memory?: { token: string; memory: SharedArrayBuffer },
): Promise<Link> {
  const conn = await Deno.connect({ transport: "unix", path });
  let lane: LaneBase | undefined;
  try {
    if (memory !== undefined) {
      const token = new TextEncoder().encode(memory.token);
      await writeAll(conn, new Uint8Array([HAS_MEMORY, token.length, ...token]));
      lane = new SabLane(conn, memory.memory, 1);
    } else {
      await writeAll(conn, new Uint8Array([WANT_FILES]));
      lane = await takeLane(conn);
    }
  } catch (error) {
    conn.close();
    throw error;
  }
  const link = new Link(conn, lane);
  link.send(encode(hello));
  return link;
}

const liveLinks = new Set<Link>();
/** Run when a child's target has returned, before its links are drained. */
export const exitHooks: Set<() => void | Promise<void>> = new Set();
let exitHooked = false;

// A child exits right after its target returns: frames still queued must be
// written first, then its sockets closed so peers see EOF (a worker's sockets
// outlive its Deno.exit()).
function hookExit(): void {
  if (exitHooked || self.startedAs === "main") return;
  exitHooked = true;
  atExit.add(async () => {
    await Promise.all([...exitHooks].map((hook) => hook()));
    await Promise.all([...liveLinks].map((link) => link.drained()));
    for (const link of [...liveLinks]) link.close();
    try {
      listener?.close();
    } catch { /* closed */ }
    removeDir();
  });
}

let laneExitHooked = false;
// Deno.exit() skips atExit but fires unload: a lane can still take what its
// link has queued, synchronously, so a message sent just before the exit is
// not lost.
function hookLaneExit(): void {
  if (laneExitHooked) return;
  laneExitHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const link of liveLinks) {
      const lane = link.lane;
      if (lane !== undefined) link.writer.flushAtExit((p) => lane.writeAtExit(p));
    }
  });
}

/**
 * Runs before any frame is queued on any link, while set: a queue's pending
 * acknowledgements go out before anything this program sends after a get.
 */
export const beforeSend: { hook: (() => void) | undefined } = { hook: undefined };

function runBeforeSend(): void {
  const hook = beforeSend.hook!;
  beforeSend.hook = undefined;
  hook();
}

const NOTHING = new Uint8Array(0);

/**
 * A connection end's method that writes what it has queued now, instead of at
 * the event loop's next turn: for a sender that is about to be busy a while.
 */
export const flushNow: unique symbol = Symbol("@seed/multiprocessing/flushNow");

/**
 * Settles a little later, for frames queued meanwhile to share a write: a
 * write of nothing is an async op (~1 µs) that Deno 2.9.6 completes at once,
 * so it settles after two microtask hops, not at the event loop's next turn
 * (a producer awaiting each put shares a write among some 75 small items).
 * A true turn costs more here: setTimeout(0) takes ~2 ms (and a program's
 * first timer, or setImmediate, loads Deno's Node-style timers: 5-10 ms in a
 * fresh isolate), and a started MessagePort keeps the program alive.
 */
export function nextTurn(conn: Deno.Conn): Promise<unknown> {
  return conn.write(NOTHING);
}

/** One framed connection. */
export class Link {
  readonly conn: Deno.Conn;
  readonly writer: FrameWriter;
  readonly reader: FrameReader;
  #onFrame: ((frame: Uint8Array) => void) | undefined;
  #onClose: ((error?: unknown) => void) | undefined;
  #onIdle: (() => void) | undefined;
  #closed = false;
  #holds = 0;
  #paused: Promise<void> | undefined;
  #resume: (() => void) | undefined;
  #ended = false;

  readonly lane: LaneBase | undefined;
  #handedOut = false;
  #failure: unknown = undefined;
  #spinner = new Spinner();

  constructor(conn: Deno.Conn, lane?: LaneBase) {
    this.conn = conn;
    this.lane = lane;
    this.reader = new FrameReader(lane ?? conn);
    this.writer = new FrameWriter(lane ?? conn, () => nextTurn(conn));
    liveLinks.add(this);
    hookExit();
    if (lane !== undefined) hookLaneExit();
    conn.unref();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts (or redirects) the read loop's delivery. */
  start(
    onFrame: (frame: Uint8Array) => void,
    onClose?: (error?: unknown) => void,
    onIdle?: () => void,
  ): void {
    const running = this.#onFrame !== undefined;
    this.#onFrame = onFrame;
    this.#onClose = onClose;
    this.#onIdle = onIdle;
    if (!running) {
      if (this.lane === undefined) this.#loop();
      else this.#laneLoop(this.lane);
    }
  }

  // With a lane, frames are read without waiting whenever something polls
  // (see spin); the loop itself waits only for bells.
  async #laneLoop(lane: LaneBase): Promise<void> {
    let error: unknown;
    try {
      for (;;) {
        if (this.#paused !== undefined) {
          this.#onIdle?.();
          await this.#paused;
        }
        this.#drain(lane);
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#paused !== undefined) continue;
        this.#onIdle?.();
        if (this.#closed) break;
        if (!(await lane.waitBell())) {
          // The other side closed: all it wrote is in the lane by now.
          this.#drain(lane);
          if (this.#failure !== undefined) throw this.#failure;
          if (this.#paused !== undefined) continue;
          // Every whole frame was handed over: bytes left are a frame cut short (an error).
          if (!this.#closed) await this.reader.next();
          break;
        }
      }
    } catch (caught) {
      if (!this.#closed || this.#failure !== undefined) error = caught;
    }
    this.#ended = true;
    this.close();
    this.#onClose?.(error);
  }

  // Hands over every whole frame the lane has now; stops when paused.
  // Returns how many bytes it read.
  #drain(lane: LaneBase): number {
    let read = 0;
    if (this.#failure !== undefined) return read;
    const reader = this.reader;
    try {
      for (;;) {
        // A burst of frames keeps the read buffer (a fresh one after it); a
        // small frame alone is copied, cheaper than a fresh buffer.
        const burst = reader.pending > BURST;
        for (;;) {
          if (this.#paused !== undefined || this.#closed) return read;
          const frame = reader.nextBuffered();
          if (frame === null) break;
          if (!burst && frame.length <= SMALL_FRAME) this.#onFrame!(frame.slice());
          else {
            this.#handedOut = true;
            this.#onFrame!(frame);
          }
        }
        if (this.#handedOut) {
          reader.release();
          this.#handedOut = false;
        }
        const n = reader.fillNow(lane);
        if (n === 0) return read;
        read += n;
      }
    } catch (error) {
      this.#failure = error;
      this.close();
      return read;
    }
  }

  /**
   * Polls this link's lane for frames until `done()` holds or the spinner's
   * budget runs out (see {@linkcode Spinner}).
   *
   * @returns Whether `done()` came true.
   */
  spin(done: () => boolean): boolean {
    const lane = this.lane;
    if (lane === undefined || this.#onFrame === undefined) return false;
    this.writer.flushNow();
    return this.#spinner.spin(() => {
      const read = this.#drain(lane);
      if (done() || this.#closed || this.#paused !== undefined) return true;
      return read > 0 ? "progress" : false;
    }) && done();
  }

  async #loop(): Promise<void> {
    let error: unknown;
    const reader = this.reader;
    let handedOut = false;
    try {
      for (;;) {
        if (this.#paused !== undefined) {
          this.#onIdle?.();
          await this.#paused;
        }
        // A burst already read is handled without an await per frame, and
        // without a copy each: the frames keep the read buffer.
        const buffered = reader.nextBuffered();
        if (buffered !== null) {
          handedOut = true;
          this.#onFrame!(buffered);
          continue;
        }
        if (handedOut) {
          reader.release();
          handedOut = false;
        }
        this.#onIdle?.();
        if (this.#closed) break;
        const frame = await reader.nextOwned();
        if (frame === null) break;
        this.#onFrame!(frame);
      }
    } catch (caught) {
      if (!this.#closed) error = caught;
    }
    this.#ended = true;
    this.close();
    this.#onClose?.(error);
  }

  /** Stops reading until `resume()`: backpressure toward the sender. */
  pause(): void {
    if (this.#paused !== undefined) return;
    this.#paused = new Promise((resolve) => this.#resume = resolve);
  }

  resume(): void {
    const resume = this.#resume;
    this.#paused = this.#resume = undefined;
    resume?.();
  }

  /** Keeps the event loop alive while someone waits on this link. */
  hold(): void {
    if (this.#holds++ === 0 && !this.#closed) this.conn.ref();
  }

  letGo(): void {
    if (--this.#holds === 0 && !this.#closed) this.conn.unref();
  }

  send(frame: Uint8Array): Promise<void> {
    if (beforeSend.hook !== undefined) runBeforeSend();
    if (this.#closed) return Promise.reject(new Error("Cannot write: the connection is closed"));
    return this.writer.write(frame);
  }

  /** Queues a frame of parts; the promise may be dropped (see FrameWriter). */
  sendParts(parts: Uint8Array[]): Promise<void> {
    if (beforeSend.hook !== undefined) runBeforeSend();
    if (this.#closed) {
      return handled(Promise.reject(new Error("Cannot write: the connection is closed")));
    }
    return this.writer.writeParts(parts);
  }

  /** Queues a small record in a batch frame (see FrameWriter.writeRecord). */
  sendRecord(tag: number, prefix: Uint8Array, record: Uint8Array): Promise<void> {
    if (beforeSend.hook !== undefined) runBeforeSend();
    if (this.#closed) {
      return handled(Promise.reject(new Error("Cannot write: the connection is closed")));
    }
    return this.writer.writeRecord(tag, prefix, record);
  }

  drained(): Promise<void> {
    return this.writer.drained();
  }

  /**
   * A promise to wait on before queuing more, when much is queued already: the
   * event loop turns, the write goes out, and a slow reader slows the writer.
   */
  pace(): Promise<void> | undefined {
    return this.writer.pendingBytes > PACE ? this.writer.progress() : undefined;
  }

  /** Closes once everything queued is written. */
  async closeAfterFlush(): Promise<void> {
    await this.writer.drained();
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    liveLinks.delete(this);
    this.resume();
    try {
      this.conn.close();
    } catch { /* closed */ }
    this.lane?.close();
  }
}
