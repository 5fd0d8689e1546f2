// One process writes "A", "B", "C" to a queue; another drains them until the
// queue is shut down. The parent waits for the writer, then shuts the queue.
// Run: deno run --allow-read --allow-write --allow-run --allow-net examples/reader_writer.ts
import { Process, Queue } from "../mod.ts";

/** Puts three letters. */
export async function writer(q: Queue<string>): Promise<void> {
  for (const letter of ["A", "B", "C"]) await q.put(letter);
}

/** Prints every letter until the queue is shut down and drained. */
export async function reader(q: Queue<string>): Promise<void> {
  for await (const letter of q) console.log("read", letter);
}

if (import.meta.main) {
  await using q = new Queue<string>();
  const r = new Process({ target: reader, args: [q] });
  const w = new Process({ target: writer, args: [q] });
  await r.start();
  await w.start();
  await w.join();
  await q.shutdown(); // the reader drains what is left, then stops
  await r.join();
}
