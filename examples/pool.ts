// The classic Pool programs: map and imap of upper-casing, then a Pool(5)
// given seven tasks that each sleep 2 s: done in two waves, about 4 s.
//
//   deno run --allow-read --allow-write --allow-run --allow-net examples/pool.ts
import { Pool } from "../mod.ts";

export function upper(word: string): string {
  return word.toUpperCase();
}

export async function nap(i: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 2000));
  return i;
}

if (import.meta.main) {
  {
    await using pool = new Pool({ processes: 2 });
    console.log("map:", await pool.map(upper, ["kel", "smile"]));
    for await (const word of pool.imap(upper, ["kel", "smile"])) console.log("imap:", word);
  }

  await using pool = new Pool({ processes: 5 });
  const started = performance.now();
  const results = Array.from({ length: 7 }, (_, i) => pool.applyAsync(nap, [i]));
  console.log("naps:", await Promise.all(results.map((result) => result.get())));
  console.log(
    `7 naps of 2 s in 5 workers took ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}
