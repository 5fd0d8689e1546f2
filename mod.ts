/**
 * Python's `multiprocessing`, re-made for Deno: run functions in other
 * processes or workers and talk to them.
 *
 * Every exported function in a module can be a child's target:
 *
 * ```ts
 * import { Process } from "@seed/multiprocessing";
 *
 * export function f(name: string) {
 *   console.log("hello", name);
 * }
 *
 * if (import.meta.main) {
 *   const p = new Process({ target: f, args: ["bob"] });
 *   await p.start();
 *   await p.join();
 * }
 * ```
 *
 * @module
 */
export * from "./context.ts";
export * from "./errors.ts";
export * from "./process.ts";
export * from "./shared.ts";
export * from "./sync.ts";
export * from "./pipe.ts";
export * from "./queue.ts";
export * from "./pool.ts";
export * from "./manager.ts";
