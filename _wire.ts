// Length-prefixed frames over a byte stream (a Unix socket, a child's stdin):
// a u32 little-endian payload length, then the payload. Writes made while one
// is in flight are coalesced into the next single write, so a burst of small
// frames costs one syscall, as Python's feeder thread does for a Queue.

/** The part of `Deno.Conn` / `Deno.stdin` a reader needs. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** The part of `Deno.Conn` / a child's stdin a writer needs. */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** Frames above this size are refused as corrupt unless a reader allows more. */
export const DEFAULT_MAX_FRAME: number = 1 << 30;

const HEADER = 4;

/** Reads whole frames; a truncated, oversized or corrupt stream is an error. */
export class FrameReader {
  #source: ByteReader;
  #max: number;
  #buf = new Uint8Array(1 << 16);
  #start = 0;
  #end = 0;

  constructor(source: ByteReader, maxFrame: number = DEFAULT_MAX_FRAME) {
    this.#source = source;
    this.#max = maxFrame;
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

  #length(): number {
    const b = this.#buf, s = this.#start;
    const length = (b[s]! | (b[s + 1]! << 8) | (b[s + 2]! << 16) | (b[s + 3]! << 24)) >>> 0;
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
    return frame === null ? null : frame.slice();
  }

  /** Whether a whole frame is already buffered, so `next()` will not read. */
  get buffered(): boolean {
    if (this.#end - this.#start < HEADER) return false;
    return this.#end - this.#start - HEADER >= this.#length();
  }

  #parse(): Uint8Array | null {
    if (this.#end - this.#start < HEADER) return null;
    const length = this.#length();
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

/** Writes frames, coalescing those queued while a write is in flight. */
export class FrameWriter {
  #sink: ByteWriter;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #flushing: Promise<void> | null = null;
  #error: unknown = undefined;

  constructor(sink: ByteWriter) {
    this.#sink = sink;
  }

  /** Bytes queued and not yet handed to the stream. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Queues one frame; the promise settles when it has been written. */
  write(payload: Uint8Array): Promise<void> {
    return this.writeParts([payload]);
  }

  /** Queues one frame made of several parts, without joining them first. */
  writeParts(parts: Uint8Array[]): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    let length = 0;
    for (const part of parts) length += part.length;
    const header = new Uint8Array(HEADER);
    new DataView(header.buffer).setUint32(0, length, true);
    this.#pending.push(header, ...parts);
    this.#pendingBytes += HEADER + length;
    this.#flushing ??= this.#flush();
    return this.#flushing;
  }

  /** Settles when everything queued so far has been written (or failed). */
  drained(): Promise<void> {
    return (this.#flushing ?? Promise.resolve()).catch(() => {});
  }

  async #flush(): Promise<void> {
    // Let the current turn queue more frames before the first write.
    await Promise.resolve();
    try {
      while (this.#pending.length > 0) {
        const chunks = this.#pending;
        const size = this.#pendingBytes;
        this.#pending = [];
        this.#pendingBytes = 0;
        await writeAll(this.#sink, size > 1 << 16 ? group(chunks) : [concat(chunks, size)]);
      }
    } catch (error) {
      this.#error = error;
      throw error;
    } finally {
      this.#flushing = null;
    }
  }
}

// Small chunks joined, large ones written as they are: few syscalls, no big copies.
function group(chunks: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  let runSize = 0;
  const flushRun = () => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) out.push(concat(run, runSize));
    run = [];
    runSize = 0;
  };
  for (const chunk of chunks) {
    if (chunk.length >= 1 << 15) {
      flushRun();
      out.push(chunk);
    } else {
      run.push(chunk);
      runSize += chunk.length;
    }
  }
  flushRun();
  return out;
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

async function writeAll(sink: ByteWriter, chunks: Uint8Array[]): Promise<void> {
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length;) at += await sink.write(chunk.subarray(at));
  }
}
