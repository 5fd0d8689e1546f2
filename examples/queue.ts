// A child puts [42, null, "hello"] on a queue; the parent gets it, as in
// Python's multiprocessing docs ("Exchanging objects between processes").
// Run: deno run --allow-read --allow-write --allow-run --allow-net examples/queue.ts
import { Process, Queue } from "../mod.ts";

/** Puts one message on the queue. */
export async function f(q: Queue<unknown>): Promise<void> {
  await q.put([42, null, "hello"]);
}

if (import.meta.main) {
  await using q = new Queue();
  const p = new Process({ target: f, args: [q] });
  await p.start();
  console.log(await q.get()); // [ 42, null, "hello" ]
  await p.join();
}
