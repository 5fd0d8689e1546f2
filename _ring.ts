// A queue's items in a SharedArrayBuffer, for the threads of one process:
// workers put and take there directly, not through the queue's hub on the
// main thread (which relays each item twice and competes for the cores).
//
// Records are a u32 length and the bytes. Positions are byte counts that wrap
// at 2^32; the capacity is a power of two, so `position % capacity` agrees
// across the wrap. A record that would cross the end starts at 0 instead; the
// gap is marked PAD (or is under 4 bytes, which a reader skips too).
//
// One lock guards the header. Each change commits with one store (TAIL after
// the bytes are written, HEAD after they are copied out), so a thread that
// dies holding the lock (a terminated worker) leaves the ring whole: whoever
// learns of the death calls recover(owner), which frees the lock and counts
// ITEMS again from HEAD to TAIL.

import { copyShared } from "./_lane.ts";

const LOCK = 0; // 0: free; else the owner's id
const HEAD = 1; // bytes read
const TAIL = 2; // bytes written
const ITEMS = 3; // records between HEAD and TAIL
const EPOCH = 4; // bumped by each put: getters wait on it
const GETTERS = 5; // threads waiting on EPOCH
const LOCK_WAITERS = 6; // threads waiting for the lock
// For a queue (offer, putSpilled):
const SHUT = 7; // 1: offers are refused
const SPILLED = 8; // items that went around the ring, to its owner: later offers follow them
const PUTS = 9; // records offered in (a JoinableQueue counts them as unfinished)
const TAKES = 10; // bumped by each take: the owner waits on it to move spilled items in
const TAKE_WAITERS = 11; // threads waiting on TAKES
const HEADER_BYTES = 64;
const PAD = 0xffffffff;
// Tries of the lock before sleeping on it: the lock is held for a copy.
const SPINS = 200;

let scratch = new Uint8Array(256);

function copyShort(data: Uint8Array, from: number, length: number): Uint8Array {
  if (length > scratch.length) scratch = new Uint8Array(Math.max(length, scratch.length * 2));
  if (length > 64) copyShared(scratch, 0, data.subarray(from, from + length));
  else for (let i = 0; i < length; i++) scratch[i] = data[from + i]!;
  return scratch.subarray(0, length);
}

function copyOut(data: Uint8Array, from: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  copyShared(bytes, 0, data.subarray(from, from + length));
  return bytes;
}

/** A multi-producer, multi-consumer FIFO of byte records in shared memory. */
export class SharedRing {
  readonly memory: SharedArrayBuffer;
  readonly capacity: number;
  #header: Int32Array;
  #data: Uint8Array;
  #view: DataView;

  /**
   * @param memory From {@linkcode SharedRing.memory} (another thread's ring),
   *   or a capacity in bytes, a power of two, for a new ring.
   */
  constructor(memory: SharedArrayBuffer | number) {
    if (typeof memory === "number") {
      if (!(memory >= 16 && (memory & (memory - 1)) === 0 && memory <= 2 ** 30)) {
        throw new RangeError(`Cannot make a ring of ${memory} bytes: it must be a power of two`);
      }
      memory = new SharedArrayBuffer(HEADER_BYTES + memory);
    }
    this.memory = memory;
    this.capacity = memory.byteLength - HEADER_BYTES;
    this.#header = new Int32Array(memory, 0, HEADER_BYTES / 4);
    this.#data = new Uint8Array(memory, HEADER_BYTES);
    this.#view = new DataView(memory, HEADER_BYTES);
  }

  /** Records in the ring now. */
  get size(): number {
    return Atomics.load(this.#header, ITEMS);
  }

  /** What {@linkcode SharedRing.waitForPut} waits to change. */
  get epoch(): number {
    return Atomics.load(this.#header, EPOCH);
  }

  /**
   * Takes the lock. An impatient caller gets false when spinning did not get
   * it: the thread that would recover() a dead holder must not sleep here.
   */
  #lock(owner: number, patient = true): boolean {
    const header = this.#header;
    for (let i = 0; i < SPINS; i++) {
      if (Atomics.compareExchange(header, LOCK, 0, owner) === 0) return true;
    }
    if (!patient) return false;
    for (;;) {
      const holder = Atomics.compareExchange(header, LOCK, 0, owner);
      if (holder === 0) return true;
      Atomics.add(header, LOCK_WAITERS, 1);
      // Timed: a holder that died is freed by recover(), which notifies, but
      // a notify can fall between our look and our wait.
      Atomics.wait(header, LOCK, holder, 1);
      Atomics.sub(header, LOCK_WAITERS, 1);
    }
  }

  #unlock(): void {
    Atomics.store(this.#header, LOCK, 0);
    if (Atomics.load(this.#header, LOCK_WAITERS) > 0) Atomics.notify(this.#header, LOCK, 1);
  }

  /** Appends a record if it fits; the caller holds the lock. */
  #write(bytes: Uint8Array): boolean {
    const header = this.#header;
    const capacity = this.capacity;
    const need = 4 + bytes.length;
    let tail = Atomics.load(header, TAIL) >>> 0;
    const used = (tail - (Atomics.load(header, HEAD) >>> 0)) >>> 0;
    let at = tail % capacity;
    const gap = capacity - at < need ? capacity - at : 0;
    if (need > capacity) return false;
    if (gap > 0 && used === 0) {
      // Empty: start again at 0 (any record up to the capacity fits). The
      // gap is marked and committed first, then HEAD follows: a holder that
      // dies between the two stores leaves a ring that reads as empty.
      if (gap >= 4) this.#view.setUint32(at, PAD, true);
      tail = (tail + gap) >>> 0;
      Atomics.store(header, TAIL, tail | 0);
      Atomics.store(header, HEAD, tail | 0);
      at = 0;
    } else if (used + gap + need > capacity) return false;
    else if (gap > 0) {
      if (gap >= 4) this.#view.setUint32(at, PAD, true);
      tail = (tail + gap) >>> 0;
      at = 0;
    }
    this.#view.setUint32(at, bytes.length, true);
    copyShared(this.#data, at + 4, bytes); // a record's bytes start 4 past a word
    Atomics.store(header, TAIL, (tail + need) | 0);
    Atomics.add(header, ITEMS, 1);
    Atomics.add(header, EPOCH, 1);
    return true;
  }

  /**
   * Where the record at `position` starts: there, or at the ring's start when
   * `position` is in the gap a record that would cross the end left.
   */
  #recordAt(position: number): number {
    const left = this.capacity - position % this.capacity;
    const gap = left < 4 || this.#view.getUint32(this.capacity - left, true) === PAD;
    return gap ? (position + left) >>> 0 : position;
  }

  #wakeGetters(): void {
    if (Atomics.load(this.#header, GETTERS) > 0) Atomics.notify(this.#header, EPOCH);
  }

  /**
   * Appends `bytes` as one record, if there is room.
   *
   * @param owner This thread's id (not 0): recover() frees a lock by it.
   * @returns Whether the record is in the ring.
   */
  tryPut(bytes: Uint8Array, owner: number): boolean {
    this.#lock(owner);
    let done: boolean;
    try {
      done = this.#write(bytes);
    } finally {
      this.#unlock();
    }
    if (done) this.#wakeGetters();
    return done;
  }

  /**
   * A queue's put: appends `bytes` unless the queue is shut. When they do not
   * fit, or items spilled before are still out of the ring, counts one more
   * spilled item: the caller hands the item to the ring's owner, and later
   * offers spill too until the owner has moved them all in (putSpilled), so
   * each producer's items stay in order. An impatient caller that does not
   * get the lock spills without it (later offers see the count).
   *
   * @param owner This thread's id (not 0).
   */
  offer(bytes: Uint8Array, owner: number, patient = true): "ok" | "spilled" | "shut" {
    const header = this.#header;
    if (!this.#lock(owner, patient)) {
      if (Atomics.load(header, SHUT) !== 0) return "shut";
      Atomics.add(header, SPILLED, 1);
      return "spilled";
    }
    let result: "ok" | "spilled" | "shut";
    try {
      if (Atomics.load(header, SHUT) !== 0) result = "shut";
      else if (Atomics.load(header, SPILLED) === 0 && this.#write(bytes)) {
        Atomics.add(header, PUTS, 1);
        result = "ok";
      } else {
        Atomics.add(header, SPILLED, 1);
        result = "spilled";
      }
    } finally {
      this.#unlock();
    }
    if (result === "ok") this.#wakeGetters();
    return result;
  }

  /** Counts a spilled item without the lock (a producer not yet allowed it). */
  countSpilled(n = 1): void {
    Atomics.add(this.#header, SPILLED, n);
  }

  /** Items spilled and not yet moved in or handed out (see offer). */
  get spilled(): number {
    return Atomics.load(this.#header, SPILLED);
  }

  /** Records offered in so far. */
  get puts(): number {
    return Atomics.load(this.#header, PUTS);
  }

  /** Whether offers are refused. */
  get shut(): boolean {
    return Atomics.load(this.#header, SHUT) !== 0;
  }

  /** Refuses offers from now on. */
  shutDown(): void {
    Atomics.store(this.#header, SHUT, 1);
  }

  /**
   * For the ring's owner: moves the first spilled item in, if it fits and
   * the lock is free now (it never waits for it). Counts it out of the spill.
   */
  putSpilled(bytes: Uint8Array, owner: number): boolean {
    if (!this.#lock(owner, false)) return false;
    let done: boolean;
    try {
      done = this.#write(bytes);
      if (done) Atomics.sub(this.#header, SPILLED, 1);
    } finally {
      this.#unlock();
    }
    if (done) this.#wakeGetters();
    return done;
  }

  /** Settles when the lock may be free, or after `timeout` ms; keeps nothing alive. */
  whenUnlocked(timeout: number): Promise<void> {
    const holder = Atomics.load(this.#header, LOCK);
    return holder === 0 ? Promise.resolve() : this.#waitAsync(LOCK, LOCK_WAITERS, holder, timeout);
  }

  /** Waits for header word `at` to change from `value`, counted in word `waiters`. */
  async #waitAsync(at: number, waiters: number, value: number, timeout: number): Promise<void> {
    const header = this.#header;
    Atomics.add(header, waiters, 1);
    try {
      const waiting = Atomics.waitAsync(header, at, value, timeout);
      if (waiting.async) await waiting.value;
    } finally {
      Atomics.sub(header, waiters, 1);
    }
  }

  /**
   * Takes the first record, if there is one.
   *
   * @param owner This thread's id (not 0).
   * @param patient Whether to wait for a busy lock (else: null).
   * @param short Copy into a buffer this thread reuses, valid until its next
   *   short take: a small buffer of its own costs more than the rest of a take.
   * @returns A copy of its bytes.
   */
  tryTake(owner: number, patient = true, short = false): Uint8Array | undefined | null {
    const header = this.#header;
    if (Atomics.load(header, ITEMS) === 0) return undefined;
    if (!this.#lock(owner, patient)) return null;
    try {
      if (Atomics.load(header, ITEMS) === 0) return undefined;
      const head = this.#recordAt(Atomics.load(header, HEAD) >>> 0);
      const at = head % this.capacity;
      const length = this.#view.getUint32(at, true);
      const bytes = short
        ? copyShort(this.#data, at + 4, length)
        : copyOut(this.#data, at + 4, length);
      Atomics.store(header, HEAD, (head + 4 + length) | 0);
      Atomics.sub(header, ITEMS, 1);
      Atomics.add(header, TAKES, 1);
      return bytes;
    } finally {
      this.#unlock();
      if (Atomics.load(header, TAKE_WAITERS) > 0) Atomics.notify(header, TAKES);
    }
  }

  /** What {@linkcode SharedRing.waitForTake} waits to change. */
  get takes(): number {
    return Atomics.load(this.#header, TAKES);
  }

  /** Whether a record of `length` bytes can ever fit. */
  fits(length: number): boolean {
    return 4 + length <= this.capacity;
  }

  /** Settles once a take may have come since `takes` was read, or after `timeout` ms. */
  waitForTake(takes: number, timeout: number): Promise<void> {
    return this.#waitAsync(TAKES, TAKE_WAITERS, takes, timeout);
  }

  /**
   * Settles once a put may have come since `epoch` was read, or after
   * `timeout` ms. Keeps nothing alive: the caller holds its event loop.
   */
  waitForPut(epoch: number, timeout = Infinity): Promise<void> {
    return this.#waitAsync(EPOCH, GETTERS, epoch, timeout);
  }

  /**
   * Frees the lock if `owner` holds it: for one who knows `owner` is dead.
   * What it did to the ring either committed or did not; ITEMS is counted
   * again, as it may have died between a commit and its count.
   *
   * @returns Whether `owner` held the lock.
   */
  recover(owner: number): boolean {
    const header = this.#header;
    if (Atomics.compareExchange(header, LOCK, owner, owner) !== owner) return false;
    let position = Atomics.load(header, HEAD) >>> 0;
    const tail = Atomics.load(header, TAIL) >>> 0;
    let items = 0;
    while (position !== tail) {
      position = this.#recordAt(position);
      if (position === tail) break;
      position = (position + 4 + this.#view.getUint32(position % this.capacity, true)) >>> 0;
      items++;
    }
    Atomics.store(header, ITEMS, items);
    Atomics.add(header, EPOCH, 1);
    Atomics.notify(header, EPOCH);
    this.#unlock();
    return true;
  }

  /** Drops every record; returns how many there were (null: the lock was busy). */
  clear(owner: number, patient = true): number | null {
    if (!this.#lock(owner, patient)) return null;
    try {
      const dropped = Atomics.load(this.#header, ITEMS);
      Atomics.store(this.#header, HEAD, Atomics.load(this.#header, TAIL));
      Atomics.store(this.#header, ITEMS, 0);
      return dropped;
    } finally {
      this.#unlock();
    }
  }
}
