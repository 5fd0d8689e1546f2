/**
 * A pool of worker processes or workers that run functions for you, as
 * Python's `multiprocessing.Pool`; it survives workers that crash.
 *
 * @example Double numbers in two workers
 * ```ts
 * import { Pool } from "@seed/multiprocessing/pool";
 *
 * export function double(x: number): number {
 *   return x * 2;
 * }
 *
 * if (import.meta.main) {
 *   await using pool = new Pool({ processes: 2 });
 *   console.log(await pool.map(double, [1, 2, 3])); // [2, 4, 6]
 * }
 * ```
 *
 * @module
 */
import { encode, encodeSlice, seal } from "./_codec.ts";
import {
  allEncodable,
  copyResults,
  type EngineOptions,
  type Job,
  PoolEngine,
} from "./_pool_engine.ts";
import { self, type StartMethod, validateStartMethod } from "./_state.ts";
import { callerModules, findTarget, type TargetRef } from "./_target.ts";
import { TimeoutError, ValueError } from "./errors.ts";
import { cpuCount } from "./process.ts";

/** Options of {@linkcode Pool}. */
export interface PoolOptions {
  /**
   * How many workers run at once.
   *
   * @default {cpuCount()}
   */
  processes?: number | undefined;
  /** An exported function each worker calls once, with `initargs`, before any task. */
  initializer?: ((...args: never[]) => unknown) | undefined;
  /**
   * The arguments for `initializer`.
   *
   * @default {[]}
   */
  initargs?: unknown[] | undefined;
  /** Replace a worker after it has run this many tasks (chunks); by default never. */
  maxTasksPerChild?: number | undefined;
  /**
   * `"process"` for `deno` processes, `"worker"` for Web Workers.
   *
   * @default {getStartMethod()}
   */
  startMethod?: StartMethod | undefined;
}

/** How long a call may take, and how to cancel it (beyond Python). */
export interface CallOptions {
  /** Cancels the call: queued tasks are dropped, running ones' workers replaced. */
  signal?: AbortSignal | undefined;
  /** Fails the call with `TimeoutError` after this many milliseconds, as `signal` would. */
  timeout?: number | undefined;
}

/** Options of `map`, `starmap`, `imap` and `imapUnordered`. */
export interface MapOptions extends CallOptions {
  /**
   * How many items go to a worker in one task. `map` picks about four tasks
   * per worker, as Python does; `imap` sends one item at a time.
   */
  chunksize?: number | undefined;
}

/** Options of `applyAsync`, `mapAsync` and `starmapAsync`. */
export interface AsyncCallOptions<R> extends MapOptions {
  /** Called with the result when the call succeeds. */
  callback?: ((result: R) => void) | undefined;
  /** Called with the error when the call fails. */
  errorCallback?: ((error: unknown) => void) | undefined;
}

/** Options of {@linkcode AsyncResult.prototype.get} and `wait`. */
export interface WaitOptions {
  /** Stop waiting after this many milliseconds. */
  timeout?: number | undefined;
  /** Stop waiting when aborted: rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/** Waits for `promise`, or rejects when the time is up or the signal aborts. */
function waitFor<T>(
  promise: Promise<T>,
  options: WaitOptions | undefined,
  what: string,
): Promise<T> {
  const { timeout, signal } = options ?? {};
  if (timeout === undefined && signal === undefined) return promise;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const timer = timeout === undefined ? undefined : setTimeout(
      () => reject(new TimeoutError(`Cannot get ${what}: it was not ready after ${timeout} ms`)),
      Math.max(0, timeout),
    );
    const onAbort = () => reject(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    });
  });
}

/**
 * The result of a call that runs in the background (`applyAsync`,
 * `mapAsync`, `starmapAsync`). It is also awaitable.
 *
 * @typeParam R The result's type.
 *
 * @example
 * ```ts
 * import { Pool } from "@seed/multiprocessing/pool";
 *
 * export function square(x: number): number {
 *   return x * x;
 * }
 *
 * if (import.meta.main) {
 *   await using pool = new Pool({ processes: 1 });
 *   const result = pool.applyAsync(square, [4]);
 *   console.log(await result.get({ timeout: 5000 })); // 16
 * }
 * ```
 */
export class AsyncResult<R> implements PromiseLike<R> {
  #promise: Promise<R>;
  #state: "pending" | "ok" | "error" = "pending";

  /**
   * Wraps a promise of the result. Made by the pool, not by users.
   *
   * @param promise The call's outcome.
   */
  constructor(promise: Promise<R>) {
    this.#promise = promise;
    // Handling the rejection here also keeps it from being reported as unhandled:
    // the error is for get().
    promise.then(() => this.#state = "ok", () => this.#state = "error");
  }

  /**
   * The result, once ready.
   *
   * @param options How long to wait at most.
   * @returns The result.
   * @throws {TimeoutError} When the time is up first; the call goes on.
   */
  get(options?: WaitOptions): Promise<R> {
    return waitFor(this.#promise, options, "the result");
  }

  /**
   * Waits until the result is ready, whether the call failed or not.
   *
   * @param options How long to wait at most; then it resolves anyway.
   */
  async wait(options?: WaitOptions): Promise<void> {
    try {
      await waitFor(this.#promise, options, "the result");
    } catch { /* ready, failed, or out of time: all the same here */ }
  }

  /** Whether the call has finished. */
  ready(): boolean {
    return this.#state !== "pending";
  }

  /**
   * Whether the call finished without an error.
   *
   * @throws {ValueError} When the call has not finished.
   */
  successful(): boolean {
    if (this.#state === "pending") {
      throw new ValueError(
        "Cannot tell whether the call was successful: it is not ready; wait() first",
      );
    }
    return this.#state === "ok";
  }

  /**
   * Awaiting an AsyncResult awaits its result.
   *
   * @typeParam T1 What the fulfilled branch returns.
   * @typeParam T2 What the rejected branch returns.
   * @param onfulfilled Called with the result.
   * @param onrejected Called with the error.
   * @returns A promise of what the branch returns.
   */
  then<T1 = R, T2 = never>(
    onfulfilled?: ((value: R) => T1 | PromiseLike<T1>) | null,
    onrejected?: ((reason: unknown) => T2 | PromiseLike<T2>) | null,
  ): Promise<T1 | T2> {
    return this.#promise.then(onfulfilled, onrejected);
  }
}

/**
 * The chunk of `calls` from `start` to `end`, encoded. On failure, encodes
 * them one by one to name the item: `items[7].fn`, or `args[1]` for an
 * `apply`.
 */
function encodeChunk(calls: unknown[], start: number, end: number, star: boolean): Uint8Array {
  try {
    // Sealed: sent from where it is, and sent again as is if its worker dies.
    return seal(encodeSlice(calls, start, end, {}, "items"));
  } catch (error) {
    if (calls.length === 1 && star) encode(calls[0], {}, "args");
    for (let i = start; i < end; i++) encode(calls[i], {}, `items[${i}]`);
    throw error;
  }
}

// A map sends its first chunks early only when this many items or more come
// after them. Fewer encode in about the time one more message per worker
// takes: 4,096 numbers in ~30 µs here, short strings in ~60; a socket round
// trip is ~33 µs (../shared/anchors/README.md).
const EARLY_MIN_REST = 4096;

const arrayValues = Array.prototype[Symbol.iterator];

/**
 * `items` as an array: an array itself when iterating it reads its items in
 * order (it is encoded at once, so later changes do not reach the workers),
 * else a copy. A copy of 100,000 items is 800 KB made only to be encoded.
 */
function listOf<T>(items: Iterable<T>): T[] {
  return Array.isArray(items) && items[Symbol.iterator] === arrayValues ? items : Array.from(items);
}

function positiveInteger(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot use ${what} ${String(value)}: it must be a whole number of at least 1`,
    );
  }
  return value;
}

/**
 * A pool of workers, as Python's `multiprocessing.Pool`. Functions passed to
 * it must be exported from a module, as a Process target must.
 *
 * A worker that dies mid-task (killed, `Deno.exit`, out of memory) fails that
 * task with `WorkerLostError` and is replaced: the pool keeps serving.
 *
 * @example Map, apply and iterate
 * ```ts
 * import { Pool } from "@seed/multiprocessing";
 *
 * export function upper(s: string): string {
 *   return s.toUpperCase();
 * }
 *
 * if (import.meta.main) {
 *   await using pool = new Pool({ processes: 2 });
 *   console.log(await pool.map(upper, ["kel", "smile"])); // ["KEL", "SMILE"]
 *   console.log(await pool.apply(upper, ["one"])); // "ONE"
 *   for await (const s of pool.imap(upper, ["a", "b"])) console.log(s);
 * }
 * ```
 */
export class Pool implements AsyncDisposable {
  #engine: PoolEngine;
  #processes: number;
  #state: "run" | "close" | "terminate" = "run";
  #refs = new WeakMap<object, TargetRef>();

  /**
   * Starts the workers.
   *
   * @param options How many workers, how to start them, and what they run first.
   * @throws {TypeError} When the initializer is not an exported function, or an
   * option has the wrong type.
   * @throws {RangeError} When `processes` or `maxTasksPerChild` is not a whole
   * number of at least 1.
   */
  constructor(options: PoolOptions = {}) {
    const { initializer, initargs = [], startMethod } = options;
    this.#processes = positiveInteger(options.processes, "processes") ?? cpuCount();
    const maxTasksPerChild = positiveInteger(options.maxTasksPerChild, "maxTasksPerChild");
    if (!Array.isArray(initargs)) {
      throw new TypeError("Cannot make a Pool: initargs must be an array");
    }
    const engineOptions: EngineOptions = {
      processes: this.#processes,
      initializer: initializer === undefined
        ? null
        : findTarget(initializer, "pool initializer", callerModules(new Error().stack)),
      initargs,
      maxTasksPerChild,
      startMethod: validateStartMethod(startMethod ?? self.defaultStartMethod),
    };
    encode(initargs, {}, "initargs");
    this.#engine = new PoolEngine(engineOptions);
  }

  /** How many workers the pool runs. */
  get processes(): number {
    return this.#processes;
  }

  #ref(fn: unknown): TargetRef {
    if (typeof fn === "function") {
      const known = this.#refs.get(fn);
      if (known !== undefined) return known;
    }
    // Only now the stack, which is costly: it tells where the caller is.
    const ref = findTarget(fn, "pool function", callerModules(new Error().stack));
    this.#refs.set(fn as object, ref);
    return ref;
  }

  #checkRunning(): void {
    if (this.#state !== "run") {
      throw new ValueError(
        `Cannot submit work to the pool: it is ${
          this.#state === "close" ? "closed" : "terminated"
        }`,
      );
    }
  }

  /**
   * Runs a job of `calls`, chunked, and resolves with the results in order.
   * Everything that can fail at the call fails before anything is queued.
   */
  #run(
    fn: TargetRef,
    star: boolean,
    calls: unknown[],
    chunksize: number,
    options: CallOptions,
  ): Promise<unknown[]> {
    const { signal, timeout } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const length = calls.length;
    const count = Math.ceil(length / chunksize);
    const chunk = (index: number) =>
      encodeChunk(calls, index * chunksize, Math.min(length, (index + 1) * chunksize), star);
    // A large map of primitives sends each worker its first chunk before
    // encoding the rest: the workers read and start on it meanwhile (a new
    // pool's first map of 100,000 numbers took 4.5 ms against 5.0, medians
    // of 120 maps). Otherwise every chunk is encoded first, so a call that
    // cannot be encoded fails before anything is sent.
    const early = !star && length - this.#processes * chunksize >= EARLY_MIN_REST &&
        allEncodable(calls, this.#processes * chunksize)
      ? this.#processes
      : count;
    const payloads: Uint8Array[] = [];
    for (let index = 0; index < early; index++) payloads.push(chunk(index));
    if (count === 0) return Promise.resolve([]);
    // Made at the first result, not here: a large one takes fresh memory
    // (100,000 items: some 100 page faults), time the workers' start would wait.
    let results: unknown[] | undefined;
    return new Promise<unknown[]>((resolve, reject) => {
      let left = count;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = () => {
        job.settled = true;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const job: Job = {
        settled: false,
        done: (index, values) => {
          results ??= new Array(length);
          copyResults(values, results, index * chunksize);
          if (--left === 0) {
            finish();
            resolve(results);
          }
        },
        fail: (error) => {
          finish();
          reject(error);
        },
      };
      const cancel = (reason: unknown) => this.#engine.cancel(job, reason);
      const onAbort = () => cancel(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeout !== undefined) {
        timer = setTimeout(
          () =>
            cancel(
              new TimeoutError(`Cannot finish the pool call: it took more than ${timeout} ms`),
            ),
          Math.max(0, timeout),
        );
      }
      payloads.forEach((payload, index) => this.#engine.submit(job, fn, star, payload, index));
      if (early === count) return;
      this.#engine.dispatchNow();
      try {
        for (let index = early; index < count; index++) {
          this.#engine.submit(job, fn, star, chunk(index), index);
        }
      } catch (error) {
        // Not expected of primitives (see allEncodable); if it happens, the
        // call fails and its chunks sent already are stopped.
        cancel(error);
      }
    });
  }

  #chunksize(options: MapOptions | undefined, length: number): number {
    const given = positiveInteger(options?.chunksize, "chunksize");
    if (given !== undefined) return given;
    // Python's choice: about four chunks per worker.
    const chunksize = Math.floor(length / (this.#processes * 4));
    return length % (this.#processes * 4) === 0 ? Math.max(1, chunksize) : chunksize + 1;
  }

  /**
   * Calls `fn(...args)` in a worker and resolves with its result.
   *
   * @typeParam A The function's parameter types.
   * @typeParam R The function's return type.
   * @param fn An exported function.
   * @param args Its arguments, copied to the worker.
   * @param options A signal or timeout for the call.
   * @returns The result.
   * @throws {ValueError} When the pool is closed or terminated.
   * @throws {DataCloneError} When an argument cannot be copied to a worker.
   * @throws {WorkerLostError} When the worker died while running the call.
   */
  async apply<A extends unknown[], R>(
    fn: (...args: A) => R,
    args: A,
    options?: CallOptions,
  ): Promise<Awaited<R>> {
    return await this.applyAsync(fn, args, options).get();
  }

  /**
   * Calls `fn(...args)` in a worker, in the background.
   *
   * @typeParam A The function's parameter types.
   * @typeParam R The function's return type.
   * @param fn An exported function.
   * @param args Its arguments, copied to the worker.
   * @param options Callbacks (exactly one of them runs), a signal or a timeout.
   * @returns The result to come.
   * @throws {ValueError} When the pool is closed or terminated.
   * @throws {DataCloneError} When an argument cannot be copied to a worker.
   */
  applyAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    args: A,
    options?: AsyncCallOptions<Awaited<R>>,
  ): AsyncResult<Awaited<R>> {
    this.#checkRunning();
    if (!Array.isArray(args)) throw new TypeError("Cannot apply: args must be an array");
    const ref = this.#ref(fn);
    const promise = this.#run(ref, true, [args], 1, options ?? {}).then((results) =>
      results[0] as Awaited<R>
    );
    return this.#background(promise, options);
  }

  #background<R>(promise: Promise<R>, options: AsyncCallOptions<R> | undefined): AsyncResult<R> {
    const { callback, errorCallback } = options ?? {};
    if (callback !== undefined || errorCallback !== undefined) {
      promise.then((value) => callback?.(value), (error) => errorCallback?.(error));
    }
    return new AsyncResult(promise);
  }

  /**
   * Calls `fn` on every item, in the workers, and resolves with the results in
   * input order. The first error rejects the whole call.
   *
   * @typeParam T The items' type.
   * @typeParam R The function's return type.
   * @param fn An exported function of one argument.
   * @param items The items (any iterable; read at once).
   * @param options The chunk size, a signal or a timeout.
   * @returns The results, in order.
   * @throws {ValueError} When the pool is closed or terminated.
   * @throws {DataCloneError} When an item cannot be copied to a worker.
   * @throws {WorkerLostError} When a worker died while running a chunk.
   */
  async map<T, R>(
    fn: (item: T) => R,
    items: Iterable<T>,
    options?: MapOptions,
  ): Promise<Awaited<R>[]> {
    return await this.mapAsync(fn, items, options).get();
  }

  /**
   * {@linkcode Pool.prototype.map} in the background.
   *
   * @typeParam T The items' type.
   * @typeParam R The function's return type.
   * @param fn An exported function of one argument.
   * @param items The items.
   * @param options The chunk size, callbacks, a signal or a timeout.
   * @returns The results to come.
   * @throws {ValueError} When the pool is closed or terminated.
   * @throws {DataCloneError} When an item cannot be copied to a worker.
   */
  mapAsync<T, R>(
    fn: (item: T) => R,
    items: Iterable<T>,
    options?: AsyncCallOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    this.#checkRunning();
    return this.#mapAll(this.#ref(fn), false, listOf(items), options);
  }

  /**
   * Like `map`, but each item is a list of arguments: `fn(...item)`.
   *
   * @typeParam A The function's parameter types.
   * @typeParam R The function's return type.
   * @param fn An exported function.
   * @param items Argument lists.
   * @param options The chunk size, a signal or a timeout.
   * @returns The results, in order.
   * @throws {ValueError} When the pool is closed or terminated.
   * @throws {DataCloneError} When an argument cannot be copied to a worker.
   */
  async starmap<A extends unknown[], R>(
    fn: (...args: A) => R,
    items: Iterable<A>,
    options?: MapOptions,
  ): Promise<Awaited<R>[]> {
    return await this.starmapAsync(fn, items, options).get();
  }

  /**
   * {@linkcode Pool.prototype.starmap} in the background.
   *
   * @typeParam A The function's parameter types.
   * @typeParam R The function's return type.
   * @param fn An exported function.
   * @param items Argument lists.
   * @param options The chunk size, callbacks, a signal or a timeout.
   * @returns The results to come.
   * @throws {ValueError} When the pool is closed or terminated.
   * @throws {DataCloneError} When an argument cannot be copied to a worker.
   */
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    items: Iterable<A>,
    options?: AsyncCallOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    this.#checkRunning();
    const ref = this.#ref(fn);
    const calls = Array.from(items, (args) => {
      if (!Array.isArray(args)) {
        throw new TypeError("Cannot starmap: each item must be an array of arguments");
      }
      return args as unknown[];
    });
    return this.#mapAll(ref, true, calls, options);
  }

  /** map and starmap: every call, in chunks, in the background. */
  #mapAll<R>(
    ref: TargetRef,
    star: boolean,
    calls: unknown[],
    options: AsyncCallOptions<R> | undefined,
  ): AsyncResult<R> {
    const chunksize = this.#chunksize(options, calls.length);
    const promise = this.#run(ref, star, calls, chunksize, options ?? {});
    return this.#background(promise as Promise<R>, options);
  }

  /**
   * Calls `fn` on every item and yields the results in input order as they
   * come. The items (sync or async iterable) are read lazily, with a bounded
   * number of chunks in flight.
   *
   * @typeParam T The items' type.
   * @typeParam R The function's return type.
   * @param fn An exported function of one argument.
   * @param items The items.
   * @param options The chunk size (default 1), a signal or a timeout.
   * @returns The results, in order.
   * @throws {ValueError} When the pool is closed or terminated.
   */
  imap<T, R>(
    fn: (item: T) => R,
    items: Iterable<T> | AsyncIterable<T>,
    options?: MapOptions,
  ): AsyncIterableIterator<Awaited<R>> {
    this.#checkRunning();
    return this.#imap(this.#ref(fn), items, options, true) as AsyncIterableIterator<
      Awaited<R>
    >;
  }

  /**
   * Like `imap`, but yields results in the order they finish.
   *
   * @typeParam T The items' type.
   * @typeParam R The function's return type.
   * @param fn An exported function of one argument.
   * @param items The items.
   * @param options The chunk size (default 1), a signal or a timeout.
   * @returns The results, as they finish.
   * @throws {ValueError} When the pool is closed or terminated.
   */
  imapUnordered<T, R>(
    fn: (item: T) => R,
    items: Iterable<T> | AsyncIterable<T>,
    options?: MapOptions,
  ): AsyncIterableIterator<Awaited<R>> {
    this.#checkRunning();
    return this.#imap(this.#ref(fn), items, options, false) as AsyncIterableIterator<
      Awaited<R>
    >;
  }

  async *#imap(
    fn: TargetRef,
    items: Iterable<unknown> | AsyncIterable<unknown>,
    options: MapOptions | undefined,
    ordered: boolean,
  ): AsyncGenerator<unknown, void, undefined> {
    const chunksize = positiveInteger(options?.chunksize, "chunksize") ?? 1;
    const callOptions: CallOptions = { signal: options?.signal, timeout: options?.timeout };
    const limit = this.#processes * 2;
    const iterator = Symbol.asyncIterator in items
      ? (items as AsyncIterable<unknown>)[Symbol.asyncIterator]()
      : (items as Iterable<unknown>)[Symbol.iterator]();
    const inFlight = new Map<number, Promise<[number, unknown[]]>>();
    const done = new Map<number, unknown[]>();
    let next = 0;
    let sent = 0;
    let exhausted = false;
    const fill = async () => {
      while (!exhausted && inFlight.size < limit) {
        const chunk: unknown[] = [];
        while (chunk.length < chunksize) {
          const step = await iterator.next();
          if (step.done) {
            exhausted = true;
            break;
          }
          chunk.push(step.value);
        }
        if (chunk.length === 0) break;
        const index = sent++;
        const promise = this.#run(fn, false, chunk, chunksize, callOptions).then((r) =>
          [index, r] as [number, unknown[]]
        );
        promise.catch(() => {}); // Rethrown when it is awaited below.
        inFlight.set(index, promise);
      }
    };
    try {
      await fill();
      while (inFlight.size > 0 || done.size > 0) {
        if (ordered) {
          if (!done.has(next)) {
            const [index, results] = await inFlight.get(next)!;
            inFlight.delete(index);
            done.set(index, results);
          }
          const results = done.get(next)!;
          done.delete(next++);
          await fill();
          yield* results;
        } else {
          const [index, results] = await Promise.race(inFlight.values());
          inFlight.delete(index);
          await fill();
          yield* results;
        }
      }
    } finally {
      if (!exhausted) await (iterator as AsyncIterator<unknown>).return?.();
    }
  }

  /** Accepts no more work; the workers exit once what was submitted is done. */
  close(): void {
    if (this.#state === "run") this.#state = "close";
    this.#engine.close();
  }

  /** Stops the workers at once; calls not finished fail. */
  terminate(): void {
    this.#state = "terminate";
    this.#engine.terminate();
  }

  /**
   * Waits until every worker has exited.
   *
   * @throws {ValueError} When the pool was neither closed nor terminated.
   */
  async join(): Promise<void> {
    if (this.#state === "run") {
      throw new ValueError(
        "Cannot join the pool: it is running; call close() or terminate() first",
      );
    }
    await this.#engine.join();
  }

  /** Closes the pool and waits for its workers, as `with Pool() as pool:` ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === "run") this.close();
    await this.join();
  }
}
