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
import { Manager, type ManagerStartOptions } from "./manager.ts";
import { Pipe } from "./pipe.ts";
import { Pool } from "./pool.ts";
import { Process } from "./process.ts";
import { JoinableQueue, Queue, SimpleQueue } from "./queue.ts";
import { RawArray, RawValue, SharedArray, SharedMemory, Value } from "./shared.ts";
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from "./sync.ts";

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
 * The members of a context: the package's classes bound to one start method,
 * which they use unless their options name another.
 */
export interface Context {
  /** The start method of everything made from this context. */
  readonly startMethod: StartMethod;
  /** {@linkcode Process} with this context's start method. */
  readonly Process: typeof Process;
  /** {@linkcode Pool} with this context's start method. */
  readonly Pool: typeof Pool;
  /** {@linkcode Manager}, whose server starts with this context's start method. */
  readonly Manager: typeof Manager;
  /** {@linkcode Queue}: it works between children of either start method. */
  readonly Queue: typeof Queue;
  /** {@linkcode JoinableQueue}: it works between children of either start method. */
  readonly JoinableQueue: typeof JoinableQueue;
  /** {@linkcode SimpleQueue}: it works between children of either start method. */
  readonly SimpleQueue: typeof SimpleQueue;
  /** {@linkcode Pipe}: its ends work in children of either start method. */
  readonly Pipe: typeof Pipe;
  /** {@linkcode Value} backed for this context's start method. */
  readonly Value: typeof Value;
  /** {@linkcode RawValue} backed for this context's start method. */
  readonly RawValue: typeof RawValue;
  /** {@linkcode SharedArray} backed for this context's start method. */
  readonly SharedArray: typeof SharedArray;
  /** {@linkcode RawArray} backed for this context's start method. */
  readonly RawArray: typeof RawArray;
  /** {@linkcode SharedMemory} backed for this context's start method. */
  readonly SharedMemory: typeof SharedMemory;
  /** {@linkcode Lock} backed for this context's start method. */
  readonly Lock: typeof Lock;
  /** {@linkcode RLock} backed for this context's start method. */
  readonly RLock: typeof RLock;
  /** {@linkcode Semaphore} backed for this context's start method. */
  readonly Semaphore: typeof Semaphore;
  /** {@linkcode BoundedSemaphore} backed for this context's start method. */
  readonly BoundedSemaphore: typeof BoundedSemaphore;
  /** {@linkcode Event} backed for this context's start method. */
  readonly Event: typeof Event;
  /** {@linkcode Condition} backed for this context's start method. */
  readonly Condition: typeof Condition;
  /** {@linkcode Barrier} backed for this context's start method. */
  readonly Barrier: typeof Barrier;
}

const contexts = new Map<StartMethod, Context>();

// deno-lint-ignore no-explicit-any
type Class = new (...args: any[]) => object;

/**
 * A subclass of `cls` whose options argument (at `at`) has `startMethod`
 * unless the caller gave one.
 */
function bind<C extends Class>(cls: C, at: number, startMethod: StartMethod): C {
  const bound = class extends cls {
    // deno-lint-ignore no-explicit-any
    constructor(...args: any[]) {
      const options = args[at] as { startMethod?: StartMethod } | undefined;
      args[at] = { ...options, startMethod: options?.startMethod ?? startMethod };
      super(...args);
    }
  };
  Object.defineProperty(bound, "name", { value: cls.name });
  internalClasses.add(bound);
  return bound;
}

/**
 * A context whose members use a start method, as Python's `get_context()`.
 *
 * @param method The start method; the default one when left out.
 * @returns The context for that start method.
 * @throws {TypeError} When `method` is not a start method.
 *
 * @example Start a worker child through a context
 * ```ts
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
    context = {
      startMethod,
      Process: bind(Process, 0, startMethod),
      Pool: bind(Pool, 0, startMethod),
      Manager: class extends Manager {
        static override start(options: ManagerStartOptions = {}): Promise<Manager> {
          return super.start({ ...options, startMethod: options.startMethod ?? startMethod });
        }
      },
      // Queues and pipes do not depend on a start method.
      Queue,
      JoinableQueue,
      SimpleQueue,
      Pipe,
      Value: bind(Value, 2, startMethod),
      RawValue: bind(RawValue, 2, startMethod),
      SharedArray: bind(SharedArray, 2, startMethod),
      RawArray: bind(RawArray, 2, startMethod),
      SharedMemory: bind(SharedMemory, 0, startMethod),
      Lock: bind(Lock, 0, startMethod),
      RLock: bind(RLock, 0, startMethod),
      Semaphore: bind(Semaphore, 1, startMethod),
      BoundedSemaphore: bind(BoundedSemaphore, 1, startMethod),
      Event: bind(Event, 0, startMethod),
      Condition: bind(Condition, 1, startMethod),
      Barrier: bind(Barrier, 1, startMethod),
    };
    contexts.set(startMethod, context);
  }
  return context;
}
