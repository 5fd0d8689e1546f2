import assert from "node:assert/strict";
import { SharedRing } from "../_ring.ts";
import { readRecord, recordOf } from "./testdata/ring_records.ts";

const ME = 1;
const WORKER = new URL("./testdata/ring_worker.ts", import.meta.url);

Deno.test("SharedRing keeps records whole and in order across its wrap", () => {
  const ring = new SharedRing(64);
  const model: Uint8Array[] = [];
  let next = 0;
  let taken = 0;
  // Random puts and takes against an array, until the ring has wrapped many times.
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  while (taken < 2_000) {
    if (random() < 0.55) {
      const record = recordOf(3, next);
      if (ring.tryPut(record, ME)) {
        model.push(record);
        next++;
      } else assert.ok(model.length > 0, "a ring with nothing in it refused a record");
    } else {
      const got = ring.tryTake(ME);
      const expected = model.shift();
      assert.deepEqual(got, expected);
      if (got !== undefined) taken++;
    }
    assert.equal(ring.size, model.length);
  }
});

Deno.test("SharedRing refuses what does not fit, and empty records are records", () => {
  const ring = new SharedRing(16);
  assert.equal(ring.tryPut(new Uint8Array(13), ME), false);
  assert.equal(ring.tryPut(new Uint8Array(12), ME), true);
  assert.equal(ring.tryPut(new Uint8Array(0), ME), false);
  assert.deepEqual(ring.tryTake(ME), new Uint8Array(12));
  assert.equal(ring.tryPut(new Uint8Array(0), ME), true);
  assert.deepEqual(ring.tryTake(ME), new Uint8Array(0));
  assert.equal(ring.tryTake(ME), undefined);
  assert.throws(() => new SharedRing(100), RangeError);
});

function start(order: Record<string, unknown>): { worker: Worker; next: () => Promise<unknown> } {
  const worker = new Worker(WORKER, { type: "module" });
  const inbox: unknown[] = [];
  const waiting: ((value: unknown) => void)[] = [];
  worker.onmessage = (event) => {
    const wake = waiting.shift();
    if (wake) wake(event.data);
    else inbox.push(event.data);
  };
  worker.onerror = (event) => {
    event.preventDefault();
    console.error("worker error:", event.message);
  };
  worker.postMessage(order);
  const next = () =>
    inbox.length > 0
      ? Promise.resolve(inbox.shift())
      : new Promise<unknown>((resolve) => waiting.push(resolve));
  return { worker, next };
}

Deno.test("SharedRing: 3 producer threads and 2 consumer threads, nothing lost, FIFO per producer", async () => {
  const ring = new SharedRing(1 << 12);
  const each = 20_000;
  const producers = [11, 12, 13].map((owner) =>
    start({ memory: ring.memory, role: "put", owner, count: each })
  );
  const consumers = [21, 22].map((owner) =>
    start({ memory: ring.memory, role: "take", owner, count: 30_000 })
  );
  try {
    for (const producer of producers) assert.equal(await producer.next(), "done");
    const seen = new Map<number, Set<number>>();
    for (const consumer of consumers) {
      const got = await consumer.next() as Uint8Array[];
      const last = new Map<number, number>();
      for (const record of got) {
        const [producer, index] = readRecord(record);
        assert.ok(index > (last.get(producer) ?? -1), `producer ${producer}'s ${index} came late`);
        last.set(producer, index);
        const indices = seen.get(producer) ?? new Set();
        assert.ok(!indices.has(index), `producer ${producer}'s ${index} came twice`);
        seen.set(producer, indices.add(index));
      }
    }
    for (const owner of [11, 12, 13]) assert.equal(seen.get(owner)?.size, each);
    assert.equal(ring.size, 0);
  } finally {
    for (const { worker } of [...producers, ...consumers]) worker.terminate();
  }
});

Deno.test("SharedRing: a producer terminated mid-put leaves the ring whole once recovered", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let held = 0;
  for (let round = 0; round < 5; round++) {
    const ring = new SharedRing(1 << 10);
    const producer = start({
      memory: ring.memory,
      role: "put",
      owner: 31,
      count: 1e9,
      port: listener.addr.port,
    });
    using conn = await listener.accept();
    try {
      assert.equal(await producer.next(), "connected");
      // Take while it puts, and terminate it meanwhile: it may hold the lock.
      let taken = 0;
      let last = -1;
      const check = (record: Uint8Array) => {
        const [owner, index] = readRecord(record);
        assert.equal(owner, 31);
        assert.equal(index, last + 1);
        last = index;
        taken++;
      };
      while (taken < 5_000 + round * 997) {
        const record = ring.tryTake(ME);
        if (record) check(record);
      }
      producer.worker.terminate();
      for (let i = 0; i < 1_000; i++) {
        const record = ring.tryTake(ME, false);
        if (record === null) break; // its holder is dying
        if (record !== undefined) check(record);
      }
      // terminate() only asks: the thread is gone when its connection ends.
      assert.equal(await conn.read(new Uint8Array(1)), null);
      held += ring.recover(31) ? 1 : 0;
      for (let record = ring.tryTake(ME); record; record = ring.tryTake(ME)) check(record);
      assert.equal(ring.size, 0);
      assert.ok(ring.tryPut(recordOf(1, 0), ME), "the ring takes records again");
      assert.deepEqual(readRecord(ring.tryTake(ME)!), [1, 0]);
    } finally {
      producer.worker.terminate();
    }
  }
  console.log(`the producer held the lock when it died in ${held} of 5 rounds`);
});

Deno.test("SharedRing.recover counts again, and only frees its owner's lock", () => {
  const ring = new SharedRing(64);
  ring.tryPut(recordOf(1, 0), ME);
  ring.tryPut(recordOf(1, 1), ME);
  const header = new Int32Array(ring.memory, 0, 8);
  // A holder that died after its commit (TAIL) and before its count (ITEMS).
  Atomics.store(header, 0, 41);
  Atomics.store(header, 3, 1);
  assert.equal(ring.recover(42), false);
  assert.equal(Atomics.load(header, 0), 41);
  assert.equal(ring.recover(41), true);
  assert.equal(ring.size, 2);
  assert.deepEqual(readRecord(ring.tryTake(ME)!), [1, 0]);
  assert.equal(ring.clear(ME), 1);
  assert.equal(ring.tryTake(ME), undefined);
});

Deno.test("SharedRing.offer spills while earlier items are out of the ring, and refuses once shut", () => {
  const ring = new SharedRing(32);
  assert.equal(ring.offer(new Uint8Array(12), ME), "ok");
  assert.equal(ring.offer(new Uint8Array(20), ME), "spilled"); // no room
  assert.equal(ring.offer(new Uint8Array(1), ME), "spilled"); // room, but one is out
  assert.equal(ring.spilled, 2);
  assert.equal(ring.putSpilled(new Uint8Array(20), ME), false); // still no room
  assert.equal(ring.size, 1);
  assert.deepEqual(ring.tryTake(ME), new Uint8Array(12));
  assert.equal(ring.putSpilled(new Uint8Array(20).fill(2), ME), true);
  assert.equal(ring.offer(new Uint8Array(1), ME), "spilled");
  assert.equal(ring.putSpilled(new Uint8Array(1).fill(3), ME), true);
  assert.equal(ring.putSpilled(new Uint8Array(1).fill(4), ME), false); // no room: 4 + 20, 4 + 1
  assert.equal(ring.spilled, 1);
  ring.countSpilled(-1);
  assert.equal(ring.puts, 1, "only offers that went in are counted");
  assert.deepEqual(ring.tryTake(ME), new Uint8Array(20).fill(2));
  assert.deepEqual(ring.tryTake(ME, true, true), new Uint8Array(1).fill(3));
  assert.equal(ring.offer(new Uint8Array(1), ME), "ok");
  ring.shutDown();
  assert.equal(ring.offer(new Uint8Array(1), ME), "shut");
  assert.equal(ring.offer(new Uint8Array(1), ME, false), "shut");
  assert.equal(ring.puts, 2);
  assert.equal(ring.size, 1);
});
