// A parent program for tests that must watch a whole parent's life: its exit,
// its death, its output. Usage: driver.ts <mode> <dir> [startMethod]
import { Process, Queue } from "../../mod.ts";
import { expectDenied, fail, probeReads, sleepForever, writeLater } from "./targets.ts";

const [mode, dir = ".", method = "process"] = Deno.args;
const startMethod = method as "process" | "worker";

export function hello(): void {
  console.log("hello from the child");
}

/** Sleeps with a queue in hand (which made the parent's socket dir). */
export function holdQueue(_queue: Queue): Promise<never> {
  return sleepForever();
}

if (!import.meta.main) {
  // Imported by a child for its target: nothing to drive.
} else if (mode === "exit") {
  // Leaves a daemon and a non-daemon child running and returns.
  const daemon = new Process({ target: sleepForever, daemon: true, startMethod });
  const worker = new Process({
    target: writeLater,
    args: [`${dir}/joined.json`, 300],
    startMethod,
  });
  await daemon.start();
  await worker.start();
  console.log(JSON.stringify({ daemon: daemon.pid, worker: worker.pid }));
} else if (mode === "killed") {
  const child = new Process({ target: sleepForever, startMethod });
  await child.start();
  console.log(JSON.stringify({ child: child.pid }));
  await child.join();
} else if (mode === "stdout") {
  const child = new Process({ target: hello, startMethod });
  await child.start();
  await child.join();
} else if (mode === "throws") {
  const child = new Process({ target: fail, args: ["bad input in the child"], startMethod });
  await child.start();
  await child.join();
  console.log(JSON.stringify({ exitCode: child.exitCode }));
} else if (mode === "deny") {
  // This parent may read all but secret.txt. Deno does not tell it what it is
  // denied, so an "inherit" child gets no read access at all; a child given an
  // explicit list gets the entries this parent may read.
  Deno.writeTextFileSync(`${dir}/public.txt`, "public");
  const inherit = new Process({ target: expectDenied, args: [`${dir}/secret.txt`] });
  const listed = new Process({
    target: probeReads,
    args: [`${dir}/public.txt`, `${dir}/secret.txt`],
    permissions: { read: [`${dir}/public.txt`, `${dir}/secret.txt`] },
  });
  const codes = [];
  for (const child of [inherit, listed]) {
    await child.start();
    await child.join();
    codes.push(child.exitCode);
  }
  console.log(JSON.stringify({ exitCodes: codes }));
} else if (mode === "no-net") {
  // Without --allow-net a queue cannot reach a child: the call fails.
  const child = new Process({ target: holdQueue, args: [new Queue()], daemon: true, startMethod });
  try {
    await child.start();
  } catch (error) {
    console.log(JSON.stringify({ error: (error as Error).name }));
  }
} else if (mode === "uncaught") {
  // Ends on an uncaught error while its socket dir is in use: "unload" does not run.
  // A queue handed to a child makes the socket dir (its listener's).
  const queue = new Queue();
  const daemon = new Process({ target: holdQueue, args: [queue], daemon: true, startMethod });
  await daemon.start();
  console.log(JSON.stringify({ daemon: daemon.pid }));
  throw new Error("left uncaught on purpose");
} else if (mode === "start") {
  const child = new Process({ target: hello, startMethod });
  try {
    await child.start();
    await child.join();
    console.log("started");
  } catch (error) {
    console.log(String(error));
  }
}
