// Pipe round trip and bytes throughput, measured as Python's mp_bench.py P2
// measures them. `deno bench` runs the small cases; the measure functions serve
// bench/queue_vs_python.ts.
// Run: deno bench --allow-read --allow-write --allow-run --allow-net bench/pipe_bench.ts
import { type Connection, Pipe, Process, type StartMethod } from "../mod.ts";

const SMALL = [42, null, "hello"];
const MIB = new Uint8Array(1 << 20).fill(121);

/** Echoes objects until it receives null. */
export async function echo(conn: Connection): Promise<void> {
  for (;;) {
    const x = await conn.recv();
    if (x === null) break;
    await conn.send(x);
  }
  conn.close();
}

/** Waits for "go", sends n MiB messages, waits for "bye". */
export async function bytesSender(conn: Connection, n: number): Promise<void> {
  await conn.recv();
  for (let i = 0; i < n; i++) await conn.sendBytes(MIB);
  await conn.recv();
  conn.close();
}

/**
 * Microseconds per round trip of a small message, parent ↔ child.
 *
 * @param method How the child runs.
 * @param n How many round trips.
 */
export async function measurePipeRtt(method: StartMethod, n = 20_000): Promise<number> {
  const [a, b] = Pipe();
  await using p = new Process({ target: echo, args: [b], startMethod: method });
  await p.start();
  for (let i = 0; i < 1000; i++) {
    await a.send(SMALL);
    await a.recv();
  }
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await a.send(SMALL);
    await a.recv();
  }
  const us = (performance.now() - t0) / n * 1000;
  await a.send(null);
  await p.join();
  a.close();
  return us;
}

/**
 * MB/s of 1 MiB `sendBytes` messages from a child to the parent.
 *
 * @param method How the child runs.
 * @param n How many messages.
 */
export async function measurePipeBytes(method: StartMethod, n = 1000): Promise<number> {
  const [a, b] = Pipe();
  await using p = new Process({ target: bytesSender, args: [b, n], startMethod: method });
  await p.start();
  await a.send("go");
  const t0 = performance.now();
  let total = 0;
  for (let i = 0; i < n; i++) total += (await a.recvBytes()).length;
  const secs = (performance.now() - t0) / 1000;
  await a.send("bye");
  await p.join();
  a.close();
  if (total !== n * MIB.length) {
    throw new Error(`received ${total} bytes, expected ${n * MIB.length}`);
  }
  return total / secs / 1e6;
}

Deno.bench("Pipe round trip of a small message in one program", async (b) => {
  const [x, y] = Pipe();
  b.start();
  for (let i = 0; i < 10_000; i++) {
    await x.send(SMALL);
    await y.recv();
  }
  b.end();
  x.close();
  y.close();
});

for (const method of ["process", "worker"] as const) {
  Deno.bench(`Pipe 2,000 round trips with a "${method}" child`, { n: 3, warmup: 1 }, async () => {
    await measurePipeRtt(method, 2000);
  });
  Deno.bench(
    `Pipe 100 sendBytes of 1 MiB from a "${method}" child`,
    { n: 3, warmup: 1 },
    async () => {
      await measurePipeBytes(method, 100);
    },
  );
}
