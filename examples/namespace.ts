// A manager's namespace: a child turns x=1, y=1 into x=6, y=10.
// Run: deno run --allow-read --allow-write --allow-run --allow-net examples/namespace.ts
import { Manager, type NamespaceProxy, Process } from "../mod.ts";

/** Adds 5 to x and multiplies y by 10. */
export async function change(ns: NamespaceProxy): Promise<void> {
  await ns.set("x", await ns.get<number>("x") + 5);
  await ns.set("y", await ns.get<number>("y") * 10);
}

if (import.meta.main) {
  await using manager = await Manager.start();
  const ns = await manager.namespace({ x: 1, y: 1 });
  const child = new Process({ target: change, args: [ns] });
  await child.start();
  await child.join();
  console.log(await ns.toObject()); // { x: 6, y: 10 }
}
