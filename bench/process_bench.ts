// Process start + join, as Python's anchor P3 measures it:
//   deno task bench            (all benchmarks)
//   deno run -A bench/process_vs_python.ts   (side by side with Python)
import { Process } from "../mod.ts";
import { noop } from "./targets.ts";

async function startJoin(startMethod: "process" | "worker"): Promise<void> {
  const p = new Process({ target: noop, startMethod });
  await p.start();
  await p.join();
  if (p.exitCode !== 0) throw new Error(`child exited with ${p.exitCode}`);
  p.close();
}

Deno.bench(
  { name: "Process start+join (process)", group: "start+join", baseline: true, n: 20 },
  async () => {
    await startJoin("process");
  },
);

Deno.bench({ name: "Process start+join (worker)", group: "start+join", n: 50 }, async () => {
  await startJoin("worker");
});
