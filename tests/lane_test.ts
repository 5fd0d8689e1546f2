// The lanes under a local socket (files, and a SharedArrayBuffer): order and
// content across file switches and ring wraps, the end of the stream,
// backpressure, writes at exit, cleanup, and falling back to the socket.
import assert from "node:assert/strict";
import { FrameReader, FrameWriter } from "../_wire.ts";
import {
  FILE_BULK_RING,
  Lane,
  type LaneBase,
  MEMORY_RING,
  offerLane,
  SabLane,
  sabLaneMemory,
  takeLane,
} from "../_lane.ts";
import { within } from "./testdata/helpers.ts";

interface Pair {
  server: LaneBase | undefined;
  client: LaneBase | undefined;
  serverConn: Deno.Conn;
  clientConn: Deno.Conn;
  dir: string;
  [Symbol.asyncDispose](): Promise<void>;
}

async function pair(laneDir?: string, kind: "files" | "memory" = "files"): Promise<Pair> {
  const dir = Deno.makeTempDirSync({ prefix: "seed-mp-lane-test-" });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/s.sock` });
  const [serverConn, clientConn] = await Promise.all([
    listener.accept(),
    Deno.connect({ transport: "unix", path: `${dir}/s.sock` }),
  ]);
  listener.close();
  // The offering side waits unref'd (a silent client must not keep a program
  // alive); this timer keeps the test alive meanwhile.
  const keepAlive = setInterval(() => {}, 1000);
  const memory = sabLaneMemory();
  const [server, client] = kind === "memory"
    ? [new SabLane(serverConn, memory, 0), new SabLane(clientConn, memory, 1)]
    : await Promise.all([
      offerLane(serverConn, laneDir ?? dir),
      takeLane(clientConn),
    ]).finally(() => clearInterval(keepAlive));
  clearInterval(keepAlive);
  return {
    server,
    client,
    serverConn,
    clientConn,
    dir,
    async [Symbol.asyncDispose]() {
      server?.close();
      client?.close();
      for (const conn of [serverConn, clientConn]) {
        try {
          conn.close();
        } catch { /* closed by the test */ }
      }
      // Let the bells in flight settle before the sanitizers look.
      await new Promise((resolve) => setTimeout(resolve, 0));
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function readAll(lane: LaneBase, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let at = 0;
  while (at < length) {
    const n = await lane.read(out.subarray(at, Math.min(length, at + 100_000)));
    if (n === null) throw new Error(`stream ended after ${at} of ${length} bytes`);
    at += n;
  }
  return out;
}

Deno.test("lane: both sides take it, and its files are gone once they have", async () => {
  await using p = await pair();
  assert.ok(p.server instanceof Lane);
  assert.ok(p.client instanceof Lane);
  assert.deepEqual([...Deno.readDirSync(p.dir)].map((e) => e.name), []);
});

for (const kind of ["files", "memory"] as const) {
  Deno.test(`lane (${kind}): bytes arrive whole and in order across file switches and ring wraps`, async () => {
    await using p = await pair(undefined, kind);
    // 6 MiB in uneven writes: several moves between the two files.
    const sizes = [1, 7, 65_536, 1 << 20, 3, 300_001, 2 << 20, 12_345, 1 << 20, 999_999];
    const total = sizes.reduce((a, b) => a + b, 0);
    const data = pattern(total, 7);
    // Each write is read before the next, so the writer moves between the two
    // files each time one passes 1 MiB.
    let at = 0;
    for (const size of sizes) {
      // Written and read at once: a ring smaller than the write needs both.
      const writing = p.server!.write(data.subarray(at, at + size));
      const got = await within(20_000, "lane bytes", readAll(p.client!, size));
      assert.equal(await writing, size);
      assert.deepEqual(got, data.subarray(at, at + size));
      at += size;
    }
  });

  Deno.test(`lane (${kind}): both directions at once`, async () => {
    await using p = await pair(undefined, kind);
    const a = pattern(3 << 20, 1), b = pattern(3 << 20, 2);
    const fromServer = readAll(p.client!, a.length);
    const fromClient = readAll(p.server!, b.length);
    for (let i = 0; i < a.length; i += 50_000) {
      await p.server!.write(a.subarray(i, i + 50_000));
      await p.client!.write(b.subarray(i, i + 50_000));
    }
    assert.deepEqual(await within(20_000, "server to client", fromServer), a);
    assert.deepEqual(await within(20_000, "client to server", fromClient), b);
  });

  Deno.test(`lane (${kind}): the reader sees the end after everything written`, async () => {
    await assertEndAfter(kind, 3, (lane, data) => lane.write(data));
  });
}

/** Writes 100,000 bytes with `write`, closes the writing side, and reads them and the end. */
async function assertEndAfter(
  kind: "files" | "memory",
  seed: number,
  write: (lane: LaneBase, data: Uint8Array) => unknown,
): Promise<void> {
  await using p = await pair(undefined, kind);
  const data = pattern(100_000, seed);
  await write(p.server!, data);
  p.serverConn.close();
  p.server!.close();
  assert.deepEqual(await readAll(p.client!, data.length), data);
  assert.equal(await p.client!.read(new Uint8Array(16)), null);
}

Deno.test("lane: a writer far ahead of its reader waits for it", async () => {
  await using p = await pair();
  const chunk = pattern(1 << 20, 4);
  let written = 0;
  const nineWritten = Promise.withResolvers<void>();
  const writing = (async () => {
    for (let i = 0; i < 24; i++) {
      await p.server!.write(chunk);
      if (++written === 9) nineWritten.resolve();
    }
  })();
  // Nothing is read: 1 MiB fills the first file, 8 MiB the second (the limit).
  await within(20_000, "9 MiB written", nineWritten.promise);
  // It must stay there; the writer retries each millisecond, so give it many.
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(written, 9, `the writer went on with no reader: ${written} MiB`);
  const all = readAll(p.client!, 24 << 20);
  await within(20_000, "the writer after the reader caught up", writing);
  const got = await within(20_000, "the reader", all);
  for (let i = 0; i < 24; i++) assert.deepEqual(got.subarray(i << 20, (i + 1) << 20), chunk);
});

Deno.test("lane: no lane when the files cannot be made; the socket carries on", async () => {
  await using p = await pair("/nonexistent-dir-for-lanes");
  assert.equal(p.server, undefined);
  assert.equal(p.client, undefined);
  await p.serverConn.write(new Uint8Array([9]));
  const buf = new Uint8Array(1);
  assert.equal(await p.clientConn.read(buf), 1);
  assert.equal(buf[0], 9);
});

Deno.test("lane (memory): a writer a ring ahead of its reader waits for it", async () => {
  await using p = await pair(undefined, "memory");
  const data = pattern(2 * MEMORY_RING, 5);
  // Twice what the ring holds: the write cannot finish until the reader reads.
  let done = false;
  const writing = p.server!.write(data).then(() => done = true);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(done, false, "the write finished with nobody reading");
  const got = await within(20_000, "the reader", readAll(p.client!, data.length));
  await within(20_000, "the writer", writing);
  assert.deepEqual(got, data);
});

Deno.test("lane (memory): bytes arrive whole whatever the alignment of either side", async () => {
  await using p = await pair(undefined, "memory");
  // Sources and targets at every offset modulo 8 against the ring's position,
  // small and large (large copies that disagree go through a scratch buffer),
  // and past the ring's end.
  const sizes = [5, 1023, 1024, 4099, 300_001, 65_536, 700_003, 1_500_007];
  const data = pattern(1_500_007 + 8, 11);
  for (let i = 0; i < 24; i++) {
    const size = sizes[i % sizes.length]!, from = i % 8, into = (i * 3) % 8;
    const writing = p.server!.write(data.subarray(from, from + size));
    const target = new Uint8Array(size + into);
    for (let at = 0; at < size;) {
      const n = await within(20_000, "lane bytes", p.client!.read(target.subarray(into + at)));
      assert.notEqual(n, null, `the stream ended in write ${i}`);
      at += n!;
    }
    assert.equal(await writing, size);
    assert.deepEqual(target.subarray(into), data.subarray(from, from + size), `write ${i}`);
  }
});

for (const kind of ["files", "memory"] as const) {
  Deno.test(`lane (${kind}): what is written at exit arrives`, async () => {
    await assertEndAfter(kind, 6, (lane, data) => lane.writeAtExit(data));
  });
}

Deno.test("lane (files): large frames go through the bulk ring, in order with the rest", async () => {
  await using p = await pair();
  const lane = p.server as Lane;
  // Count the frames the bulk ring took.
  const putBulk = lane.putBulk.bind(lane);
  let bulk = 0;
  lane.putBulk = (parts, length) => {
    const took = putBulk(parts, length);
    if (took) bulk++;
    return took;
  };
  const writer = new FrameWriter(lane);
  const reader = new FrameReader(p.client!);
  // Written before anything is read: 64 KiB and 1 MiB fit the ring; 3 MiB
  // more waits for the reader to make room; a frame larger than the ring goes
  // in the stream.
  const sizes = [10, 1 << 16, 5, 1 << 20, 3 << 20, 100, FILE_BULK_RING + 1, 70_000, 0];
  const frames = sizes.map((n, i) => pattern(n, 20 + i));
  const writing = Promise.all(frames.map((frame) => writer.write(frame)));
  const got: Uint8Array[] = [];
  for (let i = 0; i < frames.length; i++) {
    const frame = await within(20_000, `frame ${i}`, reader.nextOwned());
    assert.notEqual(frame, null);
    got.push(frame!);
  }
  await within(20_000, "the writes", writing);
  assert.equal(bulk, 4);
  assert.deepEqual(got.map((g) => g.length), sizes);
  for (let i = 0; i < frames.length; i++) assert.deepEqual(got[i], frames[i], `frame ${i}`);
});
