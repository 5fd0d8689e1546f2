/**
 * Memory shared by processes and workers, as in Python's `multiprocessing.Value`,
 * `multiprocessing.Array` (here {@linkcode SharedArray}), `RawValue`, `RawArray` and
 * `multiprocessing.shared_memory.SharedMemory`.
 *
 * In the `"worker"` context the memory is a `SharedArrayBuffer`. In the `"process"`
 * context it is an OS shared mapping reached through Deno FFI (needs `--allow-ffi`), so
 * separate `deno` processes share it without copies. Anonymous objects (values and
 * arrays) never appear in `/dev/shm`: the kernel frees them when the last process using
 * them lets go. Named {@linkcode SharedMemory} segments are unlinked by `unlink()`, or
 * when their creator exits, even by a crash (a resource tracker, as Python's: a small `awk`
 * process that unlinks what its creator left when the creator's pipe to it closes).
 *
 * Platforms: the `"process"` context works on Linux (x86_64, aarch64): values, arrays and
 * locks live in `memfd` mappings that other processes open through `/proc/<pid>/fd`, so the
 * process that hands one over must still run when the receiver takes it; waits are futex
 * waits on an FFI thread (at most 64 at once per process; more waiters poll). macOS is not
 * supported yet: it would use `shm_open` names for everything (it has no `memfd`), and
 * `os_sync_wait_on_address` (macOS 14.4+) or `__ulock_wait` for the waits; there the
 * constructors throw and the `"worker"` context is the alternative.
 *
 * @example A shared counter
 * ```ts
 * import { Value } from "@seed/multiprocessing/shared";
 * import assert from "node:assert/strict";
 *
 * const counter = new Value("i", 0, { startMethod: "worker" });
 * {
 *   using _ = await counter.getLock().hold();
 *   counter.value += 1;
 * }
 * assert.equal(counter.value, 1);
 * ```
 *
 * @module
 */
import { ValueError } from "./errors.ts";
import { TYPED_ARRAYS } from "./_typecodes.ts";
import { type HandleKind, markHandleClass, registerHandleKind } from "./_handles.ts";
import { type Mapping, openNamed, track, unlinkNamed, unmap, untrack } from "./_ffi.ts";
import {
  createRegion,
  type Region,
  type RegionDescriptor,
  reviveRegion,
  sabRegion,
} from "./_memory.ts";
import { self, type StartMethod, validateStartMethod } from "./_state.ts";
import { Lock, RLock } from "./sync.ts";

export type { StartMethod } from "./_state.ts";

/**
 * A type code, as in Python's `array` module on 64-bit Linux: `b`/`B` 8-bit, `h`/`H`
 * 16-bit, `i`/`I` 32-bit, `l`/`L`/`q`/`Q` 64-bit (as `bigint`), `f` float32, `d` float64;
 * upper case is unsigned.
 */
export type Typecode = "b" | "B" | "h" | "H" | "i" | "I" | "l" | "L" | "q" | "Q" | "f" | "d";

/** The JavaScript type of an element: `bigint` for the 64-bit integer codes, else `number`. */
export type ElementOf<T extends Typecode> = T extends "l" | "L" | "q" | "Q" ? bigint : number;

/** The typed array over the memory of a given type code. */
export interface TypedArrayOf {
  /** signed char */
  b: Int8Array<ArrayBufferLike>;
  /** unsigned char */
  B: Uint8Array<ArrayBufferLike>;
  /** short */
  h: Int16Array<ArrayBufferLike>;
  /** unsigned short */
  H: Uint16Array<ArrayBufferLike>;
  /** int */
  i: Int32Array<ArrayBufferLike>;
  /** unsigned int */
  I: Uint32Array<ArrayBufferLike>;
  /** long */
  l: BigInt64Array<ArrayBufferLike>;
  /** unsigned long */
  L: BigUint64Array<ArrayBufferLike>;
  /** long long */
  q: BigInt64Array<ArrayBufferLike>;
  /** unsigned long long */
  Q: BigUint64Array<ArrayBufferLike>;
  /** float */
  f: Float32Array<ArrayBufferLike>;
  /** double */
  d: Float64Array<ArrayBufferLike>;
}

type AnyView = TypedArrayOf[Typecode];
type ViewConstructor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => AnyView;

const VIEWS = TYPED_ARRAYS as unknown as Record<Typecode, ViewConstructor>;

function validTypecode(typecode: unknown): Typecode {
  if (typeof typecode !== "string" || !Object.hasOwn(VIEWS, typecode)) {
    throw new TypeError(
      `Cannot use type code ${JSON.stringify(typecode)}: use one of b B h H i I l L q Q f d`,
    );
  }
  return typecode as Typecode;
}

function isBig(typecode: Typecode): boolean {
  return typecode === "l" || typecode === "L" || typecode === "q" || typecode === "Q";
}

/** The element to store: integers wrap as in C; a wrong type throws a TypeError. */
function convert(typecode: Typecode, value: unknown): number | bigint {
  if (isBig(typecode)) {
    if (typeof value === "bigint") return value;
    if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
    throw new TypeError(`Cannot store ${String(value)} as type code "${typecode}": use a bigint`);
  }
  if (typecode === "f" || typecode === "d") {
    if (typeof value === "number") return value;
    if (typeof value === "bigint") return Number(value);
    throw new TypeError(`Cannot store ${String(value)} as type code "${typecode}": use a number`);
  }
  if (typeof value === "number" && Number.isInteger(value)) return value;
  if (typeof value === "bigint") return Number(BigInt.asIntN(64, value) & 0xffffffffn) | 0;
  throw new TypeError(
    `Cannot store ${String(value)} as type code "${typecode}": use an integer number`,
  );
}

/** Options of {@linkcode Value} and {@linkcode SharedArray}. */
export interface SharedOptions {
  /**
   * `true` for a new {@linkcode RLock} guarding the object, `false` for none (as the raw
   * kinds), or a lock to use.
   *
   * @default {true}
   */
  lock?: boolean | Lock | RLock;
  /**
   * Which children may share it: `"process"` (OS shared memory, needs `--allow-ffi`) or
   * `"worker"` (a `SharedArrayBuffer`, workers only).
   *
   * @default {getStartMethod()}
   */
  startMethod?: StartMethod;
}

/** Options of {@linkcode RawValue} and {@linkcode RawArray}. */
export type RawOptions = Omit<SharedOptions, "lock">;

let valueParts: (value: Value) => { region: Region; lock: Lock | RLock | null; typecode: Typecode };
let arrayParts: (
  a: SharedArray,
) => { region: Region; lock: Lock | RLock | null; typecode: Typecode };
let memoryParts: (
  m: SharedMemory,
) => { backing: StartMethod; sab: SharedArrayBuffer | undefined; name: string };
let revivedMemory: { backing: StartMethod; sab: SharedArrayBuffer | undefined } | undefined;

interface Revived {
  region: Region;
  lock: Lock | RLock | null;
}
let revived: Revived | undefined;

function setup(
  typecode: Typecode,
  length: number,
  options: SharedOptions | undefined,
  what: string,
): { region: Region; lock: Lock | RLock | null } {
  if (revived !== undefined) return revived;
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw new TypeError("Cannot create shared memory: options must be an object");
  }
  const backing = validateStartMethod(options?.startMethod ?? self.defaultStartMethod);
  const region = createRegion(length * VIEWS[typecode].prototype.BYTES_PER_ELEMENT, backing, what);
  const chosen = options?.lock ?? true;
  let lock: Lock | RLock | null = null;
  if (chosen === true) {
    lock = new RLock({ startMethod: backing });
  } else if (chosen instanceof Lock || chosen instanceof RLock) {
    lock = chosen;
  } else if (chosen !== false) {
    throw new TypeError("Cannot create shared memory: lock must be a boolean, a Lock or an RLock");
  }
  return { region, lock };
}

function lockOf(lock: Lock | RLock | null, what: string): Lock | RLock {
  if (lock === null) {
    throw new ValueError(
      `Cannot get the lock of ${what}: it was created without one (lock: false)`,
    );
  }
  return lock;
}

/**
 * One number in shared memory (Python's `multiprocessing.Value`). Reads and writes of
 * `.value` are synchronous; guard read-modify-write sequences with `getLock()`.
 *
 * @typeParam T The type code.
 *
 * @example
 * ```ts
 * import { Value } from "@seed/multiprocessing/shared";
 * import assert from "node:assert/strict";
 *
 * const v = new Value("B", 255, { startMethod: "worker" });
 * v.value += 1; // wraps, as in C
 * assert.equal(v.value, 0);
 * ```
 */
export class Value<T extends Typecode = Typecode> {
  #typecode: T;
  #region: Region;
  #lock: Lock | RLock | null;
  #view: TypedArrayOf[T];
  #convert: (value: unknown) => number | bigint;

  /**
   * Makes a value in shared memory.
   *
   * @param typecode The type code (`"i"`, `"d"`, `"q"`…).
   * @param initial The first value.
   * @param options `lock` and `startMethod`.
   * @throws {TypeError} When the type code or the initial value is not valid.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(typecode: T, initial?: ElementOf<T>, options?: SharedOptions) {
    this.#typecode = validTypecode(typecode) as T;
    const { region, lock } = setup(this.#typecode, 1, options, `a Value("${this.#typecode}")`);
    this.#region = region;
    this.#lock = lock;
    this.#view = new VIEWS[this.#typecode](region.buffer, 0, 1) as TypedArrayOf[T];
    this.#convert = (value) => convert(this.#typecode, value);
    if (revived === undefined && initial !== undefined) this.value = initial;
  }

  /** The type code. */
  get typecode(): T {
    return this.#typecode;
  }

  /** The value; setting it wraps integers as C does. */
  get value(): ElementOf<T> {
    return this.#view[0] as ElementOf<T>;
  }

  set value(value: ElementOf<T>) {
    (this.#view as AnyView)[0] = this.#convert(value) as never;
  }

  /** The typed array of length 1 over the shared memory. */
  get view(): TypedArrayOf[T] {
    return this.#view;
  }

  /**
   * The lock that guards the value (an {@linkcode RLock} unless one was given).
   *
   * @returns The lock.
   * @throws {ValueError} When created with `lock: false` (and for a {@linkcode RawValue}).
   *
   * @example
   * ```ts
   * import { Value } from "@seed/multiprocessing/shared";
   *
   * const v = new Value("i", 0, { startMethod: "worker" });
   * using _ = await v.getLock().hold();
   * v.value++;
   * ```
   */
  getLock(): Lock | RLock {
    return lockOf(this.#lock, `value "${this.#typecode}"`);
  }

  static {
    valueParts = (value) => ({
      region: value.#region,
      lock: value.#lock,
      typecode: value.#typecode,
    });
  }
}

/**
 * A {@linkcode Value} without a lock (Python's `multiprocessing.RawValue`).
 *
 * @typeParam T The type code.
 *
 * @example
 * ```ts
 * import { RawValue } from "@seed/multiprocessing/shared";
 * import assert from "node:assert/strict";
 *
 * const v = new RawValue("q", 2n ** 63n - 1n, { startMethod: "worker" });
 * v.value += 1n;
 * assert.equal(v.value, -(2n ** 63n));
 * ```
 */
export class RawValue<T extends Typecode = Typecode> extends Value<T> {
  /**
   * Makes a value in shared memory with no lock.
   *
   * @param typecode The type code.
   * @param initial The first value.
   * @param options `startMethod`.
   * @throws {TypeError} When the type code or the initial value is not valid.
   */
  constructor(typecode: T, initial?: ElementOf<T>, options?: RawOptions) {
    super(typecode, initial, { ...options, lock: false });
  }
}

interface ValueDescriptor {
  typecode: Typecode;
  region: RegionDescriptor;
  lock: Lock | RLock | null;
  raw: boolean;
}

function reviving<T>(parts: Revived, make: () => T): T {
  revived = parts;
  try {
    return make();
  } finally {
    revived = undefined;
  }
}

const valueKind: HandleKind<Value, ValueDescriptor> = registerHandleKind({
  name: "mp-value",
  module: import.meta.url,
  describe: (value, context) => {
    const { region, lock, typecode } = valueParts(value);
    return {
      typecode,
      region: region.describe(context, `a Value("${typecode}")`),
      lock,
      raw: value instanceof RawValue,
    };
  },
  revive: (d, context) =>
    reviving(
      { region: reviveRegion(d.region, context), lock: d.lock },
      () => d.raw ? new RawValue(d.typecode) : new Value(d.typecode),
    ),
});

/**
 * A fixed-length array of numbers in shared memory (Python's `multiprocessing.Array`).
 * Negative indexes count from the end; an index out of range throws a `RangeError`.
 *
 * @typeParam T The type code.
 *
 * @example
 * ```ts
 * import { SharedArray } from "@seed/multiprocessing/shared";
 * import assert from "node:assert/strict";
 *
 * const a = new SharedArray("i", [1, 2, 3], { startMethod: "worker" });
 * a.set(-1, 30);
 * assert.deepEqual(a.toArray(), [1, 2, 30]);
 * assert.equal(a.get(0), 1);
 * ```
 */
export class SharedArray<T extends Typecode = Typecode> {
  #typecode: T;
  #region: Region;
  #lock: Lock | RLock | null;
  #view: TypedArrayOf[T];

  /**
   * Makes an array in shared memory.
   *
   * @param typecode The type code.
   * @param sizeOrValues The length (filled with zeros), or the first values.
   * @param options `lock` and `startMethod`.
   * @throws {TypeError} When the type code or a value is not valid.
   * @throws {RangeError} When the length is negative or not an integer.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(
    typecode: T,
    sizeOrValues: number | Iterable<ElementOf<T> | number>,
    options?: SharedOptions,
  ) {
    this.#typecode = validTypecode(typecode) as T;
    let values: unknown[] | undefined;
    let length: number;
    if (revived !== undefined) {
      length = sizeOrValues as number;
    } else if (typeof sizeOrValues === "number") {
      if (!Number.isInteger(sizeOrValues) || sizeOrValues < 0) {
        throw new RangeError(
          `Cannot create an array of length ${sizeOrValues}: use an integer from 0`,
        );
      }
      length = sizeOrValues;
    } else if (
      sizeOrValues !== null && typeof sizeOrValues === "object" && Symbol.iterator in sizeOrValues
    ) {
      values = [...sizeOrValues];
      length = values.length;
    } else {
      throw new TypeError("Cannot create an array: pass a length or an iterable of values");
    }
    const converted = values?.map((v) => convert(this.#typecode, v));
    const { region, lock } = setup(
      this.#typecode,
      length,
      options,
      `a SharedArray("${this.#typecode}")`,
    );
    this.#region = region;
    this.#lock = lock;
    this.#view = new VIEWS[this.#typecode](region.buffer, 0, length) as TypedArrayOf[T];
    converted?.forEach((v, i) => (this.#view as AnyView)[i] = v as never);
  }

  /** The type code. */
  get typecode(): T {
    return this.#typecode;
  }

  /** The number of elements. */
  get length(): number {
    return this.#view.length;
  }

  /** The typed array over the shared memory, for fast loops. */
  get view(): TypedArrayOf[T] {
    return this.#view;
  }

  #index(i: number): number {
    if (!Number.isInteger(i)) {
      throw new TypeError(`Cannot index an array with ${String(i)}: use an integer`);
    }
    const length = this.#view.length;
    const at = i < 0 ? i + length : i;
    if (at < 0 || at >= length) {
      throw new RangeError(
        `Cannot use index ${i} of an array of length ${length}: it is out of range`,
      );
    }
    return at;
  }

  /**
   * The element at an index.
   *
   * @param i The index; negative counts from the end.
   * @returns The element.
   * @throws {RangeError} When the index is out of range.
   *
   * @example
   * ```ts
   * import { SharedArray } from "@seed/multiprocessing/shared";
   * import assert from "node:assert/strict";
   *
   * const a = new SharedArray("d", [0.5, 1.5], { startMethod: "worker" });
   * assert.equal(a.get(-1), 1.5);
   * assert.throws(() => a.get(2), RangeError);
   * ```
   */
  get(i: number): ElementOf<T> {
    return this.#view[this.#index(i)] as ElementOf<T>;
  }

  /**
   * Sets the element at an index; integers wrap as in C.
   *
   * @param i The index; negative counts from the end.
   * @param value The element.
   * @throws {RangeError} When the index is out of range.
   * @throws {TypeError} When the value has the wrong type.
   *
   * @example
   * ```ts
   * import { SharedArray } from "@seed/multiprocessing/shared";
   * import assert from "node:assert/strict";
   *
   * const a = new SharedArray("b", 2, { startMethod: "worker" });
   * a.set(0, 128);
   * assert.equal(a.get(0), -128);
   * ```
   */
  set(i: number, value: ElementOf<T>): void {
    (this.#view as AnyView)[this.#index(i)] = convert(this.#typecode, value) as never;
  }

  /**
   * A copy of the elements (Python's `arr[:]`).
   *
   * @returns The elements in a plain array.
   *
   * @example
   * ```ts
   * import { SharedArray } from "@seed/multiprocessing/shared";
   * import assert from "node:assert/strict";
   *
   * assert.deepEqual(new SharedArray("H", 2, { startMethod: "worker" }).toArray(), [0, 0]);
   * ```
   */
  toArray(): ElementOf<T>[] {
    return Array.from(this.#view as unknown as ArrayLike<ElementOf<T>>);
  }

  /**
   * The elements in order.
   *
   * @returns An iterator over the elements.
   *
   * @example
   * ```ts
   * import { SharedArray } from "@seed/multiprocessing/shared";
   * import assert from "node:assert/strict";
   *
   * assert.deepEqual([...new SharedArray("i", [1, 2], { startMethod: "worker" })], [1, 2]);
   * ```
   */
  [Symbol.iterator](): IterableIterator<ElementOf<T>> {
    return (this.#view as unknown as Iterable<ElementOf<T>>)[Symbol.iterator]() as IterableIterator<
      ElementOf<T>
    >;
  }

  /**
   * The lock that guards the array (an {@linkcode RLock} unless one was given).
   *
   * @returns The lock.
   * @throws {ValueError} When created with `lock: false` (and for a {@linkcode RawArray}).
   *
   * @example
   * ```ts
   * import { SharedArray } from "@seed/multiprocessing/shared";
   *
   * const a = new SharedArray("i", 3, { startMethod: "worker" });
   * using _ = await a.getLock().hold();
   * a.set(0, a.get(0) + 1);
   * ```
   */
  getLock(): Lock | RLock {
    return lockOf(this.#lock, `array "${this.#typecode}"`);
  }

  static {
    arrayParts = (a) => ({ region: a.#region, lock: a.#lock, typecode: a.#typecode });
  }
}

/**
 * A {@linkcode SharedArray} without a lock (Python's `multiprocessing.RawArray`).
 *
 * @typeParam T The type code.
 *
 * @example
 * ```ts
 * import { RawArray } from "@seed/multiprocessing/shared";
 * import assert from "node:assert/strict";
 *
 * const a = new RawArray("f", 4, { startMethod: "worker" });
 * a.view.fill(0.5);
 * assert.deepEqual(a.toArray(), [0.5, 0.5, 0.5, 0.5]);
 * ```
 */
export class RawArray<T extends Typecode = Typecode> extends SharedArray<T> {
  /**
   * Makes an array in shared memory with no lock.
   *
   * @param typecode The type code.
   * @param sizeOrValues The length (filled with zeros), or the first values.
   * @param options `startMethod`.
   * @throws {TypeError} When the type code or a value is not valid.
   * @throws {RangeError} When the length is negative or not an integer.
   */
  constructor(
    typecode: T,
    sizeOrValues: number | Iterable<ElementOf<T> | number>,
    options?: RawOptions,
  ) {
    super(typecode, sizeOrValues, { ...options, lock: false });
  }
}

interface ArrayDescriptor extends ValueDescriptor {
  length: number;
}

const arrayKind: HandleKind<SharedArray, ArrayDescriptor> = registerHandleKind({
  name: "mp-array",
  module: import.meta.url,
  describe: (a, context) => {
    const { region, lock, typecode } = arrayParts(a);
    return {
      typecode,
      length: a.length,
      region: region.describe(context, `a SharedArray("${typecode}")`),
      lock,
      raw: a instanceof RawArray,
    };
  },
  revive: (d, context) =>
    reviving(
      { region: reviveRegion(d.region, context), lock: d.lock },
      () => d.raw ? new RawArray(d.typecode, d.length) : new SharedArray(d.typecode, d.length),
    ),
});

/** Options of {@linkcode SharedMemory}. */
export interface SharedMemoryOptions {
  /**
   * The segment's name; a new unique one when creating without a name. Letters, digits,
   * `_`, `.` and `-`.
   */
  name?: string;
  /**
   * Create a new segment (it must not exist) instead of attaching to one.
   *
   * @default {false}
   */
  create?: boolean;
  /** The size in bytes of a new segment; ignored when attaching. */
  size?: number;
  /**
   * Unlink the segment when this process exits if it was not unlinked before (Python
   * 3.13's `track`); only for a segment this process creates.
   *
   * @default {true}
   */
  track?: boolean;
  /**
   * `"process"`: a named OS segment in `/dev/shm` (needs `--allow-ffi`), which any process
   * may attach to by name. `"worker"`: a `SharedArrayBuffer`, attached to by name from the
   * workers it was handed to.
   *
   * @default {getStartMethod()}
   */
  startMethod?: StartMethod;
}

// Worker-context segments this isolate knows, by name.
const sabSegments = new Map<string, SharedArrayBuffer>();

function validName(name: unknown): string {
  if (typeof name !== "string") {
    throw new TypeError("Cannot use a shared memory name that is not a string");
  }
  const bare = name.startsWith("/") ? name.slice(1) : name;
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(bare) || bare === "." || bare === "..") {
    throw new TypeError(
      `Cannot use shared memory name ${
        JSON.stringify(name)
      }: use 1 to 200 letters, digits, "_", "." or "-"`,
    );
  }
  return bare;
}

function randomName(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `psm_${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * A block of shared memory with a name (Python's `shared_memory.SharedMemory`). Its
 * creator calls `unlink()` when done; other processes attach by name and `close()`.
 *
 * @example
 * ```ts
 * import { SharedMemory } from "@seed/multiprocessing/shared";
 * import assert from "node:assert/strict";
 *
 * using shm = new SharedMemory({ create: true, size: 16, startMethod: "worker" });
 * const other = new SharedMemory({ name: shm.name, startMethod: "worker" });
 * shm.buf[0] = 42;
 * assert.equal(other.buf[0], 42);
 * shm.unlink();
 * ```
 */
export class SharedMemory {
  #name: string;
  #size: number;
  #backing: StartMethod;
  #mapping: Mapping | undefined;
  #sab: SharedArrayBuffer | undefined;
  #buf: Uint8Array;
  #created: boolean;
  #tracked = false;
  #closed = false;

  /**
   * Creates a segment or attaches to one by name.
   *
   * @param options `name`, `create`, `size`, `track`, `startMethod`.
   * @throws {TypeError} When the name is not valid, or attaching without a name.
   * @throws {RangeError} When creating with a size that is not a positive integer.
   * @throws {Deno.errors.NotFound} When attaching to a name that does not exist.
   * @throws {Deno.errors.AlreadyExists} When creating a name that exists.
   * @throws {Deno.errors.NotCapable} In the `"process"` context without `--allow-ffi`.
   */
  constructor(options: SharedMemoryOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        "Cannot open shared memory: pass options such as { create: true, size: 1024 }",
      );
    }
    const parts = revivedMemory;
    this.#backing = validateStartMethod(
      parts?.backing ?? options.startMethod ?? self.defaultStartMethod,
    );
    const create = parts === undefined && options.create === true;
    this.#created = create;
    if (!create && options.name === undefined) {
      throw new TypeError(
        "Cannot attach to shared memory without a name: pass { name } or { create: true }",
      );
    }
    this.#name = options.name === undefined ? randomName() : validName(options.name);
    let size = options.size ?? 0;
    if (create && (!Number.isInteger(size) || size <= 0)) {
      throw new RangeError(`Cannot create shared memory of size ${size}: use a positive integer`);
    }
    if (this.#backing === "worker") {
      let sab = parts?.sab ?? sabSegments.get(this.#name);
      if (create) {
        if (sab !== undefined) {
          throw new Deno.errors.AlreadyExists(
            `Cannot create shared memory "${this.#name}": it exists; pick another name or attach with create: false`,
          );
        }
        sab = new SharedArrayBuffer(size);
      }
      if (sab === undefined) {
        throw new Deno.errors.NotFound(
          `Cannot attach shared memory "${this.#name}": no such segment in this worker; in the "worker" context a segment must be created here or handed over`,
        );
      }
      sabSegments.set(this.#name, sab);
      this.#sab = sab;
      size = sab.byteLength;
      this.#buf = new Uint8Array(sab);
    } else {
      this.#mapping = openNamed(this.#name, create, size);
      size = this.#mapping.buffer.byteLength;
      this.#buf = new Uint8Array(this.#mapping.buffer, 0, size);
      if (create && options.track !== false) {
        track(this.#name);
        this.#tracked = true;
      }
    }
    this.#size = size;
  }

  /** The segment's name (without a leading `/`), to attach to it elsewhere. */
  get name(): string {
    return this.#name;
  }

  /** The size in bytes. */
  get size(): number {
    return this.#size;
  }

  /** The bytes of the segment; empty once closed. */
  get buf(): Uint8Array {
    return this.#buf;
  }

  /**
   * Lets go of the memory in this process or worker; the segment stays for others.
   *
   * @example
   * ```ts
   * import { SharedMemory } from "@seed/multiprocessing/shared";
   * import assert from "node:assert/strict";
   *
   * const shm = new SharedMemory({ create: true, size: 8, startMethod: "worker" });
   * shm.close();
   * assert.equal(shm.buf.length, 0);
   * shm.unlink();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#mapping !== undefined) unmap(this.#mapping);
    this.#sab = undefined;
    this.#buf = new Uint8Array(0);
  }

  /**
   * Removes the segment's name, so no one else can attach; the memory lives on while
   * someone has it open. Call it once, from the creator, when done.
   *
   * @example
   * ```ts
   * import { SharedMemory } from "@seed/multiprocessing/shared";
   * import assert from "node:assert/strict";
   *
   * const shm = new SharedMemory({ create: true, size: 8, startMethod: "worker" });
   * shm.unlink();
   * assert.throws(() => new SharedMemory({ name: shm.name, startMethod: "worker" }));
   * ```
   */
  unlink(): void {
    if (this.#backing === "worker") {
      sabSegments.delete(this.#name);
      return;
    }
    unlinkNamed(this.#name);
    if (this.#tracked) {
      untrack(this.#name);
      this.#tracked = false;
    }
  }

  /** Closes (does not unlink), as Python's `with` does. */
  [Symbol.dispose](): void {
    this.close();
  }

  static {
    memoryParts = (m) => ({ backing: m.#backing, sab: m.#sab, name: m.#name });
  }
}

interface MemoryDescriptor {
  name: string;
  backing: StartMethod;
  index: number;
}

const memoryKind: HandleKind<SharedMemory, MemoryDescriptor> = registerHandleKind({
  name: "mp-shared-memory",
  module: import.meta.url,
  describe: (m, context) => {
    const { backing, sab, name } = memoryParts(m);
    let index = -1;
    if (backing === "worker") {
      if (sab === undefined) {
        throw new ValueError(`Cannot send shared memory "${name}": it is closed`);
      }
      index =
        (sabRegion(sab).describe(context, `shared memory "${name}"`) as { index: number }).index;
    }
    return { name, backing, index };
  },
  revive: (d, context) => {
    revivedMemory = {
      backing: d.backing,
      sab: d.backing === "worker" ? context.shared?.[d.index] : undefined,
    };
    try {
      return new SharedMemory({ name: d.name });
    } finally {
      revivedMemory = undefined;
    }
  },
});

// Instances cross to other processes and workers as handles.
markHandleClass(Value, valueKind);
markHandleClass(SharedArray, arrayKind);
markHandleClass(SharedMemory, memoryKind);
