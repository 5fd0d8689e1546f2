/**
 * Start methods and contexts, as Python's `multiprocessing.get_context()`.
 *
 * @example Use workers for everything made from a context
 * ```ts
 * import { getContext } from "@seed/multiprocessing/context";
 * import assert from "node:assert/strict";
 *
 * const ctx = getContext("worker");
 * assert.equal(ctx.startMethod, "worker");
 * ```
 *
 * @module
 */
import { internalClasses, self, type StartMethod, validateStartMethod } from "./_state.ts";
import { Process, type ProcessOptions } from "./process.ts";

export type { StartMethod } from "./_state.ts";

/**
 * The start method used by objects made without one: `"process"` unless
 * {@linkcode setStartMethod} changed it.
 *
 * @returns The default start method.
 *
 * @example
 * ```ts
 * import { getStartMethod } from "@seed/multiprocessing/context";
 * import assert from "node:assert/strict";
 *
 * assert.equal(getStartMethod(), "process");
 * ```
 */
export function getStartMethod(): StartMethod {
  return self.defaultStartMethod;
}

/**
 * Sets the start method for objects made afterwards.
 *
 * @param method `"process"` or `"worker"`.
 * @throws {TypeError} When `method` is not a start method.
 *
 * @example
 * ```ts
 * import { getStartMethod, setStartMethod } from "@seed/multiprocessing/context";
 * import assert from "node:assert/strict";
 *
 * setStartMethod("worker");
 * assert.equal(getStartMethod(), "worker");
 * setStartMethod("process");
 * ```
 */
export function setStartMethod(method: StartMethod): void {
  self.defaultStartMethod = validateStartMethod(method);
}

/**
 * The members of a context: the package's classes bound to one start method.
 */
export interface Context {
  /** The start method of everything made from this context. */
  readonly startMethod: StartMethod;
  /** {@linkcode Process}, started with this context's start method by default. */
  readonly Process: typeof Process;
}

const contexts = new Map<StartMethod, Context>();

/**
 * A context whose members use a start method, as Python's `get_context()`.
 *
 * @param method The start method; the default one when left out.
 * @returns The context for that start method.
 * @throws {TypeError} When `method` is not a start method.
 *
 * @example Start a worker child through a context
 * ```ts ignore
 * import { getContext } from "@seed/multiprocessing/context";
 *
 * export function work() {}
 *
 * if (import.meta.main) {
 *   const ctx = getContext("worker");
 *   const p = new ctx.Process({ target: work });
 *   await p.start();
 *   await p.join();
 * }
 * ```
 */
export function getContext(method?: StartMethod): Context {
  const startMethod = validateStartMethod(method ?? self.defaultStartMethod);
  let context = contexts.get(startMethod);
  if (context === undefined) {
    const ContextProcess = class Process_<A extends unknown[] = unknown[]> extends Process<A> {
      constructor(options: ProcessOptions<A> = {}) {
        super({ ...options, startMethod: options.startMethod ?? startMethod });
      }
    };
    internalClasses.add(ContextProcess);
    context = { startMethod, Process: ContextProcess as typeof Process };
    contexts.set(startMethod, context);
  }
  return context;
}
