import assert from "node:assert/strict";
import {
  DataCloneError,
  Lock,
  Process,
  RawArray,
  RawValue,
  RLock,
  SharedArray,
  SharedMemory,
  type StartMethod,
  type Typecode,
  Value,
  ValueError,
} from "../mod.ts";
import { Event } from "../sync.ts";
import {
  addMany,
  createAndHang,
  setAndNegate,
  writeHanded,
  writeKinds,
  writeNamed,
} from "./testdata/shared_targets.ts";
import { within } from "./testdata/helpers.ts";

const METHODS: StartMethod[] = ["process", "worker"];
const SHM_DIR = "/dev/shm";

async function run(method: StartMethod, target: (...args: never[]) => unknown, args: unknown[]) {
  const p = new Process({
    target: target as (...args: unknown[]) => unknown,
    args,
    startMethod: method,
  });
  await p.start();
  await within(30_000, `the ${method} child`, p.join());
  assert.equal(p.exitCode, 0);
}

// Deno asks for --allow-all to read /dev, so the directory is listed by `ls`.
async function listShm(): Promise<Set<string>> {
  const out = await new Deno.Command("ls", { args: ["-1", SHM_DIR], stdout: "piped" }).output();
  return new Set(new TextDecoder().decode(out.stdout).split("\n").filter((n) => n !== ""));
}

async function exists(name: string): Promise<boolean> {
  return (await listShm()).has(name);
}

/** Waits, with a deadline, until the resource tracker removed a segment (polled: /dev is not watchable). */
async function waitGone(name: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (await exists(name)) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${ms} ms waiting for ${name} to be removed`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function ours(): Promise<Set<string>> {
  return new Set([...await listShm()].filter((n) => n.startsWith("psm_")));
}

const WRAPS: [Typecode, number | bigint, number | bigint][] = [
  ["b", 128, -128],
  ["B", 256, 0],
  ["B", -1, 255],
  ["h", 32768, -32768],
  ["H", 65536 + 7, 7],
  ["i", 2 ** 31, -(2 ** 31)],
  ["I", -1, 2 ** 32 - 1],
  ["l", 2n ** 63n, -(2n ** 63n)],
  ["L", -1n, 2n ** 64n - 1n],
  ["q", 2n ** 64n + 5n, 5n],
  ["Q", 2n ** 64n, 0n],
  ["f", 0.1, Math.fround(0.1)],
  ["d", 0.1, 0.1],
];

Deno.test("Value.value wraps on overflow like C", async (t) => {
  for (const method of METHODS) {
    for (const [typecode, stored, read] of WRAPS) {
      await t.step(`${method} ${typecode} ${stored}`, () => {
        const v = new Value(typecode, undefined, { startMethod: method });
        v.value = stored as never;
        assert.equal(v.value, read);
      });
    }
  }
});

Deno.test("Value() starts at 0 or the initial value; 64-bit kinds are bigint", () => {
  assert.equal(new Value("i", undefined, { startMethod: "worker" }).value, 0);
  assert.equal(new Value("q", undefined, { startMethod: "worker" }).value, 0n);
  assert.equal(new Value("d", 2.5, { startMethod: "process" }).value, 2.5);
  assert.equal(new Value("Q", 7n, { startMethod: "process" }).value, 7n);
});

Deno.test("Value() rejects bad type codes and values of the wrong type", () => {
  assert.throws(() => new Value("x" as Typecode, 0, { startMethod: "worker" }), TypeError);
  assert.throws(() => new Value("i", 1.5, { startMethod: "worker" }), TypeError);
  assert.throws(
    () => new Value("q", 1.5 as unknown as bigint, { startMethod: "worker" }),
    TypeError,
  );
  assert.throws(
    () => new Value("d", "1" as unknown as number, { startMethod: "worker" }),
    TypeError,
  );
  const v = new Value("i", 0, { startMethod: "worker" });
  assert.throws(() => (v.value = "2" as unknown as number), TypeError);
});

Deno.test("Value.getLock() returns an RLock, or the lock given, and throws without one", () => {
  for (const method of METHODS) {
    assert.ok(new Value("i", 0, { startMethod: method }).getLock() instanceof RLock);
    const lock = new Lock({ startMethod: method });
    assert.equal(new Value("i", 0, { lock, startMethod: method }).getLock(), lock);
    assert.throws(
      () => new Value("i", 0, { lock: false, startMethod: method }).getLock(),
      ValueError,
    );
    assert.throws(() => new RawValue("i", 0, { startMethod: method }).getLock(), ValueError);
    assert.throws(() => new RawArray("i", 2, { startMethod: method }).getLock(), ValueError);
  }
});

Deno.test("SharedArray.get() and set() count negative indexes from the end and throw RangeError out of range", () => {
  for (const method of METHODS) {
    const a = new SharedArray("i", [1, 2, 3], { startMethod: method });
    assert.equal(a.length, 3);
    assert.equal(a.get(-1), 3);
    a.set(-3, 10);
    assert.equal(a.get(0), 10);
    assert.throws(() => a.get(3), RangeError);
    assert.throws(() => a.get(-4), RangeError);
    assert.throws(() => a.set(5, 1), RangeError);
    assert.throws(() => a.get(0.5), TypeError);
  }
});

Deno.test("SharedArray.toArray(), view and iteration see the same memory", () => {
  for (const method of METHODS) {
    const a = new SharedArray("q", 3, { startMethod: method });
    assert.ok(a.view instanceof BigInt64Array);
    a.view[1] = 5n;
    a.set(2, 2n ** 63n);
    assert.deepEqual(a.toArray(), [0n, 5n, -(2n ** 63n)]);
    assert.deepEqual([...a], [0n, 5n, -(2n ** 63n)]);
    const raw = new RawArray("B", [1, 2, 300], { startMethod: method });
    assert.deepEqual(raw.toArray(), [1, 2, 44]);
  }
});

Deno.test("SharedArray() rejects a bad length", () => {
  assert.throws(() => new SharedArray("i", -1, { startMethod: "worker" }), RangeError);
  assert.throws(() => new SharedArray("i", 1.5, { startMethod: "worker" }), RangeError);
  assert.throws(
    () => new SharedArray("i", {} as unknown as number, { startMethod: "worker" }),
    TypeError,
  );
});

for (const method of METHODS) {
  Deno.test(`Value and SharedArray are shared with a ${method} child without copies`, async () => {
    const d = new Value("d", 0, { startMethod: method });
    const a = new SharedArray("i", Array.from({ length: 10 }, (_, i) => i), {
      startMethod: method,
    });
    await run(method, setAndNegate, [d, a]);
    assert.equal(d.value, 3.1415927);
    assert.deepEqual(a.toArray(), [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
    const big = new Value("q", 0n, { startMethod: method });
    const bytes = new RawArray("B", 3, { startMethod: method });
    await run(method, writeKinds, [big, bytes]);
    assert.equal(big.value, -(2n ** 62n));
    assert.deepEqual(bytes.toArray(), [7, 8, 9]);
  });

  Deno.test(`Value.getLock() makes two ${method} children's increments exact`, async () => {
    const v = new Value("i", 0, { startMethod: method });
    const children = [0, 1].map(() =>
      new Process({ target: addMany, args: [v, 100_000], startMethod: method })
    );
    for (const child of children) await child.start();
    for (const child of children) await within(60_000, "the children", child.join());
    assert.deepEqual(children.map((c) => c.exitCode), [0, 0]);
    assert.equal(v.value, 200_000);
  });
}

Deno.test("Value of the worker context is refused at start() of a process child", async () => {
  const v = new Value("i", 0, { startMethod: "worker" });
  const p = new Process({ target: addMany, args: [v, 1], startMethod: "process" });
  await assert.rejects(() => p.start(), (error: Error) => {
    assert.ok(error instanceof DataCloneError || error instanceof TypeError, error.name);
    assert.match(error.message, /SharedArrayBuffer/);
    assert.match(error.message, /startMethod: "process"/);
    return true;
  });
  assert.equal(p.isAlive(), false);
});

Deno.test({
  name: "Value() in the process context without --allow-ffi names the flag and the alternatives",
  permissions: { read: true, ffi: false },
  fn() {
    assert.throws(() => new Value("i", 0, { startMethod: "process" }), (error: Error) => {
      assert.ok(error instanceof Deno.errors.NotCapable);
      assert.match(error.message, /--allow-ffi/);
      assert.match(error.message, /"worker" context/);
      assert.match(error.message, /Manager/);
      return true;
    });
    assert.throws(
      () => new SharedMemory({ create: true, size: 8, startMethod: "process" }),
      /--allow-ffi/,
    );
    assert.equal(new Value("i", 3, { startMethod: "worker" }).value, 3);
  },
});

Deno.test("SharedMemory() creates, attaches by name, closes and unlinks", async () => {
  for (const method of METHODS) {
    const shm = new SharedMemory({ create: true, size: 100, startMethod: method });
    try {
      assert.match(shm.name, /^psm_/);
      assert.equal(shm.size, 100);
      assert.equal(shm.buf.length, 100);
      const other = new SharedMemory({ name: shm.name, startMethod: method });
      other.buf[99] = 7;
      assert.equal(shm.buf[99], 7);
      other.close();
      assert.equal(other.buf.length, 0);
      assert.throws(
        () => new SharedMemory({ name: shm.name, create: true, size: 1, startMethod: method }),
        Deno.errors.AlreadyExists,
      );
    } finally {
      shm.close();
      shm.unlink();
    }
    assert.throws(
      () => new SharedMemory({ name: shm.name, startMethod: method }),
      Deno.errors.NotFound,
    );
    if (method === "process") assert.equal(await exists(shm.name), false);
  }
});

Deno.test("SharedMemory() rejects bad options", () => {
  assert.throws(
    () => new SharedMemory({ create: true, size: 0, startMethod: "worker" }),
    RangeError,
  );
  assert.throws(() => new SharedMemory({ startMethod: "worker" }), TypeError);
  assert.throws(() => new SharedMemory({ name: "../etc", startMethod: "process" }), TypeError);
});

for (const method of METHODS) {
  Deno.test(`SharedMemory is attached by name from a ${method} child`, async () => {
    using shm = new SharedMemory({ create: true, size: 4096, startMethod: "process" });
    try {
      await run(method, writeNamed, [shm.name, "process"]);
      assert.equal(shm.buf[0], shm.name.length);
      assert.equal(shm.buf[4095], 255);
    } finally {
      shm.unlink();
    }
  });
}

Deno.test("SharedMemory of the worker context is handed to a worker child", async () => {
  using shm = new SharedMemory({ create: true, size: 8, startMethod: "worker" });
  try {
    await run("worker", writeHanded, [shm]);
    assert.equal(shm.buf[1], 42);
  } finally {
    shm.unlink();
  }
});

Deno.test("SharedMemory left by a crashed process child is unlinked by the resource tracker", async () => {
  const done = new Event({ startMethod: "process" });
  const names = new RawArray("B", 64, { startMethod: "process" });
  const child = new Process({ target: createAndHang, args: [done, names], startMethod: "process" });
  await child.start();
  try {
    assert.equal(await done.wait({ timeout: 30_000 }), true);
  } finally {
    child.kill();
    await child.join();
  }
  assert.equal(child.exitCode, -9);
  const name = new TextDecoder().decode(names.view.subarray(0, names.view.indexOf(0)));
  assert.match(name, /^psm_/);
  await waitGone(name, 30_000);
});

Deno.test("SharedMemory left by its creator at exit is unlinked", async () => {
  const script = `
    import { SharedMemory } from ${JSON.stringify(new URL("../shared.ts", import.meta.url).href)};
    const shm = new SharedMemory({ create: true, size: 8, startMethod: "process" });
    console.log(shm.name);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  const name = new TextDecoder().decode(out.stdout).trim();
  assert.match(name, /^psm_/);
  await waitGone(name, 30_000);
});

Deno.test("a run of shared objects in both contexts leaves nothing in /dev/shm", async () => {
  const before = await ours();
  const beforeAll = await listShm();
  for (const method of METHODS) {
    const v = new Value("i", 0, { startMethod: method });
    const a = new SharedArray("d", 100, { startMethod: method });
    await run(method, setAndNegate, [
      new Value("d", 0, { startMethod: method }),
      new SharedArray("i", 3),
    ]);
    await run(method, addMany, [v, 10]);
    assert.equal(v.value, 10);
    a.set(0, 1);
    const shm = new SharedMemory({ create: true, size: 10, startMethod: "process" });
    shm.close();
    shm.unlink();
  }
  const after = await listShm();
  assert.deepEqual(await ours(), before);
  for (const name of after) {
    // Anything new besides segments of other tests running at once would be ours leaking.
    if (!beforeAll.has(name)) assert.ok(name.startsWith("psm_"), `left behind: ${name}`);
  }
});
