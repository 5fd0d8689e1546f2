// The loop a pool worker runs: it receives tasks (a chunk of argument lists
// for one exported function) over its end of a pipe and sends back the
// results, or the first error, for the whole chunk. Closing the pipe ends it.
import { decode } from "./_codec.ts";
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

/** The outcome of a chunk: its results in order, or the error that stopped it. */
export type ResultMessage = [id: number, ok: true, results: unknown[]] | [
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

/**
 * Calls `fn` on `calls` from `from` on, into `results`, until one returns a
 * promise: returns its index (or the length when none did). A small function
 * of its own, so V8 compiles this loop soon, which it does late for a loop in
 * the async function around it.
 */
function run(
  fn: (...args: unknown[]) => unknown,
  star: boolean,
  calls: unknown[],
  results: unknown[],
  from: number,
): number {
  for (let i = from; i < calls.length; i++) {
    const result = star ? fn(...calls[i] as unknown[]) : fn(calls[i]);
    results[i] = result;
    if (result instanceof Promise) return i;
  }
  return calls.length;
}

// Milliseconds of work after which a task's reply is written at once.
const LONG_TASK = 0.5;

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
  for await (const batch of conn) {
    const sent: Promise<void>[] = [];
    for (const [id, fnId, ref, star, payload] of batch) {
      let reply: ResultMessage;
      if (ref !== null) functions.set(fnId, load(ref));
      const started = performance.now();
      try {
        const calls = decode(payload) as unknown[];
        const fn = await functions.get(fnId)!;
        const results = new Array(calls.length);
        for (let i = run(fn, star, calls, results, 0); i < calls.length;) {
          // Await only what needs it: a microtask per item is a cost in a big map.
          results[i] = await results[i];
          i = run(fn, star, calls, results, i + 1);
        }
        reply = [id, true, results];
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
  conn.close();
}
