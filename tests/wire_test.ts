import assert from "node:assert/strict";
import { FrameReader, FrameWriter } from "../_wire.ts";

/** A byte source that hands out `bytes` in pieces of random sizes. */
function source(bytes: Uint8Array, random: () => number) {
  let at = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at, 1 + Math.floor(random() * 300));
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

/** A small deterministic generator, so a failure can be replayed from its seed. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function frames(payloads: Uint8Array[]): Uint8Array {
  const total = payloads.reduce((n, p) => n + 4 + p.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of payloads) {
    view.setUint32(at, p.length, true);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** Reads every frame; returns them, or the error that ended the stream. */
async function readAll(
  reader: FrameReader,
  owned: boolean,
): Promise<{ got: Uint8Array[]; error?: unknown }> {
  const got: Uint8Array[] = [];
  try {
    for (;;) {
      const frame = owned ? await reader.nextOwned() : await reader.next();
      if (frame === null) return { got };
      got.push(frame.slice());
    }
  } catch (error) {
    return { got, error };
  }
}

Deno.test("FrameReader reads back what FrameWriter wrote, boundaries and empty frames kept", async () => {
  const random = mulberry32(1);
  const payloads = Array.from({ length: 300 }, (_, i) => {
    const size = i % 50 === 0 ? 100_000 + i : i % 7 === 0 ? 0 : Math.floor(random() * 200);
    return new Uint8Array(size).map(() => Math.floor(random() * 256));
  });
  const chunks: Uint8Array[] = [];
  const writer = new FrameWriter({
    write: (b) => {
      chunks.push(b.slice());
      return Promise.resolve(b.length);
    },
  });
  await Promise.all(payloads.map((p) => writer.writeParts([p.subarray(0, 3), p.subarray(3)])));
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const stream = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    stream.set(c, at);
    at += c.length;
  }
  assert.deepEqual(stream, frames(payloads));
  for (const owned of [false, true]) {
    const { got, error } = await readAll(new FrameReader(source(stream, random)), owned);
    assert.equal(error, undefined);
    assert.deepEqual(got, payloads);
  }
});

Deno.test("FrameReader rejects a stream that ends inside a frame", async () => {
  const stream = frames([new Uint8Array([1, 2, 3]), new Uint8Array(10)]);
  for (const cut of [1, 3, 5, 8, 9, stream.length - 1]) {
    const { got, error } = await readAll(
      new FrameReader(source(stream.subarray(0, cut), Math.random)),
      false,
    );
    assert.ok(error instanceof TypeError, `cut at ${cut}`);
    assert.match(error.message, /ended inside a frame/);
    assert.ok(got.length <= 1);
  }
});

Deno.test("FrameReader rejects a frame over its size limit", async () => {
  const stream = frames([new Uint8Array(10), new Uint8Array(2000)]);
  const { got, error } = await readAll(new FrameReader(source(stream, Math.random), 1000), false);
  assert.equal(got.length, 1);
  assert.ok(error instanceof TypeError);
  assert.match(error.message, /over the limit/);
});

Deno.test("FrameReader survives random and mutated bytes: frames or a TypeError, never a hang", async () => {
  const random = mulberry32(42);
  for (let round = 0; round < 2000; round++) {
    let stream: Uint8Array;
    if (round % 2 === 0) {
      stream = new Uint8Array(Math.floor(random() * 64)).map(() => Math.floor(random() * 256));
    } else {
      const payloads = Array.from(
        { length: 1 + Math.floor(random() * 5) },
        () => new Uint8Array(Math.floor(random() * 40)).map(() => Math.floor(random() * 256)),
      );
      stream = frames(payloads);
      const flips = 1 + Math.floor(random() * 4);
      for (let i = 0; i < flips && stream.length > 0; i++) {
        stream[Math.floor(random() * stream.length)] = Math.floor(random() * 256);
      }
      if (random() < 0.3) stream = stream.subarray(0, Math.floor(random() * stream.length));
    }
    const { got, error } = await readAll(
      new FrameReader(source(stream, random), 1 << 16),
      round % 3 === 0,
    );
    if (error !== undefined) assert.ok(error instanceof TypeError, `round ${round}: ${error}`);
    // Whatever came out is a prefix of the stream, frame by frame.
    let at = 0;
    for (const frame of got) {
      const length = new DataView(stream.buffer, stream.byteOffset + at, 4).getUint32(0, true);
      assert.equal(frame.length, length);
      assert.deepEqual(frame, stream.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    if (error === undefined) assert.equal(at, stream.length);
  }
});

Deno.test("FrameReader.nextBuffered() hands out buffered frames, release() keeps them valid", async () => {
  const payloads = [new Uint8Array([1]), new Uint8Array([2, 2]), new Uint8Array([3, 3, 3])];
  const reader = new FrameReader(source(frames(payloads), () => 0.999));
  const first = await reader.next();
  assert.deepEqual(first, payloads[0]);
  const held: Uint8Array[] = [];
  for (let f = reader.nextBuffered(); f !== null; f = reader.nextBuffered()) held.push(f);
  reader.release();
  assert.equal(await reader.next(), null);
  assert.deepEqual(held, payloads.slice(1));
});

Deno.test("FrameWriter.writeRecord puts consecutive records in one frame, in order with other frames", async () => {
  const random = mulberry32(7);
  const chunks: Uint8Array[] = [];
  const writer = new FrameWriter({
    write: (b) => {
      chunks.push(b.slice());
      return Promise.resolve(b.length);
    },
  });
  // What was written, in order: records as [tag, prefix, bytes], plain frames as bytes.
  const sent: (Uint8Array | [number, Uint8Array, Uint8Array])[] = [];
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 3000; i++) {
    if (i % 1000 === 999) {
      const frame = new Uint8Array([99, i & 0xff]);
      sent.push(frame);
      writes.push(writer.write(frame));
      continue;
    }
    const tag = i < 1500 ? 6 : 20;
    const prefix = new Uint8Array(tag === 6 ? 0 : 8).map(() => Math.floor(random() * 256));
    const record = new Uint8Array(Math.floor(random() * 40)).map(() => Math.floor(random() * 256));
    sent.push([tag, prefix, record]);
    writes.push(writer.writeRecord(tag, prefix, record));
    prefix.fill(0); // copied at once: the caller may reuse its buffers
    record.fill(0);
  }
  await Promise.all(writes);
  const stream = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    stream.set(c, offset);
    offset += c.length;
  }
  const { got, error } = await readAll(new FrameReader(source(stream, random)), true);
  assert.equal(error, undefined);
  // Unpack the batch frames back into records.
  const received: (Uint8Array | [number, Uint8Array, Uint8Array])[] = [];
  for (const frame of got) {
    if (frame[0] === 99) {
      received.push(frame);
      continue;
    }
    const tag = frame[0]!;
    const prefixLength = tag === 6 ? 0 : 8;
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    let at = 1;
    while (at < frame.length) {
      const length = view.getUint32(at + prefixLength, true);
      received.push([
        tag,
        frame.slice(at, at + prefixLength),
        frame.slice(at + prefixLength + 4, at + prefixLength + 4 + length),
      ]);
      at += prefixLength + 4 + length;
    }
    assert.equal(at, frame.length);
  }
  // Rebuild the expected values (the test zeroed its buffers after each call).
  const random2 = mulberry32(7);
  const expected: (Uint8Array | [number, Uint8Array, Uint8Array])[] = [];
  for (let i = 0; i < 3000; i++) {
    if (i % 1000 === 999) {
      expected.push(new Uint8Array([99, i & 0xff]));
      continue;
    }
    const tag = i < 1500 ? 6 : 20;
    const prefix = new Uint8Array(tag === 6 ? 0 : 8).map(() => Math.floor(random2() * 256));
    const record = new Uint8Array(Math.floor(random2() * 40)).map(() =>
      Math.floor(random2() * 256)
    );
    expected.push([tag, prefix, record]);
  }
  assert.equal(sent.length, expected.length);
  assert.deepEqual(received, expected);
  // Records shared frames: far fewer frames than records.
  assert.ok(got.length < 100, `${got.length} frames for 2997 records`);
});
