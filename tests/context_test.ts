import assert from "node:assert/strict";
import { getContext, Lock, Manager, Pipe, Pool, Process, Queue, Value } from "../mod.ts";
import { pid } from "./testdata/pool_targets.ts";

Deno.test("getContext() members are the package's classes, bound to the start method", () => {
  const ctx = getContext("worker");
  assert.ok(new ctx.Lock() instanceof Lock);
  assert.ok(new ctx.Value("i", 3) instanceof Value);
  assert.equal(new ctx.Value("i", 3).value, 3);
  assert.equal(ctx.Queue, Queue);
  assert.equal(ctx.Pipe, Pipe);
  assert.equal(ctx.Process.name, "Process");
  assert.ok(ctx.Manager.prototype instanceof Manager);
});

Deno.test("getContext().Pool starts its workers with the context's start method", async () => {
  for (const method of ["worker", "process"] as const) {
    await using pool = new (getContext(method).Pool)({ processes: 1 });
    assert.ok(pool instanceof Pool);
    const childPid = await pool.apply(pid, []);
    // A worker shares this process's pid; a "process" child has its own.
    assert.equal(childPid === Deno.pid, method === "worker", method);
  }
});

Deno.test("getContext().Manager starts a server and hands out proxies", async () => {
  await using manager = await getContext("worker").Manager.start();
  const list = await manager.list([1]);
  await list.append(2);
  assert.deepEqual(await list.toArray(), [1, 2]);
});

Deno.test("a context's Process is Process itself to subclass checks", () => {
  const ctx = getContext("process");
  const p = new ctx.Process({ target: pid });
  assert.ok(p instanceof Process);
  assert.equal(p.startMethod, "process");
});
