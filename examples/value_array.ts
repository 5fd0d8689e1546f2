// A child process writes a shared Value and negates a shared array; the parent prints both, as
// in Python's multiprocessing docs ("Sharing state between processes").
// Run: deno run --allow-read --allow-run --allow-ffi examples/value_array.ts
import { Process, SharedArray, Value } from "../mod.ts";

/** Sets the number and negates every element. */
export function f(n: Value<"d">, a: SharedArray<"i">): void {
  n.value = 3.1415927;
  for (let i = 0; i < a.length; i++) a.set(i, -a.get(i));
}

if (import.meta.main) {
  const num = new Value("d", 0.0);
  const arr = new SharedArray("i", Array.from({ length: 10 }, (_, i) => i));
  const p = new Process({ target: f, args: [num, arr] });
  await p.start();
  await p.join();
  console.log(num.value);
  console.log(`[${arr.toArray().join(", ")}]`);
}
