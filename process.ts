/**
 * Run a function in another process or worker, as Python's
 * `multiprocessing.Process` does.
 *
 * @example Run an exported function in a child process
 * ```ts
 * import { Process } from "@seed/multiprocessing/process";
 *
 * export function greet(name: string) {
 *   console.log(`hello, ${name}`);
 * }
 *
 * if (import.meta.main) {
 *   const p = new Process({ target: greet, args: ["bob"] });
 *   await p.start();
 *   await p.join();
 * }
 * ```
 *
 * @module
 */
import { encode } from "./_codec.ts";
import { emptyGrants, type EncodeContext } from "./_handles.ts";
import {
  permissionFlags,
  type Permissions,
  resolutionFlags,
  validatePermissions,
} from "./_permissions.ts";
import {
  type Boot,
  children,
  classes,
  exits,
  holds,
  internalClasses,
  REVIVE,
  self,
  type StartMethod,
  v8Flags,
  validateStartMethod,
} from "./_state.ts";
import { callerModules, findTarget, moduleUrl, type TargetRef } from "./_target.ts";
import { FrameWriter } from "./_wire.ts";
import { ValueError } from "./errors.ts";

export type { PermissionName, Permissions, PermissionValue } from "./_permissions.ts";
export type { StartMethod } from "./_state.ts";

/**
 * Options of {@linkcode Process}.
 *
 * @typeParam A The target's parameter types.
 */
export interface ProcessOptions<A extends unknown[] = unknown[]> {
  /**
   * The function the child calls: sync or async, exported from an ES module,
   * so the child can import it by name. A subclass may override `run()`
   * instead.
   */
  target?: ((...args: A) => unknown) | undefined;
  /**
   * The arguments for `target`, copied to the child by structured clone;
   * handles (queues, connections, shared memory, locks) arrive as handles.
   *
   * @default {[]}
   */
  args?: A | undefined;
  /**
   * The module that exports `target` (a path relative to the working
   * directory, or a URL), when it cannot be found from the caller.
   */
  module?: string | URL | undefined;
  /**
   * The process's name.
   *
   * @default {"Process-N"}
   */
  name?: string | undefined;
  /**
   * A daemon child is terminated when its parent exits; a non-daemon one is
   * waited for.
   *
   * @default {false}
   */
  daemon?: boolean | undefined;
  /**
   * `"process"` for a separate `deno` process, `"worker"` for a Web Worker.
   *
   * @default {getStartMethod()}
   */
  startMethod?: StartMethod | undefined;
  /**
   * What the child may do: `"inherit"` (what this process may), or one
   * setting per kind, capped by what this process has; kinds left out are
   * denied. `"process"` children only.
   *
   * @default {"inherit"}
   */
  permissions?: Permissions | undefined;
}

/** This process or worker, as {@linkcode currentProcess} sees it. */
export interface ProcessInfo {
  /** `"MainProcess"` in the main program, the child's name in a child. */
  name: string;
  /** The OS process id (a worker shares its parent's). */
  pid: number;
  /** Whether this child was started as a daemon. */
  daemon: boolean;
}

/** The parent of this process or worker, as {@linkcode parentProcess} sees it. */
export interface ParentInfo {
  /** The parent's name. */
  name: string;
  /** The parent's OS process id. */
  pid: number;
}

/** Options of {@linkcode Process.prototype.join}. */
export interface JoinOptions {
  /** Give up waiting after this many milliseconds; the child may still run. */
  timeout?: number | undefined;
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

const CHILD_URL = new URL("./_child.ts", import.meta.url).href;
const STATE_URL = new URL("./_state.ts", import.meta.url).href;
let unloadHooked = false;

function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  // Daemon children end with us; non-daemon ones kept the event loop alive
  // until they ended, so any still alive here are left by a Deno.exit().
  globalThis.addEventListener("unload", () => {
    for (const child of children) if (child.daemon && child.isAlive()) child.terminate();
  });
}

function dataUrl(source: string): string {
  return `data:application/javascript,${encodeURIComponent(source)}`;
}

/** The child's main module: boot record first, then the target, then the runtime. */
function entrySource(boot: Boot, module: string): string {
  // JavaScript in a data: URL: a TypeScript module under a new URL each time
  // would be transpiled each time.
  const bootUrl = dataUrl(
    `import { boot } from ${JSON.stringify(STATE_URL)};\nboot(${JSON.stringify(boot)});`,
  );
  // Every child pays for each module it loads (all of mod.ts: ~13 ms): load
  // only the modules of the handle kinds its arguments hold.
  return [
    `import ${JSON.stringify(bootUrl)};`,
    ...boot.handles.map((url) => `import ${JSON.stringify(url)};`),
    `import * as target from ${JSON.stringify(module)};`,
    `import { runChild } from ${JSON.stringify(CHILD_URL)};`,
    `await runChild(target);`,
  ].join("\n");
}

function denoExecutable(): string {
  try {
    return Deno.execPath();
  } catch {
    return "deno";
  }
}

function requireRead(url: string, child: string): void {
  if (!url.startsWith("file:")) return;
  const path = decodeURIComponent(new URL(url).pathname);
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") {
    throw new Deno.errors.NotCapable(
      `Cannot start worker process ${child}: a worker needs read access to "${path}"; run again with the --allow-read flag, or use the "process" start method`,
    );
  }
}

function timeoutOf(options: JoinOptions | undefined): number | undefined {
  const timeout = options?.timeout;
  if (timeout === undefined) return undefined;
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new TypeError(
      `Cannot wait with timeout ${String(timeout)}: it must be a number of milliseconds`,
    );
  }
  return Math.max(0, timeout);
}

/**
 * A child process or worker that runs a function, as Python's
 * `multiprocessing.Process`.
 *
 * The target must be exported from an ES module: the child imports that module
 * afresh (code under `if (import.meta.main)` does not run there) and calls the
 * export with `args`. A subclass may override {@linkcode Process.prototype.run}
 * instead; its own public fields cross to the child.
 *
 * @typeParam A The target's parameter types.
 *
 * @example Start a child and wait for it
 * ```ts
 * import { Process } from "@seed/multiprocessing";
 * import assert from "node:assert/strict";
 *
 * export function work(n: number) {
 *   if (n < 0) throw new RangeError("n must not be negative");
 * }
 *
 * if (import.meta.main) {
 *   await using p = new Process({ target: work, args: [1] });
 *   await p.start();
 *   await p.join();
 *   assert.equal(p.exitCode, 0);
 * }
 * ```
 */
export class Process<A extends unknown[] = unknown[]> implements AsyncDisposable {
  #target: ((...args: A) => unknown) | undefined;
  #args: A;
  #ref: TargetRef | undefined;
  #kind: "function" | "class" = "function";
  #name: string;
  #daemon: boolean;
  #startMethod: StartMethod;
  #permissions: Permissions;
  #identity: number[] = [];
  #state: "initial" | "starting" | "started" | "closed" = "initial";
  // A terminate() or kill() made while start() runs, applied once the child exists.
  #pendingSignal: "SIGTERM" | "SIGKILL" | undefined;
  #exitCode: number | null = null;
  #pid: number | undefined;
  #child: Deno.ChildProcess | undefined;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #worker: { terminate(): void; ref?(): void; unref?(): void } | undefined;
  #signalled: number | undefined;
  #exited: Promise<void>;
  #markExited!: (code: number) => void;

  /**
   * Makes a process that will run `target(...args)` once started.
   *
   * @param options The target, its arguments, and how to run it.
   * @throws {TypeError} When the target is not an exported, named function
   * the child could import, or an option has the wrong type.
   */
  constructor(options: ProcessOptions<A> = {}) {
    this.#exited = new Promise((resolve) => {
      this.#markExited = (code: number) => {
        if (this.#exitCode === null) this.#exitCode = code;
        children.delete(this);
        resolve();
      };
    });
    exits.set(this, this.#exited.then(() => this.#exitCode!));
    holds.set(this, (hold) => this.#holdLoop(hold));
    if ((options as unknown) === REVIVE) {
      // The child runtime re-creating a subclass instance: this is us.
      this.#args = [] as unknown as A;
      this.#name = self.name;
      this.#daemon = self.daemon;
      this.#startMethod = self.startedAs === "main" ? "process" : self.startedAs;
      this.#permissions = "inherit";
      this.#state = "started";
      this.#pid = self.startedAs === "process" ? Deno.pid : undefined;
      return;
    }
    if (typeof options !== "object" || options === null) {
      throw new TypeError("Cannot make a Process: pass an options object such as { target, args }");
    }
    const { target, args = [] as unknown as A, name, daemon, startMethod, permissions, module } =
      options;
    if (!Array.isArray(args)) throw new TypeError("Cannot make a Process: args must be an array");
    if (name !== undefined && typeof name !== "string") {
      throw new TypeError("Cannot make a Process: name must be a string");
    }
    if (daemon !== undefined && typeof daemon !== "boolean") {
      throw new TypeError("Cannot make a Process: daemon must be a boolean");
    }
    if (module !== undefined && typeof module !== "string" && !(module instanceof URL)) {
      throw new TypeError("Cannot make a Process: module must be a string or a URL");
    }
    this.#startMethod = validateStartMethod(startMethod ?? self.defaultStartMethod);
    this.#permissions = validatePermissions(permissions);
    if (this.#permissions !== "inherit" && this.#startMethod === "worker") {
      throw new TypeError(
        'Cannot give a "worker" child its own permissions: Deno needs an unstable flag for that; use the "process" start method',
      );
    }
    this.#args = args;
    this.#target = target;
    this.#identity = [...self.identity, ++self.counter];
    this.#name = name ?? `Process-${this.#identity.join(":")}`;
    this.#daemon = daemon ?? self.daemon;

    // Where the caller is, from the stack (costly): not needed when given the module.
    const callers = module === undefined ? callerModules(new Error().stack) : [];
    const subclass = new.target !== Process && !internalClasses.has(new.target);
    if (subclass && new.target.prototype.run !== Process.prototype.run) {
      this.#kind = "class";
      this.#ref = findTarget(new.target, "Process subclass", callers, module);
    } else if (target !== undefined) {
      this.#ref = findTarget(target, "Process target", callers, module);
    } else if (module !== undefined) {
      throw new TypeError("Cannot make a Process: module was given without a target");
    } else {
      this.#ref = undefined; // Nothing to run: the child exits with 0, as in Python.
    }
    if (this.#ref !== undefined && module !== undefined) {
      this.#ref = { ...this.#ref, module: moduleUrl(module) };
    }
  }

  /** The process's name; it may be changed before `start()`. */
  get name(): string {
    return this.#name;
  }

  set name(name: string) {
    if (typeof name !== "string") throw new TypeError("Cannot set name: it must be a string");
    this.#name = name;
  }

  /** Whether the child is terminated when its parent exits; settable before `start()`. */
  get daemon(): boolean {
    return this.#daemon;
  }

  set daemon(daemon: boolean) {
    if (this.#state !== "initial") {
      throw new ValueError(`Cannot set daemon of process ${this.#name}: it has already started`);
    }
    this.#daemon = Boolean(daemon);
  }

  /** How the child runs: `"process"` or `"worker"`. */
  get startMethod(): StartMethod {
    return this.#startMethod;
  }

  /** The OS process id of a `"process"` child once started; `undefined` for a worker. */
  get pid(): number | undefined {
    return this.#pid;
  }

  /**
   * `null` until the child ends; then `0` when the target returned, `1` when
   * it threw, `n` after `Deno.exit(n)`, `-15` after `terminate()`, `-9` after
   * `kill()`, and `-N` after any other death by signal N.
   */
  get exitCode(): number | null {
    return this.#exitCode;
  }

  /**
   * What the child runs: by default, `target(...args)`. Override it in an
   * exported subclass to run something else; it runs in the child, on a copy
   * of this instance's public fields.
   */
  run(): unknown {
    return this.#target?.(...this.#args);
  }

  /**
   * Starts the child. Resolves when it runs.
   *
   * @throws {ValueError} When the process was started before, or is closed.
   * @throws {DataCloneError} When `args` (or a subclass's fields) cannot be
   * copied to the child; the message names where in them; nothing is started.
   */
  async start(): Promise<void> {
    this.#checkOpen("start");
    if (this.#state !== "initial") {
      throw new ValueError(
        `Cannot start process ${this.#name}: it has already started; make a new Process`,
      );
    }
    this.#state = "starting";
    try {
      await this.#start();
    } catch (error) {
      if (this.#state === "starting") this.#state = "initial";
      throw error;
    }
  }

  async #start(): Promise<void> {
    const context: EncodeContext = {
      destination: this.#startMethod,
      transfer: this.#startMethod === "worker" ? [] : undefined,
      shared: this.#startMethod === "worker" ? [] : undefined,
      grants: this.#startMethod === "process" ? emptyGrants() : undefined,
      commit: [],
      lost: [],
      modules: new Set(),
    };
    const payload = this.#kind === "class"
      ? encode({ ...this }, context, "fields")
      : encode(this.#args, context, "args");
    const boot: Boot = {
      name: this.#name,
      daemon: this.#daemon,
      identity: this.#identity,
      parent: { name: self.name, pid: Deno.pid },
      startedAs: this.#startMethod,
      handles: [...context.modules!],
      nodeWorker: this.#startMethod === "worker" && this.#daemon,
      exportName: this.#ref?.exportName ?? "",
      kind: this.#ref === undefined ? "function" : this.#kind,
    };
    const module = this.#ref?.module ?? dataUrl("");
    if (this.#startMethod === "process") {
      await this.#spawn(entrySource(boot, module), payload, context);
    } else {
      await this.#startWorker(entrySource(boot, module), payload, context, module);
    }
    for (const commit of context.commit ?? []) commit();
    this.#exited.then(() => {
      for (const release of context.lost ?? []) release();
    });
  }

  async #spawn(entry: string, payload: Uint8Array, context: EncodeContext): Promise<void> {
    const exe = denoExecutable();
    const flags = [...permissionFlags(this.#permissions, context.grants), ...resolutionFlags()];
    const v8 = v8Flags.get(this);
    // V8 refuses a code cache made under other flags, and Deno then writes
    // a new one over it: a pool's parent and its workers threw away each
    // other's, every run. A program that starts a pool took 17.7 ms to load
    // its modules with that, 14.0 without (medians of 10 programs). So a
    // child with flags of its own reads and writes no code cache.
    if (v8 !== undefined) flags.push(`--v8-flags=${v8.join(",")}`, "--no-code-cache");
    const command = new Deno.Command(exe, {
      args: ["run", ...flags, dataUrl(entry)],
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    });
    let child: Deno.ChildProcess;
    try {
      child = command.spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new Deno.errors.NotCapable(
          `Cannot start process ${this.#name}: starting a "process" child needs run access to "${exe}"; run again with the --allow-run flag, or use the "worker" start method`,
          { cause: error },
        );
      }
      throw error;
    }
    this.#child = child;
    this.#pid = child.pid;
    this.#state = "started";
    if (this.#pendingSignal !== undefined) this.#signal(this.#pendingSignal);
    children.add(this);
    hookUnload();
    child.status.then((status) => {
      this.#markExited(status.signal !== null ? -(SIGNALS[status.signal] ?? 128) : status.code);
      this.#stdin?.close().catch(() => {});
    });
    if (this.#daemon && this.#joiners === 0) child.unref();
    // The child reads its arguments from stdin, and takes the end of stdin as
    // this process's death. Keep the writer open until it exits.
    this.#stdin = child.stdin.getWriter();
    const writer = new FrameWriter({
      write: async (bytes) => {
        await this.#stdin!.write(bytes);
        return bytes.length;
      },
    });
    try {
      await writer.write(payload);
    } catch {
      // The child died before it read its arguments; its exit code says so.
    }
  }

  async #startWorker(
    entry: string,
    payload: Uint8Array,
    context: EncodeContext,
    module: string,
  ): Promise<void> {
    requireRead(module, this.#name);
    requireRead(CHILD_URL, this.#name);
    // A web Worker boots in a third of the time of a node:worker_threads one,
    // but only the latter can be unref'd, which a daemon needs.
    const NodeWorker = this.#daemon ? (await import("node:worker_threads")).Worker : undefined;
    const url = dataUrl(entry);
    this.#state = "started";
    children.add(this);
    const transfer = context.transfer ?? [];
    const message = { type: "start", payload, transfer, shared: context.shared };
    const list = [...transfer, payload.buffer as ArrayBuffer];
    return await new Promise<void>((resolve, reject) => {
      let started = false;
      let failure: unknown;
      const onMessage = (message: { type?: string; code?: number }) => {
        if (message?.type === "started") {
          started = true;
          if (this.#daemon && this.#joiners === 0) this.#worker?.unref?.();
          resolve();
        } else if (message?.type === "exit") {
          onExit(message.code ?? 0); // First: the code it reported wins.
          this.#worker?.terminate();
        }
      };
      const onExit = (code: number) => {
        this.#markExited(this.#signalled ?? code);
        if (started) return;
        const reason = failure instanceof Error ? failure.message : `it exited with code ${code}`;
        reject(
          new Error(`Cannot start worker process ${this.#name}: ${reason}`, { cause: failure }),
        );
      };
      if (NodeWorker !== undefined) {
        const worker = new NodeWorker(new URL(url), { name: this.#name });
        this.#worker = {
          terminate: () => void worker.terminate(),
          ref: () => worker.ref(),
          unref: () => worker.unref(),
        };
        worker.on("message", onMessage);
        worker.on("error", (error: unknown) => failure ??= error);
        worker.on("exit", onExit);
        worker.postMessage(message, list as unknown as Parameters<typeof worker.postMessage>[1]);
        if (this.#pendingSignal !== undefined) this.#signal(this.#pendingSignal);
        return;
      }
      const worker = new Worker(url, { type: "module", name: this.#name });
      // A web Worker has no exit event: its end is reported, or seen here.
      this.#worker = {
        terminate: () => {
          worker.terminate();
          onExit(this.#signalled ?? 1);
        },
      };
      worker.onmessage = (event: MessageEvent) => onMessage(event.data);
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault(); // Else it would be rethrown here.
        failure ??= new Error(event.message);
        if (started) console.error(`Process ${this.#name}: ${event.message}`);
        this.#worker?.terminate();
      };
      worker.postMessage(message, list);
      if (this.#pendingSignal !== undefined) this.#signal(this.#pendingSignal);
    });
  }

  /**
   * Waits until the child ends. With a timeout, returns when the time is up
   * even if the child still runs, as Python's `join` does: check
   * {@linkcode Process.prototype.exitCode} or `isAlive()` after.
   *
   * @param options How long to wait at most.
   * @throws {ValueError} When the process was not started, or is closed.
   */
  async join(options?: JoinOptions): Promise<void> {
    this.#checkOpen("join");
    const timeout = timeoutOf(options);
    if (this.#state === "initial") {
      throw new ValueError(
        `Cannot join process ${this.#name}: it has not started; call start() first`,
      );
    }
    // A daemon child does not keep the event loop alive; a join on it must.
    if (this.#daemon) this.#holdLoop(true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      if (timeout === undefined) return await this.#exited;
      await Promise.race([
        this.#exited,
        new Promise<void>((resolve) => timer = setTimeout(resolve, timeout)),
      ]);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      if (this.#daemon) this.#holdLoop(false);
    }
  }

  #joiners = 0;

  #holdLoop(hold: boolean): void {
    this.#joiners += hold ? 1 : -1;
    const held = this.#joiners > 0;
    if (this.#exitCode !== null) return;
    if (held) (this.#child ?? this.#worker)?.ref?.();
    else (this.#child ?? this.#worker)?.unref?.();
  }

  /**
   * Whether the child has started and not yet ended.
   *
   * @throws {ValueError} When the process is closed.
   */
  isAlive(): boolean {
    this.#checkOpen("check");
    return (this.#state === "starting" || this.#state === "started") && this.#exitCode === null;
  }

  /** Ends the child with SIGTERM (a worker is terminated); its exit code becomes -15. */
  terminate(): void {
    this.#signal("SIGTERM");
  }

  /** Ends the child with SIGKILL (a worker is terminated); its exit code becomes -9. */
  kill(): void {
    this.#signal("SIGKILL");
  }

  #signal(signal: "SIGTERM" | "SIGKILL"): void {
    this.#checkOpen(signal === "SIGTERM" ? "terminate" : "kill");
    if (this.#state === "starting") {
      this.#pendingSignal ??= signal;
      return;
    }
    if (!this.isAlive()) return;
    if (this.#worker !== undefined) {
      this.#signalled ??= -SIGNALS[signal]!;
      this.#worker.terminate();
      return;
    }
    try {
      this.#child?.kill(signal);
    } catch { /* it ended first */ }
  }

  /**
   * Releases what the process object holds. Later use throws `ValueError`.
   *
   * @throws {ValueError} When the child is still running.
   */
  close(): void {
    if (this.#state === "closed") return;
    if (this.isAlive()) {
      throw new ValueError(
        `Cannot close process ${this.#name}: it is still running; join or terminate it first`,
      );
    }
    this.#state = "closed";
    this.#stdin?.close().catch(() => {});
  }

  /** Terminates the child if it runs, waits for it, and closes the process. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === "closed") return;
    if (this.isAlive()) this.terminate();
    if (this.#state === "started") await this.#exited;
    this.close();
  }

  #checkOpen(action: string): void {
    if (this.#state === "closed") {
      throw new ValueError(`Cannot ${action} process ${this.#name}: it is closed`);
    }
  }
}

classes.Process = Process as unknown as NonNullable<typeof classes.Process>;

/**
 * This process or worker: `"MainProcess"` in the main program.
 *
 * @returns Its name, pid and whether it is a daemon.
 *
 * @example
 * ```ts
 * import { currentProcess } from "@seed/multiprocessing";
 * import assert from "node:assert/strict";
 *
 * assert.equal(currentProcess().name, "MainProcess");
 * ```
 */
export function currentProcess(): ProcessInfo {
  return { name: self.name, pid: Deno.pid, daemon: self.daemon };
}

/**
 * The process or worker that started this one, or `null` in the main program.
 *
 * @returns Its name and pid, or `null`.
 *
 * @example
 * ```ts
 * import { parentProcess } from "@seed/multiprocessing";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parentProcess(), null);
 * ```
 */
export function parentProcess(): ParentInfo | null {
  return self.parent === null ? null : { ...self.parent };
}

/**
 * The children this process started that are still alive.
 *
 * @returns The live children.
 *
 * @example
 * ```ts
 * import { activeChildren } from "@seed/multiprocessing";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(activeChildren(), []);
 * ```
 */
export function activeChildren(): Process[] {
  return [...children].filter((child) => child.isAlive()) as Process[];
}

/**
 * The number of logical CPUs of this machine.
 *
 * @returns The CPU count (at least 1).
 *
 * @example
 * ```ts
 * import { cpuCount } from "@seed/multiprocessing";
 * import assert from "node:assert/strict";
 *
 * assert.ok(cpuCount() >= 1);
 * ```
 */
export function cpuCount(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}
