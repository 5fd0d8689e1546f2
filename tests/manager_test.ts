import assert from "node:assert/strict";
import {
  AuthenticationError,
  BrokenBarrierError,
  type DictProxy,
  Empty,
  Full,
  Manager,
  Process,
  type QueueProxy,
  type StartMethod,
  TimeoutError,
  ValueError,
} from "../mod.ts";
import { answerChallenge, channelFor, deliverChallenge, proxyRefs } from "../_manager_client.ts";
import { encode } from "../_codec.ts";
import {
  appendRecords,
  type Counter,
  disposeLast,
  echoQueue,
  getForever,
  holdLockForever,
  incrementMany,
  transform,
  useCounter,
  useNested,
} from "./testdata/manager_targets.ts";
import { within } from "./testdata/helpers.ts";

const METHODS: StartMethod[] = ["process", "worker"];
const TESTDATA = new URL("./testdata/", import.meta.url);
const LOCALHOST = "127.0.0.1";

Manager.register("Counter", {
  module: new URL("manager_targets.ts", TESTDATA),
  export: "Counter",
});

async function run(
  target: (...args: never[]) => unknown,
  args: unknown[],
  startMethod: StartMethod,
) {
  const p = new Process({ target, args, startMethod } as ConstructorParameters<typeof Process>[0]);
  await p.start();
  await within(30_000, "the child to finish", p.join());
  assert.equal(p.exitCode, 0);
  p.close();
}

interface Stats {
  objects: number;
  names: number;
  clients: number;
}

async function stats(manager: Manager): Promise<Stats> {
  const endpoint = { address: manager.address, authkey: manager.authkey };
  return await channelFor(endpoint).request(0, "stats", []) as Stats;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

for (const method of METHODS) {
  Deno.test(`Manager.start() serves a list that a ${method} child appends records to`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const list = await manager.list<{ id: number; name: string }>();
    await run(appendRecords, [list, 3], method);
    assert.deepEqual(await list.toArray(), [
      { id: 0, name: "record 0" },
      { id: 1, name: "record 1" },
      { id: 2, name: "record 2" },
    ]);
  });

  Deno.test(`Manager.list() proxies every list method (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const list = await manager.list([3, 1, 2]);
    await list.append(5);
    await list.extend([4, 4]);
    assert.equal(await list.length(), 6);
    assert.equal(await list.get(0), 3);
    assert.equal(await list.get(-1), 4);
    await list.set(-1, 0);
    await list.insert(0, 9);
    assert.deepEqual(await list.toArray(), [9, 3, 1, 2, 5, 4, 0]);
    assert.equal(await list.pop(), 0);
    assert.equal(await list.pop(0), 9);
    await list.remove(4);
    assert.equal(await list.index(2), 2);
    assert.equal(await list.count(5), 1);
    assert.deepEqual(await list.slice(1, -1), [1, 2]);
    await list.sort();
    assert.deepEqual(await list.toArray(), [1, 2, 3, 5]);
    await list.sort({ reverse: true });
    await list.reverse();
    assert.deepEqual(await list.toArray(), [1, 2, 3, 5]);
    const seen: number[] = [];
    for await (const item of list) seen.push(item);
    assert.deepEqual(seen, [1, 2, 3, 5]);
    await assert.rejects(list.get(10), { name: "RangeError", message: /index 10/ });
    await assert.rejects(list.remove(42), ValueError);
    await list.clear();
    assert.equal(await list.length(), 0);
    await assert.rejects(list.pop(), RangeError);
  });

  Deno.test(`Manager.dict() proxies every dict method (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const dict = await manager.dict<string | number, unknown>({ a: 1 });
    await dict.set("b", [1, { deep: true }]);
    await dict.set(3, "three");
    assert.deepEqual(await dict.get("b"), [1, { deep: true }]);
    assert.equal(await dict.get("missing"), undefined);
    assert.equal(await dict.get("missing", "fallback"), "fallback");
    assert.equal(await dict.has(3), true);
    assert.equal(await dict.has("3"), false);
    assert.deepEqual(await dict.keys(), ["a", "b", 3]);
    assert.equal(await dict.size(), 3);
    await dict.update({ c: 4 });
    await dict.update(new Map([["d", 5]]));
    assert.equal(await dict.setdefault("c", 0), 4);
    assert.equal(await dict.setdefault("e", 6), 6);
    assert.equal(await dict.pop("e"), 6);
    assert.equal(await dict.pop("e", "gone"), "gone");
    await assert.rejects(dict.pop("e"), RangeError);
    assert.deepEqual(await dict.popitem(), ["d", 5]);
    assert.equal(await dict.delete("c"), true);
    assert.equal(await dict.delete("c"), false);
    assert.deepEqual(await dict.entries(), [["a", 1], ["b", [1, { deep: true }]], [3, "three"]]);
    assert.deepEqual(await dict.toObject(), { a: 1, b: [1, { deep: true }], 3: "three" });
    await assert.rejects(dict.set({} as never, 1), { name: "TypeError", message: /dict key/ });
    await dict.clear();
    assert.equal(await dict.size(), 0);
  });

  Deno.test(`Manager.namespace() lets a ${method} child turn x=1, y=1 into x=6, y=10`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const ns = await manager.namespace({ x: 1, y: 1 });
    await run(transform, [ns], method);
    assert.deepEqual(await ns.toObject(), { x: 6, y: 10 });
    assert.equal(await ns.has("x"), true);
    assert.equal(await ns.delete("x"), true);
    assert.equal(await ns.get("x"), undefined);
  });

  Deno.test(`Manager.Queue() carries items to and from a ${method} child`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const requests = await manager.Queue<number>();
    const replies = await manager.Queue<number>();
    const child = new Process({
      target: echoQueue,
      args: [requests, replies],
      startMethod: method,
    });
    await child.start();
    for (let i = 1; i <= 5; i++) await requests.put(i);
    await requests.put(-1);
    const got: number[] = [];
    for (let i = 0; i < 5; i++) got.push(await replies.get({ timeout: 20_000 }));
    assert.deepEqual(got, [2, 4, 6, 8, 10]);
    await within(20_000, "the child to finish", child.join());
    assert.equal(child.exitCode, 0);
    child.close();
  });

  Deno.test(`Manager.Queue() rejects with Empty and Full, and honours a signal (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const queue = await manager.Queue<string>(1);
    await assert.rejects(queue.get({ timeout: 0 }), Empty);
    await assert.rejects(queue.getNowait(), Empty);
    await assert.rejects(queue.get({ timeout: 30 }), Empty);
    await queue.put("a");
    assert.equal(await queue.full(), true);
    await assert.rejects(queue.putNowait("b"), { name: "Full", message: /maxsize is 1/ });
    await assert.rejects(queue.put("b", { timeout: 30 }), Full);
    assert.equal(await queue.qsize(), 1);
    assert.equal(await queue.get(), "a");
    assert.equal(await queue.empty(), true);
    // An aborted get leaves the queue: the next item goes to the next getter.
    const controller = new AbortController();
    const waiting = queue.get({ signal: controller.signal });
    controller.abort(new Error("stop waiting"));
    await assert.rejects(waiting, { message: "stop waiting" });
    await queue.put("c");
    assert.equal(await queue.get({ timeout: 5_000 }), "c");
  });

  Deno.test(`Manager.JoinableQueue() joins once every item is done (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const queue = await manager.JoinableQueue<number>();
    await queue.put(1);
    await queue.put(2);
    let joined = false;
    const join = queue.join().then(() => joined = true);
    await queue.get();
    await queue.taskDone();
    await queue.get();
    assert.equal(joined, false);
    await queue.taskDone();
    await within(5_000, "join", join);
    assert.equal(joined, true);
    await assert.rejects(queue.taskDone(), ValueError);
  });

  Deno.test(`Manager.Value() and Manager.Array() wrap as C types (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const value = await manager.Value("b", 127);
    await value.set(128);
    assert.equal(await value.get(), -128);
    const big = await manager.Value("q", 1n);
    await big.set(2n ** 63n);
    assert.equal(await big.get(), -(2n ** 63n));
    await assert.rejects(big.set(1 as never), TypeError);
    const array = await manager.Array("i", [1, 2, 3]);
    await array.set(-1, 2 ** 31);
    assert.deepEqual(await array.toArray(), [1, 2, -(2 ** 31)]);
    assert.equal(await array.length(), 3);
    await assert.rejects(array.get(3), RangeError);
    const zeros = await manager.Array("d", 2);
    assert.deepEqual(await zeros.toArray(), [0, 0]);
    await assert.rejects(manager.Value("z" as "i", 1), {
      name: "TypeError",
      message: /typecode/,
    });
  });

  Deno.test(`Manager.Lock() keeps increments from a ${method} child and the parent whole`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const value = await manager.Value("i", 0);
    const lock = await manager.Lock();
    const child = new Process({
      target: incrementMany,
      args: [value, lock, 50],
      startMethod: method,
    });
    await child.start();
    await incrementMany(value, lock, 50);
    await within(30_000, "the child", child.join());
    assert.equal(child.exitCode, 0);
    child.close();
    assert.equal(await value.get(), 100);
  });

  Deno.test(`Manager sync primitives behave as Python's (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const lock = await manager.Lock();
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ timeout: 0 }), false);
    assert.equal(await lock.locked(), true);
    await lock.release();
    await assert.rejects(lock.release(), ValueError);
    {
      await using _ = await lock.hold();
      await assert.rejects(lock.hold({ timeout: 10 }), TimeoutError);
    }
    assert.equal(await lock.locked(), false);

    const rlock = await manager.RLock();
    assert.equal(await rlock.acquire(), true);
    assert.equal(await rlock.acquire({ timeout: 0 }), true);
    await rlock.release();
    await rlock.release();
    await assert.rejects(rlock.release(), ValueError);

    const sem = await manager.Semaphore(2);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire({ timeout: 0 }), false);
    await sem.release();
    assert.equal(await sem.getValue(), 1);
    const bounded = await manager.BoundedSemaphore(1);
    await assert.rejects(bounded.release(), ValueError);

    const event = await manager.Event();
    assert.equal(await event.wait({ timeout: 10 }), false);
    const waiting = event.wait({ timeout: 10_000 });
    await event.set();
    assert.equal(await waiting, true);
    assert.equal(await event.isSet(), true);
    await event.clear();
    assert.equal(await event.isSet(), false);

    const cond = await manager.Condition(await manager.RLock());
    await assert.rejects(cond.wait({ timeout: 0 }), ValueError);
    await cond.acquire();
    assert.equal(await cond.wait({ timeout: 10 }), false);
    await cond.notifyAll();
    assert.equal(await cond.waitFor(() => "ready"), "ready");
    assert.equal(await cond.waitFor(() => false, { timeout: 20 }), false);
    await cond.release();

    const barrier = await manager.Barrier(3);
    assert.equal(await barrier.parties(), 3);
    const arrivals = Promise.all([barrier.wait(), barrier.wait(), barrier.wait()]);
    assert.deepEqual((await arrivals).sort(), [0, 1, 2]);
    const lonely = barrier.wait({ timeout: 20 });
    await assert.rejects(lonely, BrokenBarrierError);
    assert.equal(await barrier.broken(), true);
    await barrier.reset();
    assert.equal(await barrier.broken(), false);
    assert.equal(await barrier.nWaiting(), 0);
    const aborted = barrier.wait();
    await barrier.abort();
    await assert.rejects(aborted, BrokenBarrierError);
  });

  Deno.test(`Manager.register() serves a class whose methods a ${method} child calls`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const counter = await manager.create<Counter>("Counter", 5);
    assert.equal(counter.typeid, "Counter");
    assert.equal(await counter.increment(), 6);
    assert.equal(await counter.slowValue(), 6);
    await run(useCounter, [counter], method);
    assert.equal(await counter.slowValue(), 16);
    await assert.rejects(counter.fail("bad input"), { name: "RangeError", message: "bad input" });
    assert.equal("_hidden" in counter, false);
    await assert.rejects(manager.create("Nope"), {
      name: "TypeError",
      message: /Manager.register/,
    });
  });

  Deno.test(`Manager proxies travel inside other shared objects to a ${method} child`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const queue = await manager.Queue<string>();
    const dict: DictProxy<string, unknown> = await manager.dict();
    await dict.set("queue", queue);
    queue.dispose(); // the dict still holds the queue
    await run(useNested, [dict], method);
    const again = await dict.get("queue") as QueueProxy<string>;
    assert.equal(await again.get({ timeout: 5_000 }), "nested works");
  });

  Deno.test(`Manager frees an object when its last proxy is disposed (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const before = (await stats(manager)).objects;
    const list = await manager.list([1]);
    const copy = await manager.dict();
    await copy.set("list", list);
    assert.equal((await stats(manager)).objects, before + 2);
    list.dispose();
    await assert.rejects(list.append(2), { name: "ValueError", message: /released/ });
    const held = await copy.get("list") as { dispose(): void };
    await copy.delete("list");
    // The list lives while `held` does.
    assert.equal((await stats(manager)).objects, before + 2);
    held.dispose();
    copy.dispose();
    // decref is sent without an answer: the next answered call comes after it.
    // The dict goes at once; the list when the server's own reference to it,
    // dropped by delete(), is garbage-collected, which may be now or later.
    const after = (await stats(manager)).objects;
    assert.ok(after === before || after === before + 1, `${after - before} objects left`);
  });

  Deno.test(`Manager gets a child's last dispose() before the child exits (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const before = (await stats(manager)).objects;
    const list = await manager.list([1]);
    await using child = new Process({ target: disposeLast, args: [list] });
    await child.start();
    await child.join();
    assert.equal(child.exitCode, 0);
    list.dispose();
    // The child's incref and decref come on its own connection: wait for them.
    const deadline = Date.now() + 5_000;
    while ((await stats(manager)).objects !== before) {
      if (Date.now() > deadline) assert.fail("the child's decref never reached the manager");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  Deno.test(`Manager proxy calls reject with a clear error for a missing method (${method} server)`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const list = await manager.list();
    await assert.rejects(proxyRefs.get(list)!.call("nope", []), {
      name: "TypeError",
      message: /Cannot call nope\(\) on a shared list: it has no such method/,
    });
    const counter = await manager.create<Counter>("Counter");
    await assert.rejects(proxyRefs.get(counter)!.call("_hidden", []), {
      name: "TypeError",
      message: /no such method/,
    });
    await assert.rejects(proxyRefs.get(counter)!.call("constructor", []), TypeError);
    const channel = channelFor({ address: manager.address, authkey: manager.authkey });
    await assert.rejects(channel.request(999, "append", [1]), {
      name: "ValueError",
      message: /released/,
    });
    await assert.rejects(channel.request(0, "eval", ["1"]), TypeError);
  });

  Deno.test(`Manager.shutdown() ends the ${method} server and everything it owns`, async () => {
    const manager = await Manager.start({ startMethod: method });
    const path = manager.address as string;
    assert.ok(exists(path));
    const list = await manager.list([1]);
    await manager.shutdown();
    await manager.shutdown();
    assert.equal(exists(path), false);
    await assert.rejects(list.length(), /shut down/);
  });

  Deno.test(`Manager frees the locks and waits of a killed ${method} client`, async () => {
    await using manager = await Manager.start({ startMethod: method });
    const lock = await manager.Lock();
    const ready = await manager.Queue<string>();
    const queue = await manager.Queue<string>();
    const holder = new Process({
      target: holdLockForever,
      args: [lock, ready],
      startMethod: method,
    });
    const getter = new Process({ target: getForever, args: [queue, ready], startMethod: method });
    await holder.start();
    await getter.start();
    const said = [await ready.get({ timeout: 20_000 }), await ready.get({ timeout: 20_000 })];
    assert.deepEqual(said.sort(), ["locked", "waiting"]);
    assert.equal(await lock.acquire({ timeout: 0 }), false);
    holder.kill();
    getter.kill();
    await holder.join();
    await getter.join();
    holder.close();
    getter.close();
    assert.equal(await lock.acquire({ timeout: 10_000 }), true);
    // A terminated worker's socket closes a little later: wait until the server sees it.
    const deadline = Date.now() + 10_000;
    while ((await stats(manager)).clients > 1) {
      assert.ok(Date.now() < deadline, "the server still serves a killed client after 10 s");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await queue.put("kept");
    assert.equal(await queue.get({ timeout: 5_000 }), "kept");
  });
}

Deno.test("Manager proxies give a process child with no permissions of its own access to them", async () => {
  await using manager = await Manager.start();
  const ns = await manager.namespace({ x: 1, y: 1 });
  const child = new Process({ target: transform, args: [ns], permissions: {} });
  await child.start();
  await within(30_000, "the child", child.join());
  assert.equal(child.exitCode, 0);
  child.close();
  assert.deepEqual(await ns.toObject(), { x: 6, y: 10 });
});

Deno.test("Manager.start() refuses bad options", async () => {
  await assert.rejects(Manager.start({ startMethod: "fork" as never }), TypeError);
  await assert.rejects(Manager.start({ address: { hostname: LOCALHOST, port: -1 } }), RangeError);
  await assert.rejects(Manager.start({ authkey: 42 as never }), TypeError);
  assert.throws(() => Manager.register("list", { module: "x.ts", export: "X" }), TypeError);
  assert.throws(() => new Manager(undefined as never), TypeError);
});

async function startRemote(authkey: string) {
  const manager = await Manager.start({ address: { hostname: LOCALHOST, port: 0 }, authkey });
  const address = manager.address as { hostname: string; port: number };
  return { manager, address };
}

Deno.test("Manager.connect() joins a remote manager from a separate deno process", async () => {
  const { manager, address } = await startRemote("s3cret");
  await using _ = manager;
  assert.equal(address.hostname, LOCALHOST);
  assert.ok(address.port > 0);
  const jobs = await manager.Queue<string>();
  await manager.expose("jobs", jobs);
  const client = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-net=${LOCALHOST}`,
      `--allow-read`,
      new URL("manager_remote_client.ts", TESTDATA).pathname,
      LOCALHOST,
      String(address.port),
      "s3cret",
      "3",
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const out = await within(60_000, "the remote client", client.output());
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "done");
  const got = [];
  for (let i = 0; i < 3; i++) got.push(await jobs.get({ timeout: 5_000 }));
  assert.equal(got.length, 3);
  assert.match(got[0]!, /^job 0 from pid \d+$/);

  // A client in this process, too: lookup gives a working proxy; disposing disconnects only.
  const remote = await Manager.connect(address, { authkey: "s3cret" });
  const same = await remote.lookup<QueueProxy<string>>("jobs");
  await remote.shutdown();
  await jobs.put("still serving");
  assert.equal(await jobs.get({ timeout: 5_000 }), "still serving");
  await assert.rejects(remote.lookup("nothing"), /disconnected|shut down|Cannot/);
  same.dispose();
});

Deno.test("Manager.connect() with a wrong key fails with AuthenticationError and the server keeps serving", async () => {
  const { manager, address } = await startRemote("right key");
  await using _ = manager;
  const list = await manager.list<number>();
  await assert.rejects(
    Manager.connect(address, { authkey: "wrong key" }),
    AuthenticationError,
  );
  await assert.rejects(
    Manager.connect(address, { authkey: new Uint8Array([1, 2, 3]) }),
    AuthenticationError,
  );
  await list.append(1);
  await using good = await Manager.connect(address, { authkey: "right key" });
  await good.expose("ok", await good.list([1]));
  assert.equal((await good.lookup("ok")).typeid, "list");
  assert.deepEqual(await list.toArray(), [1]);
});

Deno.test("Manager server survives garbage frames before and after the handshake", async () => {
  const { manager, address } = await startRemote("key");
  await using _ = manager;
  const key = new TextEncoder().encode("key");
  // Garbage instead of a handshake: a huge frame length, then junk.
  const raw = await Deno.connect({ hostname: LOCALHOST, port: address.port });
  await raw.write(new Uint8Array([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]));
  const buf = new Uint8Array(1024);
  while (await raw.read(buf) !== null) { /* the server hangs up */ }
  raw.close();
  // Authenticated, then frames that do not decode or are malformed requests.
  for (
    const garbage of [
      new Uint8Array([0x7f, 0x7f, 0x7f]),
      encode("not a request"),
      encode([1, 0, "create", "not an array"]),
    ]
  ) {
    const conn = await Deno.connect({ hostname: LOCALHOST, port: address.port });
    await answerChallenge(conn, key);
    await deliverChallenge(conn, key);
    const frame = new Uint8Array(4 + garbage.length);
    new DataView(frame.buffer).setUint32(0, garbage.length, true);
    frame.set(garbage, 4);
    await conn.write(frame);
    while (await conn.read(buf) !== null) { /* the server drops this client */ }
    conn.close();
  }
  const list = await manager.list([1]);
  assert.deepEqual(await list.toArray(), [1]);
  await using good = await Manager.connect(address, { authkey: "key" });
  assert.equal((await good.list([2])).typeid, "list");
});

Deno.test("Manager server keeps serving while a client never reads its answers", async () => {
  const { manager, address } = await startRemote("key");
  await using _ = manager;
  const big = await manager.list([new Uint8Array(1 << 20)]);
  const id = (await stats(manager)).objects; // the list's id: the only object so far
  assert.equal(id, 1);
  const conn = await Deno.connect({ hostname: LOCALHOST, port: address.port });
  const key = new TextEncoder().encode("key");
  await answerChallenge(conn, key);
  await deliverChallenge(conn, key);
  // Ask for 1 MiB answers, many times, and never read them.
  const request = encode([1, 1, "toArray", []]);
  const frame = new Uint8Array(4 + request.length);
  new DataView(frame.buffer).setUint32(0, request.length, true);
  frame.set(request, 4);
  const burst = new Uint8Array(frame.length * 200);
  for (let i = 0; i < 200; i++) burst.set(frame, i * frame.length);
  await conn.write(burst);
  // Others are still served.
  assert.equal(await big.length(), 1);
  await using good = await Manager.connect(address, { authkey: "key" });
  assert.equal((await good.list([1])).typeid, "list");
  conn.close();
  assert.equal(await big.length(), 1);
});

Deno.test("Manager server keeps serving during a flood of connections", async () => {
  const { manager, address } = await startRemote("key");
  await using _ = manager;
  const conns = await Promise.all(
    Array.from({ length: 200 }, () => Deno.connect({ hostname: LOCALHOST, port: address.port })),
  );
  try {
    await using good = await Manager.connect(address, { authkey: "key" });
    const list = await good.list([1, 2]);
    assert.equal(await list.length(), 2);
  } finally {
    for (const conn of conns) conn.close();
  }
  const list = await manager.list([3]);
  assert.deepEqual(await list.toArray(), [3]);
});

Deno.test("Manager.start() serves over TLS with a certificate and key", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "seed-mp-tls-" });
  try {
    // A CA, and a certificate for 127.0.0.1 that it signs.
    await Deno.writeTextFile(
      `${dir}/ext.cnf`,
      "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
    const steps = [
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca"]
        .concat(["-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.pem`]),
      ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]
        .concat(["-keyout", `${dir}/key.pem`, "-out", `${dir}/leaf.csr`]),
      ["x509", "-req", "-in", `${dir}/leaf.csr`, "-CA", `${dir}/ca.pem`, "-CAkey", `${dir}/ca.key`]
        .concat(["-CAcreateserial", "-days", "1", "-out", `${dir}/cert.pem`])
        .concat(["-extfile", `${dir}/ext.cnf`]),
    ];
    let openssl: Deno.CommandOutput | undefined;
    for (const args of steps) {
      openssl = await new Deno.Command("openssl", { args, stdout: "null", stderr: "null" })
        .output().catch(() => undefined);
      if (openssl?.code !== 0) break;
    }
    if (openssl?.code !== 0) {
      await t.step({ name: "openssl is not available", ignore: true, fn: () => {} });
      return;
    }
    await using manager = await Manager.start({
      address: { hostname: LOCALHOST, port: 0 },
      authkey: "key",
      tls: { certFile: `${dir}/cert.pem`, keyFile: `${dir}/key.pem`, caFile: `${dir}/ca.pem` },
    });
    const list = await manager.list([1]);
    await list.append(2);
    const address = manager.address as { hostname: string; port: number };
    await using remote = await Manager.connect(address, {
      authkey: "key",
      tls: { caFile: `${dir}/ca.pem` },
    });
    await remote.expose("list", list);
    const same = await remote.lookup<typeof list>("list");
    assert.deepEqual(await same.toArray(), [1, 2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
