import assert from "node:assert/strict";
import {
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  Condition,
  DataCloneError,
  Event,
  Lock,
  Process,
  RawArray,
  RLock,
  Semaphore,
  type StartMethod,
  TimeoutError,
  Value,
  ValueError,
} from "../mod.ts";
import {
  addManyWith,
  barrierAction,
  barrierBroken,
  barrierParty,
  barrierWithAction,
  conditionWaiter,
  holdAndHang,
  overRelease,
  recursive,
  semaphoreWorker,
  setActionCounter,
  waitThenSet,
} from "./testdata/shared_targets.ts";
import { within } from "./testdata/helpers.ts";

const METHODS: StartMethod[] = ["process", "worker"];

function start(
  method: StartMethod,
  target: (...args: never[]) => unknown,
  args: unknown[],
): Process {
  return new Process({
    target: target as (...args: unknown[]) => unknown,
    args,
    startMethod: method,
  });
}

async function joinAll(children: Process[]): Promise<void> {
  for (const child of children) await within(60_000, "a child", child.join());
  assert.deepEqual(children.map((c) => c.exitCode), children.map(() => 0));
}

Deno.test("Lock.acquire() resolves false when the timeout runs out", async () => {
  for (const method of METHODS) {
    const lock = new Lock({ startMethod: method });
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ timeout: 0 }), false);
    assert.equal(await lock.acquire({ timeout: 20 }), false);
    lock.release();
    assert.equal(await lock.acquire({ timeout: 0 }), true);
    lock.release();
  }
});

Deno.test("Lock.release() of an unlocked lock throws ValueError", () => {
  for (const method of METHODS) {
    assert.throws(() => new Lock({ startMethod: method }).release(), ValueError);
  }
});

Deno.test("Lock.acquire() waits until another task releases", async () => {
  for (const method of METHODS) {
    const lock = new Lock({ startMethod: method });
    await lock.acquire();
    const waiting = lock.acquire({ timeout: 30_000 });
    queueMicrotask(() => lock.release());
    assert.equal(await waiting, true);
    lock.release();
  }
});

Deno.test("Lock.acquire() rejects with the signal's reason when aborted", async () => {
  for (const method of METHODS) {
    const lock = new Lock({ startMethod: method });
    await lock.acquire();
    const controller = new AbortController();
    const waiting = lock.acquire({ signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(waiting, /stop/);
    await assert.rejects(lock.acquire({ signal: AbortSignal.abort(new Error("early")) }), /early/);
    lock.release();
  }
});

Deno.test("Lock.hold() releases at the end of a using block and rejects with TimeoutError", async () => {
  for (const method of METHODS) {
    const lock = new Lock({ startMethod: method });
    {
      using _ = await lock.hold();
      await assert.rejects(lock.hold({ timeout: 0 }), TimeoutError);
    }
    assert.equal(await lock.acquire({ timeout: 0 }), true);
    lock.release();
  }
});

Deno.test("RLock.acquire() is recursive for its owner and release() checks the owner", async () => {
  for (const method of METHODS) {
    const lock = new RLock({ startMethod: method });
    assert.throws(() => lock.release(), ValueError);
    await lock.acquire();
    assert.equal(await lock.acquire({ timeout: 0 }), true);
    lock.release();
    lock.release();
    assert.throws(() => lock.release(), ValueError);
  }
});

for (const method of METHODS) {
  Deno.test(`RLock is owned per ${method}: a child cannot take it while the parent holds it`, async () => {
    const lock = new RLock({ startMethod: method });
    const result = new Value("i", -1, { startMethod: method, lock: false });
    const child = start(method, recursive, [lock, result]);
    await child.start();
    await joinAll([child]);
    assert.equal(result.value, 1);
    await lock.acquire();
    const waiter = start(method, recursive, [lock, result]);
    result.value = -1;
    await waiter.start();
    lock.release(); // The child can go on only now.
    await joinAll([waiter]);
    assert.equal(result.value, 1);
  });

  Deno.test(`Lock makes two ${method} children's hundred thousand increments exact`, async () => {
    const value = new Value("i", 0, { startMethod: method, lock: false });
    const lock = new Lock({ startMethod: method });
    const go = new Event({ startMethod: method });
    const children = [0, 1].map(() => start(method, addManyWith, [value, lock, 100_000, go]));
    for (const child of children) await child.start();
    go.set();
    await joinAll(children);
    assert.equal(value.value, 200_000);
  });

  Deno.test(`Lock held by a killed ${method} child is taken over by the next acquire`, async () => {
    for (const lock of [new Lock({ startMethod: method }), new RLock({ startMethod: method })]) {
      const held = new Event({ startMethod: method });
      const child = start(method, holdAndHang, [lock, held]);
      await child.start();
      try {
        assert.equal(await held.wait({ timeout: 30_000 }), true);
        assert.equal(await lock.acquire({ timeout: 0 }), false);
      } finally {
        child.kill();
        await child.join();
      }
      assert.equal(await within(30_000, "the take-over", lock.acquire()), true);
      lock.release();
    }
  });

  Deno.test(`Event.wait() in a ${method} child wakes when set`, async () => {
    const event = new Event({ startMethod: method });
    const reply = new Event({ startMethod: method });
    const child = start(method, waitThenSet, [event, reply]);
    await child.start();
    assert.equal(event.isSet(), false);
    event.set();
    assert.equal(await reply.wait({ timeout: 30_000 }), true);
    await joinAll([child]);
  });

  Deno.test(`Semaphore admits at most its value of ${method} children at once`, async () => {
    const sem = new Semaphore(2, { startMethod: method });
    const inside = new Value("i", 0, { startMethod: method });
    const most = new Value("i", 0, { startMethod: method });
    const children = [0, 1, 2].map(() => start(method, semaphoreWorker, [sem, inside, most, 200]));
    for (const child of children) await child.start();
    await joinAll(children);
    assert.ok(most.value >= 1 && most.value <= 2, `most inside: ${most.value}`);
    assert.equal(sem.getValue(), 2);
  });

  Deno.test(`BoundedSemaphore.release() past the start value throws ValueError in a ${method} child`, async () => {
    const sem = new BoundedSemaphore(1, { startMethod: method });
    const result = new RawArray("B", 16, { startMethod: method });
    const child = start(method, overRelease, [sem, result]);
    await child.start();
    await joinAll([child]);
    assert.equal(
      new TextDecoder().decode(result.view.subarray(0, result.view.indexOf(0))),
      "ValueError",
    );
  });

  Deno.test(`Condition.notify(n) wakes exactly n ${method} children`, async () => {
    const cond = new Condition(undefined, { startMethod: method });
    const entered = new Semaphore(0, { startMethod: method });
    const woken = new Value("i", 0, { startMethod: method, lock: false });
    const woke = new Semaphore(0, { startMethod: method });
    const children = [0, 1, 2].map(() =>
      start(method, conditionWaiter, [cond, entered, woken, woke])
    );
    for (const child of children) await child.start();
    for (let i = 0; i < 3; i++) assert.equal(await entered.acquire({ timeout: 30_000 }), true);
    // Each child holds the lock until it is queued in wait(): once we hold it, all three wait.
    await cond.acquire();
    cond.notify(2);
    cond.release();
    assert.equal(await woke.acquire({ timeout: 30_000 }), true);
    assert.equal(await woke.acquire({ timeout: 30_000 }), true);
    // A third wake-up would have had to come from notify(2) too: it did not.
    await cond.acquire();
    assert.equal(woken.value, 2);
    assert.equal(await woke.acquire({ timeout: 0 }), false);
    cond.notify(1);
    cond.release();
    await joinAll(children);
    assert.equal(woken.value, 3);
  });

  Deno.test(`Barrier.wait() lets ${method} children go together with distinct indexes`, async () => {
    const barrier = new Barrier(3, { startMethod: method });
    const indexes = new RawArray("i", [-1, -1, -1], { startMethod: method });
    const children = [0, 1].map((slot) => start(method, barrierParty, [barrier, indexes, slot]));
    for (const child of children) await child.start();
    indexes.set(2, await within(30_000, "the barrier", barrier.wait()));
    await joinAll(children);
    assert.deepEqual(indexes.toArray().sort(), [0, 1, 2]);
    assert.equal(barrier.nWaiting, 0);
  });

  Deno.test(`Barrier action runs once per round, also in a ${method} child that completes it`, async () => {
    const counter = new Value("i", 0, { startMethod: method });
    setActionCounter(counter);
    const barrier = new Barrier(2, { action: barrierAction, startMethod: method });
    const waiting = barrier.wait();
    const child = start(method, barrierWithAction, [barrier, counter]);
    await child.start();
    await within(30_000, "the barrier", waiting);
    await joinAll([child]);
    assert.equal(counter.value, 1);
  });

  Deno.test(`Barrier.abort() rejects a waiting ${method} child with BrokenBarrierError`, async () => {
    const barrier = new Barrier(2, { startMethod: method });
    const result = new Value("i", 0, { startMethod: method });
    const entered = new Event({ startMethod: method });
    const child = start(method, barrierBroken, [barrier, result, entered]);
    await child.start();
    assert.equal(await entered.wait({ timeout: 30_000 }), true);
    // The child may not be inside wait() yet: either way it must see the barrier broken.
    await barrier.abort();
    await joinAll([child]);
    assert.equal(result.value, 2);
    assert.equal(barrier.broken, true);
    await assert.rejects(barrier.wait(), BrokenBarrierError);
    await barrier.reset();
    assert.equal(barrier.broken, false);
  });
}

Deno.test("Semaphore() and BoundedSemaphore() count and check their bounds", async () => {
  for (const method of METHODS) {
    const sem = new Semaphore(1, { startMethod: method });
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire({ timeout: 10 }), false);
    sem.release();
    sem.release();
    assert.equal(sem.getValue(), 2);
    const bounded = new BoundedSemaphore(2, { startMethod: method });
    await bounded.acquire();
    bounded.release();
    assert.throws(() => bounded.release(), ValueError);
    assert.throws(() => new Semaphore(-1, { startMethod: method }), RangeError);
    {
      using _ = await bounded.hold();
      assert.equal(bounded.getValue(), 1);
    }
    assert.equal(bounded.getValue(), 2);
  }
});

Deno.test("Event.wait() resolves false on timeout and true once set", async () => {
  for (const method of METHODS) {
    const event = new Event({ startMethod: method });
    assert.equal(await event.wait({ timeout: 10 }), false);
    const waiting = event.wait({ timeout: 30_000 });
    event.set();
    assert.equal(await waiting, true);
    assert.equal(await event.wait(), true);
    event.clear();
    assert.equal(event.isSet(), false);
  }
});

Deno.test("Condition.notify(n) wakes exactly n in-process waiters, oldest first", async () => {
  for (const method of METHODS) {
    const cond = new Condition(new Lock({ startMethod: method }));
    const woken: number[] = [];
    const entered: number[] = [];
    const waiters = [0, 1, 2].map(async (i) => {
      await cond.acquire();
      entered.push(i);
      const ok = await cond.wait({ timeout: 30_000 });
      woken.push(ok ? i : -1);
      cond.release();
    });
    await untilEntered(cond, entered, 3);
    cond.notify(2);
    cond.release();
    const first = entered.slice(0, 2);
    await within(30_000, "two waiters", Promise.all(first.map((i) => waiters[i]!)));
    await cond.acquire();
    assert.deepEqual(woken.toSorted(), first.toSorted());
    cond.notifyAll();
    cond.release();
    await within(30_000, "the last waiter", Promise.all(waiters));
    assert.deepEqual(woken.toSorted(), entered.toSorted());
  }
});

/** Acquires the lock once `n` waiters entered wait() (each enters before it lets go of it). */
async function untilEntered(cond: Condition, entered: unknown[], n: number): Promise<void> {
  while (true) {
    await cond.acquire();
    if (entered.length === n) return;
    cond.release();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

Deno.test("Condition.wait() resolves false on timeout and leaves the queue", async () => {
  for (const method of METHODS) {
    const cond = new Condition(new Lock({ startMethod: method }));
    await cond.acquire();
    assert.equal(await cond.wait({ timeout: 10 }), false);
    cond.release();
    const entered: number[] = [];
    const second = (async () => {
      await cond.acquire();
      entered.push(1);
      const ok = await cond.wait({ timeout: 30_000 });
      cond.release();
      return ok;
    })();
    await untilEntered(cond, entered, 1);
    // Had the timed-out waiter stayed in the queue, this would wake no one.
    cond.notify(1);
    cond.release();
    assert.equal(await within(30_000, "the second waiter", second), true);
  }
});

Deno.test("Condition.wait() and notify() reject or throw without the lock", async () => {
  const cond = new Condition(undefined, { startMethod: "worker" });
  await assert.rejects(cond.wait(), ValueError);
  assert.throws(() => cond.notify(), ValueError);
  assert.throws(() => new Condition({} as Lock), TypeError);
});

Deno.test("Barrier.wait() runs the action once per round and times out into BrokenBarrierError", async () => {
  for (const method of METHODS) {
    let runs = 0;
    const barrier = new Barrier(2, { startMethod: method, action: () => void runs++ });
    assert.equal(barrier.parties, 2);
    const round = await Promise.all([barrier.wait(), barrier.wait()]);
    assert.deepEqual(round.sort(), [0, 1]);
    await Promise.all([barrier.wait(), barrier.wait()]);
    assert.equal(runs, 2);
    await assert.rejects(barrier.wait({ timeout: 10 }), BrokenBarrierError);
    assert.equal(barrier.broken, true);
    await assert.rejects(barrier.wait(), BrokenBarrierError);
    await barrier.reset();
    assert.equal(barrier.broken, false);
    const waiting = barrier.wait();
    const rejected = assert.rejects(waiting, BrokenBarrierError);
    while (barrier.nWaiting === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    await barrier.reset();
    await within(30_000, "the reset", rejected);
  }
});

Deno.test("Lock of the worker context is refused at start() of a process child", async () => {
  const lock = new Lock({ startMethod: "worker" });
  const p = new Process({ target: holdAndHang, args: [lock, new Event()], startMethod: "process" });
  await assert.rejects(() => p.start(), DataCloneError);
  assert.equal(p.isAlive(), false);
});

Deno.test({
  name: "Lock() in the process context without --allow-ffi names the flag and the alternatives",
  permissions: { read: true, ffi: false },
  fn() {
    for (
      const make of [
        () => new Lock({ startMethod: "process" }),
        () => new Event({ startMethod: "process" }),
      ]
    ) {
      assert.throws(make, (error: Error) => {
        assert.ok(error instanceof Deno.errors.NotCapable);
        assert.match(error.message, /--allow-ffi/);
        assert.match(error.message, /"worker" context/);
        return true;
      });
    }
  },
});
