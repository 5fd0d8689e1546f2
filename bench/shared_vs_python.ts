// Group P5 beside Python's anchor: lock-protected increments of a shared Value, in one process
// and by two children, measured as Python's mp_bench.py P5 does (the span from the first
// child's start, after a barrier, to the last child's end). Prints Python's numbers, ours, and
// the ratios. Run:
//   deno run --allow-read --allow-run --allow-env --allow-ffi --allow-sys bench/shared_vs_python.ts
import { Barrier, Process, RawArray, type StartMethod, Value } from "../mod.ts";

const N = 100_000;

/** A child's loop: the same as Python's _value_incr. */
export async function valueIncr(
  v: Value<"i">,
  n: number,
  barrier: Barrier,
  spans: RawArray<"d">,
  slot: number,
): Promise<void> {
  await barrier.wait();
  const t0 = performance.timeOrigin + performance.now();
  const lock = v.getLock();
  for (let i = 0; i < n; i++) {
    await lock.acquire();
    v.value += 1;
    lock.release();
  }
  spans.set(slot * 2, t0);
  spans.set(slot * 2 + 1, performance.timeOrigin + performance.now());
}

async function ours(method: StartMethod): Promise<{ one: number; two: number; ok: boolean }> {
  const v = new Value("i", 0, { startMethod: method });
  const lock = v.getLock();
  let t0 = performance.now();
  for (let i = 0; i < N; i++) {
    await lock.acquire();
    v.value += 1;
    lock.release();
  }
  const one = N / ((performance.now() - t0) / 1000);
  v.value = 0;
  const barrier = new Barrier(2, { startMethod: method });
  const spans = new RawArray("d", 4, { startMethod: method });
  const children = [0, 1].map((slot) =>
    new Process({ target: valueIncr, args: [v, N, barrier, spans, slot], startMethod: method })
  );
  for (const child of children) await child.start();
  for (const child of children) await child.join();
  const [a0, a1, b0, b1] = spans.toArray();
  t0 = Math.min(a0!, b0!);
  const two = (2 * N) / ((Math.max(a1!, b1!) - t0) / 1000);
  return { one, two, ok: v.value === 2 * N };
}

async function python(): Promise<Record<string, number>> {
  const out = await new Deno.Command("python3", {
    args: [new URL("../../shared/anchors/python/mp_bench.py", import.meta.url).pathname, "P5"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const result: Record<string, number> = {};
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    if (line.trim() === "") continue;
    const record = JSON.parse(line);
    if (typeof record.name === "string") result[record.name] = record.value;
  }
  return result;
}

if (import.meta.main) {
  const py = await python();
  const pyOne = py["P5.value_lock_incr_1proc"]!;
  const pyTwo = py["P5.value_lock_incr_2proc"]!;
  const fmt = (n: number) => `${Math.round(n).toLocaleString("en-US")} op/s`;
  console.log(`python P5.value_lock_incr_1proc  ${fmt(pyOne)}`);
  console.log(`python P5.value_lock_incr_2proc  ${fmt(pyTwo)}`);
  for (const method of ["process", "worker"] as const) {
    const r = await ours(method);
    console.log(
      `deno   ${method.padEnd(7)} 1proc ${fmt(r.one)} (${(r.one / pyOne).toFixed(1)}x)  2proc ${
        fmt(r.two)
      } (${(r.two / pyTwo).toFixed(1)}x) exact=${r.ok}`,
    );
  }
}
