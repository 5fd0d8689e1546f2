// What this process or worker knows about itself: its name, its parent, the
// default start method, and the children it started. Set by the child runtime
// before the target's module loads; read by process.ts and context.ts.

/**
 * How a child runs: `"process"`, a separate `deno` OS process started with
 * `Deno.Command`; `"worker"`, a Web Worker (a thread with its own isolate) in
 * this OS process.
 */
export type StartMethod = "process" | "worker";

/** The start methods, for validation. */
export const START_METHODS: readonly StartMethod[] = ["process", "worker"];

/** This process's or worker's identity, as a child sees it. */
export interface Self {
  name: string;
  daemon: boolean;
  /** Python's `_identity`: the path of child numbers from the main process. */
  identity: number[];
  parent: { name: string; pid: number } | null;
  /** How this one was started; "main" in the main program. */
  startedAs: StartMethod | "main";
  /** Children made so far, for default names ("Process-1:2"). */
  counter: number;
  defaultStartMethod: StartMethod;
  /** In a child: what its parent told it. */
  boot?: Boot;
}

/** The one record of who we are. */
export const self: Self = {
  name: "MainProcess",
  daemon: false,
  identity: [],
  parent: null,
  startedAs: "main",
  counter: 0,
  defaultStartMethod: "process",
};

/** What the parent tells a child before its target's module loads. */
export interface Boot {
  name: string;
  daemon: boolean;
  identity: number[];
  parent: { name: string; pid: number };
  startedAs: StartMethod;
  /** The modules of the handle kinds the arguments hold: loaded first. */
  handles: string[];
  /** For a worker: a node:worker_threads one (a daemon) or a web Worker. */
  nodeWorker: boolean;
  exportName: string;
  kind: "function" | "class";
}

/** A child's view of itself, taken from its boot record. */
export function boot(record: Boot): void {
  self.boot = record;
  self.name = record.name;
  self.daemon = record.daemon;
  self.identity = record.identity;
  self.parent = record.parent;
  self.startedAs = record.startedAs;
}

/** Throws a TypeError unless `method` is a start method. */
export function validateStartMethod(method: unknown): StartMethod {
  if (!START_METHODS.includes(method as StartMethod)) {
    throw new TypeError(
      `Cannot use start method ${JSON.stringify(method)}: use one of ${
        START_METHODS.map((m) => `"${m}"`).join(", ")
      }`,
    );
  }
  return method as StartMethod;
}

/** A child that this process started, as the runtime needs to see it. */
export interface ChildHandle {
  readonly daemon: boolean;
  isAlive(): boolean;
  terminate(): void;
  join(): Promise<void>;
}

/** The children this process started that have not been seen to end. */
export const children: Set<ChildHandle> = new Set();

/** Classes the package makes (a context's Process), treated as Process itself. */
export const internalClasses: WeakSet<object> = new WeakSet();

/** Passed as a Process's options by the child runtime to re-create an instance. */
export const REVIVE: unique symbol = Symbol("@seed/multiprocessing/revive");

/**
 * Work a child does after its target returns and its children ended, before
 * it exits: a queue's last frames written, its sockets closed.
 */
export const atExit: Set<() => void | Promise<void>> = new Set();

/**
 * Ends a child as a process exit does: its daemon children terminated, the
 * others joined, then the `atExit` work done.
 */
export async function finishChildren(): Promise<void> {
  for (const child of [...children]) if (child.daemon && child.isAlive()) child.terminate();
  await Promise.all([...children].map((child) => child.join()));
  for (const work of [...atExit]) await work();
}

/** The Process class, set when process.ts loads, for the child runtime to revive subclasses. */
export const classes: { Process?: new (options: typeof REVIVE) => object } = {};

/**
 * Each started child's end, as a promise that does not keep the event loop
 * alive (Process.join() does, for a daemon): for a pool to watch its workers.
 */
export const exits: WeakMap<object, Promise<number>> = new WeakMap();

/**
 * Each child's hold on the event loop, as Process.join() takes it for a
 * daemon: true holds, false lets go. A pool holds its workers while they
 * have work, and so needs no timer.
 */
export const holds: WeakMap<object, (hold: boolean) => void> = new WeakMap();

/**
 * V8 flags for a `"process"` child, set before it starts: what the pool asks
 * for its workers (see the pool engine). Not a public option: V8's flags are
 * not a stable interface. Such a child runs without the code cache (see
 * Process's #spawn).
 */
export const v8Flags: WeakMap<object, string[]> = new WeakMap();
