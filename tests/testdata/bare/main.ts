// Run from this folder: the child must resolve "greeting" as this program does.
import { greeting } from "greeting";
import { Process } from "../../../mod.ts";

export function greet(path: string): void {
  Deno.writeTextFileSync(path, greeting);
}

if (import.meta.main) {
  const p = new Process({
    target: greet,
    args: [Deno.args[0]!],
    startMethod: Deno.args[1] as "process",
  });
  await p.start();
  await p.join();
  Deno.exit(p.exitCode ?? 99);
}
