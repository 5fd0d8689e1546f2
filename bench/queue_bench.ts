// Queue throughput, measured as Python's mp_bench.py P1 measures it: one child
// puts n small messages, another gets them; the span runs from the producer's
// first put to the consumer's last get. `deno bench` runs the small cases; the
// measure functions serve bench/queue_vs_python.ts.
// Run: deno bench --allow-read --allow-write --allow-run --allow-net bench/queue_bench.ts
import { Process, Queue, type StartMethod } from "../mod.ts";

const SMALL = [42, null, "hello"];
const now = () => performance.timeOrigin + performance.now();

/** The producer: waits for "go", puts n messages, reports its start. */
export async function producer(
  q: Queue<unknown>,
  n: number,
  times: Queue<[string, number]>,
): Promise<void> {
  const t0 = now();
  for (let i = 0; i < n; i++) await q.put(SMALL);
  await times.put(["start", t0]);
}

/** The consumer: says it is ready, gets n messages, reports its end. */
export async function consumer(
  q: Queue<unknown>,
  n: number,
  times: Queue<[string, number]>,
): Promise<void> {
  await times.put(["ready", 0]);
  for (let i = 0; i < n; i++) await q.get();
  await times.put(["end", now()]);
}

/**
 * Messages per second from one child to another through a queue.
 *
 * @param method How the children run.
 * @param n How many messages.
 */
export async function measureQueue(method: StartMethod, n = 100_000): Promise<number> {
  await using q = new Queue();
  await using times = new Queue<[string, number]>();
  await using cons = new Process({ target: consumer, args: [q, n, times], startMethod: method });
  await cons.start();
  await times.get(); // ready
  await using prod = new Process({ target: producer, args: [q, n, times], startMethod: method });
  await prod.start();
  const got = Object.fromEntries([await times.get(), await times.get()]);
  await prod.join();
  await cons.join();
  return n / ((got.end! - got.start!) / 1000);
}

Deno.bench("Queue put + get of a small message in one program", async (b) => {
  await using q = new Queue();
  b.start();
  for (let i = 0; i < 10_000; i++) await q.put(SMALL);
  for (let i = 0; i < 10_000; i++) await q.get();
  b.end();
});

for (const method of ["process", "worker"] as const) {
  Deno.bench(`Queue 20,000 small messages, "${method}" child to "${method}" child`, {
    n: 3,
    warmup: 1,
  }, async () => {
    await measureQueue(method, 20_000);
  });
}
