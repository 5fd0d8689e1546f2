import assert from "node:assert/strict";
import {
  AsyncResult,
  DataCloneError,
  Pool,
  ProcessError,
  RemoteError,
  type StartMethod,
  TimeoutError,
  Value,
  ValueError,
  WorkerLostError,
} from "../mod.ts";
import {
  add,
  busyFor,
  busyUntilSet,
  countCall,
  dieOn,
  double,
  failOn,
  failWithValueError,
  init,
  initFails,
  initValue,
  killSelf,
  mostlyInts,
  oddLater,
  returnsFunction,
  sleepMs,
  slowDouble,
  slowMostlyInts,
  slowOfObject,
  workerName,
} from "./testdata/pool_targets.ts";
import { within } from "./testdata/helpers.ts";

const METHODS: StartMethod[] = ["process", "worker"];

for (const startMethod of METHODS) {
  Deno.test(`Pool.map() returns results in input order (${startMethod})`, async (t) => {
    await using pool = new Pool({ processes: 2, startMethod });
    const items = Array.from({ length: 1000 }, (_, i) => i);
    for (const chunksize of [undefined, 1, 7, 5000]) {
      await t.step(`chunksize ${chunksize}`, async () => {
        assert.deepEqual(await pool.map(double, items, { chunksize }), items.map((x) => x * 2));
      });
    }
    await t.step("9,000 chunks of one item, each copied into place", async () => {
      const many = Array.from({ length: 9_000 }, (_, i) => i);
      const results = await pool.map(double, many, { chunksize: 1 });
      assert.deepEqual(results, many.map((x) => x * 2));
    });
    await t.step(
      "100,000 items, the first chunks sent before the rest are encoded, come back in order",
      async () => {
        const many = Array.from({ length: 100_000 }, (_, i) => i);
        assert.deepEqual(await pool.map(double, many), many.map((x) => x * 2));
      },
    );
    assert.deepEqual(await pool.map(double, []), []);
    assert.deepEqual(await pool.map(slowDouble, new Set([1, 2, 3])), [2, 4, 6]);
    await t.step("an array is read at the call, as its iterator reads it", async () => {
      const changed = [1, 2, 3];
      const later = pool.mapAsync(double, changed, { chunksize: 1 });
      changed.fill(100);
      assert.deepEqual(await later, [2, 4, 6]);
      const odd = [1, 2, 3, 4];
      Object.defineProperty(odd, Symbol.iterator, { value: () => [10, 20].values() });
      assert.deepEqual(await pool.map(double, odd), [20, 40]);
    });
  });

  Deno.test(`Pool.map() awaits the promised results among plain ones in a chunk (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 2, startMethod });
    const items = Array.from({ length: 13 }, (_, i) => i);
    assert.deepEqual(await pool.map(oddLater, items, { chunksize: 13 }), items.map((x) => x * 2));
    await assert.rejects(
      pool.map(oddLater, [...items, 13], { chunksize: 14 }),
      (error: Error) => error.name === "RangeError" && error.message === "bad odd 13",
    );
  });

  Deno.test(`Pool.map() over numbers returns each result as it was, int32 or not (${startMethod})`, async (t) => {
    await using pool = new Pool({ processes: 2, startMethod });
    const expected = (x: number) => x === 24 ? 48 : mostlyInts(x);
    const cases: [string, number[]][] = [
      ["others in the middle", Array.from({ length: 64 }, (_, i) => i)],
      ["another first", Array.from({ length: 40 }, (_, i) => 20 + (i % 6))],
      ["a promise first", [24, ...Array.from({ length: 30 }, (_, i) => 30 + i)]],
      ["another last", [...Array.from({ length: 30 }, (_, i) => 30 + i), 23]],
      ["doubles in", Array.from({ length: 30 }, (_, i) => i + 0.25)],
    ];
    for (const [name, items] of cases) {
      await t.step(name, async () => {
        const results = await pool.map(mostlyInts, items, { chunksize: items.length });
        assert.deepEqual(results, items.map(expected));
      });
    }
    await t.step("slow calls, which run one to a run()", async () => {
      // Ints first, so that runs of one call meet the others late.
      const items = [...Array.from({ length: 300 }, (_, i) => 30 + i), 20, 21, 22, 23, 24, 25, 26];
      const want = items.map(expected);
      const results = await pool.map(slowMostlyInts, items, { chunksize: items.length });
      assert.deepEqual(results, want);
      const objects = items.map((i) => ({ i }));
      assert.deepEqual(await pool.map(slowOfObject, objects), want);
    });
    await t.step("starmap() over numbers is refused at the call", async () => {
      const numbers = Array.from({ length: 20 }, (_, i) => i);
      await assert.rejects(pool.starmap(double, numbers as never), {
        name: "TypeError",
        message: "Cannot starmap: each item must be an array of arguments",
      });
    });
  });

  Deno.test(`Pool.apply(), starmap() and the async forms return results (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 2, startMethod });
    assert.equal(await pool.apply(add, [2, 3]), 5);
    assert.deepEqual(await pool.starmap(add, [[1, 2], [3, 4]]), [3, 7]);
    assert.deepEqual(await pool.starmapAsync(add, [[5, 5]]), [10]);
    const result = pool.mapAsync(double, [1, 2]);
    assert.ok(result instanceof AsyncResult);
    assert.throws(() => result.successful(), ValueError);
    await result.wait();
    assert.equal(result.ready(), true);
    assert.equal(result.successful(), true);
    assert.deepEqual(await result.get(), [2, 4]);
    assert.deepEqual(await result, [2, 4], "an AsyncResult is awaitable");
  });

  Deno.test(`Pool.applyAsync() runs exactly one of its callbacks (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 1, startMethod });
    const seen: string[] = [];
    const ok = pool.applyAsync(double, [4], {
      callback: (value) => seen.push(`ok ${value}`),
      errorCallback: () => seen.push("error"),
    });
    const bad = pool.applyAsync(failOn, [3], {
      callback: () => seen.push("ok"),
      errorCallback: (error) => seen.push(`error ${(error as Error).name}`),
    });
    await ok.wait();
    await bad.wait();
    assert.equal(bad.successful(), false);
    assert.deepEqual(seen.sort(), ["error RangeError", "ok 8"]);
  });

  Deno.test(`Pool errors keep their name and message, with the remote stack in cause (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 2, startMethod });
    await assert.rejects(pool.map(failOn, [1, 2, 3, 4], { chunksize: 1 }), (error: unknown) => {
      assert.ok(error instanceof RangeError);
      assert.equal(error.message, "bad item 3");
      assert.ok(error.cause instanceof RemoteError);
      assert.match(error.cause.message, /pool_targets\.ts/);
      return true;
    });
    await assert.rejects(pool.apply(failWithValueError, []), (error: unknown) => {
      return error instanceof ValueError && error.message === "the worker refused";
    });
    // A result that cannot be cloned fails the call, not the pool.
    await assert.rejects(pool.apply(returnsFunction, []), DataCloneError);
    assert.equal(await pool.apply(double, [1]), 2);
  });

  Deno.test(`Pool calls refuse unclonable arguments at the call (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 1, startMethod });
    await assert.rejects(
      pool.map(double as (x: unknown) => number, [1, () => 2]),
      (error: unknown) => error instanceof DataCloneError && /items\[1\]:/.test(error.message),
    );
    assert.throws(
      () => pool.applyAsync(add as (...a: unknown[]) => number, [1, Symbol("x")]),
      (error: unknown) => error instanceof DataCloneError && /args\[1\]:/.test(error.message),
    );
    assert.equal(await pool.apply(add, [1, 1]), 2);
  });

  Deno.test(`Pool.map() runs nothing of a large call whose last item cannot be cloned (${startMethod})`, async () => {
    const calls = new Value("i", 0);
    const pool = new Pool({ processes: 2, initializer: init, initargs: [calls], startMethod });
    assert.deepEqual(await pool.map(countCall, [1, 2], { chunksize: 1 }), [1, 2]);
    // A large map of primitives sends its first chunks before it encodes the
    // rest (the workers are up: they would run them meanwhile); one with
    // something else among the rest must not.
    const items: unknown[] = Array.from({ length: 1_000_000 }, (_, i) => i);
    items.push(() => 0);
    await assert.rejects(
      pool.map(countCall as (x: unknown) => number, items),
      (error: unknown) =>
        error instanceof DataCloneError && /items\[1000000\]:/.test(error.message),
    );
    // The workers run what they were sent before they exit. The count is
    // not atomic: the first map's two calls, made at once, may count as one.
    pool.close();
    await pool.join();
    assert.ok(calls.value <= 2, `${calls.value} calls ran`);
  });

  Deno.test(`Pool.imap() and imapUnordered() read their input lazily (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 2, startMethod });
    let pulled = 0;
    async function* numbers() {
      for (let i = 0; i < 100; i++) {
        pulled++;
        yield i;
      }
    }
    const results: number[] = [];
    for await (const value of pool.imap(double, numbers())) {
      if (results.length === 0) assert.ok(pulled <= 2 * 2 + 1, `pulled ${pulled} items ahead`);
      results.push(value);
    }
    assert.deepEqual(results, Array.from({ length: 100 }, (_, i) => i * 2));
    const unordered: number[] = [];
    for await (const value of pool.imapUnordered(slowDouble, [1, 2, 3, 4, 5], { chunksize: 2 })) {
      unordered.push(value);
    }
    assert.deepEqual(unordered.sort((a, b) => a - b), [2, 4, 6, 8, 10]);
    await assert.rejects(async () => {
      for await (const _ of pool.imap(failOn, [1, 2, 3])) { /* the third fails */ }
    }, RangeError);
  });

  Deno.test(`Pool replaces a worker that dies mid-task and keeps serving (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 2, startMethod });
    const others = pool.map(slowDouble, Array.from({ length: 20 }, (_, i) => i), { chunksize: 1 });
    await assert.rejects(
      pool.map(dieOn, [1, 2, 3, 4], { chunksize: 1 }),
      (error: unknown) => error instanceof WorkerLostError && /exit code 3/.test(error.message),
    );
    assert.deepEqual(await others, Array.from({ length: 20 }, (_, i) => i * 2));
    if (startMethod === "process") {
      await assert.rejects(
        pool.apply(killSelf, []),
        (e: unknown) => e instanceof WorkerLostError && /-9/.test(e.message),
      );
    }
    assert.deepEqual(await pool.map(double, [1, 2, 3]), [2, 4, 6]);
  });

  Deno.test(`Pool calls are cancelled by timeout and signal, even while running (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 1, startMethod });
    await assert.rejects(pool.apply(sleepMs, [60_000], { timeout: 50 }), TimeoutError);
    const controller = new AbortController();
    const running = pool.apply(sleepMs, [60_000], { signal: controller.signal });
    const queued = pool.apply(sleepMs, [60_000], { signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(running, /stop/);
    await assert.rejects(queued, /stop/);
    await assert.rejects(pool.apply(double, [1], { signal: controller.signal }), /stop/);
    // The running task's worker was replaced: the pool still serves.
    assert.equal(await pool.apply(double, [21]), 42);
  });

  Deno.test(`Pool maxTasksPerChild replaces a worker after that many tasks (${startMethod})`, async () => {
    await using pool = new Pool({ processes: 1, maxTasksPerChild: 2, startMethod });
    const names = [];
    for (let i = 0; i < 6; i++) names.push(await pool.apply(workerName, []));
    assert.equal(new Set(names).size, 3, names.join(", "));
  });

  Deno.test(`Pool initializer runs in each worker before tasks (${startMethod})`, async () => {
    await using pool = new Pool({
      processes: 2,
      initializer: init,
      initargs: [{ ready: true }],
      startMethod,
    });
    assert.deepEqual(
      await pool.map(initValue, [0, 1, 2, 3], { chunksize: 1 }),
      Array(4).fill({ ready: true }),
    );
  });

  Deno.test(`Pool with a failing initializer fails calls instead of looping (${startMethod})`, async () => {
    const pool = new Pool({ processes: 1, initializer: initFails, startMethod });
    await assert.rejects(
      pool.apply(double, [1]),
      (e: unknown) => e instanceof ProcessError && /initializer/.test(e.message),
    );
    pool.terminate();
    await pool.join();
  });

  Deno.test(`Pool close(), terminate() and join() follow Python's rules (${startMethod})`, async () => {
    const pool = new Pool({ processes: 2, startMethod });
    await assert.rejects(
      pool.join(),
      (e: unknown) => e instanceof ValueError && /running/.test(e.message),
    );
    const pending = pool.map(slowDouble, [1, 2, 3]);
    pool.close();
    assert.throws(
      () => pool.applyAsync(double, [1]),
      (e: unknown) => e instanceof ValueError && /closed/.test(e.message),
    );
    assert.deepEqual(await pending, [2, 4, 6], "work submitted before close() finishes");
    await pool.join();

    const doomed = new Pool({ processes: 1, startMethod });
    const running = doomed.apply(sleepMs, [60_000]);
    doomed.terminate();
    await assert.rejects(running, /terminated/);
    assert.throws(
      () => doomed.applyAsync(double, [1]),
      (e: unknown) => e instanceof ValueError && /terminated/.test(e.message),
    );
    await doomed.join();
  });
}

Deno.test("Pool() refuses bad options and functions that are not exported", async () => {
  assert.throws(() => new Pool({ processes: 0 }), RangeError);
  assert.throws(() => new Pool({ maxTasksPerChild: 1.5 }), RangeError);
  assert.throws(() => new Pool({ initializer: () => {} }), TypeError);
  await using pool = new Pool({ processes: 1 });
  assert.throws(() => pool.applyAsync((x: number) => x, [1]), TypeError);
  assert.throws(() => pool.mapAsync(double, [1], { chunksize: 0 }), RangeError);
});

for (const method of METHODS) {
  Deno.test(`Pool: a long task's result comes back while the next task of its batch runs (${method})`, async () => {
    await using pool = new Pool({ processes: 1, startMethod: method });
    await pool.apply(double, [1]); // the worker is up
    const flag = new Value("i", 0);
    // Sent together, to the one worker: the second spins until the first's
    // result has reached us (and we set the flag), or 20 s.
    const first = pool.applyAsync(busyFor, [5]);
    const second = pool.applyAsync(busyUntilSet, [flag, 20_000]);
    assert.equal(await first.get(), 5);
    flag.value = 1;
    assert.equal(await second.get(), 1);
  });
}

/** Runs tests/testdata/pool_main.ts as a program of its own, to its end. */
async function poolMain(mode: string, startMethod: StartMethod): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-net",
      "--allow-env",
      new URL("./testdata/pool_main.ts", import.meta.url).pathname,
      mode,
      startMethod,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    return await within(60_000, `pool_main.ts ${mode}`, child.output());
  } finally {
    try {
      child.kill();
    } catch { /* it has exited */ }
  }
}

for (const method of METHODS) {
  Deno.test(`Pool: work in flight keeps a program alive until its callback has run (${method})`, async () => {
    const out = await poolMain("callback", method);
    assert.equal(new TextDecoder().decode(out.stderr), "");
    assert.equal(new TextDecoder().decode(out.stdout), "result 42\n");
    assert.equal(out.code, 0);
  });

  Deno.test(`Pool: a program that ends with an idle pool exits quietly (${method})`, async () => {
    const out = await poolMain("idle", method);
    assert.equal(new TextDecoder().decode(out.stderr), "");
    assert.equal(new TextDecoder().decode(out.stdout), "main done\n");
    assert.equal(out.code, 0);
  });
}
