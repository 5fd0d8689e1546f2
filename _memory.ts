// A region of memory shared with other workers or processes, and waiting on its 32-bit words.
// "worker" regions are SharedArrayBuffers (waits: Atomics.waitAsync, with a timer holding the
// event loop open); "process" regions are OS mappings (waits: futex on an FFI thread).
import { DataCloneError } from "./errors.ts";
import type { DecodeContext, EncodeContext } from "./_handles.ts";
import {
  createAnonymous,
  futexSlotFree,
  futexWait,
  futexWake,
  type Mapping,
  openAnonymous,
  threadAlive,
  threadId,
  unmap,
} from "./_ffi.ts";
import type { StartMethod } from "./_state.ts";

/** How a region travels: a SharedArrayBuffer index, or a pid and fd to open. */
export type RegionDescriptor =
  | { kind: "sab"; index: number }
  | { kind: "fd"; pid: number; fd: number; size: number };

/** Shared memory with futex-style waits on its Int32 words. */
export interface Region {
  readonly backing: StartMethod;
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly i32: Int32Array<ArrayBuffer | SharedArrayBuffer>;
  /** Sleeps while `i32[index] === expected`, at most `ms`; may return early. */
  wait(index: number, expected: number, ms: number): Promise<void>;
  /** Wakes up to `count` sleepers on `i32[index]`. */
  notify(index: number, count: number): void;
  /** This isolate's owner id for locks in this region. */
  ownerId(): number;
  /** Whether the owner with this id may still be alive. */
  ownerAlive(id: number): boolean;
  describe(context: EncodeContext, what: string): RegionDescriptor;
  /** Unmaps now (a "process" region); later use sees empty views. */
  close(): void;
}

/** Owner ids at or above this are random ids of isolates without FFI, never thread ids. */
const RANDOM_OWNER = 1 << 22;
/** Owner ids use the low 30 bits of a lock word. */
export const OWNER_MASK = (1 << 30) - 1;
let randomOwner = 0;

function isolateRandomId(): number {
  if (randomOwner === 0) {
    const [n] = crypto.getRandomValues(new Uint32Array(1));
    randomOwner = RANDOM_OWNER + (n! % (OWNER_MASK - RANDOM_OWNER));
  }
  return randomOwner;
}

let ffiOwner: number | undefined;

function ownerOf(): number {
  if (ffiOwner === undefined) {
    try {
      ffiOwner = threadId();
    } catch {
      ffiOwner = 0;
    }
  }
  return ffiOwner || isolateRandomId();
}

function aliveOf(id: number): boolean {
  if (id >= RANDOM_OWNER || ownerOf() >= RANDOM_OWNER) return true;
  return threadAlive(id);
}

class SabRegion implements Region {
  readonly backing = "worker" as const;
  readonly buffer: SharedArrayBuffer;
  readonly i32: Int32Array<SharedArrayBuffer>;
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.i32 = new Int32Array(buffer, 0, buffer.byteLength >> 2);
  }
  async wait(index: number, expected: number, ms: number): Promise<void> {
    const result = Atomics.waitAsync(this.i32, index, expected, ms);
    if (!result.async) return;
    // A pending waitAsync does not keep the event loop alive by itself.
    const hold = setInterval(() => {}, 1 << 30);
    try {
      await result.value;
    } finally {
      clearInterval(hold);
    }
  }
  notify(index: number, count: number): void {
    Atomics.notify(this.i32, index, count);
  }
  ownerId(): number {
    return ownerOf();
  }
  ownerAlive(id: number): boolean {
    return aliveOf(id);
  }
  describe(context: EncodeContext, what: string): RegionDescriptor {
    if (context.shared === undefined) {
      throw new DataCloneError(
        `Cannot send ${what} of the "worker" context to a ${
          context.destination ?? "destination"
        } that is not a worker: its memory is a SharedArrayBuffer, which only workers of this process can share; create it with { startMethod: "process" } (needs --allow-ffi) or use a Manager's Value`,
      );
    }
    const index = context.shared.length;
    context.shared.push(this.buffer);
    return { kind: "sab", index };
  }
  close(): void {}
}

class FdRegion implements Region {
  readonly backing = "process" as const;
  readonly mapping: Mapping;
  readonly buffer: ArrayBuffer;
  readonly i32: Int32Array<ArrayBuffer>;
  readonly size: number;
  constructor(mapping: Mapping, size: number) {
    this.mapping = mapping;
    this.size = size;
    this.buffer = mapping.buffer;
    this.i32 = new Int32Array(this.buffer, 0, this.buffer.byteLength >> 2);
  }
  async wait(index: number, expected: number, ms: number): Promise<void> {
    if (Atomics.load(this.i32, index) !== expected) return;
    if (!futexSlotFree()) {
      // Too many threads asleep already: poll instead of taking another.
      await new Promise((resolve) => setTimeout(resolve, Math.min(ms, 2)));
      return;
    }
    await futexWait(this.mapping.pointer, index * 4, expected, ms);
  }
  notify(index: number, count: number): void {
    if (this.buffer.detached) return;
    futexWake(this.mapping.pointer, index * 4, count);
  }
  ownerId(): number {
    return ownerOf();
  }
  ownerAlive(id: number): boolean {
    return aliveOf(id);
  }
  describe(_context: EncodeContext): RegionDescriptor {
    return { kind: "fd", pid: Deno.pid, fd: this.mapping.fd, size: this.size };
  }
  close(): void {
    unmap(this.mapping);
  }
}

/** A zeroed region of `size` bytes for objects of the given start method. */
export function createRegion(size: number, backing: StartMethod, what: string): Region {
  const rounded = Math.max(8, Math.ceil(size / 8) * 8);
  if (backing === "worker") return new SabRegion(new SharedArrayBuffer(rounded));
  return new FdRegion(createAnonymous(rounded, what), rounded);
}

/** The region a descriptor names, reached from this isolate. */
export function reviveRegion(descriptor: RegionDescriptor, context: DecodeContext): Region {
  if (descriptor.kind === "sab") {
    const buffer = context.shared?.[descriptor.index];
    if (buffer === undefined) {
      throw new TypeError("Cannot revive shared memory: its buffer is missing");
    }
    return new SabRegion(buffer);
  }
  return new FdRegion(
    openAnonymous(descriptor.pid, descriptor.fd, descriptor.size),
    descriptor.size,
  );
}

/** A region over an existing SharedArrayBuffer (named worker-context SharedMemory). */
export function sabRegion(buffer: SharedArrayBuffer): Region {
  return new SabRegion(buffer);
}

/** Options of a wait. */
export interface WaitOptions {
  /** Milliseconds to wait at most. */
  timeout?: number | undefined;
  /** Aborts the wait. */
  signal?: AbortSignal | undefined;
}

/** Throws a TypeError or RangeError unless the options are valid; returns the deadline. */
export function deadlineOf(options: WaitOptions | undefined, what: string): number {
  const timeout = options?.timeout;
  if (timeout === undefined || timeout === null) return Infinity;
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new TypeError(`Cannot ${what}: timeout must be a number of milliseconds`);
  }
  return performance.now() + Math.max(0, timeout);
}

/**
 * Waits until `ready()` is true, sleeping on `i32[index]` between checks. Resolves true when
 * ready, false at the deadline; rejects with the signal's reason when aborted. `onSlice` runs
 * after every `slice` ms asleep (dead-owner checks). `sleepValue`, when given, says which
 * value to sleep on after `ready()` failed (undefined: check again at once).
 */
export async function waitFor(
  region: Region,
  index: number,
  ready: () => boolean,
  deadline: number,
  signal: AbortSignal | undefined,
  slice = Infinity,
  onSlice?: () => void,
  sleepValue?: () => number | undefined,
): Promise<boolean> {
  signal?.throwIfAborted();
  if (ready()) return true;
  let aborted = false;
  const onAbort = () => {
    aborted = true;
    // Wake everyone on the word: they re-check, and this waiter sees the abort.
    region.notify(index, 0x7fffffff);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    while (true) {
      let expected = Atomics.load(region.i32, index);
      if (ready()) return true;
      if (aborted) throw signal!.reason;
      if (sleepValue !== undefined) {
        // The waiter chooses the value to sleep on (a lock: its word with the waiters bit).
        const value = sleepValue();
        if (value === undefined) continue;
        expected = value;
      }
      const left = deadline - performance.now();
      if (left <= 0) return false;
      const ms = Math.min(left, slice);
      const started = performance.now();
      await region.wait(index, expected, ms);
      if (aborted) throw signal!.reason;
      // Only a whole slice asleep hints at a dead owner; a wake-up does not.
      if (onSlice !== undefined && performance.now() - started >= slice) onSlice();
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
