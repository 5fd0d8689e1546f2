// The classic first multiprocessing program: the parent and two children print
// their pids and parent pids, then the parent joins them.
//
//   deno run --allow-read --allow-run examples/process.ts
import { currentProcess, parentProcess, Process } from "../mod.ts";

export function info(title: string): void {
  const parent = parentProcess();
  console.log(
    `${title}: name ${currentProcess().name}, pid ${Deno.pid}, parent pid ${
      parent?.pid ?? "(none)"
    }`,
  );
}

export function f(name: string): void {
  info("function f");
  console.log(`hello, ${name}`);
}

if (import.meta.main) {
  info("main line");
  const children = [
    new Process({ target: f, args: ["bob"] }),
    new Process({ target: f, args: ["alice"] }),
  ];
  for (const child of children) await child.start();
  for (const child of children) {
    await child.join();
    console.log(`${child.name} (pid ${child.pid}) exited with code ${child.exitCode}`);
  }
}
