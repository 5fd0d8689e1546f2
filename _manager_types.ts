// The objects a manager's server owns: lists, dicts, namespaces, queues,
// values, arrays and the sync primitives. Each method takes the call's context
// first (who calls, and a signal that aborts when the call is cancelled or its
// connection closes), then the arguments as they came from the wire, which it
// checks. Only the names in `methods` can be called.
import { BrokenBarrierError, Empty, Full, ValueError } from "./errors.ts";
import { TYPED_ARRAYS } from "./_typecodes.ts";

/** Who is calling, and when to give up waiting for them. */
export interface CallContext {
  /** The connection: owns the locks it acquires. */
  owner: object;
  signal: AbortSignal;
}

/** A server-side object of a built-in type. */
export interface Shared {
  /** Frees what a closed connection held (locks). */
  dropOwner?(owner: object): void;
}

type Check = () => boolean;

/**
 * Waits until `take()` succeeds (it performs the action when it can). Returns
 * false on timeout or abort. Waiters are woken in order by `wake(list)`.
 */
function waitFor(
  list: Set<Check>,
  take: () => boolean,
  ctx: CallContext,
  timeout: number | undefined,
): Promise<boolean> {
  if (list.size === 0 && take()) return Promise.resolve(true);
  if (ctx.signal.aborted) return Promise.resolve(false);
  if (timeout !== undefined && timeout <= 0) return Promise.resolve(take());
  return new Promise((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = (ok: boolean) => {
      list.delete(check);
      if (timer !== undefined) clearTimeout(timer);
      ctx.signal.removeEventListener("abort", onAbort);
      resolve(ok);
    };
    const check = () => {
      if (!take()) return false;
      done(true);
      return true;
    };
    const onAbort = () => done(false);
    list.add(check);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (timeout !== undefined) timer = setTimeout(() => done(false), timeout);
  });
}

/** Lets waiters in order take what they can. */
function wake(list: Set<Check>): void {
  for (const check of [...list]) if (!check()) break;
}

/** Lets every waiter that can take, take (waiters may want different things). */
function wakeAll(list: Set<Check>): void {
  for (const check of [...list]) check();
}

function timeoutOf(options: unknown): number | undefined {
  if (options === undefined || options === null) return undefined;
  if (typeof options !== "object") throw new TypeError("Cannot wait: options must be an object");
  const timeout = (options as { timeout?: unknown }).timeout;
  if (timeout === undefined || timeout === null) return undefined;
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new TypeError(`Cannot wait with timeout ${String(timeout)}: it must be a number`);
  }
  return Math.max(0, timeout);
}

function int(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`Cannot use ${String(value)} as ${what}: it must be an integer`);
  }
  return value;
}

// --- Python's == and < for the values a list or dict holds.

/** Python's `==`, structurally, for cloned values. */
export function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const ta = typeof a, tb = typeof b;
  if ((ta === "number" || ta === "bigint") && (tb === "number" || tb === "bigint")) {
    // deno-lint-ignore eqeqeq
    return a == b;
  }
  if (ta !== "object" || tb !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => equal(x, b[i]));
  }
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !equal(v, b.get(k))) return false;
    return true;
  }
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const ka = Object.keys(a as object), kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    Object.hasOwn(b as object, k) &&
    equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
  );
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** Python's ordering: numbers with numbers, strings with strings, arrays item by item. */
export function compare(a: unknown, b: unknown): number {
  const ta = typeof a, tb = typeof b;
  const numeric = (t: string) => t === "number" || t === "bigint" || t === "boolean";
  if (numeric(ta) && numeric(tb)) {
    const x = ta === "boolean" ? Number(a) : a as number,
      y = tb === "boolean" ? Number(b) : b as number;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ta === "string" && tb === "string") return a! < b! ? -1 : a! > b! ? 1 : 0;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compare(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  throw new TypeError(
    `Cannot sort: '<' is not supported between ${typeName(a)} and ${typeName(b)}`,
  );
}

function index(i: unknown, length: number, what: string): number {
  const n = int(i, "an index");
  const at = n < 0 ? n + length : n;
  if (at < 0 || at >= length) {
    throw new RangeError(`Cannot use index ${n} on ${what}: it has ${length} items`);
  }
  return at;
}

function toList(values: unknown, what: string): unknown[] {
  if (Array.isArray(values)) return values;
  if (values instanceof Set || values instanceof Map) return [...values];
  if (typeof values === "string") return [...values];
  throw new TypeError(`Cannot ${what}: pass an array`);
}

// --- Containers.

/** A shared list. */
export class SharedList {
  static readonly methods: Set<string> = new Set([
    "append",
    "extend",
    "get",
    "set",
    "insert",
    "pop",
    "remove",
    "index",
    "count",
    "length",
    "slice",
    "toArray",
    "reverse",
    "sort",
    "clear",
  ]);
  items: unknown[];
  constructor(initial?: unknown) {
    this.items = initial === undefined ? [] : [...toList(initial, "make a list")];
  }
  append(_: CallContext, v: unknown): void {
    this.items.push(v);
  }
  extend(_: CallContext, values: unknown): void {
    for (const v of toList(values, "extend a list")) this.items.push(v);
  }
  get(_: CallContext, i: unknown): unknown {
    return this.items[index(i, this.items.length, "a list")];
  }
  set(_: CallContext, i: unknown, v: unknown): void {
    this.items[index(i, this.items.length, "a list")] = v;
  }
  insert(_: CallContext, i: unknown, v: unknown): void {
    let n = int(i, "an index");
    const length = this.items.length;
    if (n < 0) n = Math.max(0, n + length);
    this.items.splice(Math.min(n, length), 0, v);
  }
  pop(_: CallContext, i?: unknown): unknown {
    if (this.items.length === 0) throw new RangeError("Cannot pop from a list: it is empty");
    const at = index(i ?? -1, this.items.length, "a list");
    return this.items.splice(at, 1)[0];
  }
  remove(_: CallContext, v: unknown): void {
    const at = this.items.findIndex((x) => equal(x, v));
    if (at < 0) throw new ValueError("Cannot remove the value from a list: it is not there");
    this.items.splice(at, 1);
  }
  index(_: CallContext, v: unknown, start?: unknown, end?: unknown): number {
    const s = start === undefined ? 0 : int(start, "a start");
    const e = end === undefined ? this.items.length : int(end, "an end");
    const part = this.items.slice(s, e);
    const at = part.findIndex((x) => equal(x, v));
    if (at < 0) throw new ValueError("Cannot find the value in a list: it is not there");
    return at + (s < 0 ? Math.max(0, s + this.items.length) : s);
  }
  count(_: CallContext, v: unknown): number {
    return this.items.filter((x) => equal(x, v)).length;
  }
  length(): number {
    return this.items.length;
  }
  slice(_: CallContext, start?: unknown, end?: unknown): unknown[] {
    return this.items.slice(
      start === undefined ? undefined : int(start, "a start"),
      end === undefined ? undefined : int(end, "an end"),
    );
  }
  toArray(): unknown[] {
    return this.items;
  }
  reverse(): void {
    this.items.reverse();
  }
  sort(_: CallContext, options?: unknown): void {
    const reverse = typeof options === "object" && options !== null &&
      (options as { reverse?: unknown }).reverse === true;
    const sorted = [...this.items].sort(compare);
    if (reverse) sorted.reverse();
    this.items = sorted;
  }
  clear(): void {
    this.items = [];
  }
}

type Key = string | number | bigint | boolean | null | undefined;

function key(k: unknown): Key {
  if (typeof k === "object" && k !== null || typeof k === "function" || typeof k === "symbol") {
    throw new TypeError(
      `Cannot use a ${
        typeName(k)
      } as a dict key: keys must be strings, numbers, bigints, booleans, null or undefined`,
    );
  }
  return k as Key;
}

/** A shared dict: a Map with primitive keys. */
export class SharedDict {
  static readonly methods: Set<string> = new Set([
    "get",
    "set",
    "has",
    "delete",
    "keys",
    "values",
    "entries",
    "update",
    "setdefault",
    "pop",
    "popitem",
    "clear",
    "size",
    "toObject",
  ]);
  map = new Map<Key, unknown>();
  constructor(initial?: unknown) {
    if (initial !== undefined) this.update(undefined as never, initial);
  }
  get(_: CallContext, k: unknown, fallback?: unknown): unknown {
    const kk = key(k);
    return this.map.has(kk) ? this.map.get(kk) : fallback;
  }
  set(_: CallContext, k: unknown, v: unknown): void {
    this.map.set(key(k), v);
  }
  has(_: CallContext, k: unknown): boolean {
    return this.map.has(key(k));
  }
  delete(_: CallContext, k: unknown): boolean {
    return this.map.delete(key(k));
  }
  keys(): Key[] {
    return [...this.map.keys()];
  }
  values(): unknown[] {
    return [...this.map.values()];
  }
  entries(): [Key, unknown][] {
    return [...this.map.entries()];
  }
  update(_: CallContext, other: unknown): void {
    let entries: Iterable<[unknown, unknown]>;
    if (other instanceof Map) entries = other;
    else if (Array.isArray(other)) {
      if (!other.every((e) => Array.isArray(e) && e.length === 2)) {
        throw new TypeError("Cannot update a dict: an array must hold [key, value] pairs");
      }
      entries = other as [unknown, unknown][];
    } else if (typeof other === "object" && other !== null) entries = Object.entries(other);
    else throw new TypeError("Cannot update a dict: pass an object, a Map or [key, value] pairs");
    for (const [k, v] of entries) this.map.set(key(k), v);
  }
  setdefault(_: CallContext, k: unknown, fallback?: unknown): unknown {
    const kk = key(k);
    if (!this.map.has(kk)) this.map.set(kk, fallback);
    return this.map.get(kk);
  }
  pop(_: CallContext, ...args: unknown[]): unknown {
    const kk = key(args[0]);
    if (!this.map.has(kk)) {
      if (args.length > 1) return args[1];
      throw new RangeError(`Cannot pop key ${String(kk)} from a dict: it is not there`);
    }
    const v = this.map.get(kk);
    this.map.delete(kk);
    return v;
  }
  popitem(): [Key, unknown] {
    const last = [...this.map.keys()].pop();
    if (this.map.size === 0) throw new RangeError("Cannot pop an item from a dict: it is empty");
    const v = this.map.get(last);
    this.map.delete(last);
    return [last, v];
  }
  clear(): void {
    this.map.clear();
  }
  size(): number {
    return this.map.size;
  }
  toObject(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of this.map) out[String(k)] = v;
    return out;
  }
}

function name(n: unknown): string {
  if (typeof n !== "string") throw new TypeError("Cannot use a namespace: names must be strings");
  return n;
}

/** A shared namespace: named values. */
export class SharedNamespace {
  static readonly methods: Set<string> = new Set(["get", "set", "delete", "has", "toObject"]);
  map = new Map<string, unknown>();
  constructor(initial?: unknown) {
    if (initial === undefined) return;
    if (typeof initial !== "object" || initial === null) {
      throw new TypeError("Cannot make a namespace: pass an object");
    }
    for (const [k, v] of Object.entries(initial)) this.map.set(k, v);
  }
  get(_: CallContext, n: unknown): unknown {
    return this.map.get(name(n));
  }
  set(_: CallContext, n: unknown, v: unknown): void {
    this.map.set(name(n), v);
  }
  delete(_: CallContext, n: unknown): boolean {
    return this.map.delete(name(n));
  }
  has(_: CallContext, n: unknown): boolean {
    return this.map.has(name(n));
  }
  toObject(): Record<string, unknown> {
    return Object.fromEntries(this.map);
  }
}

// --- Queues.

/** A FIFO queue, with Python's blocking put/get and timeouts. */
export class SharedQueue {
  static readonly methods: Set<string> = new Set([
    "put",
    "putNowait",
    "get",
    "getNowait",
    "qsize",
    "empty",
    "full",
  ]);
  items: unknown[] = [];
  head = 0;
  maxsize: number;
  getters = new Set<Check>();
  putters = new Set<Check>();
  constructor(maxsize?: unknown) {
    this.maxsize = maxsize === undefined ? 0 : int(maxsize, "maxsize");
  }
  get size(): number {
    return this.items.length - this.head;
  }
  #isFull(): boolean {
    return this.maxsize > 0 && this.size >= this.maxsize;
  }
  #take(): unknown {
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  protected added(): void {}
  async put(ctx: CallContext, item: unknown, options?: unknown): Promise<void> {
    const timeout = timeoutOf(options);
    const ok = await waitFor(
      this.putters,
      () => {
        if (this.#isFull()) return false;
        this.items.push(item);
        this.added();
        return true;
      },
      ctx,
      timeout,
    );
    if (!ok) {
      throw new Full(`Cannot put to queue as it is full: maxsize is ${this.maxsize}`);
    }
    wake(this.getters);
  }
  putNowait(ctx: CallContext, item: unknown): Promise<void> {
    return this.put(ctx, item, { timeout: 0 });
  }
  async get(ctx: CallContext, options?: unknown): Promise<unknown> {
    const timeout = timeoutOf(options);
    let item: unknown;
    const ok = await waitFor(
      this.getters,
      () => {
        if (this.size === 0) return false;
        item = this.#take();
        return true;
      },
      ctx,
      timeout,
    );
    if (!ok) throw new Empty("Cannot get from queue as it is empty");
    wake(this.putters);
    return item;
  }
  getNowait(ctx: CallContext): Promise<unknown> {
    return this.get(ctx, { timeout: 0 });
  }
  qsize(): number {
    return this.size;
  }
  empty(): boolean {
    return this.size === 0;
  }
  full(): boolean {
    return this.#isFull();
  }
}

/** A queue whose consumers report each item done; `join` waits for all. */
export class SharedJoinableQueue extends SharedQueue {
  static override readonly methods: Set<string> = new Set([
    ...SharedQueue.methods,
    "taskDone",
    "join",
  ]);
  unfinished = 0;
  joiners = new Set<Check>();
  protected override added(): void {
    this.unfinished++;
  }
  taskDone(): void {
    if (this.unfinished <= 0) {
      throw new ValueError("Cannot call taskDone(): it was called more times than items were put");
    }
    if (--this.unfinished === 0) wakeAll(this.joiners);
  }
  async join(ctx: CallContext): Promise<void> {
    await waitFor(this.joiners, () => this.unfinished === 0, ctx, undefined);
  }
}

// --- Values and arrays.

const TYPECODES: Record<string, new (n: number) => ArrayLike<number | bigint>> = TYPED_ARRAYS;

type Typed = { [i: number]: number | bigint; length: number };

function typed(typecode: unknown, length: number): Typed {
  const ctor = typeof typecode === "string" ? TYPECODES[typecode] : undefined;
  if (ctor === undefined) {
    throw new TypeError(
      `Cannot use typecode ${JSON.stringify(typecode)}: use one of ${
        Object.keys(TYPECODES).join(" ")
      }`,
    );
  }
  return new ctor(length) as unknown as Typed;
}

function store(array: Typed, i: number, v: unknown): void {
  const big = array instanceof BigInt64Array || array instanceof BigUint64Array;
  if (big) {
    if (typeof v !== "bigint") {
      throw new TypeError(`Cannot store ${typeof v}: this typecode holds bigints`);
    }
  } else if (typeof v !== "number") {
    throw new TypeError(`Cannot store ${typeof v}: this typecode holds numbers`);
  }
  array[i] = v as number;
}

/** A shared number with C wrapping, as Python's Manager().Value. */
export class SharedValue {
  static readonly methods: Set<string> = new Set(["get", "set"]);
  cell: Typed;
  constructor(typecode?: unknown, initial?: unknown) {
    this.cell = typed(typecode, 1);
    if (initial !== undefined) store(this.cell, 0, initial);
  }
  get(): number | bigint {
    return this.cell[0]!;
  }
  set(_: CallContext, v: unknown): void {
    store(this.cell, 0, v);
  }
}

/** A shared array of numbers, as Python's Manager().Array. */
export class SharedArrayObject {
  static readonly methods: Set<string> = new Set(["get", "set", "toArray", "length"]);
  cells: Typed;
  constructor(typecode?: unknown, values?: unknown) {
    if (typeof values === "number") {
      this.cells = typed(typecode, int(values, "a size"));
      return;
    }
    const list = values === undefined ? [] : toList(values, "make an array");
    this.cells = typed(typecode, list.length);
    list.forEach((v, i) => store(this.cells, i, v));
  }
  get(_: CallContext, i: unknown): number | bigint {
    return this.cells[index(i, this.cells.length, "an array")]!;
  }
  set(_: CallContext, i: unknown, v: unknown): void {
    store(this.cells, index(i, this.cells.length, "an array"), v);
  }
  toArray(): (number | bigint)[] {
    return Array.from(this.cells as ArrayLike<number | bigint>);
  }
  length(): number {
    return this.cells.length;
  }
}

// --- Sync primitives. The owner of a lock is the connection that acquired it.

/** A lock; `recursive` makes it an RLock. */
export class SharedLock implements Shared {
  static readonly methods: Set<string> = new Set(["acquire", "release", "locked"]);
  owner: object | undefined;
  depth = 0;
  waiters = new Set<Check>();
  recursive: boolean;
  constructor(recursive = false) {
    this.recursive = recursive;
  }
  tryAcquire(owner: object): boolean {
    if (this.owner === undefined) {
      this.owner = owner;
      this.depth = 1;
      return true;
    }
    if (this.recursive && this.owner === owner) {
      this.depth++;
      return true;
    }
    return false;
  }
  acquire(ctx: CallContext, options?: unknown): Promise<boolean> {
    return waitFor(this.waiters, () => this.tryAcquire(ctx.owner), ctx, timeoutOf(options));
  }
  release(ctx: CallContext): void {
    if (this.owner === undefined) throw new ValueError("Cannot release a lock: it is not locked");
    if (this.recursive && this.owner !== ctx.owner) {
      throw new ValueError("Cannot release an RLock: it is held by another process");
    }
    if (--this.depth > 0) return;
    this.owner = undefined;
    wake(this.waiters);
  }
  locked(): boolean {
    return this.owner !== undefined;
  }
  dropOwner(owner: object): void {
    if (this.owner !== owner) return;
    this.owner = undefined;
    this.depth = 0;
    wake(this.waiters);
  }
}

/** A counting semaphore; `bounded` refuses releases past the start value. */
export class SharedSemaphore {
  static readonly methods: Set<string> = new Set(["acquire", "release", "getValue"]);
  value: number;
  initial: number;
  bounded: boolean;
  waiters = new Set<Check>();
  constructor(value?: unknown, bounded = false) {
    this.value = this.initial = value === undefined ? 1 : int(value, "a semaphore value");
    if (this.value < 0) throw new RangeError("Cannot make a semaphore: its value must be >= 0");
    this.bounded = bounded;
  }
  acquire(ctx: CallContext, options?: unknown): Promise<boolean> {
    return waitFor(
      this.waiters,
      () => {
        if (this.value <= 0) return false;
        this.value--;
        return true;
      },
      ctx,
      timeoutOf(options),
    );
  }
  release(): void {
    if (this.bounded && this.value >= this.initial) {
      throw new ValueError("Cannot release a BoundedSemaphore: it was released too many times");
    }
    this.value++;
    wake(this.waiters);
  }
  getValue(): number {
    return this.value;
  }
}

/** An event flag. */
export class SharedEvent {
  static readonly methods: Set<string> = new Set(["set", "clear", "isSet", "wait"]);
  flag = false;
  waiters = new Set<Check>();
  set(): void {
    this.flag = true;
    wakeAll(this.waiters);
  }
  clear(): void {
    this.flag = false;
  }
  isSet(): boolean {
    return this.flag;
  }
  wait(ctx: CallContext, options?: unknown): Promise<boolean> {
    return waitFor(this.waiters, () => this.flag, ctx, timeoutOf(options));
  }
}

/** A condition variable over an RLock (or a given lock of this manager). */
export class SharedCondition implements Shared {
  static readonly methods: Set<string> = new Set([
    "acquire",
    "release",
    "wait",
    "notify",
    "notifyAll",
  ]);
  lock: SharedLock;
  sleepers: { woken: boolean; wake: () => void }[] = [];
  constructor(lock?: SharedLock) {
    this.lock = lock ?? new SharedLock(true);
  }
  acquire(ctx: CallContext, options?: unknown): Promise<boolean> {
    return this.lock.acquire(ctx, options);
  }
  release(ctx: CallContext): void {
    this.lock.release(ctx);
  }
  #own(ctx: CallContext, what: string): void {
    if (this.lock.owner !== ctx.owner) {
      throw new ValueError(`Cannot ${what} on a Condition: its lock is not held by this process`);
    }
  }
  async wait(ctx: CallContext, options?: unknown): Promise<boolean> {
    this.#own(ctx, "wait");
    const timeout = timeoutOf(options);
    const depth = this.lock.depth;
    this.lock.depth = 1;
    this.lock.release(ctx);
    let notified: boolean;
    try {
      notified = await new Promise<boolean>((resolve) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const sleeper = {
          woken: false,
          wake: () => finish(true),
        };
        const finish = (ok: boolean) => {
          sleeper.woken = true;
          const at = this.sleepers.indexOf(sleeper);
          if (at >= 0) this.sleepers.splice(at, 1);
          if (timer !== undefined) clearTimeout(timer);
          ctx.signal.removeEventListener("abort", onAbort);
          resolve(ok);
        };
        const onAbort = () => finish(false);
        this.sleepers.push(sleeper);
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        if (timeout !== undefined) timer = setTimeout(() => finish(false), timeout);
      });
    } finally {
      await this.lock.acquire(ctx, undefined);
      this.lock.depth = depth;
    }
    return notified;
  }
  notify(ctx: CallContext, n?: unknown): void {
    this.#own(ctx, "notify");
    const count = n === undefined ? 1 : int(n, "a count");
    for (const sleeper of this.sleepers.slice(0, count)) sleeper.wake();
  }
  notifyAll(ctx: CallContext): void {
    this.#own(ctx, "notifyAll");
    for (const sleeper of [...this.sleepers]) sleeper.wake();
  }
  dropOwner(owner: object): void {
    this.lock.dropOwner(owner);
  }
}

/** A barrier for `parties` callers. */
export class SharedBarrier {
  static readonly methods: Set<string> = new Set([
    "wait",
    "abort",
    "reset",
    "parties",
    "nWaiting",
    "broken",
  ]);
  count: number;
  timeout: number | undefined;
  waiting: { resolve: (i: number) => void; reject: (e: Error) => void }[] = [];
  isBroken = false;
  constructor(parties?: unknown, options?: unknown) {
    this.count = int(parties, "parties");
    if (this.count < 1) throw new RangeError("Cannot make a Barrier: parties must be >= 1");
    this.timeout = timeoutOf(options);
  }
  #break(): void {
    this.isBroken = true;
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) {
      w.reject(new BrokenBarrierError("Cannot pass the barrier: it is broken"));
    }
  }
  wait(ctx: CallContext, options?: unknown): Promise<number> {
    if (this.isBroken) {
      return Promise.reject(new BrokenBarrierError("Cannot wait on the barrier: it is broken"));
    }
    const timeout = timeoutOf(options) ?? this.timeout;
    const index = this.waiting.length;
    if (index + 1 === this.count) {
      const waiting = this.waiting;
      this.waiting = [];
      waiting.forEach((w, i) => w.resolve(i));
      return Promise.resolve(index);
    }
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => {
        if (this.waiting.includes(entry)) this.#break();
      };
      const cleanup = () => {
        if (timer !== undefined) clearTimeout(timer);
        ctx.signal.removeEventListener("abort", onAbort);
      };
      const entry = {
        resolve: (i: number) => {
          cleanup();
          resolve(i);
        },
        reject: (e: Error) => {
          cleanup();
          reject(e);
        },
      };
      this.waiting.push(entry);
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      if (timeout !== undefined) timer = setTimeout(() => this.#break(), timeout);
    });
  }
  abort(): void {
    this.#break();
  }
  reset(): void {
    this.#break();
    this.isBroken = false;
  }
  parties(): number {
    return this.count;
  }
  nWaiting(): number {
    return this.waiting.length;
  }
  broken(): boolean {
    return this.isBroken;
  }
}
