// A writer and a reader task in a pool, sharing a Manager queue (Python's
// "Pool with a Manager().Queue()" recipe). The queue proxy crosses to the
// pool's workers as an argument.
//
//   deno run --allow-read --allow-write --allow-run --allow-env --allow-net examples/pool_queue.ts
import { Manager, Pool, type QueueProxy } from "../mod.ts";

export async function writer(queue: QueueProxy<string>): Promise<void> {
  for (const word of ["A", "B", "C"]) await queue.put(word);
  await queue.put("DONE");
}

export async function reader(queue: QueueProxy<string>): Promise<string[]> {
  const words: string[] = [];
  for (let word = await queue.get(); word !== "DONE"; word = await queue.get()) words.push(word);
  return words;
}

if (import.meta.main) {
  await using manager = await Manager.start();
  const queue = await manager.Queue<string>();
  await using pool = new Pool({ processes: 2 });
  const read = pool.applyAsync(reader, [queue]);
  await pool.apply(writer, [queue]);
  console.log("the reader got:", await read.get({ timeout: 10_000 }));
}
