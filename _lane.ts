// A lane moves a local socket connection's bytes into files in memory, so a
// reader that waits for a reply can poll for it without sleeping: a round trip
// through the kernel's socket wake-up costs ~30 µs here, a poll of a file
// ~0.5 µs. The socket stays. It carries a one-byte bell after each write, to
// wake a reader that sleeps, and its end is the stream's end.
//
// Each direction alternates between two files. The writer appends to one
// until it holds SWITCH bytes and the other is empty, then moves on. A reader
// that has read SWITCH bytes of its file and finds bytes in the other knows the
// writer moved: it reads the rest of its file, empties it, and follows. The
// acceptor creates the files; both sides open them, then they are unlinked,
// so nothing is left behind even if a process dies.
//
// A large frame's bytes may instead go to a ring in a file of their own
// (putBulk), its header flagged in the stream; the frame reader takes them
// from there (readBulk). The ring's pages are reused: emptying a stream file
// frees its memory and refilling it takes fresh pages, ~0.4 ms per MiB. The
// reader gives its count of bulk bytes taken as the size of one more file
// (one ftruncate; the writer reads it with one lseek).
import type { ByteReader, ByteWriter } from "./_wire.ts";

// The writer moves to the other file once this many bytes are in its file.
const SWITCH = 1 << 20;
// A writer whose file would pass this size waits for the reader to catch up.
const LIMIT = 8 << 20;
// The bulk ring's size; counts of its bytes are kept modulo COUNT_MOD.
const BULK_RING = 1 << 22;
/** The bytes a file lane's bulk ring holds each way. */
export const FILE_BULK_RING: number = BULK_RING;
const COUNT_MOD = 1 << 30;
const BELL = new Uint8Array([1]);
const MAX_BELLS = 16;
const YES = 1;
const NO = 0;

// How long a caller about to wait may poll first, in milliseconds: adapted
// between these bounds as spins succeed or fail.
const SPIN_START = 0.05;
const SPIN_MIN = 0.02;
const SPIN_MAX = 0.2;
const SPIN_LONGEST = 2;

/**
 * Polls without giving up the thread until something arrives or a short
 * budget runs out: a caller about to wait for a reply gets it without the
 * ~15 µs of a wake-up through the kernel. The budget doubles when a spin
 * succeeds and halves when one fails, so a slow peer costs little.
 */
export class Spinner {
  #budget = SPIN_START;

  /**
   * Calls `poll` until it returns true or the budget runs out. A poll that
   * returns "progress" (part of a large message came) starts the budget
   * over, as the rest is on its way, up to SPIN_LONGEST in all: the thread's
   * other work must not wait for a whole slow transfer.
   *
   * @returns Whether `poll` returned true.
   */
  spin(poll: () => boolean | "progress"): boolean {
    const budget = this.#budget;
    const first = performance.now();
    let start = first;
    for (;;) {
      const result = poll();
      if (result === true) {
        this.#budget = Math.min(SPIN_MAX, budget * 2);
        return true;
      }
      const now = performance.now();
      if (result === "progress" && now - first < SPIN_LONGEST) start = now;
      else if (now - start >= budget) break;
    }
    this.#budget = Math.max(SPIN_MIN, budget / 2);
    return false;
  }
}

/**
 * What a link needs of a lane: reads and writes that never wait, and the
 * socket's bells to wait on. {@linkcode Lane} keeps the bytes in files (any
 * two processes); {@linkcode SabLane} in a SharedArrayBuffer (a parent and its
 * worker: no system call at all).
 */
export abstract class LaneBase implements ByteReader, ByteWriter {
  #conn: Deno.Conn;
  #bells = new Uint8Array(256);
  #bellsInFlight = 0;
  #ringAgain = false;
  #ended = false;
  #closed = false;
  #space:
    | { promise: Promise<void>; resolve: () => void; timer: ReturnType<typeof setTimeout> }
    | undefined;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes what fits now (0 when the reader must catch up first) and rings. */
  writeNow(p: Uint8Array): number {
    if (this.#closed) throw new Error("Cannot write: the lane is closed");
    if (p.length === 0) return 0;
    const n = this.put(p);
    if (n > 0) this.ring();
    return n;
  }

  /** Writes all of `p`, waiting for the reader when it is far behind. */
  async write(p: Uint8Array): Promise<number> {
    for (let at = 0; at < p.length;) {
      const n = this.writeNow(p.subarray(at));
      if (n === 0) await this.space();
      at += n;
    }
    return p.length;
  }

  /** Takes bytes of `p` into the lane if there is room: how many. */
  protected abstract put(p: Uint8Array): number;

  /** Reads what is there into `p` without waiting: 0 when nothing is. */
  abstract readNow(p: Uint8Array): number;

  /**
   * Writes at once, past the size limit where there is one: for the last
   * writes of a program that is exiting (its reader sees the end when the
   * socket closes).
   */
  abstract writeAtExit(p: Uint8Array): void;

  /**
   * Settles when the reader may have made room: at a bell from the other
   * side, or after a millisecond (the other side may not be reading bells).
   */
  space(): Promise<void> {
    let space = this.#space;
    if (space === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      const timer = setTimeout(() => this.#wakeWriter(), 1);
      space = this.#space = { promise, resolve, timer };
    }
    return space.promise.then(() => {
      if (this.#closed) throw new Error("Cannot write: the lane is closed");
    });
  }

  #wakeWriter(): void {
    const space = this.#space;
    if (space === undefined) return;
    this.#space = undefined;
    clearTimeout(space.timer);
    space.resolve();
  }

  // A bell is written at once, even while earlier ones are unsettled: a
  // spinning program turns its event loop rarely, and the write reaches the
  // socket when it is made. Past a few unsettled bells the reader is not
  // reading them (it is busy, so awake): one more follows when they settle.
  protected ring(): void {
    if (this.#bellsInFlight >= MAX_BELLS) {
      this.#ringAgain = true;
      return;
    }
    this.#bellsInFlight++;
    this.#conn.write(BELL).then(() => {
      this.#bellsInFlight--;
      if (this.#ringAgain && !this.#closed) {
        this.#ringAgain = false;
        this.ring();
      }
    }, () => {
      this.#bellsInFlight--;
    });
  }

  /** Waits for a bell: false once the other side has closed. */
  async waitBell(): Promise<boolean> {
    if (this.#ended) return false;
    let n: number | null = null;
    try {
      n = await this.#conn.read(this.#bells);
    } catch { /* closed */ }
    this.#wakeWriter();
    if (n === null) this.#ended = true;
    return n !== null;
  }

  /** Reads like a socket: waits for a bell when nothing is there. */
  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      const n = this.readNow(p);
      if (n > 0) return n;
      if (!(await this.waitBell())) {
        const last = this.readNow(p);
        return last > 0 ? last : null;
      }
    }
  }

  /** Stops using the lane (the caller closes the socket). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeWriter();
    this.release();
  }

  /** Frees what the lane holds. */
  protected abstract release(): void;
}

/**
 * The files of one side: the two stream files it writes, the two it reads;
 * its bulk ring and the reader's count of it; the other side's bulk ring and
 * this side's count of that.
 */
type Files = [
  Deno.FsFile,
  Deno.FsFile,
  Deno.FsFile,
  Deno.FsFile,
  Deno.FsFile,
  Deno.FsFile,
  Deno.FsFile,
  Deno.FsFile,
];

/** Both directions of a connection moved into files; see the module comment. */
export class Lane extends LaneBase {
  #files: Files;
  #out = 0; // which of files[0..1] the writer fills
  #outSize = 0;
  #in = 2; // which of files[2..3] the reader reads
  #inRead = 0;
  #bulkWritten = 0;
  #bulkReadSeen = 0; // the reader's count as last looked at
  #bulkOutAt = 0; // where the bulk ring file's position is
  #bulkRead = 0;
  #bulkInAt = 0;

  constructor(conn: Deno.Conn, files: Files) {
    super(conn);
    this.#files = files;
  }

  protected put(p: Uint8Array): number {
    if (this.#outSize >= SWITCH && !this.#moveOn() && this.#outSize + p.length > LIMIT) {
      return 0;
    }
    this.#append(p);
    return p.length;
  }

  #append(p: Uint8Array): void {
    writeFully(this.#files[this.#out]!, p);
    this.#outSize += p.length;
  }

  writeAtExit(p: Uint8Array): void {
    if (!this.closed) this.#append(p);
  }

  // Moves to the other file if the reader has emptied it.
  #moveOn(): boolean {
    const other = this.#files[1 - this.#out]!;
    if (other.statSync().size !== 0) return false;
    other.seekSync(0, Deno.SeekMode.Start);
    this.#out = 1 - this.#out;
    this.#outSize = 0;
    return true;
  }

  readNow(p: Uint8Array): number {
    if (this.closed || p.length === 0) return 0;
    const file = this.#files[this.#in]!;
    let n = file.readSync(p) ?? 0;
    if (n > 0 || this.#inRead < SWITCH) {
      this.#inRead += n;
      return n;
    }
    const other = this.#files[5 - this.#in]!;
    if (other.statSync().size === 0) return 0;
    // The writer moved on, after its last write here: read that first.
    n = file.readSync(p) ?? 0;
    if (n > 0) {
      this.#inRead += n;
      return n;
    }
    file.truncateSync(0);
    file.seekSync(0, Deno.SeekMode.Start);
    this.#in = 5 - this.#in;
    this.#inRead = 0;
    this.ring(); // a writer may be waiting for the file just emptied
    return this.readNow(p);
  }

  /** The largest frame the bulk ring takes. */
  readonly bulkMax: number = BULK_RING;

  /**
   * Puts a frame's parts (`length` bytes in all) in the bulk ring if they fit
   * now: false, having written nothing, if not. Their header goes in the
   * stream after, flagged.
   */
  putBulk(parts: Uint8Array[], length: number): boolean {
    if (this.closed) return false;
    let room = BULK_RING - mod(this.#bulkWritten - this.#bulkReadSeen);
    if (room < length) {
      this.#bulkReadSeen = this.#files[5].seekSync(0, Deno.SeekMode.End);
      room = BULK_RING - mod(this.#bulkWritten - this.#bulkReadSeen);
      if (room < length) return false;
    }
    for (const part of parts) {
      const at = this.#bulkWritten % BULK_RING;
      this.#bulkOutAt = ringCopy(this.#files[4], at, this.#bulkOutAt, part, writeFully);
      this.#bulkWritten = mod(this.#bulkWritten + part.length);
    }
    return true;
  }

  /** Takes a flagged frame's bytes from the bulk ring into `p` (its length). */
  readBulk(p: Uint8Array): void {
    if (this.closed) throw new Error("Cannot read: the lane is closed");
    const at = this.#bulkRead % BULK_RING;
    this.#bulkInAt = ringCopy(this.#files[6], at, this.#bulkInAt, p, readFully);
    this.#bulkRead = mod(this.#bulkRead + p.length);
    this.#files[7].truncateSync(this.#bulkRead);
    this.ring(); // room for a writer that may wait for it
  }

  protected release(): void {
    for (const file of this.#files) {
      try {
        file.close();
      } catch { /* closed */ }
    }
  }
}

function mod(n: number): number {
  return ((n % COUNT_MOD) + COUNT_MOD) % COUNT_MOD;
}

// Writes `p` into (or reads it from) a ring file at `at`, wrapping at its end;
// `position` is where the file's position is. Returns where it is after.
function ringCopy(
  file: Deno.FsFile,
  at: number,
  position: number,
  p: Uint8Array,
  copy: (file: Deno.FsFile, p: Uint8Array) => void,
): number {
  const first = Math.min(p.length, BULK_RING - at);
  if (position !== at) file.seekSync(at, Deno.SeekMode.Start);
  copy(file, p.subarray(0, first));
  if (first === p.length) return at + first;
  file.seekSync(0, Deno.SeekMode.Start);
  copy(file, p.subarray(first));
  return p.length - first;
}

function writeFully(file: Deno.FsFile, p: Uint8Array): void {
  for (let at = 0; at < p.length;) at += file.writeSync(p.subarray(at));
}

function readFully(file: Deno.FsFile, p: Uint8Array): void {
  for (let at = 0; at < p.length;) {
    const n = file.readSync(p.subarray(at));
    // The header said the bytes are there: a shorter file is not ours.
    if (n === null || n === 0) throw new Error("Cannot read the lane: its bulk file is cut short");
    at += n;
  }
}

// A SharedArrayBuffer lane: one ring per direction, each an Int32 header
// (bytes written, bytes read, whether the writer waits for room; counts wrap
// at 2^32) and RING bytes of data.
const RING = 1 << 21;
/** The bytes a memory lane holds each way. */
export const MEMORY_RING: number = RING;
const HEADER_BYTES = 16;
const WRITTEN = 0;
const READ = 1;
const WAITING = 2;

// V8 copies to or from a SharedArrayBuffer a byte at a time unless both
// addresses agree modulo 8 (then a word at a time): 265 µs per MiB against
// 32 µs here. A frame's payload sits in the ring after its header, so it
// rarely agrees. Such a copy, when large, goes through a scratch buffer placed
// to agree with the ring: two fast copies, ~55 µs per MiB. The scratch buffer
// grows to the largest such copy (at most a ring) and is kept.
const WORD = 8;
const STAGED_MIN = 1024;
let stage = new Uint8Array(0);

/** `target.set(source, at)`, where one of the two is a SharedArrayBuffer's. */
export function copyShared(target: Uint8Array, at: number, source: Uint8Array): void {
  const length = source.length;
  if (length < STAGED_MIN || (target.byteOffset + at - source.byteOffset) % WORD === 0) {
    return target.set(source, at);
  }
  const shared = target.buffer instanceof SharedArrayBuffer
    ? target.byteOffset + at
    : source.byteOffset;
  if (stage.length < length + WORD) {
    stage = new Uint8Array(Math.max(length + WORD, stage.length * 2));
  }
  const staged = stage.subarray(shared % WORD, shared % WORD + length);
  staged.set(source);
  target.set(staged, at);
}

/** Memory for a {@linkcode SabLane}: both directions. */
export function sabLaneMemory(): SharedArrayBuffer {
  return new SharedArrayBuffer(2 * (HEADER_BYTES + RING));
}

/**
 * Both directions of a connection between a parent and its worker, in a
 * SharedArrayBuffer: each side writes one ring and reads the other. Side 0 is
 * the one that accepted the connection.
 */
export class SabLane extends LaneBase {
  #outHeader: Int32Array;
  #outData: Uint8Array;
  #inHeader: Int32Array;
  #inData: Uint8Array;
  #written = 0;
  #read = 0;
  #spinner = new Spinner();

  constructor(conn: Deno.Conn, memory: SharedArrayBuffer, side: 0 | 1) {
    super(conn);
    const ring = (direction: number) => {
      const at = direction * (HEADER_BYTES + RING);
      return [
        new Int32Array(memory, at, HEADER_BYTES / 4),
        new Uint8Array(memory, at + HEADER_BYTES, RING),
      ] as const;
    };
    [this.#outHeader, this.#outData] = ring(side);
    [this.#inHeader, this.#inData] = ring(1 - side);
  }

  protected put(p: Uint8Array): number {
    let room = RING - ((this.#written - Atomics.load(this.#outHeader, READ)) >>> 0);
    if (room === 0) {
      // Say we wait, then look again: the reader checks the flag after it reads.
      Atomics.store(this.#outHeader, WAITING, 1);
      room = RING - ((this.#written - Atomics.load(this.#outHeader, READ)) >>> 0);
      if (room === 0) return 0;
    }
    const n = Math.min(room, p.length);
    const at = this.#written % RING;
    const first = Math.min(n, RING - at);
    copyShared(this.#outData, at, p.subarray(0, first));
    if (first < n) copyShared(this.#outData, 0, p.subarray(first, n));
    this.#written = (this.#written + n) >>> 0;
    Atomics.store(this.#outHeader, WRITTEN, this.#written | 0);
    return n;
  }

  // The reader is likely reading right now (a large message streams through
  // the ring): poll for room a moment before waiting for its bell.
  override space(): Promise<void> {
    const room = () => Atomics.load(this.#outHeader, READ) !== (this.#written - RING | 0);
    if (this.#spinner.spin(room)) return Promise.resolve();
    return super.space();
  }

  writeAtExit(p: Uint8Array): void {
    // Wait (synchronously, a while) for the reader to make room; ring so a
    // sleeping reader wakes.
    const deadline = performance.now() + 2_000;
    for (let at = 0; at < p.length && !this.closed;) {
      const n = this.put(p.subarray(at));
      at += n;
      if (n > 0) this.ring();
      else {
        if (performance.now() > deadline) return;
        Atomics.wait(this.#outHeader, READ, Atomics.load(this.#outHeader, READ), 5);
      }
    }
  }

  readNow(p: Uint8Array): number {
    if (this.closed || p.length === 0) return 0;
    const available = (Atomics.load(this.#inHeader, WRITTEN) - this.#read) >>> 0;
    if (available === 0) return 0;
    const n = Math.min(available, p.length);
    const at = this.#read % RING;
    const first = Math.min(n, RING - at);
    copyShared(p, 0, this.#inData.subarray(at, at + first));
    if (first < n) copyShared(p, first, this.#inData.subarray(0, n - first));
    this.#read = (this.#read + n) >>> 0;
    Atomics.store(this.#inHeader, READ, this.#read | 0);
    Atomics.notify(this.#inHeader, READ);
    if (Atomics.load(this.#inHeader, WAITING) === 1) {
      Atomics.store(this.#inHeader, WAITING, 0);
      this.ring(); // the writer waits for this room
    }
    return n;
  }

  protected release(): void {}
}

function openAll(paths: string[], create: boolean): Deno.FsFile[] {
  const files: Deno.FsFile[] = [];
  try {
    for (const path of paths) {
      files.push(Deno.openSync(path, { read: true, write: true, createNew: create }));
    }
    return files;
  } catch (error) {
    for (const file of files) file.close();
    throw error;
  }
}

function removeAll(paths: string[]): void {
  for (const path of paths) {
    try {
      Deno.removeSync(path);
    } catch { /* gone */ }
  }
}

/** Reads exactly `n` bytes from a socket; null if it ends first. */
export async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const got = await conn.read(out.subarray(at));
    if (got === null) return null;
    at += got;
  }
  return out;
}

/** Writes all of `bytes` to a socket. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/**
 * The accepting side: creates the lane's files in `dir` and offers them.
 * Resolves to undefined when either side cannot use files: the connection then
 * stays a plain socket.
 */
export async function offerLane(conn: Deno.Conn, dir: string): Promise<Lane | undefined> {
  conn.unref(); // a client that never answers must not keep this program alive
  const base = `${dir}/lane-${crypto.randomUUID()}`;
  const paths = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `${base}.${i}`);
  let files: Deno.FsFile[] | undefined;
  try {
    files = openAll(paths, true);
  } catch { /* no lane: offer none */ }
  let name = new TextEncoder().encode(files === undefined ? "" : base);
  if (name.length > 255) {
    for (const file of files ?? []) file.close();
    files = undefined;
    name = new Uint8Array();
  }
  let lane: Lane | undefined;
  try {
    await writeAll(conn, new Uint8Array([name.length, ...name]));
    const answer = files === undefined ? null : await readExactly(conn, 1);
    // Files 0 and 1 carry what this side writes, 2 and 3 what it reads; 4 to
    // 7 the bulk rings and their counts.
    if (answer?.[0] === YES) lane = new Lane(conn, files as Files);
    return lane;
  } finally {
    if (lane === undefined) { for (const file of files ?? []) file.close(); }
    removeAll(paths);
  }
}

/** The connecting side: takes the lane offered, or answers that it cannot. */
export async function takeLane(conn: Deno.Conn): Promise<Lane | undefined> {
  const size = await readExactly(conn, 1);
  if (size === null) throw new Error("Cannot connect: the other side closed the connection");
  if (size[0] === 0) return undefined;
  const name = await readExactly(conn, size[0]!);
  if (name === null) throw new Error("Cannot connect: the other side closed the connection");
  const base = new TextDecoder().decode(name);
  let files: Deno.FsFile[];
  try {
    files = openAll([2, 3, 0, 1, 6, 7, 4, 5].map((i) => `${base}.${i}`), false);
  } catch {
    await writeAll(conn, new Uint8Array([NO]));
    return undefined;
  }
  try {
    await writeAll(conn, new Uint8Array([YES]));
  } catch (error) {
    for (const file of files) file.close();
    throw error;
  }
  return new Lane(conn, files as Files);
}
