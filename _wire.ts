// Length-prefixed frames over a byte stream (a Unix socket, a child's stdin):
// a u32 little-endian payload length, then the payload. Writes made while one
// is in flight are coalesced into the next single write, so a burst of small
// frames costs one syscall, as Python's feeder thread does for a Queue.

/** The part of `Deno.Conn` / `Deno.stdin` a reader needs. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** A source that hands over what it has without waiting (a lane). */
export interface NowReader {
  /** Reads what is there into `p`: 0 when nothing is. */
  readNow(p: Uint8Array): number;
}

/** The part of `Deno.Conn` / a child's stdin a writer needs. */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
  /**
   * Writes what fits without waiting (a lane): how many bytes. With it, a
   * writer knows at every moment what has been written.
   */
  writeNow?(p: Uint8Array): number;
  /** With writeNow: settles when there may be room again. */
  space?(): Promise<void>;
  /**
   * Takes a large frame's parts out of the stream if there is room now (a
   * file lane's bulk ring); its header then goes in the stream flagged.
   */
  putBulk?(parts: Uint8Array[], length: number): boolean;
  /** With putBulk: the largest frame the bulk ring can take. */
  readonly bulkMax?: number;
}

/** A source that may hold flagged frames' bytes apart (see ByteWriter.putBulk). */
interface BulkSource {
  readBulk?(p: Uint8Array): void;
}

/** Frames above this size are refused as corrupt unless a reader allows more. */
export const DEFAULT_MAX_FRAME: number = 1 << 30;

const HEADER = 4;
// Frames are copied into a stage of this size; parts this large are written as they are.
const STAGE = 1 << 16;
const LARGE = 1 << 15;
// Frames this large go to a sink's bulk ring when it has one; their header's
// top bit says so (no frame is that long: the limit is below it).
const BULK_MIN = 1 << 16;
const BULK_FLAG = 0x80000000;
// A batch frame (writeRecord) grows up to this size.
const BATCH = 1 << 14;

/** Records larger than this go in frames of their own (see FrameWriter.writeRecord). */
export const RECORD_MAX = 1 << 12;

/** Reads whole frames; a truncated, oversized or corrupt stream is an error. */
export class FrameReader {
  #source: ByteReader;
  #max: number;
  #buf = new Uint8Array(1 << 16);
  #start = 0;
  #end = 0;

  #bulk: ((p: Uint8Array) => void) | undefined;

  constructor(source: ByteReader, maxFrame: number = DEFAULT_MAX_FRAME) {
    this.#source = source;
    this.#max = maxFrame;
    const bulk = (source as BulkSource).readBulk;
    if (bulk !== undefined) this.#bulk = (p) => bulk.call(source, p);
  }

  /**
   * The next frame's payload, or null at a clean end of stream. The view is
   * valid until the next call: copy it to keep it.
   */
  async next(): Promise<Uint8Array | null> {
    for (;;) {
      const frame = this.#parse();
      if (frame !== null) return frame;
      this.#makeRoom();
      const n = await this.#source.read(this.#buf.subarray(this.#end));
      if (n === null) {
        if (this.#end === this.#start) return null;
        throw new TypeError(
          `Cannot read frame: the stream ended inside a frame (${
            this.#end - this.#start
          } bytes left over)`,
        );
      }
      this.#end += n;
    }
  }

  // The next frame's header, as it stands.
  #header(): number {
    const b = this.#buf, s = this.#start;
    return (b[s]! | (b[s + 1]! << 8) | (b[s + 2]! << 16) | (b[s + 3]! << 24)) >>> 0;
  }

  // Whether a header is a bulk frame's, whose bytes are apart (readBulk).
  #isBulk(header: number): boolean {
    return header >= BULK_FLAG && header - BULK_FLAG <= this.#max && this.#bulk !== undefined;
  }

  // The length of the next frame in the stream: 0 for a bulk frame's header.
  #length(header = this.#header()): number {
    if (this.#isBulk(header)) return 0;
    const length = header;
    if (length > this.#max) {
      throw new TypeError(
        `Cannot read frame: its length ${length} is over the limit of ${this.#max} bytes; the stream is corrupt`,
      );
    }
    return length;
  }

  /**
   * The next frame's payload as fresh bytes the caller owns, or null at a
   * clean end of stream. A large frame is read straight into its own buffer.
   */
  async nextOwned(): Promise<Uint8Array | null> {
    if (this.#end - this.#start >= HEADER) {
      const length = this.#length();
      const have = this.#end - this.#start - HEADER;
      if (length > 1 << 16 && have < length) {
        const out = new Uint8Array(length);
        out.set(this.#buf.subarray(this.#start + HEADER, this.#end));
        this.#start = this.#end = 0;
        for (let at = have; at < length;) {
          const n = await this.#source.read(out.subarray(at));
          if (n === null) {
            throw new TypeError(
              `Cannot read frame: the stream ended inside a frame (${length - at} bytes missing)`,
            );
          }
          at += n;
        }
        return out;
      }
    }
    const frame = await this.next();
    if (frame === null) return null;
    // A bulk frame is fresh already; a view of the buffer is copied.
    return frame.buffer === this.#buf.buffer ? frame.slice() : frame;
  }

  /**
   * The next frame if it is already buffered (a view valid until the next
   * call), else null: lets a reader handle a burst without awaiting each frame.
   */
  nextBuffered(): Uint8Array | null {
    return this.#parse();
  }

  /**
   * Reads what `source` has ready into the buffer, without waiting.
   *
   * @returns How many bytes were read.
   */
  fillNow(source: NowReader): number {
    this.#makeRoom();
    // A spin polls many times with nothing to read: reuse the view.
    if (this.#tail?.buffer !== this.#buf.buffer || this.#tail.byteOffset !== this.#end) {
      this.#tail = this.#buf.subarray(this.#end);
    }
    const n = source.readNow(this.#tail);
    this.#end += n;
    return n;
  }
  #tail: Uint8Array | undefined;

  /**
   * Hands every whole frame `source` has now to `onFrame`, until `stop()`.
   * The views are valid only during the call: for a reader that decodes them
   * at once.
   *
   * @returns Whether any frame was handed over.
   */
  drainNow(source: NowReader, onFrame: (frame: Uint8Array) => void, stop: () => boolean): boolean {
    let any = false;
    for (;;) {
      let frame: Uint8Array | null;
      while ((frame = this.nextBuffered()) !== null) {
        onFrame(frame);
        any = true;
      }
      if (stop() || this.fillNow(source) === 0) return any;
    }
  }

  /**
   * Gives the buffer to the views handed out so far: later reads go to a fresh
   * buffer, so those views stay valid without a copy each. The fresh buffer is
   * sized to what was read into the old one, so a small exchange does not
   * allocate 64 KiB each time.
   */
  release(): void {
    const rest = this.#buf.subarray(this.#start, this.#end);
    const used = Math.max(this.#start, 1 << 12);
    const size = Math.min(1 << 16, 2 ** Math.ceil(Math.log2(used)) * 2);
    const fresh = new Uint8Array(Math.max(size, rest.length));
    fresh.set(rest);
    this.#buf = fresh;
    this.#start = 0;
    this.#end = rest.length;
  }

  /** Bytes read and not yet handed out as frames. */
  get pending(): number {
    return this.#end - this.#start;
  }

  /** Whether a whole frame is already buffered, so `next()` will not read. */
  get buffered(): boolean {
    if (this.#end - this.#start < HEADER) return false;
    return this.#end - this.#start - HEADER >= this.#length();
  }

  #parse(): Uint8Array | null {
    if (this.#end - this.#start < HEADER) return null;
    const header = this.#header();
    if (this.#isBulk(header)) {
      const frame = new Uint8Array(header - BULK_FLAG);
      this.#bulk!(frame);
      this.#start += HEADER;
      return frame;
    }
    const length = this.#length(header);
    const from = this.#start + HEADER;
    if (this.#end - from < length) return null;
    this.#start = from + length;
    return this.#buf.subarray(from, from + length);
  }

  #makeRoom(): void {
    const used = this.#end - this.#start;
    if (used === 0) {
      this.#start = this.#end = 0;
      return;
    }
    const need = used >= HEADER ? HEADER + this.#length() : HEADER;
    if (this.#start + need <= this.#buf.length && this.#end < this.#buf.length) return;
    if (need > this.#buf.length) {
      const bigger = new Uint8Array(Math.max(need, this.#buf.length * 2));
      bigger.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = bigger;
    } else {
      this.#buf.copyWithin(0, this.#start, this.#end);
    }
    this.#start = 0;
    this.#end = used;
  }
}

/** A large frame waiting to go to the sink's bulk ring, then its flagged header. */
class Bulk {
  readonly parts: Uint8Array[];
  readonly length: number;
  readonly header = new Uint8Array(HEADER);
  /** Whether the parts are in the ring. */
  put = false;

  constructor(parts: Uint8Array[], length: number) {
    this.parts = parts;
    this.length = length;
    new DataView(this.header.buffer).setUint32(0, (BULK_FLAG | length) >>> 0, true);
  }
}

type Chunk = Uint8Array | Bulk;

/** Writes frames, coalescing those queued while a write is in flight. */
export class FrameWriter {
  #sink: ByteWriter;
  // Sealed chunks waiting for the next write, then the stage small frames are copied into.
  #chunks: Chunk[] = [];
  #stage = new Uint8Array(STAGE);
  #stageView = new DataView(this.#stage.buffer);
  #stageLength = 0;
  #pendingBytes = 0;
  #flushing: Promise<void> | null = null;
  #inFlight: Promise<void> | undefined;
  #progress: (() => void)[] = [];
  #error: unknown = undefined;
  // The batch frame open at the end of the stage (writeRecord): where its
  // header is, and its tag; -1 when the last frame staged is not one.
  #batchAt = -1;
  #batchTag = 0;

  #turn: () => Promise<unknown>;

  /**
   * @param sink Where frames go.
   * @param turn Settles at the event loop's next turn, after the microtasks
   * queued now: frames are gathered until then and written together. By
   * default a microtask.
   */
  constructor(sink: ByteWriter, turn: () => Promise<unknown> = () => Promise.resolve()) {
    this.#sink = sink;
    this.#turn = turn;
  }

  /** Bytes queued and not yet handed to the stream. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Queues one frame; the promise settles when it has been written. */
  write(payload: Uint8Array): Promise<void> {
    return this.writeParts([payload]);
  }

  /**
   * Queues one frame made of several parts, without joining them first. The
   * promise (one for every frame of a write) may be dropped: a failure is
   * also reported to the frames queued after it.
   */
  writeParts(parts: Uint8Array[]): Promise<void> {
    if (this.#error !== undefined) return handled(Promise.reject(this.#error));
    this.#batchAt = -1;
    let length = 0;
    for (const part of parts) length += part.length;
    if (length >= BULK_MIN && length <= (this.#sink.bulkMax ?? 0)) {
      // Its bytes go to the bulk ring when its turn to be written comes, so
      // the ring holds them in the order of their headers.
      this.#seal();
      this.#chunks.push(
        new Bulk(parts.map((part) => part.length >= LARGE ? part : part.slice()), length),
      );
      this.#pendingBytes += HEADER + length;
      return this.#flushSoon();
    }
    this.#reserve(HEADER);
    this.#stageView.setUint32(this.#stageLength, length, true);
    this.#stageLength += HEADER;
    for (const part of parts) {
      if (part.length >= LARGE) {
        this.#seal();
        this.#chunks.push(part);
      } else {
        this.#reserve(part.length);
        this.#stage.set(part, this.#stageLength);
        this.#stageLength += part.length;
      }
    }
    this.#pendingBytes += HEADER + length;
    return this.#flushSoon();
  }

  /**
   * Queues a small record (at most {@linkcode RECORD_MAX} bytes) in a batch
   * frame: the tag byte, then records of `prefix` (a fixed size per tag),
   * a u32 length and the bytes. Records written one after another share a
   * frame, so many small messages cost the reader one frame.
   */
  writeRecord(tag: number, prefix: Uint8Array, record: Uint8Array): Promise<void> {
    if (this.#error !== undefined) return handled(Promise.reject(this.#error));
    const size = prefix.length + 4 + record.length;
    if (
      this.#batchAt < 0 || this.#batchTag !== tag ||
      this.#stageLength - this.#batchAt + size > BATCH ||
      this.#stageLength + size > this.#stage.length
    ) {
      this.#reserve(HEADER + 1 + size);
      this.#batchAt = this.#stageLength;
      this.#batchTag = tag;
      this.#stageView.setUint32(this.#stageLength, 1, true);
      this.#stage[this.#stageLength + HEADER] = tag;
      this.#stageLength += HEADER + 1;
      this.#pendingBytes += HEADER + 1;
    }
    const stage = this.#stage;
    let at = this.#stageLength;
    stage.set(prefix, at);
    at += prefix.length;
    this.#stageView.setUint32(at, record.length, true);
    stage.set(record, at + 4);
    this.#stageLength = at + 4 + record.length;
    const header = this.#batchAt;
    this.#stageView.setUint32(header, this.#stageView.getUint32(header, true) + size, true);
    this.#pendingBytes += size;
    return this.#flushSoon();
  }

  #flushSoon(): Promise<void> {
    // Handled once here, so a caller may drop the promise: a .catch() per
    // frame would keep thousands of reactions alive until the write.
    this.#flushing ??= handled(this.#flush());
    return this.#flushing;
  }

  /** Settles when everything queued so far has been written (or failed). */
  drained(): Promise<void> {
    return (this.#flushing ?? Promise.resolve()).catch(() => {});
  }

  /** Settles when the write in flight completes: a producer's cue to go on. */
  progress(): Promise<void> {
    if (this.#flushing === null) return Promise.resolve();
    return new Promise((resolve) => this.#progress.push(resolve));
  }

  #reserve(n: number): void {
    if (this.#stageLength + n <= this.#stage.length) return;
    this.#seal();
    if (n > this.#stage.length) {
      this.#stage = new Uint8Array(n);
      this.#stageView = new DataView(this.#stage.buffer);
    }
  }

  // Moves the stage's bytes to the chunk list.
  #seal(): void {
    this.#batchAt = -1;
    const length = this.#stageLength;
    if (length === 0) return;
    if (length < STAGE / 16) {
      this.#chunks.push(this.#stage.slice(0, length));
    } else {
      this.#chunks.push(this.#stage.subarray(0, length));
      this.#stage = new Uint8Array(Math.max(STAGE, this.#stage.length));
      this.#stageView = new DataView(this.#stage.buffer);
    }
    this.#stageLength = 0;
  }

  async #flush(): Promise<void> {
    try {
      for (;;) {
        // Let the program queue more frames before each write (a link's turn
        // is a few microtask hops: see nextTurn in _socket.ts).
        await this.#turn().catch(() => {});
        if (this.#inFlight !== undefined) await this.#inFlight;
        this.#seal();
        if (this.#chunks.length === 0) break;
        await this.#writeQueued();
        // Nothing queued during the write: done, without another turn.
        if (this.#stageLength === 0 && this.#chunks.length === 0) break;
      }
    } catch (error) {
      this.#error = error;
      throw error;
    } finally {
      this.#flushing = null;
      this.#inFlight = undefined;
      this.#wakeProgress();
    }
  }

  #writeQueued(): Promise<void> {
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#pendingBytes = 0;
    const writing: Promise<void> = this.#writeAll(chunks).then(() => {
      if (this.#inFlight === writing) this.#inFlight = undefined;
      this.#wakeProgress();
    });
    this.#inFlight = writing;
    return writing;
  }

  // The chunks being written, which of them is at the sink, and how much of
  // it is written (exact with a writeNow sink).
  #current: Chunk[] | undefined;
  #at = 0;
  #offset = 0;

  async #writeAll(chunks: Chunk[]): Promise<void> {
    const sink = this.#sink;
    this.#current = chunks;
    for (this.#at = 0; this.#at < chunks.length; this.#at++) {
      let chunk = chunks[this.#at]!;
      this.#offset = 0;
      if (chunk instanceof Bulk) {
        while (!chunk.put) {
          if (sink.putBulk!(chunk.parts, chunk.length)) chunk.put = true;
          else await sink.space!();
        }
        chunk = chunk.header;
      }
      while (this.#offset < chunk.length) {
        if (sink.writeNow !== undefined) {
          const n = sink.writeNow(chunk.subarray(this.#offset));
          this.#offset += n;
          if (n === 0) await sink.space!();
        } else {
          this.#offset += await sink.write(chunk.subarray(this.#offset));
        }
      }
    }
    this.#current = undefined;
  }

  #wakeProgress(): void {
    const progress = this.#progress;
    this.#progress = [];
    for (const resolve of progress) resolve();
  }

  /**
   * Hands what is queued to `write` at once: for a program that is exiting
   * over a sink that writes synchronously (a lane).
   */
  flushAtExit(write: (p: Uint8Array) => void): void {
    // What a write in progress has not written yet, then what is queued.
    const current = this.#current;
    this.#current = undefined;
    if (current !== undefined && this.#at < current.length) {
      this.#writeChunkAtExit(current[this.#at]!, this.#offset, write);
      for (const chunk of current.slice(this.#at + 1)) this.#writeChunkAtExit(chunk, 0, write);
    }
    this.#seal();
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#pendingBytes = 0;
    for (const chunk of chunks) this.#writeChunkAtExit(chunk, 0, write);
  }

  #writeChunkAtExit(chunk: Chunk, offset: number, write: (p: Uint8Array) => void): void {
    if (!(chunk instanceof Bulk)) return write(chunk.subarray(offset));
    if (!chunk.put && !this.#sink.putBulk!(chunk.parts, chunk.length)) {
      // No room in the ring: the frame goes in the stream as any other.
      const header = new Uint8Array(HEADER);
      new DataView(header.buffer).setUint32(0, chunk.length, true);
      write(header);
      for (const part of chunk.parts) write(part);
      return;
    }
    chunk.put = true;
    write(chunk.header.subarray(offset));
  }

  /**
   * Starts writing what is queued now instead of at the event loop's next
   * turn, unless a write is in flight: for a caller about to wait for a reply.
   */
  flushNow(): void {
    if (this.#flushing === null) return;
    // A lane write in flight is done but for its promise, unless it waits for room.
    const busy = this.#sink.writeNow === undefined || this.#current !== undefined;
    if (this.#inFlight !== undefined && busy) return;
    this.#seal();
    if (this.#chunks.length > 0) this.#writeQueued().catch(() => {/* #flush reports it */});
  }
}

/** The bytes of `parts`, one after another, in one fresh buffer. */
export function joinBytes(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const joined = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

/** A promise whose rejection counts as handled, so its caller may drop it. */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}
