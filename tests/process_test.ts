import assert from "node:assert/strict";
import {
  activeChildren,
  cpuCount,
  currentProcess,
  DataCloneError,
  getContext,
  getStartMethod,
  parentProcess,
  Process,
  setStartMethod,
  type StartMethod,
  ValueError,
} from "../mod.ts";
import {
  asyncEcho,
  checkToken,
  echoArgs,
  exitWith,
  fail,
  Greeter,
  probeReads,
  sleepForever,
  startGrandchild,
  whoAmI,
  writeResult,
} from "./testdata/targets.ts";
import { sweepSocketDirs } from "../_socket.ts";
import { v8Flags } from "../_state.ts";
import { makeHidden } from "./testdata/not_exported.ts";
import { Token } from "./testdata/token.ts";
import { within } from "./testdata/helpers.ts";

const METHODS: StartMethod[] = ["process", "worker"];
const TESTDATA = new URL("./testdata/", import.meta.url);

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seed-mp-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function readResult(path: string): unknown {
  return JSON.parse(Deno.readTextFileSync(path));
}

/** Whether an OS process is gone (or a zombie nobody will run again). */
async function gone(pid: number): Promise<boolean> {
  // Deno allows reading /proc/<pid> only with --allow-all: ask ps.
  const out = await new Deno.Command("ps", { args: ["-o", "stat=", "-p", String(pid)] }).output();
  const state = new TextDecoder().decode(out.stdout).trim();
  return state === "" || state.startsWith("Z");
}

/** Waits until the OS process is gone, checking each 20 ms, up to a deadline. */
async function waitGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!await gone(pid)) {
    if (Date.now() > deadline) throw new Error(`Process ${pid} is still alive after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function driver(
  args: string[],
  flags = ["--allow-read", "--allow-write", "--allow-run"],
  cwd?: string,
) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, new URL("driver.ts", TESTDATA).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
    ...(cwd === undefined ? {} : { cwd }),
  });
}

for (const method of METHODS) {
  Deno.test(`Process.start() runs the target with its args in a ${method} child`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/out.json`;
      const args = [1, "two", { three: [3n.toString()] }, null];
      await using p = new Process({ target: echoArgs, args: [path, ...args], startMethod: method });
      assert.equal(p.isAlive(), false);
      await p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      assert.equal(p.isAlive(), false);
      assert.deepEqual(readResult(path), args);
    });
  });

  Deno.test(`Process args keep structured-clone types in a ${method} child`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/out.json`;
      await using p = new Process({
        target: asyncEcho,
        args: [path, 12345678901234567890n],
        startMethod: method,
      });
      await p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      // The child got a bigint: typeof is reported from there.
      assert.deepEqual(readResult(path), { type: "bigint", text: "12345678901234567890" });
    });
  });

  Deno.test(`Process.exitCode is 1 when the ${method} target throws`, async () => {
    await using p = new Process({
      target: fail,
      args: ["expected failure (this output is part of the test)"],
      startMethod: method,
    });
    await p.start();
    await p.join();
    assert.equal(p.exitCode, 1);
  });

  Deno.test(`Process.exitCode is n after Deno.exit(n) in a ${method} child`, async () => {
    await using p = new Process({ target: exitWith, args: [7], startMethod: method });
    await p.start();
    await p.join();
    assert.equal(p.exitCode, 7);
  });

  Deno.test(`Process.terminate() gives exit code -15 and kill() -9 for a ${method} child`, async () => {
    for (const [action, code] of [["terminate", -15], ["kill", -9]] as const) {
      await using p = new Process({ target: sleepForever, startMethod: method });
      await p.start();
      assert.equal(p.isAlive(), true);
      assert.ok(activeChildren().includes(p));
      p[action]();
      await within(10_000, `${action} to end the child`, p.join());
      assert.equal(p.exitCode, code);
      assert.equal(p.isAlive(), false);
      assert.ok(!activeChildren().includes(p));
    }
  });

  Deno.test(`Process.terminate() during start() ends the ${method} child once it exists`, async () => {
    const p = new Process({ target: sleepForever, startMethod: method });
    const starting = p.start();
    p.terminate();
    await starting.catch(() => {}); // A worker may end before it reports that it runs.
    await within(10_000, "the child to end", p.join());
    assert.equal(p.exitCode, -15);
    p.close();
  });

  Deno.test(`Process.join() with a timeout returns while a ${method} child still runs`, async () => {
    await using p = new Process({ target: sleepForever, startMethod: method });
    await p.start();
    await p.join({ timeout: 50 });
    assert.equal(p.isAlive(), true);
    assert.equal(p.exitCode, null);
    assert.throws(
      () => p.close(),
      (e: unknown) => e instanceof ValueError && /still running/.test(e.message),
    );
    p.kill();
    await p.join();
  });

  Deno.test(`Process[Symbol.asyncDispose]() terminates a running ${method} child`, async () => {
    const p = new Process({ target: sleepForever, startMethod: method });
    await p.start();
    await p[Symbol.asyncDispose]();
    assert.equal(p.exitCode, -15);
    assert.throws(() => p.isAlive(), ValueError);
    await p[Symbol.asyncDispose](); // idempotent
  });

  Deno.test(`Process.pid is set for "process" children only (${method})`, async () => {
    await using p = new Process({
      target: writeResult,
      args: ["/dev/null", 1],
      startMethod: method,
    });
    assert.equal(p.pid, undefined);
    await p.start();
    if (method === "process") assert.equal(typeof p.pid, "number");
    else assert.equal(p.pid, undefined);
    await p.join();
  });

  Deno.test(`currentProcess() and parentProcess() describe a ${method} child`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/who.json`;
      await using p = new Process({
        target: whoAmI,
        args: [path],
        name: "named-child",
        daemon: true,
        startMethod: method,
      });
      await p.start();
      await p.join();
      const who = readResult(path) as {
        current: { name: string; pid: number; daemon: boolean };
        parent: unknown;
      };
      assert.equal(who.current.name, "named-child");
      assert.equal(who.current.daemon, true);
      assert.equal(who.current.pid, method === "process" ? p.pid : Deno.pid);
      assert.deepEqual(who.parent, { name: "MainProcess", pid: Deno.pid });
    });
  });

  Deno.test(`a ${method} child can start its own children, named Process-N:M`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/grandchild.json`;
      await using p = new Process({
        target: startGrandchild,
        args: [path, method],
        startMethod: method,
      });
      await p.start();
      await p.join();
      assert.equal(p.exitCode, 0);
      const who = readResult(path) as { current: { name: string }; parent: { name: string } };
      assert.equal(who.parent.name, p.name);
      assert.match(who.current.name, new RegExp(`^${p.name}:1$`));
    });
  });

  Deno.test(`a Process subclass runs its run() on a copy of its fields in a ${method} child`, async () => {
    await withTempDir(async (dir) => {
      const greeter = new Greeter({ name: "greeter", startMethod: method });
      greeter.path = `${dir}/greeter.json`;
      await greeter.start();
      await greeter.join();
      assert.equal(greeter.exitCode, 0);
      assert.deepEqual(readResult(greeter.path), {
        greeting: "hello from child",
        name: "greeter",
        isGreeter: true,
        pid: method === "process" ? greeter.pid : null,
      });
      assert.equal(greeter.greeting, "hello", "what run() changes stays in the child");
      greeter.close();
    });
  });

  Deno.test(`handles in args arrive as revived handles in a ${method} child`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/token.json`;
      const token = new Token(42);
      await using p = new Process({
        target: checkToken,
        args: [path, { deep: [token, token] }],
        startMethod: method,
      });
      await p.start();
      await p.join();
      assert.deepEqual(readResult(path), { isToken: true, revived: true, id: 42, same: true });
    });
  });

  Deno.test(`Process.start() rejects unclonable args with DataCloneError for a ${method} child`, async () => {
    const p = new Process({
      target: echoArgs,
      args: ["/dev/null", { ok: 1, deep: [{ fn: () => 1 }] }],
      startMethod: method,
    });
    await assert.rejects(
      () => p.start(),
      (e: unknown) => e instanceof DataCloneError && e.message.includes("args[1].deep[0].fn"),
    );
    assert.equal(p.isAlive(), false, "nothing was started");
    assert.deepEqual(activeChildren(), []);
  });

  Deno.test(`a parent leaves no ${method} child behind when it exits`, async () => {
    await withTempDir(async (dir) => {
      const out = await driver(["exit", dir, method]).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      // The non-daemon child was joined: it wrote its file before the parent ended.
      assert.equal(readResult(`${dir}/joined.json`), "late");
      const pids = JSON.parse(text) as { daemon?: number };
      if (method === "process") await waitGone(pids.daemon!, 5_000);
    });
  });

  Deno.test(`a ${method} child's output goes where the parent's goes`, async () => {
    const out = await driver(["stdout", ".", method]).output();
    assert.equal(out.code, 0);
    assert.match(new TextDecoder().decode(out.stdout), /hello from the child/);
  });

  Deno.test(`a throwing ${method} target prints the error and its stack on stderr`, async () => {
    const out = await driver(["throws", ".", method]).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), { exitCode: 1 });
    assert.match(stderr, /RangeError: bad input in the child/);
    assert.match(stderr, /targets\.ts:\d+/, "the stack names the target's module");
  });

  Deno.test(`a ${method} child resolves bare specifiers with the parent's deno.json`, async () => {
    await withTempDir(async (dir) => {
      const bare = new URL("bare/", TESTDATA).pathname;
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          "--allow-write",
          "--allow-run",
          "main.ts",
          `${dir}/bare.txt`,
          method,
        ],
        cwd: bare,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.equal(Deno.readTextFileSync(`${dir}/bare.txt`), "hello through a bare specifier");
    });
  });
}

Deno.test("a child does not run its target module's import.meta.main code", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/out.json`;
    await using p = new Process({ target: writeResult, args: [path, "child ran"] });
    await p.start();
    await p.join();
    assert.equal(readResult(path), "child ran");
    // targets.ts writes "main-ran" (relative to the cwd) under import.meta.main.
    assert.throws(() => Deno.statSync("main-ran"), Deno.errors.NotFound);
  });
});

Deno.test("Process() refuses an anonymous target with a TypeError", () => {
  assert.throws(
    () => new Process({ target: (() => () => {})() }),
    (e: unknown) => e instanceof TypeError && /anonymous or bound/.test(e.message),
  );
  assert.throws(() => new Process({ target: echoArgs.bind(null) }), TypeError);
});

Deno.test("Process() refuses a target that is not exported, naming it and its module", () => {
  assert.throws(
    () => makeHidden(),
    (e: unknown) =>
      e instanceof TypeError && e.message.includes('"hidden"') &&
      e.message.includes("not_exported.ts") && e.message.includes("export"),
  );
});

Deno.test("Process() refuses options of the wrong type", () => {
  assert.throws(() => new Process({ target: echoArgs, args: "x" as never }), TypeError);
  assert.throws(
    () => new Process({ target: echoArgs, startMethod: "fork" as StartMethod }),
    TypeError,
  );
  assert.throws(
    () => new Process({ target: echoArgs, permissions: { disk: true } as never }),
    TypeError,
  );
  assert.throws(
    () => new Process({ target: echoArgs, startMethod: "worker", permissions: { read: true } }),
    (e: unknown) => e instanceof TypeError && /"process" start method/.test(e.message),
  );
});

Deno.test("Process.start() twice, join() before start() and use after close() fail with ValueError", async () => {
  const p = new Process({ target: writeResult, args: ["/dev/null", 0] });
  await assert.rejects(
    () => p.join(),
    (e: unknown) => e instanceof ValueError && /not started/.test(e.message),
  );
  await p.start();
  await assert.rejects(
    () => p.start(),
    (e: unknown) => e instanceof ValueError && /already started/.test(e.message),
  );
  assert.throws(() => (p.daemon = true), ValueError);
  await p.join();
  p.close();
  p.close(); // a second close is a no-op
  await assert.rejects(
    () => p.start(),
    (e: unknown) => e instanceof ValueError && /closed/.test(e.message),
  );
  assert.throws(() => p.isAlive(), ValueError);
});

Deno.test("Process with narrowed permissions is denied what it was not given", async () => {
  await withTempDir(async (dir) => {
    const allowed = `${dir}/allowed.txt`;
    const denied = `${dir}/denied.txt`;
    Deno.writeTextFileSync(allowed, "yes");
    Deno.writeTextFileSync(denied, "no");
    await using narrowed = new Process({
      target: probeReads,
      args: [allowed, denied],
      permissions: { read: [allowed] },
    });
    await narrowed.start();
    await narrowed.join();
    assert.equal(
      narrowed.exitCode,
      0,
      "the narrowed child read what it was given and was denied the rest",
    );
    // The same probe fails under "inherit": the parent may read both files.
    await using inherited = new Process({ target: probeReads, args: [allowed, denied] });
    await inherited.start();
    await inherited.join();
    assert.equal(inherited.exitCode, 1);
  });
});

Deno.test("a child inherits what its parent is denied", async () => {
  await withTempDir(async (dir) => {
    const out = await driver(["deny", dir], [
      "--allow-read",
      "--allow-write",
      "--allow-run",
      `--deny-read=${dir}/secret.txt`,
    ]).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), { exitCodes: [0, 0] });
  });
});

Deno.test("Process.start() names --allow-run when the parent may not run deno", async () => {
  const out = await driver(["start", ".", "process"], ["--allow-read"]).output();
  assert.match(new TextDecoder().decode(out.stdout), /--allow-run/);
});

Deno.test("Process.start() names --allow-read when a worker's module may not be read", async () => {
  const out = await driver(["start", ".", "worker"], [
    `--allow-read=${new URL("driver.ts", TESTDATA).pathname}`,
  ]).output();
  assert.match(new TextDecoder().decode(out.stdout), /--allow-read/);
});

Deno.test("a process child exits by itself when its parent is killed with SIGKILL", async () => {
  const parent = driver(["killed", "."]).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await within(10_000, "the child's pid", reader.read());
    if (done) break;
    text += value;
  }
  const { child } = JSON.parse(text) as { child: number };
  assert.equal(await gone(child), false);
  parent.kill("SIGKILL");
  await parent.status;
  await reader.cancel();
  await parent.stderr.cancel();
  await waitGone(child, 3_000);
});

Deno.test({
  name: "a process child with V8 flags is started with --no-code-cache; one without them is not",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const seen: string[] = [];
    for (const flags of [["--single-threaded"], undefined]) {
      await using p = new Process({ target: sleepForever, startMethod: "process" });
      if (flags !== undefined) v8Flags.set(p, flags);
      await p.start();
      const ps = await new Deno.Command("ps", { args: ["-o", "args=", "-p", String(p.pid)] })
        .output();
      seen.push(new TextDecoder().decode(ps.stdout));
      p.terminate();
      await p.join();
    }
    const [flagged, plain] = seen.map((line) => line.trim().split(/\s+/)) as [string[], string[]];
    assert.ok(flagged.includes("--v8-flags=--single-threaded"), flagged.join(" "));
    assert.ok(flagged.includes("--no-code-cache"), flagged.join(" "));
    assert.ok(plain.includes("run") && !plain.includes("--no-code-cache"), plain.join(" "));
    assert.ok(!plain.some((arg) => arg.startsWith("--v8-flags")), plain.join(" "));
  },
});

Deno.test("currentProcess(), parentProcess() and cpuCount() in the main program", () => {
  assert.deepEqual(currentProcess(), { name: "MainProcess", pid: Deno.pid, daemon: false });
  assert.equal(parentProcess(), null);
  assert.ok(Number.isInteger(cpuCount()) && cpuCount() >= 1);
});

Deno.test("getContext() binds Process to a start method; setStartMethod() changes the default", () => {
  assert.equal(getStartMethod(), "process");
  const ctx = getContext("worker");
  assert.equal(ctx.startMethod, "worker");
  assert.equal(getContext("worker"), ctx);
  const p = new ctx.Process({ target: writeResult });
  assert.ok(p instanceof Process);
  assert.equal(p.startMethod, "worker");
  assert.equal(
    new ctx.Process({ target: writeResult, startMethod: "process" }).startMethod,
    "process",
  );
  setStartMethod("worker");
  try {
    assert.equal(new Process({ target: writeResult }).startMethod, "worker");
    assert.equal(getContext().startMethod, "worker");
  } finally {
    setStartMethod("process");
  }
  assert.throws(() => setStartMethod("spawn" as StartMethod), TypeError);
});

Deno.test("Process default names count up: Process-N", () => {
  const a = new Process({ target: writeResult });
  const b = new Process({ target: writeResult });
  const n = Number(a.name.split("-")[1]);
  assert.match(a.name, /^Process-\d+$/);
  assert.equal(b.name, `Process-${n + 1}`);
});

Deno.test("a socket that cannot be listened on fails the call and leaves no socket dir", async () => {
  const run = driver(["no-net"], ["--allow-read", "--allow-write", "--allow-run"]).spawn();
  const out = await run.output();
  assert.equal(out.code, 0);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), { error: "NotCapable" });
  const base = Deno.env.get("TMPDIR") ?? "/tmp";
  const left = [...Deno.readDirSync(base)].filter((e) => e.name.startsWith(`seed-mp-${run.pid}-`));
  assert.deepEqual(left, []);
});

Deno.test("the socket dir of a program that died of an uncaught error is swept by the next", async () => {
  const run = driver(["uncaught"], ["--allow-read", "--allow-write", "--allow-run", "--allow-net"])
    .spawn();
  const out = await run.output();
  assert.equal(out.code, 1);
  assert.match(new TextDecoder().decode(out.stderr), /left uncaught on purpose/);
  await waitGone(JSON.parse(new TextDecoder().decode(out.stdout)).daemon, 10_000);
  // Without --allow-all, /dev/shm is out of reach: the driver's dir is in the temp dir.
  const base = Deno.env.get("TMPDIR") ?? "/tmp";
  const ours = () =>
    [...Deno.readDirSync(base)].map((e) => e.name).filter((name) =>
      name.startsWith(`seed-mp-${run.pid}-`)
    ).sort();
  const [left] = ours();
  assert.ok(left !== undefined, "the dead program's socket dir is there to sweep");
  // Kept: a dir that is not empty, and one touched within the minute.
  const full = `seed-mp-${run.pid}-full`, fresh = `seed-mp-${run.pid}-fresh`;
  Deno.mkdirSync(`${base}/${full}`);
  Deno.writeFileSync(`${base}/${full}/file`, new Uint8Array(1));
  Deno.mkdirSync(`${base}/${fresh}`);
  try {
    const old = new Date(Date.now() - 120_000);
    Deno.utimeSync(`${base}/${left}`, old, old);
    Deno.utimeSync(`${base}/${full}`, old, old);
    sweepSocketDirs(base);
    assert.deepEqual(ours(), [fresh, full].sort());
  } finally {
    for (const name of ours()) Deno.removeSync(`${base}/${name}`, { recursive: true });
  }
});
