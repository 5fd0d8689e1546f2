/**
 * Synchronization primitives shared by processes and workers, as in Python's
 * `multiprocessing.synchronize`: {@linkcode Lock}, {@linkcode RLock},
 * {@linkcode Semaphore}, {@linkcode BoundedSemaphore}, {@linkcode Event},
 * {@linkcode Condition} and {@linkcode Barrier}.
 *
 * Each lives in shared memory: a `SharedArrayBuffer` in the `"worker"` context, an OS
 * shared mapping reached through FFI in the `"process"` context (needs `--allow-ffi`).
 * Waits never block the event loop. Hand any of them to a child as an argument.
 *
 * A lock whose owner died (a process killed while it held the lock) does not hang the
 * others: the next `acquire` sees the owner is gone, takes the lock over and succeeds
 * (as a robust POSIX mutex does). The data the lock protected may be half-updated.
 * Waiters look for a dead owner every 200 ms. Owners are OS threads (their ids are read
 * through FFI), so this works for killed processes and terminated workers alike; in the
 * `"worker"` context without `--allow-ffi` a dead owner cannot be seen. Semaphores have no
 * owner, so a process that dies inside one leaves it one lower, as in Python.
 *
 * @example Protect a critical section
 * ```ts
 * import { Lock } from "@seed/multiprocessing/sync";
 * import assert from "node:assert/strict";
 *
 * const lock = new Lock({ startMethod: "worker" });
 * {
 *   using _ = await lock.hold();
 *   assert.equal(await lock.acquire({ timeout: 0 }), false);
 * }
 * assert.equal(await lock.acquire({ timeout: 0 }), true);
 * lock.release();
 * ```
 *
 * @module
 */
import { BrokenBarrierError, TimeoutError, ValueError } from "./errors.ts";
import { type HandleKind, markHandleClass, registerHandleKind } from "./_handles.ts";
import {
  createRegion,
  deadlineOf,
  OWNER_MASK,
  type Region,
  type RegionDescriptor,
  reviveRegion,
  waitFor,
} from "./_memory.ts";
import { self, type StartMethod, validateStartMethod } from "./_state.ts";
import { callerModules, findTarget, type TargetRef } from "./_target.ts";

export type { StartMethod } from "./_state.ts";

/** Options of a call that can wait. */
export interface AcquireOptions {
  /** Milliseconds to wait at most; `0` tries once. Waits without limit when left out. */
  timeout?: number;
  /** Aborts the wait; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of a primitive's constructor. */
export interface SyncOptions {
  /**
   * Which children may share it: `"process"` (OS shared memory, needs `--allow-ffi`) or
   * `"worker"` (a `SharedArrayBuffer`, workers only).
   *
   * @default {getStartMethod()}
   */
  startMethod?: StartMethod;
}

function backingOf(options: SyncOptions | undefined): StartMethod {
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw new TypeError("Cannot create a synchronization primitive: options must be an object");
  }
  return validateStartMethod(options?.startMethod ?? self.defaultStartMethod);
}

const WAITERS = 1 << 30;
/** How often a waiter checks whether a lock's owner died, in ms. */
const OWNER_CHECK_MS = 200;

// The engine of Lock and RLock: word 0 is the owner id (0: free) plus a waiters bit; word 1
// the recursion count of an RLock.
class MutexCore {
  readonly region: Region;
  readonly recursive: boolean;
  readonly i32: Int32Array<ArrayBuffer | SharedArrayBuffer>;
  readonly me: number;
  constructor(region: Region, recursive: boolean) {
    this.region = region;
    this.recursive = recursive;
    this.i32 = region.i32;
    this.me = region.ownerId();
  }
  tryAcquire(contended: boolean): boolean {
    const me = this.me;
    const word = Atomics.load(this.i32, 0);
    if (word === 0) {
      if (Atomics.compareExchange(this.i32, 0, 0, contended ? me | WAITERS : me) === 0) {
        if (this.recursive) this.i32[1] = 1;
        return true;
      }
      return false;
    }
    if (this.recursive && (word & OWNER_MASK) === me) {
      this.i32[1]!++;
      return true;
    }
    return false;
  }
  /**
   * Marks the lock contended so its release wakes us; the value to sleep on, which has the
   * waiters bit, or undefined when the word changed meanwhile (then try again).
   */
  markWaiting(): number | undefined {
    const word = Atomics.load(this.i32, 0);
    if (word === 0) return undefined;
    if ((word & WAITERS) !== 0) return word;
    const marked = word | WAITERS;
    return Atomics.compareExchange(this.i32, 0, word, marked) === word ? marked : undefined;
  }
  /** Takes over a lock whose owner died. */
  stealFromDead(): void {
    const word = Atomics.load(this.i32, 0);
    const owner = word & OWNER_MASK;
    if (word === 0 || this.region.ownerAlive(owner)) return;
    // Freed, keeping the waiters bit's promise: one of the waiters (maybe us) is woken.
    if (Atomics.compareExchange(this.i32, 0, word, 0) === word) this.region.notify(0, 1);
  }
  acquire(options: AcquireOptions | undefined, what: string): Promise<boolean> {
    // The uncontended path: no async function, one settled promise shared by all.
    if (this.tryAcquire(false)) return RESOLVED_TRUE;
    return this.acquireSlow(options, what);
  }
  async acquireSlow(options: AcquireOptions | undefined, what: string): Promise<boolean> {
    const deadline = deadlineOf(options, `acquire ${what}`);
    // No spinning: a waiter that sleeps at once lets the holder run on in long batches,
    // where a spinning one would take turns with it and pay a handoff per acquire.
    return await waitFor(
      this.region,
      0,
      () => this.tryAcquire(true),
      deadline,
      options?.signal,
      OWNER_CHECK_MS,
      () => this.stealFromDead(),
      () => this.markWaiting(),
    );
  }
  owned(): boolean {
    const word = Atomics.load(this.i32, 0);
    return word !== 0 && (word & OWNER_MASK) === this.me;
  }
  release(what: string): void {
    const word = Atomics.load(this.i32, 0);
    if (word === 0) throw new ValueError(`Cannot release ${what}: it is not acquired`);
    if (this.recursive) {
      if ((word & OWNER_MASK) !== this.me) {
        throw new ValueError(`Cannot release ${what}: it is held by another process or worker`);
      }
      if (--this.i32[1]! > 0) return;
    }
    const old = Atomics.exchange(this.i32, 0, 0);
    if ((old & WAITERS) !== 0) this.region.notify(0, 1);
  }
  /** Releases every level; returns the recursion count to restore. */
  releaseAll(): number {
    const count = this.recursive ? this.i32[1]! : 1;
    if (this.recursive) this.i32[1] = 1;
    this.release("the lock");
    return count;
  }
  async restore(count: number): Promise<void> {
    await this.acquire(undefined, "the lock");
    if (this.recursive) this.i32[1] = count;
  }
}

const RESOLVED_TRUE: Promise<boolean> = Promise.resolve(true);
let lockCore: (lock: Lock) => MutexCore;
let rlockCore: (lock: RLock) => MutexCore;

function coreOf(lock: Lock | RLock): MutexCore {
  return lock instanceof Lock ? lockCore(lock) : rlockCore(lock);
}

function holdOf(
  acquire: (options?: AcquireOptions) => Promise<boolean>,
  release: () => void,
  what: string,
  options?: AcquireOptions,
): Promise<Disposable> {
  return acquire(options).then((ok) => {
    if (!ok) {
      throw new TimeoutError(`Cannot acquire ${what} within ${options?.timeout} ms: it is held`);
    }
    let done = false;
    return {
      [Symbol.dispose]: () => {
        if (done) return;
        done = true;
        release();
      },
    };
  });
}

interface MutexDescriptor {
  region: RegionDescriptor;
}

/**
 * A non-recursive lock shared by processes and workers (Python's `multiprocessing.Lock`).
 * Any process or worker may release it, as in Python. When its owner dies holding it, the
 * next `acquire` takes it over.
 *
 * @example
 * ```ts
 * import { Lock } from "@seed/multiprocessing/sync";
 * import assert from "node:assert/strict";
 *
 * const lock = new Lock({ startMethod: "worker" });
 * assert.equal(await lock.acquire(), true);
 * assert.equal(await lock.acquire({ timeout: 10 }), false);
 * lock.release();
 * ```
 */
export class Lock {
  #core: MutexCore;

  /**
   * Makes an unlocked lock.
   *
   * @param options Where it can be shared.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(options?: SyncOptions) {
    const region = options === REVIVED_REGION
      ? revivedRegion!
      : createRegion(8, backingOf(options), "a Lock");
    this.#core = new MutexCore(region, false);
  }

  /**
   * Acquires the lock, waiting while another holds it.
   *
   * @param options `timeout` and `signal`.
   * @returns true once acquired; false when the timeout ran out.
   *
   * @example
   * ```ts
   * import { Lock } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const lock = new Lock({ startMethod: "worker" });
   * assert.equal(await lock.acquire({ timeout: 100 }), true);
   * lock.release();
   * ```
   */
  acquire(options?: AcquireOptions): Promise<boolean> {
    return this.#core.acquire(options, "lock");
  }

  /**
   * Releases the lock.
   *
   * @throws {ValueError} When it is not acquired.
   *
   * @example
   * ```ts
   * import { Lock } from "@seed/multiprocessing/sync";
   * import { ValueError } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * const lock = new Lock({ startMethod: "worker" });
   * assert.throws(() => lock.release(), ValueError);
   * ```
   */
  release(): void {
    this.#core.release("lock");
  }

  /**
   * Acquires the lock and returns a disposable that releases it, for `using`.
   *
   * @param options `timeout` and `signal`.
   * @returns A disposable that releases the lock once.
   * @throws {TimeoutError} When the timeout ran out (as a rejection).
   *
   * @example
   * ```ts
   * import { Lock } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const lock = new Lock({ startMethod: "worker" });
   * {
   *   using _ = await lock.hold();
   * }
   * assert.equal(await lock.acquire({ timeout: 0 }), true);
   * ```
   */
  hold(options?: AcquireOptions): Promise<Disposable> {
    return holdOf((o) => this.acquire(o), () => this.release(), "lock", options);
  }

  static {
    lockCore = (lock) => lock.#core;
  }
}

// Revival passes the region to the constructor through this slot.
const REVIVED_REGION = Object.freeze({}) as SyncOptions;
let revivedRegion: Region | undefined;

function revive<T>(make: () => T, region: Region): T {
  revivedRegion = region;
  try {
    return make();
  } finally {
    revivedRegion = undefined;
  }
}

const lockKind: HandleKind<Lock, MutexDescriptor> = registerHandleKind({
  name: "mp-lock",
  module: import.meta.url,
  describe: (lock, context) => ({ region: coreOf(lock).region.describe(context, "a Lock") }),
  revive: (d, context) => revive(() => new Lock(REVIVED_REGION), reviveRegion(d.region, context)),
});

/**
 * A recursive lock (Python's `multiprocessing.RLock`): the process or worker that holds
 * it may acquire it again, and must release it as many times.
 *
 * @example
 * ```ts
 * import { RLock } from "@seed/multiprocessing/sync";
 * import assert from "node:assert/strict";
 *
 * const lock = new RLock({ startMethod: "worker" });
 * await lock.acquire();
 * assert.equal(await lock.acquire({ timeout: 0 }), true);
 * lock.release();
 * lock.release();
 * ```
 */
export class RLock {
  #core: MutexCore;

  /**
   * Makes an unlocked recursive lock.
   *
   * @param options Where it can be shared.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(options?: SyncOptions) {
    const region = options === REVIVED_REGION
      ? revivedRegion!
      : createRegion(8, backingOf(options), "an RLock");
    this.#core = new MutexCore(region, true);
  }

  /**
   * Acquires the lock; at once when this process or worker holds it already.
   *
   * @param options `timeout` and `signal`.
   * @returns true once acquired; false when the timeout ran out.
   *
   * @example
   * ```ts
   * import { RLock } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const lock = new RLock({ startMethod: "worker" });
   * assert.equal(await lock.acquire(), true);
   * lock.release();
   * ```
   */
  acquire(options?: AcquireOptions): Promise<boolean> {
    return this.#core.acquire(options, "recursive lock");
  }

  /**
   * Releases one level of the lock.
   *
   * @throws {ValueError} When this process or worker does not hold it.
   *
   * @example
   * ```ts
   * import { RLock } from "@seed/multiprocessing/sync";
   * import { ValueError } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * assert.throws(() => new RLock({ startMethod: "worker" }).release(), ValueError);
   * ```
   */
  release(): void {
    this.#core.release("recursive lock");
  }

  /**
   * Acquires the lock and returns a disposable that releases it, for `using`.
   *
   * @param options `timeout` and `signal`.
   * @returns A disposable that releases one level once.
   * @throws {TimeoutError} When the timeout ran out (as a rejection).
   *
   * @example
   * ```ts
   * import { RLock } from "@seed/multiprocessing/sync";
   *
   * const lock = new RLock({ startMethod: "worker" });
   * using _ = await lock.hold();
   * ```
   */
  hold(options?: AcquireOptions): Promise<Disposable> {
    return holdOf((o) => this.acquire(o), () => this.release(), "recursive lock", options);
  }

  static {
    rlockCore = (lock) => lock.#core;
  }
}

const rlockKind: HandleKind<RLock, MutexDescriptor> = registerHandleKind({
  name: "mp-rlock",
  module: import.meta.url,
  describe: (lock, context) => ({
    region: coreOf(lock).region.describe(context, "an RLock"),
  }),
  revive: (d, context) => revive(() => new RLock(REVIVED_REGION), reviveRegion(d.region, context)),
});

// Semaphore words: 0 the value, 1 the number of waiters.
interface SemaphoreState {
  region: Region;
  bound: number;
}
const semaphores = new WeakMap<Semaphore, SemaphoreState>();

/**
 * A counting semaphore (Python's `multiprocessing.Semaphore`).
 *
 * @example
 * ```ts
 * import { Semaphore } from "@seed/multiprocessing/sync";
 * import assert from "node:assert/strict";
 *
 * const sem = new Semaphore(2, { startMethod: "worker" });
 * await sem.acquire();
 * await sem.acquire();
 * assert.equal(await sem.acquire({ timeout: 0 }), false);
 * sem.release();
 * assert.equal(sem.getValue(), 1);
 * ```
 */
export class Semaphore {
  /**
   * Makes a semaphore.
   *
   * @param value The start value, at least 0.
   * @param options Where it can be shared.
   * @throws {RangeError} When `value` is negative or not an integer.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(value = 1, options?: SyncOptions) {
    if (options === REVIVED_REGION) {
      semaphores.set(this, { region: revivedRegion!, bound: value });
      return;
    }
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
      throw new RangeError(`Cannot create a semaphore with value ${value}: use an integer from 0`);
    }
    const region = createRegion(8, backingOf(options), "a Semaphore");
    region.i32[0] = value;
    semaphores.set(this, { region, bound: this.#bounded() ? value : -1 });
  }

  #bounded(): boolean {
    return this instanceof BoundedSemaphore;
  }

  /**
   * Decrements the value, waiting while it is 0.
   *
   * @param options `timeout` and `signal`.
   * @returns true once decremented; false when the timeout ran out.
   *
   * @example
   * ```ts
   * import { Semaphore } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const sem = new Semaphore(0, { startMethod: "worker" });
   * assert.equal(await sem.acquire({ timeout: 10 }), false);
   * ```
   */
  async acquire(options?: AcquireOptions): Promise<boolean> {
    const { region } = semaphores.get(this)!;
    const i32 = region.i32;
    const take = () => {
      for (let v = Atomics.load(i32, 0); v > 0; v = Atomics.load(i32, 0)) {
        if (Atomics.compareExchange(i32, 0, v, v - 1) === v) return true;
      }
      return false;
    };
    if (take()) return true;
    const deadline = deadlineOf(options, "acquire semaphore");
    Atomics.add(i32, 1, 1);
    try {
      return await waitFor(region, 0, take, deadline, options?.signal);
    } finally {
      Atomics.sub(i32, 1, 1);
    }
  }

  /**
   * Increments the value, waking one waiter.
   *
   * @throws {ValueError} On a {@linkcode BoundedSemaphore}, when the value would pass its
   * start value.
   *
   * @example
   * ```ts
   * import { Semaphore } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const sem = new Semaphore(0, { startMethod: "worker" });
   * sem.release();
   * assert.equal(sem.getValue(), 1);
   * ```
   */
  release(): void {
    const { region, bound } = semaphores.get(this)!;
    const i32 = region.i32;
    if (bound >= 0) {
      for (let v = Atomics.load(i32, 0);; v = Atomics.load(i32, 0)) {
        if (v >= bound) {
          throw new ValueError(
            `Cannot release bounded semaphore: released too many times (its value is already ${bound})`,
          );
        }
        if (Atomics.compareExchange(i32, 0, v, v + 1) === v) break;
      }
    } else {
      Atomics.add(i32, 0, 1);
    }
    if (Atomics.load(i32, 1) > 0) region.notify(0, 1);
  }

  /**
   * The current value (Python's `get_value()`).
   *
   * @returns The value.
   *
   * @example
   * ```ts
   * import { Semaphore } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * assert.equal(new Semaphore(3, { startMethod: "worker" }).getValue(), 3);
   * ```
   */
  getValue(): number {
    return Atomics.load(semaphores.get(this)!.region.i32, 0);
  }

  /**
   * Acquires and returns a disposable that releases, for `using`.
   *
   * @param options `timeout` and `signal`.
   * @returns A disposable that releases once.
   * @throws {TimeoutError} When the timeout ran out (as a rejection).
   *
   * @example
   * ```ts
   * import { Semaphore } from "@seed/multiprocessing/sync";
   *
   * const sem = new Semaphore(1, { startMethod: "worker" });
   * using _ = await sem.hold();
   * ```
   */
  hold(options?: AcquireOptions): Promise<Disposable> {
    return holdOf((o) => this.acquire(o), () => this.release(), "semaphore", options);
  }
}

/**
 * A semaphore whose value may not pass its start value (Python's
 * `multiprocessing.BoundedSemaphore`): one release too many throws `ValueError`.
 *
 * @example
 * ```ts
 * import { BoundedSemaphore } from "@seed/multiprocessing/sync";
 * import { ValueError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * const sem = new BoundedSemaphore(1, { startMethod: "worker" });
 * assert.throws(() => sem.release(), ValueError);
 * ```
 */
export class BoundedSemaphore extends Semaphore {}

interface SemaphoreDescriptor {
  region: RegionDescriptor;
  bound: number;
}

const semaphoreKind: HandleKind<Semaphore, SemaphoreDescriptor> = registerHandleKind({
  name: "mp-semaphore",
  module: import.meta.url,
  describe: (sem, context) => {
    const { region, bound } = semaphores.get(sem)!;
    return { region: region.describe(context, "a Semaphore"), bound };
  },
  revive: (d, context) =>
    revive(
      () =>
        d.bound >= 0
          ? new BoundedSemaphore(d.bound, REVIVED_REGION)
          : new Semaphore(d.bound, REVIVED_REGION),
      reviveRegion(d.region, context),
    ),
});

const events = new WeakMap<Event, Region>();

/**
 * A flag processes and workers can wait for (Python's `multiprocessing.Event`).
 *
 * @example
 * ```ts
 * import { Event } from "@seed/multiprocessing/sync";
 * import assert from "node:assert/strict";
 *
 * const event = new Event({ startMethod: "worker" });
 * setTimeout(() => event.set(), 10);
 * assert.equal(await event.wait({ timeout: 5000 }), true);
 * ```
 */
export class Event {
  /**
   * Makes an unset event.
   *
   * @param options Where it can be shared.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(options?: SyncOptions) {
    events.set(
      this,
      options === REVIVED_REGION ? revivedRegion! : createRegion(8, backingOf(options), "an Event"),
    );
  }

  /**
   * Sets the flag and wakes every waiter.
   *
   * @example
   * ```ts
   * import { Event } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const event = new Event({ startMethod: "worker" });
   * event.set();
   * assert.equal(event.isSet(), true);
   * ```
   */
  set(): void {
    const region = events.get(this)!;
    if (Atomics.exchange(region.i32, 0, 1) === 0) region.notify(0, 0x7fffffff);
  }

  /**
   * Clears the flag.
   *
   * @example
   * ```ts
   * import { Event } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const event = new Event({ startMethod: "worker" });
   * event.set();
   * event.clear();
   * assert.equal(event.isSet(), false);
   * ```
   */
  clear(): void {
    Atomics.store(events.get(this)!.i32, 0, 0);
  }

  /**
   * Whether the flag is set.
   *
   * @returns The flag.
   *
   * @example
   * ```ts
   * import { Event } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * assert.equal(new Event({ startMethod: "worker" }).isSet(), false);
   * ```
   */
  isSet(): boolean {
    return Atomics.load(events.get(this)!.i32, 0) === 1;
  }

  /**
   * Waits until the flag is set.
   *
   * @param options `timeout` and `signal`.
   * @returns true when the flag is set; false when the timeout ran out first.
   *
   * @example
   * ```ts
   * import { Event } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * assert.equal(await new Event({ startMethod: "worker" }).wait({ timeout: 10 }), false);
   * ```
   */
  wait(options?: AcquireOptions): Promise<boolean> {
    const region = events.get(this)!;
    try {
      const deadline = deadlineOf(options, "wait for event");
      return waitFor(region, 0, () => Atomics.load(region.i32, 0) === 1, deadline, options?.signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

const eventKind: HandleKind<Event, { region: RegionDescriptor }> = registerHandleKind({
  name: "mp-event",
  module: import.meta.url,
  describe: (event, context) => ({ region: events.get(event)!.describe(context, "an Event") }),
  revive: (d, context) => revive(() => new Event(REVIVED_REGION), reviveRegion(d.region, context)),
});

// Condition words: 0 head and 1 tail of the FIFO of waiters, then SLOTS slot states
// (0 free, 1 waiting, 2 notified), then the FIFO ring of slot numbers.
const SLOTS = 64;
const SLOT = 2;
const RING = 2 + SLOTS;

interface ConditionState {
  region: Region;
  lock: Lock | RLock;
}
const conditions = new WeakMap<Condition, ConditionState>();

/**
 * A condition variable (Python's `multiprocessing.Condition`): wait until notified,
 * with a lock held around the check. `notify(n)` wakes exactly `n` waiters (fewer when
 * fewer wait), oldest first. At most 64 waiters at once.
 *
 * @example
 * ```ts
 * import { Condition } from "@seed/multiprocessing/sync";
 * import assert from "node:assert/strict";
 *
 * const cond = new Condition(undefined, { startMethod: "worker" });
 * let ready = false;
 * setTimeout(async () => {
 *   using _ = await cond.hold();
 *   ready = true;
 *   cond.notify();
 * }, 10);
 * using _ = await cond.hold();
 * assert.equal(await cond.waitFor(() => ready, { timeout: 5000 }), true);
 * ```
 */
export class Condition {
  /**
   * Makes a condition over a lock.
   *
   * @param lock The lock to hold around waits; a new {@linkcode RLock} when left out.
   * @param options Where it can be shared (ignored for the lock when one is given).
   * @throws {TypeError} When `lock` is not a Lock or RLock.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(lock?: Lock | RLock, options?: SyncOptions) {
    if (options === REVIVED_REGION) {
      conditions.set(this, { region: revivedRegion!, lock: lock! });
      return;
    }
    if (lock !== undefined && !(lock instanceof Lock) && !(lock instanceof RLock)) {
      throw new TypeError("Cannot create a condition: lock must be a Lock or an RLock");
    }
    const backing = lock === undefined ? backingOf(options) : coreOf(lock).region.backing;
    lock ??= new RLock({ startMethod: backing });
    conditions.set(this, {
      region: createRegion((RING + SLOTS) * 4, backing, "a Condition"),
      lock,
    });
  }

  /**
   * Acquires the underlying lock.
   *
   * @param options `timeout` and `signal`.
   * @returns true once acquired; false when the timeout ran out.
   *
   * @example
   * ```ts
   * import { Condition } from "@seed/multiprocessing/sync";
   *
   * const cond = new Condition(undefined, { startMethod: "worker" });
   * await cond.acquire();
   * cond.release();
   * ```
   */
  acquire(options?: AcquireOptions): Promise<boolean> {
    return conditions.get(this)!.lock.acquire(options);
  }

  /**
   * Releases the underlying lock.
   *
   * @throws {ValueError} When it is not held.
   *
   * @example
   * ```ts
   * import { Condition } from "@seed/multiprocessing/sync";
   * import { ValueError } from "@seed/multiprocessing/errors";
   * import assert from "node:assert/strict";
   *
   * assert.throws(() => new Condition(undefined, { startMethod: "worker" }).release(), ValueError);
   * ```
   */
  release(): void {
    conditions.get(this)!.lock.release();
  }

  /**
   * Acquires the lock and returns a disposable that releases it, for `using`.
   *
   * @param options `timeout` and `signal`.
   * @returns A disposable that releases the lock once.
   * @throws {TimeoutError} When the timeout ran out (as a rejection).
   *
   * @example
   * ```ts
   * import { Condition } from "@seed/multiprocessing/sync";
   *
   * const cond = new Condition(undefined, { startMethod: "worker" });
   * using _ = await cond.hold();
   * cond.notifyAll();
   * ```
   */
  hold(options?: AcquireOptions): Promise<Disposable> {
    return conditions.get(this)!.lock.hold(options);
  }

  #checkOwned(what: string): MutexCore {
    const core = coreOf(conditions.get(this)!.lock);
    if (!core.owned()) {
      throw new ValueError(
        `Cannot ${what} on a condition whose lock this process does not hold: acquire it first`,
      );
    }
    return core;
  }

  /**
   * Releases the lock, waits until notified, then acquires the lock again.
   *
   * @param options `timeout` and `signal`.
   * @returns true when notified; false when the timeout ran out first.
   * @throws {ValueError} When the lock is not held (as a rejection).
   *
   * @example
   * ```ts
   * import { Condition } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const cond = new Condition(undefined, { startMethod: "worker" });
   * await cond.acquire();
   * assert.equal(await cond.wait({ timeout: 10 }), false);
   * cond.release();
   * ```
   */
  async wait(options?: AcquireOptions): Promise<boolean> {
    const core = this.#checkOwned("wait");
    const deadline = deadlineOf(options, "wait on condition");
    options?.signal?.throwIfAborted();
    const { region } = conditions.get(this)!;
    const i32 = region.i32;
    let slot = -1;
    for (let s = 0; s < SLOTS && slot < 0; s++) {
      if (Atomics.compareExchange(i32, SLOT + s, 0, 1) === 0) slot = s;
    }
    if (slot < 0) {
      throw new ValueError(
        `Cannot wait on condition: ${SLOTS} processes or workers wait on it already`,
      );
    }
    const tail = Atomics.load(i32, 1);
    Atomics.store(i32, RING + (tail % SLOTS), slot);
    Atomics.store(i32, 1, tail + 1);
    const saved = core.releaseAll();
    let failure: unknown;
    try {
      await waitFor(
        region,
        SLOT + slot,
        () => Atomics.load(i32, SLOT + slot) === 2,
        deadline,
        options?.signal,
      );
    } catch (error) {
      failure = error;
    }
    await core.restore(saved);
    const notified = Atomics.load(i32, SLOT + slot) === 2;
    if (!notified) this.#forget(slot);
    Atomics.store(i32, SLOT + slot, 0);
    if (failure !== undefined) throw failure;
    return notified;
  }

  #forget(slot: number): void {
    const i32 = conditions.get(this)!.region.i32;
    const head = Atomics.load(i32, 0);
    const tail = Atomics.load(i32, 1);
    let at = head;
    while (at < tail && Atomics.load(i32, RING + (at % SLOTS)) !== slot) at++;
    if (at === tail) return;
    for (; at + 1 < tail; at++) {
      Atomics.store(i32, RING + (at % SLOTS), Atomics.load(i32, RING + ((at + 1) % SLOTS)));
    }
    Atomics.store(i32, 1, tail - 1);
  }

  /**
   * Waits until `predicate()` is true, re-checking after each notification.
   *
   * @param predicate The condition to wait for; called with the lock held.
   * @param options `timeout` (for the whole wait) and `signal`.
   * @returns The predicate's last result.
   * @throws {ValueError} When the lock is not held (as a rejection).
   *
   * @example
   * ```ts
   * import { Condition } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const cond = new Condition(undefined, { startMethod: "worker" });
   * using _ = await cond.hold();
   * assert.equal(await cond.waitFor(() => false, { timeout: 10 }), false);
   * ```
   */
  async waitFor(predicate: () => boolean, options?: AcquireOptions): Promise<boolean> {
    const deadline = deadlineOf(options, "wait on condition");
    let result = predicate();
    while (!result) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      const waitOptions: AcquireOptions = Number.isFinite(left) ? { timeout: left } : {};
      if (options?.signal !== undefined) waitOptions.signal = options.signal;
      await this.wait(waitOptions);
      result = predicate();
    }
    return result;
  }

  /**
   * Wakes up to `n` waiters, oldest first. The lock must be held.
   *
   * @param n How many to wake.
   * @throws {ValueError} When the lock is not held.
   *
   * @example
   * ```ts
   * import { Condition } from "@seed/multiprocessing/sync";
   *
   * const cond = new Condition(undefined, { startMethod: "worker" });
   * using _ = await cond.hold();
   * cond.notify(2);
   * ```
   */
  notify(n = 1): void {
    this.#checkOwned("notify");
    const { region } = conditions.get(this)!;
    const i32 = region.i32;
    let head = Atomics.load(i32, 0);
    const tail = Atomics.load(i32, 1);
    for (; n > 0 && head < tail; n--, head++) {
      const slot = Atomics.load(i32, RING + (head % SLOTS));
      Atomics.store(i32, SLOT + slot, 2);
      region.notify(SLOT + slot, 1);
    }
    Atomics.store(i32, 0, head);
  }

  /**
   * Wakes every waiter. The lock must be held.
   *
   * @throws {ValueError} When the lock is not held.
   *
   * @example
   * ```ts
   * import { Condition } from "@seed/multiprocessing/sync";
   *
   * const cond = new Condition(undefined, { startMethod: "worker" });
   * using _ = await cond.hold();
   * cond.notifyAll();
   * ```
   */
  notifyAll(): void {
    this.notify(0x7fffffff);
  }
}

const conditionKind: HandleKind<Condition, { region: RegionDescriptor; lock: Lock | RLock }> =
  registerHandleKind({
    name: "mp-condition",
    module: import.meta.url,
    describe: (cond, context) => {
      const { region, lock } = conditions.get(cond)!;
      return { region: region.describe(context, "a Condition"), lock };
    },
    revive: (d, context) =>
      revive(() => new Condition(d.lock, REVIVED_REGION), reviveRegion(d.region, context)),
  });

/** Options of a {@linkcode Barrier}. */
export interface BarrierOptions extends SyncOptions {
  /**
   * Runs once per round, in the process or worker whose `wait` completes the barrier. In
   * other processes it is imported by name, so export it from its module.
   */
  action?: () => unknown;
  /** The default timeout of `wait`, in milliseconds. */
  timeout?: number;
}

// Barrier words: 0 the state, 1 the number of parties in wait.
const FILLING = 0;
const DRAINING = 1;
const RESETTING = -1;
const BROKEN = -2;

interface BarrierState {
  region: Region;
  cond: Condition;
  parties: number;
  timeout: number | undefined;
  action: (() => unknown) | undefined;
  ref: TargetRef | undefined;
  loading: Promise<void> | undefined;
}
const barriers = new WeakMap<Barrier, BarrierState>();

/**
 * A barrier for a fixed number of parties (Python's `multiprocessing.Barrier`): each
 * `wait` returns once all parties wait. A broken, aborted or reset barrier rejects the
 * waits with `BrokenBarrierError`; so does a wait whose timeout runs out (and it breaks
 * the barrier), as in Python.
 *
 * @example
 * ```ts
 * import { Barrier } from "@seed/multiprocessing/sync";
 * import assert from "node:assert/strict";
 *
 * const barrier = new Barrier(2, { startMethod: "worker" });
 * const indexes = await Promise.all([barrier.wait(), barrier.wait()]);
 * assert.deepEqual(indexes.sort(), [0, 1]);
 * ```
 */
export class Barrier {
  /**
   * Makes a barrier.
   *
   * @param parties How many must wait before all go on; at least 1.
   * @param options `action`, `timeout`, and where it can be shared.
   * @throws {RangeError} When `parties` is not a positive integer.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(parties: number, options?: BarrierOptions) {
    if (options === REVIVED_REGION) return;
    if (!Number.isInteger(parties) || parties < 1) {
      throw new RangeError(
        `Cannot create a barrier for ${parties} parties: use a positive integer`,
      );
    }
    const backing = backingOf(options);
    const action = options?.action;
    if (action !== undefined && typeof action !== "function") {
      throw new TypeError("Cannot create a barrier: action must be a function");
    }
    let ref: TargetRef | undefined;
    if (action !== undefined) {
      try {
        ref = findTarget(action, "Barrier action", callerModules(new Error().stack));
      } catch { /* not exported: it runs only where it was given */ }
    }
    barriers.set(this, {
      region: createRegion(8, backing, "a Barrier"),
      cond: new Condition(new Lock({ startMethod: backing })),
      parties,
      timeout: options?.timeout,
      action,
      ref,
      loading: undefined,
    });
  }

  /** How many parties must wait. */
  get parties(): number {
    return barriers.get(this)!.parties;
  }

  /** How many parties wait now. */
  get nWaiting(): number {
    const i32 = barriers.get(this)!.region.i32;
    return Atomics.load(i32, 0) === FILLING ? Atomics.load(i32, 1) : 0;
  }

  /** Whether the barrier is broken. */
  get broken(): boolean {
    return Atomics.load(barriers.get(this)!.region.i32, 0) === BROKEN;
  }

  /**
   * Waits until all parties wait.
   *
   * @param options `timeout` (the barrier's default when left out) and `signal`.
   * @returns This party's arrival index, from 0 to `parties - 1`.
   * @throws {BrokenBarrierError} When the barrier is or becomes broken, aborted or reset,
   * or the timeout runs out (as a rejection).
   *
   * @example
   * ```ts
   * import { Barrier } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * assert.equal(await new Barrier(1, { startMethod: "worker" }).wait(), 0);
   * ```
   */
  async wait(options?: AcquireOptions): Promise<number> {
    const state = barriers.get(this)!;
    const { cond, region } = state;
    const i32 = region.i32;
    const timeout = options?.timeout ?? state.timeout;
    const signal = options?.signal;
    const withSignal: AcquireOptions = signal === undefined ? {} : { signal };
    await cond.acquire(withSignal);
    try {
      // Enter: wait out a round that is draining or resetting.
      await cond.waitFor(() => {
        const s = Atomics.load(i32, 0);
        return s !== DRAINING && s !== RESETTING;
      }, withSignal);
      if (Atomics.load(i32, 0) === BROKEN) throw this.#brokenError();
      const index = Atomics.add(i32, 1, 1);
      try {
        if (index + 1 === state.parties) {
          try {
            await this.#runAction(state);
          } catch (error) {
            this.#break(state);
            throw error;
          }
          Atomics.store(i32, 0, DRAINING);
          cond.notifyAll();
        } else {
          const waitOptions: AcquireOptions = { ...withSignal };
          if (timeout !== undefined) waitOptions.timeout = timeout;
          let ok: boolean;
          try {
            ok = await cond.waitFor(() => Atomics.load(i32, 0) !== FILLING, waitOptions);
          } catch (error) {
            this.#break(state);
            throw error;
          }
          if (!ok) {
            this.#break(state);
            throw new BrokenBarrierError(
              `Barrier broke: the wait timed out after ${timeout} ms with ${
                index + 1
              } of ${state.parties} parties`,
            );
          }
          if (Atomics.load(i32, 0) < 0) throw this.#brokenError();
        }
        return index;
      } finally {
        // Exit: the last one out of a drained or reset round refills the barrier.
        if (Atomics.sub(i32, 1, 1) === 1) {
          const s = Atomics.load(i32, 0);
          if (s === RESETTING || s === DRAINING) {
            Atomics.store(i32, 0, FILLING);
            cond.notifyAll();
          }
        }
      }
    } finally {
      cond.release();
    }
  }

  #brokenError(): BrokenBarrierError {
    return new BrokenBarrierError(
      "Barrier is broken: it was aborted, reset, or a wait timed out; call reset()",
    );
  }

  #break(state: BarrierState): void {
    Atomics.store(state.region.i32, 0, BROKEN);
    state.cond.notifyAll();
  }

  async #runAction(state: BarrierState): Promise<void> {
    if (state.action === undefined && state.ref !== undefined) {
      state.loading ??= import(state.ref.module).then((module) => {
        state.action = module[state.ref!.exportName];
      });
      await state.loading;
    }
    await state.action?.();
  }

  /**
   * Breaks the barrier: current and later waits reject with `BrokenBarrierError` until
   * `reset()`.
   *
   * @returns A promise that resolves once the barrier is broken.
   *
   * @example
   * ```ts
   * import { Barrier } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const barrier = new Barrier(2, { startMethod: "worker" });
   * await barrier.abort();
   * assert.equal(barrier.broken, true);
   * ```
   */
  async abort(): Promise<void> {
    const state = barriers.get(this)!;
    await state.cond.acquire();
    try {
      this.#break(state);
    } finally {
      state.cond.release();
    }
  }

  /**
   * Returns the barrier to its empty state; parties waiting now reject with
   * `BrokenBarrierError`.
   *
   * @returns A promise that resolves once the barrier is reset.
   *
   * @example
   * ```ts
   * import { Barrier } from "@seed/multiprocessing/sync";
   * import assert from "node:assert/strict";
   *
   * const barrier = new Barrier(2, { startMethod: "worker" });
   * await barrier.abort();
   * await barrier.reset();
   * assert.equal(barrier.broken, false);
   * ```
   */
  async reset(): Promise<void> {
    const state = barriers.get(this)!;
    const i32 = state.region.i32;
    await state.cond.acquire();
    try {
      if (Atomics.load(i32, 1) > 0) {
        const s = Atomics.load(i32, 0);
        if (s === FILLING || s === BROKEN) Atomics.store(i32, 0, RESETTING);
      } else {
        Atomics.store(i32, 0, FILLING);
      }
      state.cond.notifyAll();
    } finally {
      state.cond.release();
    }
  }
}

interface BarrierDescriptor {
  region: RegionDescriptor;
  cond: Condition;
  parties: number;
  timeout: number | null;
  ref: TargetRef | null;
}

const barrierKind: HandleKind<Barrier, BarrierDescriptor> = registerHandleKind({
  name: "mp-barrier",
  module: import.meta.url,
  describe: (barrier, context) => {
    const state = barriers.get(barrier)!;
    return {
      region: state.region.describe(context, "a Barrier"),
      cond: state.cond,
      parties: state.parties,
      timeout: state.timeout ?? null,
      ref: state.ref ?? null,
    };
  },
  revive: (d, context) => {
    const barrier = new Barrier(d.parties, REVIVED_REGION);
    barriers.set(barrier, {
      region: reviveRegion(d.region, context),
      cond: d.cond,
      parties: d.parties,
      timeout: d.timeout ?? undefined,
      action: undefined,
      ref: d.ref ?? undefined,
      loading: undefined,
    });
    return barrier;
  },
});

// Instances cross to other processes and workers as handles.
markHandleClass(Lock, lockKind);
markHandleClass(RLock, rlockKind);
markHandleClass(Semaphore, semaphoreKind);
markHandleClass(Event, eventKind);
markHandleClass(Condition, conditionKind);
markHandleClass(Barrier, barrierKind);
