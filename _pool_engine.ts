// The engine behind Pool: a queue of tasks (chunks of calls), a set of worker
// records (a Process and our end of its pipe), and dispatch to the least busy
// worker, a few tasks ahead so a worker never waits for a round trip. A worker
// runs its tasks in order, so when it dies the first of its tasks was running
// (it fails with WorkerLostError) and the rest had not started (they are
// queued again). A cancelled task that is running has its worker terminated.
import { decode, decodeItems, encode, encodeNumbers, encodeParts, encodeSlice } from "./_codec.ts";
import { type Connection, Pipe } from "./pipe.ts";
import { Process } from "./process.ts";
import {
  INITIALIZER_FAILED,
  poolWorker as poolWorkerTarget,
  type ResultMessage,
  type Task as TaskTuple,
  type TaskMessage,
} from "./_pool_worker.ts";
import { flushNow } from "./_socket.ts";
import { exits, holds, type StartMethod, v8Flags } from "./_state.ts";
import type { TargetRef } from "./_target.ts";
import { ProcessError, RemoteError, WorkerLostError } from "./errors.ts";

const WORKER_MODULE = new URL("./_pool_worker.ts", import.meta.url);
// Workers that die before finishing any task this many times in a row mean
// the pool cannot work (an initializer that throws): fail instead of looping.
const MAX_START_FAILURES = 3;
// Tasks sent ahead to one worker: enough to hide the round trip, and to send
// small tasks many to a message.
const AHEAD = 32;
// Made-up work for warmCodec(): enough calls for V8 to compile the codec's
// functions and give them type feedback. It takes 3.6-5.6 ms in a fresh
// program, nearly all of it compiling: time the workers' start hides.
const WARM_ITEMS = 256;
const WARM_ROUNDS = 8;
let codecWarmed = false;

/**
 * Runs the work a map's chunk makes here (its items checked and packed, its
 * task encoded, its reply and results decoded and copied into place) on
 * made-up numbers. The first time a program runs that code, V8 compiles it
 * and runs it without type feedback: a program's first map of 100,000
 * numbers took 1.6-4.5 ms to encode its chunks, against 0.4-1.7 ms in later
 * pools; and 0.6-1.6 ms to check 75,000 of them (allEncodable), against
 * 0.12 after this. Called once per program, while its first pool's workers
 * start.
 */
function warmCodec(): void {
  const items = Array.from({ length: WARM_ITEMS }, (_, i) => i);
  const results = encodeNumbers(new Int32Array(items));
  const target: unknown[] = new Array(WARM_ITEMS);
  for (let round = 0; round < WARM_ROUNDS; round++) {
    const task: TaskTuple = [round, 0, null, false, encodeSlice(items, 0, WARM_ITEMS)];
    encodeParts([task]); // as Connection.send() encodes a batch
    const [, , packed] = decode(encode([round, true, results])) as ResultMessage;
    copyResults(decodeItems(packed as Uint8Array), target, 0);
    allEncodable(items, 0); // as a large map checks its items (see Pool)
  }
}

/**
 * Copies a task's results into its call's results, from `offset` on. Packed
 * results come as a typed array: read in place, they need no array of their
 * own, and a map needs no concat of its chunks' arrays (in same-run A/B
 * tests, warm maps of 100,000 numbers took a sixth to a third less time).
 */
export function copyResults(values: ArrayLike<unknown>, target: unknown[], offset: number): void {
  for (let i = 0; i < values.length; i++) target[offset + i] = values[i];
}

/**
 * Whether every item of `calls` from `start` on is a primitive other than a
 * symbol: those always encode, so chunks of them may be encoded after the
 * call's first chunks were sent, without a chance of failing half-sent.
 */
export function allEncodable(calls: unknown[], start: number): boolean {
  for (let i = start; i < calls.length; i++) {
    const item = calls[i];
    if (item !== null && (typeof item === "object" || typeof item === "function")) return false;
    if (typeof item === "symbol") return false;
  }
  return true;
}

/** A caller's call (one `map`, one `apply`), made of one or more tasks. */
export interface Job {
  /** Set once the call has its outcome: its other tasks are then dropped. */
  settled: boolean;
  /** Task `index` of the call returned these results (valid during the call only). */
  done(index: number, results: ArrayLike<unknown>): void;
  /** The call fails with this error. */
  fail(error: unknown): void;
}

interface Task {
  id: number;
  job: Job;
  index: number;
  fn: TargetRef;
  star: boolean;
  payload: Uint8Array;
}

interface WorkerRecord {
  process: Process<Parameters<typeof poolWorkerTarget>>;
  conn: Connection<TaskMessage, ResultMessage>;
  /** Sent and not yet answered, in the order the worker runs them. */
  tasks: Task[];
  /** Tasks dispatched in this pump, sent together at its end. */
  outbox: TaskTuple[];
  /** Reading results; settles at EOF once the worker is gone. */
  listening: Promise<void> | undefined;
  sent: number;
  finished: number;
  retiring: boolean;
  /** The function ids this worker has been told the module of. */
  known: Set<number>;
  /** Terminated by the pool (a cancel, terminate()), not dead by itself. */
  stopped: boolean;
  /** Holding the event loop: the pool has work (see #holdLoop). */
  held: boolean;
}

/** What the engine is started with, already validated. */
export interface EngineOptions {
  processes: number;
  initializer: TargetRef | null;
  initargs: unknown[];
  maxTasksPerChild: number | undefined;
  startMethod: StartMethod;
}

/** An error from a worker, as the caller sees it: same class, remote stack in `cause`. */
function fromRemote(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const remote = new RemoteError(String(error.stack ?? error.message), { cause: error.cause });
  Object.defineProperty(error, "cause", { value: remote, configurable: true, writable: true });
  return error;
}

/**
 * Tasks waiting for a worker, oldest first. A head index, not shift() or
 * splice(0, n): those are O(n) each on a queue of 100,000 applyAsync calls.
 * Tasks of a settled job are dropped when they reach the head.
 */
class TaskQueue {
  #items: (Task | undefined)[] = [];
  #head = 0;

  /** Queued tasks, settled ones included. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  push(task: Task): void {
    this.#items.push(task);
  }

  /** The oldest task of an unsettled job, left in place. */
  peek(): Task | undefined {
    while (this.#head < this.#items.length && this.#items[this.#head]!.job.settled) this.shift();
    return this.#items[this.#head];
  }

  shift(): Task | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const task = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return task;
  }

  /** Puts tasks back at the head, in their order. */
  unshift(tasks: Task[]): void {
    this.#items = [...tasks, ...this.#items.slice(this.#head)];
    this.#head = 0;
  }

  /** Empties the queue; returns what was in it. */
  drain(): Task[] {
    const tasks = this.#items.slice(this.#head) as Task[];
    this.#items = [];
    this.#head = 0;
    return tasks;
  }
}

/** The pool's workers and tasks. */
export class PoolEngine {
  #options: EngineOptions;
  #queue = new TaskQueue();
  #workers = new Set<WorkerRecord>();
  #nextId = 0;
  #nextWorker = 0;
  #functionIds = new Map<string, number>();
  #startFailures = 0;
  #broken: unknown = undefined;
  #state: "run" | "close" | "terminate" = "run";
  #allExited: { promise: Promise<void>; resolve: () => void } | undefined;
  #pumpScheduled = false;

  constructor(options: EngineOptions) {
    this.#options = options;
    for (let i = 0; i < options.processes; i++) this.#spawn();
    if (!codecWarmed) {
      codecWarmed = true;
      // Once the workers have started. Not in a timer: a program's first
      // timer loads Deno's Node-style timers (5-8 ms), before the caller's
      // first call could be sent.
      queueMicrotask(warmCodec);
    }
  }

  /**
   * Queues one task of a job: a chunk of calls, encoded by the caller (so a
   * value that cannot be cloned fails at the call).
   */
  submit(job: Job, fn: TargetRef, star: boolean, payload: Uint8Array, index: number): void {
    if (this.#broken !== undefined) return job.fail(this.#broken);
    this.#queue.push({ id: this.#nextId++, job, index, fn, star, payload });
    this.#schedulePump();
    this.#holdLoop();
  }

  /**
   * Dispatches the tasks queued so far and writes them at once, not at the
   * end of the turn: for a caller that has more to encode before it ends.
   */
  dispatchNow(): void {
    this.#pump(false);
    for (const worker of this.#workers) worker.conn[flushNow]();
  }

  /** Dispatches at the end of the turn: tasks queued together travel together. */
  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /**
   * Fails a job with `reason`, drops its queued tasks and terminates the
   * workers running its others.
   */
  cancel(job: Job, reason: unknown): void {
    if (job.settled) return;
    this.#fail(job, reason);
    for (const worker of this.#workers) {
      // Only a running task needs its worker stopped; a settled job's others are skipped.
      if (worker.tasks[0]?.job === job) this.#stop(worker);
    }
    this.#holdLoop();
  }

  /** Accepts no more work; workers exit once the queue is done. */
  close(): void {
    if (this.#state === "run") this.#state = "close";
    this.#pump();
  }

  /** Stops every worker now; unfinished calls fail. */
  terminate(): void {
    this.#state = "terminate";
    const reason = new ProcessError("Cannot finish the call: the pool was terminated");
    for (const task of this.#queue.drain()) this.#fail(task.job, reason);
    for (const worker of this.#workers) {
      for (const task of worker.tasks) this.#fail(task.job, reason);
      worker.tasks = [];
      this.#stop(worker);
    }
    this.#holdLoop();
  }

  /** Resolves when every worker has exited (after close or terminate). */
  async join(): Promise<void> {
    if (this.#workers.size === 0) return;
    if (this.#allExited === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      this.#allExited = { promise, resolve };
    }
    // The workers are daemons: waiting for them must hold the event loop.
    const waited = [...this.#workers].map((worker) => holds.get(worker.process)!);
    for (const hold of waited) hold(true);
    try {
      await this.#allExited.promise;
    } finally {
      for (const hold of waited) hold(false);
    }
  }

  #spawn(): void {
    const [mine, theirs] = Pipe<TaskMessage, ResultMessage>();
    const process = new Process({
      target: poolWorkerTarget,
      module: WORKER_MODULE,
      args: [theirs, this.#options.initializer, this.#options.initargs],
      name: `PoolWorker-${++this.#nextWorker}`,
      // As Python's: a pool left open does not keep the program alive.
      daemon: true,
      startMethod: this.#options.startMethod,
    });
    // A pool keeps every core busy with its workers, so V8's helper threads
    // (compiling, collecting) only take time from them and from the parent:
    // a worker does that work on its own thread. A pool's first map takes
    // about a fifth less time; V8 compiles hot code all the same.
    // --always-sparkplug: code runs as V8's baseline code from its first
    // call, not in the interpreter. Without it, a pool's second map of
    // 100,000 numbers took 7.1 ms against 5.8, and in a second pool 5.2
    // against 3.7 (same-run A/B); a pool starts 2-7 ms later with it.
    // --max-maglev-inlined-bytecode-size: Maglev, V8's middle tier, inlined
    // a function into the worker's loop that calls it, and with on-stack
    // replacement off, the loop ran that function as Maglev code for the
    // rest of a fresh pool's first map: the function's own loop did not
    // count towards optimizing the caller. That map of heavy() in
    // bench/targets.ts (20,000 items) took 300 ms, the next ones 81;
    // 91 with the flag. Functions of up to 12 bytes of bytecode are still
    // inlined (x * 2 takes 6 bytes; the smallest loop we could write, 14),
    // so a cheap function needs no compile of its own. Turbofan, the top
    // tier, inlines as before.
    // --turbo-filter=-runInts: the loop over a chunk of numbers
    // (_pool_worker.ts) stays Maglev code. Turbofan compiled it in each
    // worker's second chunk of a fresh pool's first map, on the worker's
    // thread: 1.2-2.1 ms (--trace-opt) of a map of 100,000 numbers that took
    // 8-10. Maglev's code, with a cheap function inlined, ran a chunk of
    // 12,500 as fast (0.026-0.030 ms against 0.031, standalone). A function
    // that computes is not inlined (above) and is optimized on its own. (V8
    // filters by name: a function of the user's named runInts stays out too.)
    v8Flags.set(process, [
      "--single-threaded",
      "--always-sparkplug",
      "--max-maglev-inlined-bytecode-size=12",
      "--turbo-filter=-runInts",
    ]);
    const worker: WorkerRecord = {
      process,
      conn: mine,
      tasks: [],
      outbox: [],
      listening: undefined,
      sent: 0,
      finished: 0,
      retiring: false,
      known: new Set(),
      stopped: false,
      held: false,
    };
    this.#workers.add(worker);
    process.start().then(
      () =>
        exits.get(process)!.then(async (code) => {
          // Its results may still be unread: the exit can overtake them.
          await worker.listening;
          this.#exited(worker, code);
        }),
      (error) => {
        // A failed start hands nothing over: the worker's end is still ours.
        theirs.close();
        if (worker.stopped) return this.#exited(worker, process.exitCode ?? 1);
        this.#workers.delete(worker);
        mine.close();
        this.#breaks(error);
      },
    );
  }

  #stop(worker: WorkerRecord): void {
    worker.stopped = true;
    if (worker.process.isAlive()) worker.process.terminate();
  }

  #breaks(error: unknown): void {
    this.#broken = error;
    for (const task of this.#queue.drain()) this.#fail(task.job, error);
    for (const worker of this.#workers) {
      for (const task of worker.tasks) this.#fail(task.job, error);
      worker.tasks = [];
      if (!worker.retiring) this.#retire(worker);
    }
    this.#holdLoop();
    this.#checkExited();
  }

  #fail(job: Job, error: unknown): void {
    if (job.settled) return;
    job.fail(error);
    // Its queued tasks are dropped when they reach the head.
    this.#schedulePump();
  }

  #exited(worker: WorkerRecord, code: number): void {
    this.#workers.delete(worker);
    worker.conn.close();
    const [running, ...waiting] = worker.tasks;
    worker.tasks = [];
    if (running !== undefined) {
      this.#fail(
        running.job,
        new WorkerLostError(
          `Cannot finish the task: pool worker ${worker.process.name} died with exit code ${code} while running it`,
        ),
      );
    }
    // The worker runs its tasks in order: the others had not started.
    this.#queue.unshift(waiting.filter((task) => !task.job.settled));
    worker.process.close();
    const clean = worker.retiring && code === 0;
    if (!clean && worker.finished === 0 && running === undefined) {
      if (++this.#startFailures >= MAX_START_FAILURES) {
        this.#breaks(
          new ProcessError(
            `Cannot run pool tasks: ${this.#startFailures} pool workers in a row exited with code ${code} before finishing any task; is the initializer failing?`,
          ),
        );
      }
    }
    if (this.#broken === undefined && this.#state !== "terminate") {
      if (this.#state === "run" || this.#queue.peek() !== undefined) this.#spawn();
    }
    this.#pump();
    this.#checkExited();
  }

  #checkExited(): void {
    if (this.#workers.size === 0 && this.#state !== "run") {
      this.#allExited?.resolve();
    }
  }

  /**
   * Sends queued tasks to workers with room, then starts reading the results
   * of those that have tasks, unless `listen` is false: a listener's first
   * recv() polls for a moment (see below), time a caller with more to do
   * must not wait.
   */
  #pump(listen = true): void {
    const max = this.#options.maxTasksPerChild ?? Infinity;
    while (this.#queue.peek() !== undefined) {
      let best: WorkerRecord | undefined;
      for (const worker of this.#workers) {
        if (worker.retiring || worker.sent >= max || worker.tasks.length >= AHEAD) continue;
        if (best === undefined || worker.tasks.length < best.tasks.length) best = worker;
      }
      if (best === undefined) break;
      this.#dispatch(best, this.#queue.shift()!);
    }
    for (const worker of this.#workers) {
      if (worker.outbox.length === 0) continue;
      worker.conn.send(worker.outbox).catch(() => {
        // The pipe is gone, and so is the worker: #exited says so.
      });
      worker.outbox = [];
    }
    // Only once every worker has its tasks: a listener's first recv() polls
    // for a moment, which held back the next worker's tasks (0.2-0.9 ms in a
    // map of 100,000 numbers, up to 3.2 ms in a program's first).
    for (const worker of this.#workers) {
      if (listen && worker.tasks.length > 0) worker.listening ??= this.#listen(worker);
    }
    this.#holdLoop();
    for (const worker of this.#workers) {
      // A worker that ran its share, or has nothing left to do in a closed pool, ends.
      const spent = worker.sent >= max ||
        (this.#state === "close" && this.#queue.peek() === undefined);
      if (spent && worker.tasks.length === 0 && !worker.retiring) this.#retire(worker);
    }
  }

  /**
   * While work is outstanding, holds the event loop (and so the caller)
   * alive: daemon workers hold nothing open, and a result's callback may be
   * all the caller waits for. The workers' processes hold it, not a timer
   * (see warmCodec's call).
   */
  #holdLoop(): void {
    let busy = this.#queue.peek() !== undefined;
    for (const worker of this.#workers) busy ||= worker.tasks.length > 0;
    for (const worker of this.#workers) {
      if (worker.held === busy) continue;
      worker.held = busy;
      holds.get(worker.process)!(busy);
    }
  }

  #retire(worker: WorkerRecord): void {
    worker.retiring = true;
    worker.conn.close();
  }

  #dispatch(worker: WorkerRecord, task: Task): void {
    worker.tasks.push(task);
    worker.sent++;
    const key = `${task.fn.module}#${task.fn.exportName}`;
    let fnId = this.#functionIds.get(key);
    if (fnId === undefined) this.#functionIds.set(key, fnId = this.#functionIds.size);
    const ref = worker.known.has(fnId) ? null : task.fn;
    worker.known.add(fnId);
    worker.outbox.push([task.id, fnId, ref, task.star, task.payload]);
  }

  /** Reads results while the worker has tasks: an idle pool holds nothing open. */
  async #listen(worker: WorkerRecord): Promise<void> {
    try {
      while (worker.tasks.length > 0) this.#result(worker, await worker.conn.recv());
    } catch {
      // EOF: the worker is gone, and #exited says so.
    } finally {
      worker.listening = undefined;
    }
  }

  #result(worker: WorkerRecord, [id, ok, value]: ResultMessage): void {
    if (id === INITIALIZER_FAILED) {
      const error = fromRemote(value);
      return this.#breaks(
        new ProcessError(
          `Cannot run pool tasks: the initializer failed in ${worker.process.name}: ${
            (error as Error)?.message ?? error
          }`,
          { cause: error },
        ),
      );
    }
    // In order, but for a reply that could not be cloned and was replaced.
    const at = worker.tasks.findIndex((task) => task.id === id);
    if (at === -1) return;
    const [task] = worker.tasks.splice(at, 1) as [Task];
    worker.finished++;
    this.#startFailures = 0;
    if (!task.job.settled) {
      if (!ok) this.#fail(task.job, fromRemote(value));
      // Results that are all int32s come packed (see ResultMessage).
      else if (value instanceof Uint8Array) task.job.done(task.index, decodeItems(value));
      else task.job.done(task.index, value as unknown[]);
    }
    this.#schedulePump();
  }
}
