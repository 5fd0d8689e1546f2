// The loop a pool worker runs: it receives tasks (a chunk of argument lists
// for one exported function) over its end of a pipe and sends back the
// results, or the first error, for the whole chunk. Closing the pipe ends it.
import { decodeItems, encodeNumbers, seal } from "./_codec.ts";
import { EOFError } from "./errors.ts";
import type { Connection } from "./pipe.ts";
import { flushNow } from "./_socket.ts";
import type { TargetRef } from "./_target.ts";

/**
 * A chunk of work: call function `fn` on each item encoded in `calls`:
 * `fn(item)`, or `fn(...item)` when `star` is set (starmap, apply). The first
 * task with a function names its module (`ref`); later ones send null.
 */
export type Task = [
  id: number,
  fn: number,
  ref: TargetRef | null,
  star: boolean,
  calls: Uint8Array,
];

/** Tasks sent together, run in order. */
export type TaskMessage = Task[];

/**
 * The outcome of a chunk: its results in order, or the error that stopped it.
 * Results that are all int32s, for items that were all numbers, come encoded
 * as an array ({@linkcode encodeNumbers}): packed as they were made.
 */
export type ResultMessage = [id: number, ok: true, results: unknown[] | Uint8Array] | [
  id: number,
  ok: false,
  error: unknown,
];

async function load({ module, exportName }: TargetRef): Promise<(...args: unknown[]) => unknown> {
  const namespace = await import(module) as Record<string, unknown>;
  const value = namespace[exportName];
  if (typeof value !== "function") {
    throw new TypeError(
      `Cannot run pool task: ${module} does not export a function named "${exportName}"`,
    );
  }
  return value as (...args: unknown[]) => unknown;
}

// Calls made by one call of run() or runInts() while calls are cheap. A
// "process" pool worker runs with --single-threaded (see _pool_engine.ts),
// which turns off V8's on-stack replacement: V8 optimizes a function only
// when it is entered, so one call over a chunk of 12,500 items would run
// unoptimized to its end, and a fresh worker's first chunks with it.
const CALLS_PER_RUN = 256;
// Calls that take longer than this (ms) each run one to a call of run(): V8
// inlines the function into run() and optimizes the two together only once
// run() has been called often enough. In runs of 256, a "worker" pool's
// first maps of a compute-heavy function ran some three times slower (a
// "process" pool's Maglev inlines only the smallest functions: see
// _pool_engine.ts). A worker starts with runs of 16: its first calls may be
// slow ones.
const SLOW_CALL = 0.001;
let callsPerRun = 16;
// Runs are timed one in this many, a chunk's first among them. Timing each
// one made performance.now() and timeRun() hot enough that V8 compiled them
// during a fresh worker's first map (synchronously: about 0.5 ms of its 3);
// and slow calls, one to a run, paid for timing each in code not compiled
// yet. A chunk's first run is timed, as its function may be another, slower
// one: in longer runs, a "worker" pool's first map of a compute-heavy
// function took twice as long. The test is inline, not a function, so that
// it is not one more to compile.
const TIMED_EVERY = 8;

/** Sets callsPerRun by how long the last runs took: returns now. */
function timeRun(started: number, calls: number): number {
  const now = performance.now();
  callsPerRun = now - started > calls * SLOW_CALL ? 1 : CALLS_PER_RUN;
  return now;
}

/**
 * Calls `fn` on `calls` from `from` to `to`, into `results`, until one
 * returns a promise: returns its index (or `to` when none did).
 */
function run(
  fn: (...args: unknown[]) => unknown,
  star: boolean,
  calls: ArrayLike<unknown>,
  results: unknown[],
  from: number,
  to: number,
): number {
  for (let i = from; i < to; i++) {
    const result = star ? fn(...calls[i] as unknown[]) : fn(calls[i]);
    results[i] = result;
    if (result instanceof Promise) return i;
  }
  return to;
}

// The result at which runInts() stopped.
let stray: unknown;

/**
 * Calls `fn` on `calls` from `from` to `to`, into `ints`, until one returns
 * something else than an int32 (kept in `stray`): returns its index (or `to`).
 * A "process" pool's V8 flags name it, to keep it out of Turbofan (see
 * _pool_engine.ts): keep the name.
 */
function runInts(
  fn: (...args: unknown[]) => unknown,
  calls: ArrayLike<unknown>,
  ints: Int32Array,
  from: number,
  to: number,
): number {
  for (let i = from; i < to; i++) {
    const result = fn(calls[i]);
    // The -0 test runs for zeros only: V8 deoptimizes this function once,
    // at the first zero after compiling it (then compiles it with that).
    if (
      typeof result !== "number" || (result | 0) !== result ||
      (result === 0 && Object.is(result, -0))
    ) {
      stray = result;
      return i;
    }
    ints[i] = result;
  }
  return to;
}

/**
 * Runs `calls` from `from` on, callsPerRun at a time, into `results`, until
 * one returns a promise: returns its index (or the length when none did).
 */
function runFrom(
  fn: (...args: unknown[]) => unknown,
  star: boolean,
  calls: ArrayLike<unknown>,
  results: unknown[],
  from: number,
): number {
  const length = calls.length;
  let started = performance.now();
  let timedFrom = from;
  let runs = 0;
  for (let i = from; i < length;) {
    const to = Math.min(length, i + callsPerRun);
    const done = run(fn, star, calls, results, i, to);
    if (done < to) return done;
    i = to;
    if (++runs % TIMED_EVERY === 1) {
      started = timeRun(started, i - timedFrom);
      timedFrom = i;
    }
  }
  return length;
}

// Where runAll() collects int32 results, kept for the next chunk: each fresh
// one was some 13 page faults (50 KB for a chunk of 12,500), ~40 µs here.
// Chunks larger than this take their own.
const INTS_KEPT = 1 << 17;
let intsScratch = new Int32Array(0);

/**
 * The results of `fn` on each of `calls`, or a promise of them when some are
 * promises (only those are awaited: a microtask per item is a cost in a big
 * map). Numbers in (a typed array from decodeItems) often mean int32s out:
 * those are collected packed, as the reply sends them. Packing them afterwards
 * would be a second loop over the results, as costly as the calls in a fresh
 * worker, which interprets it.
 */
function runAll(
  fn: (...args: unknown[]) => unknown,
  star: boolean,
  calls: ArrayLike<unknown>,
): unknown[] | Uint8Array | Promise<unknown[]> {
  const length = calls.length;
  let results: unknown[];
  let i = 0;
  if (!star && !Array.isArray(calls)) {
    // Used up before runAll() returns: encodeNumbers() copies it.
    let ints: Int32Array;
    if (length > INTS_KEPT) ints = new Int32Array(length);
    else {
      if (intsScratch.length < length) intsScratch = new Int32Array(length);
      ints = intsScratch.subarray(0, length);
    }
    // runFrom's loop, apart: sharing it (runInts or run per slice) made a
    // "worker" pool's first two maps of a compute-heavy function 2x slower.
    let started = performance.now();
    let timedFrom = 0;
    let runs = 0;
    while (i < length) {
      const to = Math.min(length, i + callsPerRun);
      const done = runInts(fn, calls, ints, i, to);
      if (done < to) {
        i = done;
        break;
      }
      i = to;
      if (++runs % TIMED_EVERY === 1) {
        started = timeRun(started, i - timedFrom);
        timedFrom = i;
      }
    }
    // Sealed: the reply sends these bytes from where they are.
    if (i === length) return seal(encodeNumbers(ints));
    // Result i is something else: it and the rest go the general way.
    results = new Array(length);
    for (let k = 0; k < i; k++) results[k] = ints[k];
    results[i] = stray;
    stray = undefined;
    if (!(results[i] instanceof Promise)) i = runFrom(fn, star, calls, results, i + 1);
  } else {
    results = new Array(length);
    i = runFrom(fn, star, calls, results, 0);
  }
  return i < length ? settle(fn, star, calls, results, i) : results;
}

/** The rest of runAll(), from result `i`, a promise. */
async function settle(
  fn: (...args: unknown[]) => unknown,
  star: boolean,
  calls: ArrayLike<unknown>,
  results: unknown[],
  i: number,
): Promise<unknown[]> {
  while (i < calls.length) {
    results[i] = await results[i];
    i = runFrom(fn, star, calls, results, i + 1);
  }
  return results;
}

// Milliseconds of work after which a task's reply is written at once.
const LONG_TASK = 0.5;

/** Runs a batch of tasks in order, replying to each; settles once the replies are written. */
async function runBatch(
  conn: Connection<ResultMessage, TaskMessage>,
  functions: Map<number, Promise<(...args: unknown[]) => unknown>>,
  batch: TaskMessage,
): Promise<void> {
  const sent: Promise<void>[] = [];
  for (const [id, fnId, ref, star, payload] of batch) {
    let reply: ResultMessage;
    if (ref !== null) functions.set(fnId, load(ref));
    const started = performance.now();
    try {
      const calls = decodeItems(payload);
      const fn = await functions.get(fnId)!;
      const results = runAll(fn, star, calls);
      reply = [id, true, results instanceof Promise ? await results : results];
    } catch (error) {
      reply = [id, false, error];
    }
    // Not awaited: replies made in one turn go out in one write. But after
    // a long task, the reply goes now: the pool can take it in while the
    // next one runs.
    sent.push(conn.send(reply).catch((error) => conn.send([id, false, error])));
    if (performance.now() - started > LONG_TASK) conn[flushNow]();
  }
  await Promise.all(sent);
}

/** The task id under which a worker reports that its initializer threw. */
export const INITIALIZER_FAILED = -1;

/** Runs tasks from `conn` until the pool closes it. Exported: a Process target. */
export async function poolWorker(
  conn: Connection<ResultMessage, TaskMessage>,
  initializer: TargetRef | null,
  initargs: unknown[],
): Promise<void> {
  if (initializer !== null) {
    try {
      await (await load(initializer))(...initargs);
    } catch (error) {
      // Tell the pool (id -1), which fails its calls instead of respawning us,
      // then wait for it to close the pipe: exiting first could overtake the
      // message.
      await conn.send([INITIALIZER_FAILED, false, error]).catch(() => {});
      for await (const _ of conn) { /* no task runs without its initializer */ }
      conn.close();
      return;
    }
  }
  const functions = new Map<number, Promise<(...args: unknown[]) => unknown>>();
  try {
    for await (const batch of conn) await runBatch(conn, functions, batch);
  } catch (error) {
    // As Python's worker: a pool that is gone (its pipe failed, say while
    // this worker was still connecting as the program ended) ends it quietly.
    if (!(error instanceof EOFError)) throw error;
  }
  conn.close();
}
