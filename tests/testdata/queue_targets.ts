// Targets for tests/queue_test.ts and tests/pipe_test.ts: children that use
// queues and connections handed to them.
import { connect, type Connection, Process, Queue } from "../../mod.ts";

export async function echo(conn: Connection): Promise<void> {
  for (;;) {
    const x = await conn.recv();
    if (x === null) break;
    await conn.send(x);
  }
  conn.close();
}

export async function echoBytes(conn: Connection): Promise<void> {
  for (;;) {
    let bytes: Uint8Array;
    try {
      bytes = await conn.recvBytes();
    } catch {
      break;
    }
    await conn.sendBytes(bytes);
  }
  conn.close();
}

export async function sendSequence(conn: Connection, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await conn.send(i);
  conn.close();
}

/** Receives a connection end inside a message, and echoes on it. */
export async function echoViaMessage(carrier: Connection): Promise<void> {
  const inner = await carrier.recv() as Connection;
  await echo(inner);
  carrier.close();
}

/** Passes a connection end on to a grandchild that echoes. */
export async function echoInGrandchild(
  conn: Connection,
  method: "process" | "worker",
): Promise<void> {
  const child = new Process({ target: echo, args: [conn], startMethod: method });
  await child.start();
  await child.join();
}

export async function produce(q: Queue<unknown>, tag: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await q.put([tag, i]);
  await q.close();
}

/** Gets items until it sees `null`, and puts what it got onto `out` as one array. */
export async function consume(q: Queue<unknown>, out: Queue<unknown>): Promise<void> {
  const got: unknown[] = [];
  for (;;) {
    const item = await q.get();
    if (item === null) break;
    got.push(item);
  }
  await out.put(got);
  await out.close();
}

/** Gets k items, reports them on `seen`, then waits forever without getting more (to be killed). */
export async function takeSomeThenHang(
  q: Queue<unknown>,
  k: number,
  seen: Queue<unknown>,
): Promise<void> {
  const got = [];
  for (let i = 0; i < k; i++) got.push(await q.get());
  await seen.put(got);
  await new Promise(() => setInterval(() => {}, 60_000));
}

/** Gets `count` items and puts them on `out` as one array. */
export async function collect(
  q: Queue<unknown>,
  count: number,
  out: Queue<unknown>,
): Promise<void> {
  const got = [];
  for (let i = 0; i < count; i++) got.push(await q.get());
  await out.put(got);
}

export async function putOne(q: Queue<unknown>, item: unknown): Promise<void> {
  await q.put(item);
  await q.close();
}

export async function getAndEcho(q: Queue<unknown>, out: Queue<unknown>): Promise<void> {
  for (;;) {
    const x = await q.get();
    if (x === null) break;
    await out.put(x);
  }
}

export async function produceForever(q: Queue<unknown>, started: Queue<unknown>): Promise<void> {
  await started.put("started");
  for (let i = 0;; i++) await q.put(["forever", i]);
}

export async function joinableWorker(q: Queue<unknown>, out: Queue<unknown>): Promise<void> {
  const jq = q as unknown as { get(): Promise<unknown>; taskDone(): Promise<void> };
  for (;;) {
    const x = await jq.get();
    if (x === null) {
      await jq.taskDone();
      break;
    }
    await out.put(x);
    await jq.taskDone();
  }
}

/** Connects to a listener and sends one message, then waits for "bye". */
export async function connectAndSend(
  address: string,
  authkey: string,
  message: unknown,
): Promise<void> {
  const conn = await connect(address, { authkey });
  await conn.send(message);
  await conn.recv();
  conn.close();
}

/** Sends `size` bytes in one message, then waits for the reader's "done". */
export async function sendHuge(conn: Connection, size: number): Promise<void> {
  const bytes = new Uint8Array(size);
  bytes[0] = 1;
  bytes[size - 1] = 2;
  await conn.sendBytes(bytes);
  await conn.recv();
  conn.close();
}

/** Tells the parent it runs, then waits forever (to be killed). */
export async function holdOpen(conn: Connection): Promise<void> {
  await conn.send("ready");
  await new Promise(() => setInterval(() => {}, 60_000));
}

/** Sends a queue made here through a pipe, then serves gets until told to stop. */
export async function makeQueueHere(conn: Connection): Promise<void> {
  await using q = new Queue<string>();
  await q.put("made in the child");
  await conn.send(q);
  await conn.recv();
  conn.close();
}

/** Sends n messages of `size` bytes, reporting on `progress` after each send settles. */
export async function sendAndReport(
  conn: Connection,
  n: number,
  size: number,
  progress: Queue<number>,
): Promise<void> {
  const bytes = new Uint8Array(size);
  for (let i = 1; i <= n; i++) {
    await conn.sendBytes(bytes);
    await progress.put(i);
  }
  conn.close();
}

/**
 * Sends 0..n-1 without awaiting, then exits at once: what was sent must still
 * arrive (a lane takes it synchronously at exit).
 */
export async function sendThenExit(conn: Connection, n: number): Promise<void> {
  await conn.recv(); // "go": the connection is up
  for (let i = 0; i < n; i++) conn.send(i);
  Deno.exit(7);
}

/** Gets `count` byte arrays and reports, for each, its length and first and last bytes. */
export async function describeBytes(
  q: Queue<Uint8Array>,
  count: number,
  out: Queue<unknown>,
): Promise<void> {
  const seen: [number, number, number][] = [];
  for (let i = 0; i < count; i++) {
    const bytes = await q.get();
    seen.push([bytes.length, bytes[0]!, bytes[bytes.length - 1]!]);
  }
  await out.put(seen);
}

/** Puts, in order, item i: `sizes[i]` bytes of the value i. */
export async function putSizes(q: Queue<Uint8Array>, sizes: number[]): Promise<void> {
  for (let i = 0; i < sizes.length; i++) await q.put(new Uint8Array(sizes[i]!).fill(i));
}

/** Puts one item and reports on `out` "ok" or the name of the error. */
export async function putAndReport(
  q: Queue<unknown>,
  item: unknown,
  out: Queue<unknown>,
): Promise<void> {
  await out.put(await q.put(item).then(() => "ok", (error: Error) => error.name));
}
