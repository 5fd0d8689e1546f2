// Pool against Python's anchor (P4: Pool(2)) and piscina (2 threads), in one
// run on this machine; prints each side and the ratio (ours / theirs).
//   deno run --allow-read --allow-write --allow-run --allow-net --allow-env bench/pool_vs_python.ts [rounds]
// With --fresh it times only its own first pool and prints it as JSON: each
// round runs it so, as a program of its own (see firstPool).
// piscina is measured when /tmp/anchors-node has it (see ../shared/anchors/README.md).
import { Pool } from "../mod.ts";
import { double, heavy } from "./targets.ts";

// Since the program started: what loading its modules took (a --fresh run).
const LOADED_MS = performance.now();

const FRESH = Deno.args[0] === "--fresh";
const ROUNDS = FRESH ? 0 : Number(Deno.args[0] ?? 3);
const ANCHORS = new URL("../../shared/anchors/", import.meta.url).pathname;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function ours(startMethod: "process" | "worker"): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let t0 = performance.now();
  const pool = new Pool({ processes: 2, startMethod });
  await pool.map(double, [1, 2], { chunksize: 1 });
  out.first_result_ms = performance.now() - t0;
  const items = Array.from({ length: 100_000 }, (_, i) => i);
  // The first big map pays for V8 compiling the hot paths in every worker
  // (it tiers up over some ten maps); the last ten are what a long-running
  // program sees. Both are reported.
  const maps: number[] = [];
  for (let i = 0; i < 20; i++) {
    t0 = performance.now();
    const r = await pool.map(double, items);
    maps.push(performance.now() - t0);
    if (r[99_999] !== 199_998) throw new Error("wrong result");
  }
  out.map_100k_first_ms = maps[0]!;
  out.map_100k_ms = median(maps.slice(10));
  const small = items.slice(0, 20_000);
  // A function that computes: its first maps show how soon V8 optimizes it.
  const heavyMaps: number[] = [];
  for (let i = 0; i < 3; i++) {
    t0 = performance.now();
    await pool.map(heavy, small);
    heavyMaps.push(performance.now() - t0);
  }
  out.map_heavy_20k_first_ms = heavyMaps[0]!;
  out.map_heavy_20k_third_ms = heavyMaps[2]!;
  t0 = performance.now();
  await pool.map(double, small, { chunksize: 1 });
  out.map_chunksize1_us_per_item = (performance.now() - t0) / small.length * 1e3;
  t0 = performance.now();
  for (let i = 0; i < 5_000; i++) await pool.apply(double, [i]);
  out.apply_rtt_us = (performance.now() - t0) / 5_000 * 1e3;
  t0 = performance.now();
  await Promise.all(items.map((i) => pool.applyAsync(double, [i])));
  out.apply_async_task_per_s = items.length / ((performance.now() - t0) / 1e3);
  await pool[Symbol.asyncDispose]();
  // A fresh pool's first map of a function that computes: what a program
  // that starts a pool for one job sees.
  const fresh = new Pool({ processes: 2, startMethod });
  await fresh.map(double, [1, 2], { chunksize: 1 });
  t0 = performance.now();
  await fresh.map(heavy, small);
  out.map_heavy_20k_fresh_pool_ms = performance.now() - t0;
  await fresh[Symbol.asyncDispose]();
  return out;
}

async function python(): Promise<Record<string, number>> {
  const run = await new Deno.Command("python3", {
    args: [`${ANCHORS}python/mp_bench.py`, "P4"],
    stdout: "piped",
  }).output();
  const m: Record<string, number> = {};
  for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
    const row = JSON.parse(line) as { name?: string; value: number; total_ms?: number };
    if (row.name !== undefined) m[row.name] = row.total_ms ?? row.value;
  }
  return {
    first_result_spawn_ms: m["P4.pool_first_result.spawn"]!,
    map_100k_ms: m["P4.pool_map_default_chunks"]!,
    map_chunksize1_us_per_item: m["P4.pool_map_chunksize1"]! / 20_000 * 1e3,
    apply_rtt_us: m["P4.pool_apply_rtt"]!,
    apply_async_task_per_s: m["P4.pool_apply_async_tput"]!,
  };
}

// A program's first pool, in a program of its own: what a script that starts
// a pool for one job sees, V8 compiling our code on first use included.
// Python's P4 times its spawn pool after a fork and a forkserver pool in the
// same program, and its map in a fork pool (workers that are copies of the
// warm parent). So both are also timed here as a fresh program's first pool,
// like for like: Python's spawn workers are fresh processes, as ours are.
async function firstPool(): Promise<Record<string, number>> {
  const t0 = performance.now();
  const pool = new Pool({ processes: 2, startMethod: "process" });
  await pool.map(double, [1, 2], { chunksize: 1 });
  const first_result_ms = performance.now() - t0;
  const items = Array.from({ length: 100_000 }, (_, i) => i);
  const t1 = performance.now();
  const r = await pool.map(double, items);
  const map_100k_first_ms = performance.now() - t1;
  if (r[99_999] !== 199_998) throw new Error("wrong result");
  await pool[Symbol.asyncDispose]();
  return { load_ms: LOADED_MS, first_result_ms, map_100k_first_ms };
}

/** Runs a program that prints one JSON object, and returns that object. */
async function jsonOf(command: string, args: string[]): Promise<Record<string, number>> {
  const run = await new Deno.Command(command, { args, stdout: "piped" }).output();
  return JSON.parse(new TextDecoder().decode(run.stdout));
}

function oursFresh(): Promise<Record<string, number>> {
  const flags = ["--allow-read", "--allow-write", "--allow-run", "--allow-net", "--allow-env"];
  return jsonOf(Deno.execPath(), ["run", ...flags, import.meta.filename!, "--fresh"]);
}

// The same first pool in Python, with the anchor's own _double.
const PYTHON_FIRST_POOL = `
import json, sys
from time import perf_counter as pc
sys.path.insert(0, sys.argv[1])
import multiprocessing as mp
from mp_bench import _double
ctx = mp.get_context("spawn")
t0 = pc()
pool = ctx.Pool(2)
pool.map(_double, [1, 2], chunksize=1)
first = pc() - t0
items = list(range(100_000))
t0 = pc()
r = pool.map(_double, items)
dt = pc() - t0
assert r[-1] == 199_998
pool.terminate()
pool.join()
print(json.dumps({"first_result_ms": first * 1e3, "map_100k_first_ms": dt * 1e3}))
`;

function pythonFresh(): Promise<Record<string, number>> {
  return jsonOf("python3", ["-c", PYTHON_FIRST_POOL, `${ANCHORS}python`]);
}

async function piscina(): Promise<number | undefined> {
  try {
    Deno.statSync("/tmp/anchors-node/node_modules/piscina");
  } catch {
    return undefined;
  }
  const run = await new Deno.Command("node", {
    args: [`${ANCHORS}node/piscina_bench.cjs`, "PS"],
    cwd: "/tmp/anchors-node",
    stdout: "piped",
  }).output();
  for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
    const row = JSON.parse(line) as { name?: string; value: number };
    if (row.name?.includes("rtt")) return row.value;
  }
  return undefined;
}

if (FRESH) console.log(JSON.stringify(await firstPool()));

const rows: Record<string, number[]> = {};
const add = (key: string, value: number | undefined) =>
  value !== undefined && (rows[key] ??= []).push(value);
for (let round = 0; round < ROUNDS; round++) {
  // Python goes first in every other round: right after its run, this machine
  // ran our first map some 30% slower (10.3 against 7.8 ms, median of 6).
  const pyFirst = round % 2 === 0 ? await python() : undefined;
  const pyFreshFirst = round % 2 === 0 ? await pythonFresh() : undefined;
  const proc = await ours("process");
  const worker = await ours("worker");
  const fresh = await oursFresh();
  const py = pyFirst ?? await python();
  const pyFresh = pyFreshFirst ?? await pythonFresh();
  const pis = await piscina();
  for (const [key, value] of Object.entries(fresh)) add(`process fresh program ${key}`, value);
  for (const [key, value] of Object.entries(pyFresh)) {
    add(`python spawn fresh program ${key}`, value);
  }
  for (const [key, value] of Object.entries(proc)) add(`process ${key}`, value);
  for (const [key, value] of Object.entries(worker)) add(`worker ${key}`, value);
  for (const [key, value] of Object.entries(py)) add(`python ${key}`, value);
  add("piscina run rtt us", pis);
  add("ratio process map_100k / python", proc.map_100k_ms! / py.map_100k_ms!);
  add("ratio process first map_100k / python", proc.map_100k_first_ms! / py.map_100k_ms!);
  add("ratio worker map_100k / python", worker.map_100k_ms! / py.map_100k_ms!);
  for (const [name, side] of [["process", proc], ["worker", worker]] as const) {
    add(
      `ratio ${name} heavy fresh pool / third`,
      side.map_heavy_20k_fresh_pool_ms! / side.map_heavy_20k_third_ms!,
    );
  }
  add(
    "ratio process first_result / python spawn",
    proc.first_result_ms! / py.first_result_spawn_ms!,
  );
  add(
    "ratio fresh program first_result / python spawn fresh",
    fresh.first_result_ms! / pyFresh.first_result_ms!,
  );
  add("ratio fresh program first map / python", fresh.map_100k_first_ms! / py.map_100k_ms!);
  add(
    "ratio fresh program first map / python spawn fresh",
    fresh.map_100k_first_ms! / pyFresh.map_100k_first_ms!,
  );
  add("ratio process apply_rtt / python", proc.apply_rtt_us! / py.apply_rtt_us!);
  add("ratio worker apply_rtt / python", worker.apply_rtt_us! / py.apply_rtt_us!);
  if (pis !== undefined) add("ratio worker apply_rtt / piscina", worker.apply_rtt_us! / pis);
  add(
    "ratio process apply_async tput / python",
    proc.apply_async_task_per_s! / py.apply_async_task_per_s!,
  );
}
for (const [key, values] of Object.entries(rows)) {
  console.log(
    `${key.padEnd(54)} median ${median(values).toFixed(3)}  (${
      values.map((v) => v.toFixed(2)).join(" ")
    })`,
  );
}
