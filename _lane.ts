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
import type { ByteReader, ByteWriter } from "./_wire.ts";

// The writer moves to the other file once this many bytes are in its file.
const SWITCH = 1 << 20;
// A writer whose file would pass this size waits for the reader to catch up.
const LIMIT = 8 << 20;
const BELL = new Uint8Array([1]);
const MAX_BELLS = 16;
const YES = 1;
const NO = 0;

// How long a caller about to wait may poll first, in milliseconds: adapted
// between these bounds as spins succeed or fail.
const SPIN_START = 0.05;
const SPIN_MIN = 0.02;
const SPIN_MAX = 0.2;

/**
 * Polls without giving up the thread until something arrives or a short
 * budget runs out: a caller about to wait for a reply gets it without the
 * ~15 µs of a wake-up through the kernel. The budget doubles when a spin
 * succeeds and halves when one fails, so a slow peer costs little.
 */
export class Spinner {
  #budget = SPIN_START;

  /**
   * Calls `poll` until it returns true or the budget runs out.
   *
   * @returns Whether `poll` returned true.
   */
  spin(poll: () => boolean): boolean {
    const budget = this.#budget;
    const start = performance.now();
    do {
      if (poll()) {
        this.#budget = Math.min(SPIN_MAX, budget * 2);
        return true;
      }
    } while (performance.now() - start < budget);
    this.#budget = Math.max(SPIN_MIN, budget / 2);
    return false;
  }
}

/** The files of one side: the two it writes, then the two it reads. */
type Files = [Deno.FsFile, Deno.FsFile, Deno.FsFile, Deno.FsFile];

/** Both directions of a connection moved into files; see the module comment. */
export class Lane implements ByteReader, ByteWriter {
  #conn: Deno.Conn;
  #files: Files;
  #out = 0; // which of files[0..1] the writer fills
  #outSize = 0;
  #in = 2; // which of files[2..3] the reader reads
  #inRead = 0;
  #bells = new Uint8Array(256);
  #bellsInFlight = 0;
  #parked: Uint8Array | undefined; // a write waiting for the reader
  #ringAgain = false;
  #ended = false;
  #closed = false;
  #space:
    | { promise: Promise<void>; resolve: () => void; timer: ReturnType<typeof setTimeout> }
    | undefined;

  constructor(conn: Deno.Conn, files: Files) {
    this.#conn = conn;
    this.#files = files;
  }

  /** Writes all of `p` (no copy is kept), then rings the bell. */
  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Error("Cannot write: the lane is closed"));
    if (this.#outSize >= SWITCH && !this.#moveOn() && this.#outSize + p.length > LIMIT) {
      this.#parked = p;
      return this.#waitForSpace().then(() => {
        this.#parked = undefined;
        return this.write(p);
      });
    }
    this.#append(p);
    this.#ring();
    return Promise.resolve(p.length);
  }

  #append(p: Uint8Array): void {
    const file = this.#files[this.#out]!;
    for (let at = 0; at < p.length;) at += file.writeSync(p.subarray(at));
    this.#outSize += p.length;
  }

  /**
   * Writes at once, past the size limit: for the last writes of a program
   * that is exiting (its reader sees the end when the socket closes).
   */
  writeAtExit(p: Uint8Array): void {
    if (this.#closed) return;
    if (this.#parked !== undefined) this.#append(this.#parked);
    this.#parked = undefined;
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

  // Settles when the reader may have emptied a file: at a bell from the
  // other side, or after a millisecond (the other side may not be reading).
  #waitForSpace(): Promise<void> {
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
    if (space.timer !== undefined) clearTimeout(space.timer);
    space.resolve();
  }

  // A bell is written at once, even while earlier ones are unsettled: a
  // spinning program turns its event loop rarely, and the write reaches the
  // socket when it is made. Past a few unsettled bells the reader is not
  // reading them (it is busy, so awake): one more follows when they settle.
  #ring(): void {
    if (this.#bellsInFlight >= MAX_BELLS) {
      this.#ringAgain = true;
      return;
    }
    this.#bellsInFlight++;
    this.#conn.write(BELL).then(() => {
      this.#bellsInFlight--;
      if (this.#ringAgain && !this.#closed) {
        this.#ringAgain = false;
        this.#ring();
      }
    }, () => {
      this.#bellsInFlight--;
    });
  }

  /** Reads what is there into `p` without waiting: 0 when nothing is. */
  readNow(p: Uint8Array): number {
    if (this.#closed || p.length === 0) return 0;
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
    this.#ring(); // a writer may be waiting for the file just emptied
    return this.readNow(p);
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

  /** Closes the files (the caller closes the socket). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeWriter();
    for (const file of this.#files) {
      try {
        file.close();
      } catch { /* closed */ }
    }
  }
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

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const got = await conn.read(out.subarray(at));
    if (got === null) return null;
    at += got;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
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
  const paths = [0, 1, 2, 3].map((i) => `${base}.${i}`);
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
    // Files 0 and 1 carry what this side writes; 2 and 3 what it reads.
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
    files = openAll([2, 3, 0, 1].map((i) => `${base}.${i}`), false);
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
