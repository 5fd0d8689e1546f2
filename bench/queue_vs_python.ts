// Groups P1 (Queue) and P2 (Pipe) beside Python's anchor, run interleaved in
// rounds on this machine; prints Python's numbers, ours, and the median ratios
// against the targets of issue 3. Run:
//   deno run --allow-read --allow-write --allow-run --allow-net bench/queue_vs_python.ts [rounds]
import { measureQueue } from "./queue_bench.ts";
import { measurePipeBytes, measurePipeRtt } from "./pipe_bench.ts";

const ROUNDS = Number(Deno.args[0] ?? 3);

async function python(): Promise<Record<string, number>> {
  const out = await new Deno.Command("python3", {
    args: [
      new URL("../../shared/anchors/python/mp_bench.py", import.meta.url).pathname,
      "P1",
      "P2",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const result: Record<string, number> = {};
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    if (!line.trim()) continue;
    const record = JSON.parse(line) as { name?: string; value?: number };
    if (record.name !== undefined && record.value !== undefined) result[record.name] = record.value;
  }
  return result;
}

function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Row {
  name: string;
  python: string;
  unit: string;
  ours: () => Promise<number>;
  /** ours / python must be at least this (higher is better) or at most (lower is better). */
  target: number;
  higherIsBetter: boolean;
}

const rows: Row[] = [
  {
    name: "Queue small, process → process",
    python: "P1.queue_small",
    unit: "msg/s",
    ours: () => measureQueue("process"),
    target: 3,
    higherIsBetter: true,
  },
  {
    name: "Queue small, worker → worker",
    python: "P1.queue_small",
    unit: "msg/s",
    ours: () => measureQueue("worker"),
    target: 4,
    higherIsBetter: true,
  },
  {
    name: "Pipe round trip, parent ↔ process",
    python: "P2.pipe_rtt",
    unit: "µs",
    ours: () => measurePipeRtt("process"),
    target: 0.8,
    higherIsBetter: false,
  },
  {
    name: "Pipe round trip, parent ↔ worker",
    python: "P2.pipe_rtt",
    unit: "µs",
    ours: () => measurePipeRtt("worker"),
    target: 0.5,
    higherIsBetter: false,
  },
  {
    name: "Pipe sendBytes 1 MiB, process → parent",
    python: "P2.pipe_bytes_1MiB",
    unit: "MB/s",
    ours: () => measurePipeBytes("process"),
    target: 2,
    higherIsBetter: true,
  },
  {
    name: "Pipe sendBytes 1 MiB, worker → parent",
    python: "P2.pipe_bytes_1MiB",
    unit: "MB/s",
    ours: () => measurePipeBytes("worker"),
    target: 2,
    higherIsBetter: true,
  },
];

const ratios: number[][] = rows.map(() => []);
const pythons: number[][] = rows.map(() => []);
const ourValues: number[][] = rows.map(() => []);
for (let round = 1; round <= ROUNDS; round++) {
  const py = await python();
  for (const [i, row] of rows.entries()) {
    const p = py[row.python]!;
    const o = await row.ours();
    pythons[i]!.push(p);
    ourValues[i]!.push(o);
    ratios[i]!.push(o / p);
    console.log(
      `round ${round}  ${row.name.padEnd(40)} python ${p.toFixed(1).padStart(10)} ${
        row.unit.padEnd(5)
      }  ours ${o.toFixed(1).padStart(10)} ${row.unit.padEnd(5)}  ratio ${(o / p).toFixed(2)}`,
    );
  }
}
console.log(`\nmedians of ${ROUNDS} rounds (same-round ratios):`);
for (const [i, row] of rows.entries()) {
  const ratio = median(ratios[i]!);
  const ok = row.higherIsBetter ? ratio >= row.target : ratio <= row.target;
  console.log(
    `${row.name.padEnd(40)} python ${median(pythons[i]!).toFixed(1).padStart(10)} ${
      row.unit.padEnd(5)
    } ours ${median(ourValues[i]!).toFixed(1).padStart(10)} ${row.unit.padEnd(5)} ratio ${
      ratio.toFixed(2)
    }  target ${row.higherIsBetter ? "≥" : "≤"} ${row.target}  ${ok ? "met" : "NOT met"}`,
  );
}
