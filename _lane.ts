// A lane moves a local socket connection's bytes into files in memory, so a
// reader that waits for a reply can poll for it without sleeping: a round trip
// through the kernel's socket wake-up costs ~30 µs here, a poll of a file
// ~0.5 µs. The socket stays. It carries a one-byte bell after each write, to
// wake a reader that sleeps, and its end is the stream's end.
//
// Each direction is a stream of chunks, each a u32 header (a length, and a
// flag for bulk) and, unless bulk, that many bytes. The stream alternates
// between two files: the writer appends to one until it holds SWITCH bytes and
// the other is empty, then moves on. A reader that has read SWITCH bytes of
// its file and finds bytes in the other knows the writer moved: it reads the
// rest of its file, empties it, and follows. A write of BULK_MIN bytes or more
// goes to a ring in a file of its own (its header, in the stream, follows its
// bytes), whose pages are reused: emptying a stream file frees its memory and
// refilling it takes fresh pages, which cost ~0.4 ms per MiB. The reader gives
// its count of bulk bytes taken as the size of one more file (one ftruncate;
// the writer reads it with one lseek). The acceptor creates the files; both
// sides open them, then they are unlinked, so nothing is left behind even if a
// process dies.
import type { ByteReader, ByteWriter } from "./_wire.ts";

// The writer moves to the other file once this many bytes are in its file.
const SWITCH = 1 << 20;
// A writer whose file would pass this size waits for the reader to catch up.
const LIMIT = 8 << 20;
// Writes this large go through the bulk ring, which holds BULK_RING bytes.
const BULK_MIN = 1 << 16;
const BULK_RING = 1 << 22;
/** The bytes a file lane's bulk ring holds each way. */
export const FILE_BULK_RING: number = BULK_RING;
const BULK = 0x80000000;
// Bulk counts are kept modulo this (a multiple of the ring; a small file size).
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
 * The files of one side, for what it writes: the two stream files, the bulk
 * ring and the reader's bulk count; then the same four for what it reads.
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
  #in = 4; // which of files[4..5] the reader reads
  #inRead = 0;
  #chunk = new Uint8Array(0); // a header and its bytes, written at once
  #bulkWritten = 0;
  #bulkReadSeen = 0;
  #bulkOutAt = 0; // where the bulk ring file's position is
  #bulkRead = 0;
  #bulkInAt = 0;
  // Stream bytes read and not yet taken; the chunk being taken.
  #buf = new Uint8Array(1 << 12);
  #bufStart = 0;
  #bufEnd = 0;
  #left = 0;
  #bulk = false;

  constructor(conn: Deno.Conn, files: Files) {
    super(conn);
    this.#files = files;
  }

  protected put(p: Uint8Array): number {
    if (p.length >= BULK_MIN) return this.#putBulk(p);
    if (!this.#streamRoom(4 + p.length)) return 0;
    if (this.#chunk.length < 4 + p.length) this.#chunk = new Uint8Array(4 + BULK_MIN);
    setU32(this.#chunk, 0, p.length);
    this.#chunk.set(p, 4);
    this.#append(this.#chunk.subarray(0, 4 + p.length));
    return p.length;
  }

  #putBulk(p: Uint8Array): number {
    if (!this.#streamRoom(4)) return 0;
    let room = BULK_RING - mod(this.#bulkWritten - this.#bulkReadSeen);
    if (room < p.length) {
      this.#bulkReadSeen = this.#files[3].seekSync(0, Deno.SeekMode.End);
      room = BULK_RING - mod(this.#bulkWritten - this.#bulkReadSeen);
    }
    const n = Math.min(p.length, room);
    if (n < BULK_MIN) return 0; // the reader is a ring behind: it rings as it catches up
    this.#bulkOutAt = ringWrite(
      this.#files[2],
      this.#bulkWritten % BULK_RING,
      this.#bulkOutAt,
      p.subarray(0, n),
    );
    this.#bulkWritten = mod(this.#bulkWritten + n);
    // The header follows the bytes: a reader that sees it finds them there.
    const header = new Uint8Array(4);
    setU32(header, 0, (BULK | n) >>> 0);
    this.#append(header);
    return n;
  }

  // Whether n more bytes may go in the stream now (moving to the other file
  // if the current one is full and the reader has emptied the other).
  #streamRoom(n: number): boolean {
    return !(this.#outSize >= SWITCH && !this.#moveOn() && this.#outSize + n > LIMIT);
  }

  #append(p: Uint8Array): void {
    const file = this.#files[this.#out]!;
    for (let at = 0; at < p.length;) at += file.writeSync(p.subarray(at));
    this.#outSize += p.length;
  }

  writeAtExit(p: Uint8Array): void {
    // One chunk in the stream, past the size limit: the reader sees the end
    // when the socket closes.
    if (this.closed || p.length === 0) return;
    const header = new Uint8Array(4);
    setU32(header, 0, p.length);
    this.#append(header);
    this.#append(p);
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
    if (this.#left === 0 && this.#bufStart === this.#bufEnd) {
      // Between chunks with nothing buffered: the usual poll, one read.
      const n = this.#readStream(this.#buf);
      if (n === 0) return 0;
      this.#bufStart = 0;
      this.#bufEnd = n;
    }
    let out = 0;
    while (out < p.length) {
      if (this.#left === 0) {
        // Once something is read, only what is buffered: the caller polls
        // again anyway, and an empty read is a system call.
        if (!this.#fill(4, out === 0)) break;
        const header = getU32(this.#buf, this.#bufStart);
        this.#bufStart += 4;
        this.#bulk = header >= BULK;
        this.#left = header & ~BULK;
        continue;
      }
      const want = Math.min(this.#left, p.length - out);
      if (this.#bulk) {
        this.#bulkInAt = ringRead(
          this.#files[6],
          this.#bulkRead % BULK_RING,
          this.#bulkInAt,
          p.subarray(out, out + want),
        );
        this.#bulkRead = mod(this.#bulkRead + want);
        this.#left -= want;
        out += want;
        if (this.#left === 0) {
          // Room for the writer, which may be waiting for it.
          this.#files[7].truncateSync(this.#bulkRead);
          this.ring();
        }
      } else {
        if (!this.#fill(1, out === 0)) break;
        const n = Math.min(want, this.#bufEnd - this.#bufStart);
        p.set(this.#buf.subarray(this.#bufStart, this.#bufStart + n), out);
        this.#bufStart += n;
        this.#left -= n;
        out += n;
      }
    }
    return out;
  }

  // Reads the stream until `need` bytes are buffered; false if they are not
  // there yet (or not buffered, when `read` is false).
  #fill(need: number, read: boolean): boolean {
    if (this.#bufEnd - this.#bufStart >= need) return true;
    if (!read) return false;
    if (this.#bufStart === this.#bufEnd) this.#bufStart = this.#bufEnd = 0;
    else if (this.#bufStart > 0) {
      this.#buf.copyWithin(0, this.#bufStart, this.#bufEnd);
      this.#bufEnd -= this.#bufStart;
      this.#bufStart = 0;
    }
    while (this.#bufEnd - this.#bufStart < need) {
      const n = this.#readStream(this.#buf.subarray(this.#bufEnd));
      if (n === 0) return false;
      this.#bufEnd += n;
    }
    return true;
  }

  #readStream(p: Uint8Array): number {
    const file = this.#files[this.#in]!;
    let n = file.readSync(p) ?? 0;
    if (n > 0 || this.#inRead < SWITCH) {
      this.#inRead += n;
      return n;
    }
    const other = this.#files[9 - this.#in]!;
    if (other.statSync().size === 0) return 0;
    // The writer moved on, after its last write here: read that first.
    n = file.readSync(p) ?? 0;
    if (n > 0) {
      this.#inRead += n;
      return n;
    }
    file.truncateSync(0);
    file.seekSync(0, Deno.SeekMode.Start);
    this.#in = 9 - this.#in;
    this.#inRead = 0;
    this.ring(); // a writer may be waiting for the file just emptied
    return this.#readStream(p);
  }

  protected release(): void {
    for (const file of this.#files) {
      try {
        file.close();
      } catch { /* closed */ }
    }
  }
}

function setU32(p: Uint8Array, at: number, value: number): void {
  p[at] = value & 0xff;
  p[at + 1] = (value >>> 8) & 0xff;
  p[at + 2] = (value >>> 16) & 0xff;
  p[at + 3] = value >>> 24;
}

function getU32(p: Uint8Array, at: number): number {
  return (p[at]! | p[at + 1]! << 8 | p[at + 2]! << 16) + p[at + 3]! * 0x1000000;
}

function mod(n: number): number {
  return ((n % COUNT_MOD) + COUNT_MOD) % COUNT_MOD;
}

// Writes `p` into a ring file at `at`, wrapping at its end; `position` is where
// the file's position is. Returns where it is after.
function ringWrite(file: Deno.FsFile, at: number, position: number, p: Uint8Array): number {
  const first = Math.min(p.length, BULK_RING - at);
  if (position !== at) file.seekSync(at, Deno.SeekMode.Start);
  for (let i = 0; i < first;) i += file.writeSync(p.subarray(i, first));
  if (first === p.length) return at + first;
  file.seekSync(0, Deno.SeekMode.Start);
  for (let i = first; i < p.length;) i += file.writeSync(p.subarray(i));
  return p.length - first;
}

function ringRead(file: Deno.FsFile, at: number, position: number, p: Uint8Array): number {
  const first = Math.min(p.length, BULK_RING - at);
  if (position !== at) file.seekSync(at, Deno.SeekMode.Start);
  readFully(file, p.subarray(0, first));
  if (first === p.length) return at + first;
  file.seekSync(0, Deno.SeekMode.Start);
  readFully(file, p.subarray(first));
  return p.length - first;
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
    this.#outData.set(p.subarray(0, first), at);
    if (first < n) this.#outData.set(p.subarray(first, n), 0);
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
  #spinner = new Spinner();

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
    p.set(this.#inData.subarray(at, at + first));
    if (first < n) p.set(this.#inData.subarray(0, n - first), first);
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
    // Files 0 to 3 carry what this side writes; 4 to 7 what it reads.
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
    files = openAll([4, 5, 6, 7, 0, 1, 2, 3].map((i) => `${base}.${i}`), false);
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
