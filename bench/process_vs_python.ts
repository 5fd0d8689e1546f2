// Process start + join against Python's anchor (P3: fork, forkserver, spawn),
// interleaved in rounds on this machine; prints medians and same-round ratios.
//   deno run --allow-read --allow-run bench/process_vs_python.ts [rounds]
import { Process } from "../mod.ts";
import { noop } from "./targets.ts";

const ROUNDS = Number(Deno.args[0] ?? 5);
const ANCHOR = new URL("../../shared/anchors/python/mp_bench.py", import.meta.url).pathname;

async function ours(startMethod: "process" | "worker", n: number): Promise<number> {
  const warm = new Process({ target: noop, startMethod });
  await warm.start();
  await warm.join();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const p = new Process({ target: noop, startMethod });
    await p.start();
    await p.join();
  }
  return (performance.now() - t0) / n;
}

/** The floor under a "worker" child: a bare Worker created, answering, ended. */
async function bareWorker(n: number): Promise<number> {
  const url = `data:application/javascript,${encodeURIComponent("postMessage(1)")}`;
  const once = async () => {
    const worker = new Worker(url, { type: "module" });
    await new Promise((resolve) => worker.onmessage = resolve);
    worker.terminate();
  };
  await once();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await once();
  return (performance.now() - t0) / n;
}

async function python(): Promise<Record<string, number>> {
  const out = await new Deno.Command("python3", { args: [ANCHOR, "P3"], stdout: "piped" }).output();
  const metrics: Record<string, number> = {};
  for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
    const { name, value } = JSON.parse(line) as { name: string; value: number };
    metrics[name.split(".").pop()!] = value;
  }
  return metrics;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: Record<string, number[]> = {};
const add = (key: string, value: number) => (rows[key] ??= []).push(value);

for (let round = 0; round < ROUNDS; round++) {
  const py = await python();
  const proc = await ours("process", 20);
  const worker = await ours("worker", 50);
  add("python spawn ms", py.spawn!);
  add("python forkserver ms", py.forkserver!);
  add("python fork ms", py.fork!);
  add("ours process ms", proc);
  add("ours worker ms", worker);
  add("ratio process/spawn", proc / py.spawn!);
  add("ratio worker/spawn", worker / py.spawn!);
  add("ratio process/forkserver", proc / py.forkserver!);
  const floor = await bareWorker(50);
  add("bare Worker ms", floor);
  add("ratio bare Worker/spawn", floor / py.spawn!);
}
for (const [key, values] of Object.entries(rows)) {
  console.log(
    `${key.padEnd(26)} median ${median(values).toFixed(3)}  (${
      values.map((v) => v.toFixed(2)).join(" ")
    })`,
  );
}
