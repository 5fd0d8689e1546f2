import assert from "node:assert/strict";
import {
  DataCloneError,
  Empty,
  Full,
  JoinableQueue,
  Pipe,
  Process,
  Queue,
  ShutDown,
  SimpleQueue,
  type StartMethod,
  ValueError,
} from "../mod.ts";
import {
  collect,
  consume,
  describeBytes,
  getAndEcho,
  joinableWorker,
  makeQueueHere,
  produce,
  produceForever,
  putAndReport,
  putOne,
  putSizes,
  takeSomeThenHang,
} from "./testdata/queue_targets.ts";
import { started, within } from "./testdata/helpers.ts";
import { encode } from "../_codec.ts";
import { handleKind } from "../_handles.ts";
import { connectTo } from "../_socket.ts";

const METHODS: StartMethod[] = ["process", "worker"];
const SMALL = [42, null, "hello"];

Deno.test("Queue.get() returns items in the order they were put", async () => {
  await using q = new Queue<unknown>();
  const items = [1, "two", new Map([[3, 3]]), new Set([4n]), new Date(5), null, undefined];
  for (const item of items) await q.put(item);
  assert.equal(await q.qsize(), items.length);
  for (const item of items) assert.deepEqual(await q.get(), item);
  assert.equal(await q.empty(), true);
});

Deno.test("Queue.get() rejects with Empty after the timeout", async () => {
  await using q = new Queue();
  await assert.rejects(q.get({ timeout: 5 }), Empty);
  await assert.rejects(q.getNowait(), Empty);
  await q.put("later");
  assert.equal(await q.get({ timeout: 5 }), "later");
});

Deno.test("Queue.put() rejects with Full after the timeout on a full queue", async () => {
  await using q = new Queue(2);
  await q.put(1);
  await q.putNowait(2);
  assert.equal(await q.full(), true);
  await assert.rejects(q.put(3, { timeout: 5 }), Full);
  await assert.rejects(q.putNowait(3), Full);
  assert.equal(await q.qsize(), 2);
  const waiting = q.put(3);
  assert.equal(await q.get(), 1);
  await waiting;
  assert.equal(await q.get(), 2);
  assert.equal(await q.get(), 3);
});

Deno.test("Queue.get() and Queue.put() reject with the abort reason", async () => {
  await using q = new Queue(1);
  const controller = new AbortController();
  const getting = q.get({ signal: controller.signal });
  controller.abort(new RangeError("stop"));
  await assert.rejects(getting, RangeError);
  await q.put(1);
  const putting = q.put(2, { signal: AbortSignal.timeout(5) });
  await assert.rejects(putting, (e: Error) => e.name === "TimeoutError");
  await assert.rejects(q.get({ signal: AbortSignal.abort(new SyntaxError("x")) }), SyntaxError);
  assert.equal(await q.get(), 1);
  assert.equal(await q.qsize(), 0);
});

Deno.test("Queue.put() rejects with DataCloneError and puts nothing", async () => {
  await using q = new Queue();
  await assert.rejects(q.put({ f: () => 1 }), DataCloneError);
  assert.equal(await q.empty(), true);
});

Deno.test("Queue.close() stops puts from this object but keeps what was put", async () => {
  await using q = new Queue();
  await q.put(1);
  await q.close();
  await assert.rejects(q.put(2), ValueError);
  assert.equal(await q.get(), 1);
});

Deno.test("Queue.shutdown() rejects puts, drains gets, then rejects them with ShutDown", async () => {
  await using q = new Queue(1);
  await q.put(1);
  const blockedPut = q.put(2);
  await q.shutdown();
  await assert.rejects(blockedPut, ShutDown);
  await assert.rejects(q.put(3), ShutDown);
  assert.equal(await q.get(), 1);
  await assert.rejects(q.get(), ShutDown);

  await using r = new Queue();
  const blockedGet = r.get();
  await r.shutdown();
  await assert.rejects(blockedGet, ShutDown);
});

Deno.test("Queue.shutdown() with immediate drops what is left", async () => {
  await using q = new JoinableQueue();
  await q.put(1);
  await q.put(2);
  await q.shutdown({ immediate: true });
  await assert.rejects(q.get(), ShutDown);
  await q.join(); // dropped items count as done
});

Deno.test("Queue async iteration yields items until shut down and drained", async () => {
  await using q = new Queue<number>();
  for (let i = 0; i < 5; i++) await q.put(i);
  await q.shutdown();
  const got: number[] = [];
  for await (const x of q) got.push(x);
  assert.deepEqual(got, [0, 1, 2, 3, 4]);
});

Deno.test("JoinableQueue.taskDone() rejects with ValueError when called once too often", async () => {
  await using q = new JoinableQueue();
  await q.put("a");
  await q.put("b");
  await q.get();
  await q.taskDone();
  let joined = false;
  const joining = q.join().then(() => joined = true);
  await q.get();
  assert.equal(joined, false);
  await q.taskDone();
  await joining;
  assert.equal(joined, true);
  await assert.rejects(q.taskDone(), ValueError);
});

Deno.test("SimpleQueue puts and gets", async () => {
  await using q = new SimpleQueue<string>();
  assert.equal(await q.empty(), true);
  await q.put("x");
  assert.equal(await q.empty(), false);
  assert.equal(await q.get(), "x");
  await q.close();
});

for (const method of METHODS) {
  Deno.test(`Queue.get() receives what a "${method}" child put`, async () => {
    await using q = new Queue();
    await using p = await started(putOne, [q, SMALL], method);
    assert.deepEqual(await q.get(), SMALL);
    await p.join();
    assert.equal(p.exitCode, 0);
  });

  Deno.test(`SimpleQueue receives what a "${method}" child put`, async () => {
    await using q = new SimpleQueue();
    await using p = await started(putOne, [q, SMALL], method);
    assert.deepEqual(await q.get(), SMALL);
    await p.join();
    assert.equal(p.exitCode, 0);
  });

  Deno.test(`Queue carries 4 producers × 10,000 items into 2 consumers, "${method}" children`, async () => {
    await using q = new Queue();
    await using out = new Queue<unknown[][]>();
    const consumers = [
      await started(consume, [q, out], method),
      await started(consume, [q, out], method),
    ];
    const producers = [];
    for (let i = 0; i < 4; i++) {
      producers.push(await started(produce, [q, `p${i}`, 10_000], method));
    }
    for (const p of producers) await p.join();
    for (const p of producers) assert.equal(p.exitCode, 0);
    await q.put(null);
    await q.put(null);
    const got = [...await out.get(), ...await out.get()] as [string, number][];
    for (const c of consumers) await c.join();
    assert.equal(got.length, 40_000);
    const seen = new Set(got.map(([tag, i]) => `${tag}:${i}`));
    assert.equal(seen.size, 40_000, "an item was delivered twice");
    for (let p = 0; p < 4; p++) for (let i = 0; i < 10_000; i++) assert.ok(seen.has(`p${p}:${i}`));
  });

  Deno.test(`Queue keeps each producer's order through a "${method}" child`, async () => {
    await using q = new Queue();
    await using out = new Queue<unknown[][]>();
    await using consumer = await started(consume, [q, out], method);
    await using producer = await started(produce, [q, "only", 5000], method);
    await producer.join();
    await q.put(null);
    const got = await out.get() as [string, number][];
    assert.deepEqual(got.map(([, i]) => i), Array.from({ length: 5000 }, (_, i) => i));
    await consumer.join();
  });

  Deno.test(`Queue is not wedged by a killed "${method}" producer`, async () => {
    await using q = new Queue();
    await using started_ = new Queue();
    await using p = await started(produceForever, [q, started_], method);
    assert.equal(await started_.get(), "started");
    p.kill();
    await p.join();
    // Drain what the dead producer wrote, then the queue works as before.
    for (;;) {
      try {
        await q.getNowait();
      } catch (error) {
        if (error instanceof Empty) break;
        throw error;
      }
    }
    await using other = await started(putOne, [q, "alive"], method);
    let item: unknown;
    do item = await q.get(); while (item !== "alive");
    await other.join();
  });

  Deno.test(`Queue gives what a killed "${method}" consumer did not take to the living`, async () => {
    await using q = new Queue<number>();
    await using seen = new Queue<number[]>();
    const n = 2000;
    const k = 10;
    for (let i = 0; i < n; i++) await q.put(i);
    await using doomed = await started(takeSomeThenHang, [q, k, seen], method);
    const taken = await seen.get();
    assert.deepEqual(taken, Array.from({ length: k }, (_, i) => i));
    doomed.kill();
    await doomed.join();
    await using out = new Queue<number[]>();
    await using living = await started(collect, [q, n - k, out], method);
    const rest = await out.get();
    await living.join();
    assert.deepEqual(
      rest.toSorted((x, y) => x - y),
      Array.from({ length: n - k }, (_, i) => i + k),
    );
    assert.equal(await q.qsize(), 0);
  });

  Deno.test(`Queue with maxsize holds back a "${method}" producer and loses nothing`, async () => {
    await using q = new Queue(3);
    await using p = await started(produce, [q, "bounded", 300], method);
    for (let i = 0; i < 300; i++) {
      assert.ok(await q.qsize() <= 3);
      assert.deepEqual(await q.get(), ["bounded", i]);
    }
    await p.join();
    assert.equal(p.exitCode, 0);
  });

  Deno.test(`Queue.get() in a "${method}" child rejects with ShutDown after a shutdown here`, async () => {
    await using q = new Queue();
    await using out = new Queue();
    await using p = await started(getAndEcho, [q, out], method);
    await q.put("one");
    assert.equal(await out.get(), "one");
    await q.shutdown();
    await p.join();
    assert.equal(p.exitCode, 1); // getAndEcho does not catch ShutDown
  });

  Deno.test(`JoinableQueue.join() waits for a "${method}" child's taskDone()`, async () => {
    await using q = new JoinableQueue();
    await using out = new Queue();
    await using p = await started(joinableWorker, [q, out], method);
    for (let i = 0; i < 20; i++) await q.put(i);
    await q.put(null);
    await q.join();
    assert.equal(await out.qsize(), 20);
    await p.join();
    assert.equal(p.exitCode, 0);
  });

  Deno.test(`Queue travels inside a message and comes back from a "${method}" child`, async () => {
    const [a, b] = Pipe();
    await using p = await started(makeQueueHere, [b], method);
    const q = await a.recv() as Queue<string>;
    assert.ok(q instanceof Queue);
    assert.equal(await q.get(), "made in the child");
    await q.put("to the child's queue");
    assert.equal(await q.get(), "to the child's queue");
    await q[Symbol.asyncDispose]();
    await a.send("bye");
    await p.join();
    assert.equal(p.exitCode, 0);
    a.close();
  });
}

Deno.test("a Queue reaches a child given no permissions of its own", async () => {
  await using q = new Queue<string>();
  await using p = new Process({ target: putOne, args: [q, "hello"], permissions: {} });
  await p.start();
  assert.equal(await q.get({ timeout: 10_000 }), "hello");
  await p.join();
  assert.equal(p.exitCode, 0);
});

Deno.test("Queue: a corrupt batch of items closes that one connection, and adds nothing from it", async () => {
  await using q = new Queue<number>();
  const { path, id } = handleKind("queue").describe(q, {}) as { path: string; id: string };
  // Two clients of the queue, as another process would have: one sends a
  // PUTS frame whose second record runs past the frame's end.
  const bad = await connectTo(path, [id]);
  const good = await connectTo(path, [id]);
  const closed = Promise.withResolvers<void>();
  bad.start(() => {}, () => closed.resolve());
  bad.hold(); // links do not keep the event loop alive by themselves
  good.start(() => {});
  const one = encode(1);
  const frame = new Uint8Array(1 + 4 + one.length + 4 + 2);
  const view = new DataView(frame.buffer);
  frame[0] = 6; // PUTS
  view.setUint32(1, one.length, true);
  frame.set(one, 5);
  view.setUint32(5 + one.length, 50, true); // 50 bytes claimed, 2 there
  await bad.send(frame);
  await within(5_000, "the hub closing the connection", closed.promise);
  assert.equal(bad.closed, true);
  assert.equal(await q.qsize(), 0);
  // The other connection still puts (a well-formed batch of two).
  const two = encode(2);
  const ok = new Uint8Array(1 + 4 + one.length + 4 + two.length);
  const okView = new DataView(ok.buffer);
  ok[0] = 6;
  okView.setUint32(1, one.length, true);
  ok.set(one, 5);
  okView.setUint32(5 + one.length, two.length, true);
  ok.set(two, 9 + one.length);
  await good.send(ok);
  assert.equal(await q.get({ timeout: 5_000 }), 1);
  assert.equal(await q.get({ timeout: 5_000 }), 2);
  good.close();
});

for (const method of METHODS) {
  Deno.test(`Queue: large items beyond a client's byte window all arrive, in order (${method})`, async () => {
    // 24 items of 512 KiB: three times what the hub lets one client hold.
    await using q = new Queue<Uint8Array>();
    await using out = new Queue<unknown>();
    await using p = await started(describeBytes, [q, 24, out], method);
    for (let i = 0; i < 24; i++) await q.put(new Uint8Array(1 << 19).fill(i));
    const expected = Array.from({ length: 24 }, (_, i) => [1 << 19, i, i]);
    assert.deepEqual(await out.get({ timeout: 30_000 }), expected);
    await p.join();
  });
}

// A queue made here and handed to "worker" children is shared with them through
// a ring in shared memory; what does not fit goes through this process.
const RING_BYTES = 1 << 22;

Deno.test("Queue: items larger than the ring pass between workers in order with small ones", async () => {
  // (1 MiB, then nearly the ring's capacity once encoded: the ring must start again at 0.)
  const sizes = [
    10,
    RING_BYTES + 1,
    3,
    2 << 20,
    2 << 20,
    2 << 20,
    7,
    RING_BYTES * 2,
    1 << 20,
    RING_BYTES - 64,
    1,
  ];
  await using q = new Queue<Uint8Array>();
  await using out = new Queue<unknown>();
  await using consumer = await started(describeBytes, [q, sizes.length, out], "worker");
  await using producer = await started(putSizes, [q, sizes], "worker");
  const expected = sizes.map((size, i) => [size, i, i]);
  assert.deepEqual(await out.get({ timeout: 30_000 }), expected);
  await producer.join();
  await consumer.join();
  assert.equal(producer.exitCode, 0);
});

Deno.test("Queue: items larger than the ring put here reach a worker in order", async () => {
  const sizes = [RING_BYTES + 1, 5, 1 << 20, RING_BYTES - 64, RING_BYTES, 6];
  await using q = new Queue<Uint8Array>();
  await using out = new Queue<unknown>();
  await using consumer = await started(describeBytes, [q, sizes.length, out], "worker");
  for (let i = 0; i < sizes.length; i++) await q.put(new Uint8Array(sizes[i]!).fill(i));
  assert.deepEqual(await out.get({ timeout: 30_000 }), sizes.map((size, i) => [size, i, i]));
  await consumer.join();
});

Deno.test('Queue: a worker\'s items reach a getter here and a "process" consumer, once each, in order', async () => {
  const n = 4000;
  await using q = new Queue<[string, number]>();
  await using out = new Queue<unknown>();
  await using producer = await started(produce, [q, "w", n], "worker");
  await using consumer = await started(collect, [q, n / 2, out], "process");
  const here: number[] = [];
  for (let i = 0; i < n / 2; i++) here.push((await q.get())[1]);
  const there = (await out.get() as [string, number][]).map(([, i]) => i);
  await producer.join();
  await consumer.join();
  for (const got of [here, there]) {
    assert.deepEqual(got, got.toSorted((a, b) => a - b), "a consumer got items out of order");
  }
  assert.deepEqual(
    [...here, ...there].sort((a, b) => a - b),
    Array.from({ length: n }, (_, i) => i),
  );
  assert.equal(await q.qsize(), 0);
});

for (const method of METHODS) {
  Deno.test(`Queue: a "${method}" child's put after a shutdown here rejects with ShutDown`, async () => {
    await using q = new Queue();
    await using out = new Queue<unknown>();
    await using first = await started(putAndReport, [q, 1, out], method);
    assert.equal(await out.get(), "ok");
    await first.join();
    await q.shutdown();
    await using second = await started(putAndReport, [q, 2, out], method);
    assert.equal(await out.get(), "ShutDown");
    await second.join();
    assert.equal(await q.get(), 1);
    await assert.rejects(q.get(), ShutDown);
  });
}

Deno.test("Queue: shutdown({ immediate: true }) drops what workers put", async () => {
  await using q = new JoinableQueue();
  await using producer = await started(produce, [q, "w", 100], "worker");
  await producer.join();
  assert.equal(await q.qsize(), 100);
  await q.shutdown({ immediate: true });
  assert.equal(await q.qsize(), 0);
  await q.join(); // nothing unfinished is left
  await assert.rejects(q.get(), ShutDown);
});

Deno.test("JoinableQueue.join() counts what a worker put", async () => {
  await using q = new JoinableQueue<[string, number]>();
  await using producer = await started(produce, [q, "w", 3], "worker");
  await producer.join();
  let joined = false;
  const join = q.join().then(() => (joined = true));
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(await q.get(), ["w", i]);
    assert.equal(await q.qsize(), 2 - i); // a round trip, for join to settle if it would
    assert.equal(joined, false, `join() settled with ${3 - i} tasks not done`);
    await q.taskDone();
  }
  await join;
  await assert.rejects(q.taskDone(), ValueError);
});
