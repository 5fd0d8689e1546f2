// Manager against Python's anchor (P6: Manager list append from a child, dict
// set/get round trips from the parent), in one run on this machine; prints
// each side and the ratio (ours / Python's), median over rounds.
//   deno run --allow-read --allow-write --allow-run --allow-net --allow-env bench/manager_vs_python.ts [rounds]
import { type ListProxy, Manager, Process, type QueueProxy } from "../mod.ts";

const ROUNDS = Number(Deno.args[0] ?? 5);
const ANCHORS = new URL("../../shared/anchors/", import.meta.url).pathname;
const N = 10_000;

/** Appends `n` items, each awaited, and reports the time taken in seconds. */
export async function appendFromChild(
  list: ListProxy<number>,
  n: number,
  report: QueueProxy<number>,
): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await list.append(i);
  await report.put((performance.now() - t0) / 1e3);
}

async function ours(startMethod: "process" | "worker"): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let t0 = performance.now();
  const manager = await Manager.start({ startMethod });
  out.start_ms = performance.now() - t0;
  const list = await manager.list<number>();
  const report = await manager.Queue<number>();
  const child = new Process({ target: appendFromChild, args: [list, N, report] });
  await child.start();
  const dt = await report.get();
  await child.join();
  if (await list.length() !== N) throw new Error("wrong list length");
  out.list_append_child_ops = N / dt;
  const dict = await manager.dict<number, number>();
  t0 = performance.now();
  for (let i = 0; i < N; i++) await dict.set(i, i);
  out.dict_set_us = (performance.now() - t0) / N * 1e3;
  t0 = performance.now();
  let sum = 0;
  for (let i = 0; i < N; i++) sum += (await dict.get(i))!;
  out.dict_get_us = (performance.now() - t0) / N * 1e3;
  if (sum !== N * (N - 1) / 2) throw new Error("wrong sum");
  t0 = performance.now();
  await manager.shutdown();
  out.shutdown_ms = performance.now() - t0;
  return out;
}

async function python(): Promise<Record<string, number>> {
  const run = await new Deno.Command("python3", {
    args: [`${ANCHORS}python/mp_bench.py`, "P6"],
    stdout: "piped",
  }).output();
  const m: Record<string, number> = {};
  for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
    const row = JSON.parse(line) as { name?: string; value: number };
    if (row.name !== undefined) m[row.name] = row.value;
  }
  return {
    start_ms: m["P6.manager_start"]!,
    list_append_child_ops: m["P6.manager_list_append_child"]!,
    dict_set_us: m["P6.manager_dict_set"]!,
    dict_get_us: m["P6.manager_dict_get"]!,
    shutdown_ms: m["P6.manager_shutdown"]!,
  };
}

if (import.meta.main) {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows: Record<string, { py: number[]; process: number[]; worker: number[] }> = {};
  for (let round = 0; round < ROUNDS; round++) {
    const py = await python();
    const proc = await ours("process");
    const worker = await ours("worker");
    for (const key of Object.keys(py)) {
      const row = rows[key] ??= { py: [], process: [], worker: [] };
      row.py.push(py[key]!);
      row.process.push(proc[key]!);
      row.worker.push(worker[key]!);
    }
  }
  console.log(`median of ${ROUNDS} rounds; ratio = ours / Python's, per round, then the median`);
  for (const [key, row] of Object.entries(rows)) {
    const ratio = (ours: number[]) => median(ours.map((v, i) => v / row.py[i]!)).toFixed(2);
    console.log(
      `${key.padEnd(22)} python ${median(row.py).toFixed(1).padStart(9)}  process ${
        median(row.process).toFixed(1).padStart(9)
      } (x${ratio(row.process)})  worker ${median(row.worker).toFixed(1).padStart(9)} (x${
        ratio(row.worker)
      })`,
    );
  }
}
