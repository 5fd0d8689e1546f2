// The binary codec for every value that crosses to another process or worker: structured-clone
// semantics plus handles (by the HANDLE symbol) and transferred MessagePorts. Wire format: one
// tag byte per value (table below), then its payload; integers are LEB128 varints, floats are
// little-endian float64. Every object gets the next id when first met; a later meeting is a ref.

import * as errors from "./errors.ts";
import { BufferTooShort, DataCloneError } from "./errors.ts";
import {
  type DecodeContext,
  type EncodeContext,
  HANDLE,
  type HandleKind,
  handleKind,
} from "./_handles.ts";

// Tags. 0x00-0x3f are kinds; 0x40-0x7f an ASCII string of 0-63 chars; 0x80-0xff the int 0-127.
//   00 undefined  01 null  02 false  03 true
//   04 int32: zigzag varint            05 float64: 8 bytes
//   06 bigint >= 0, 07 bigint < 0: varint n, n magnitude bytes big-endian
//   08 string: varint n, n UTF-8 bytes  09 string with lone surrogates: varint n, n UTF-16LE units
//   0a ref: varint id of an object already decoded
//   0b array: varint length, length values or holes (1e)
//   0c sparse array: varint length, (varint index, value)* end (1f)
//   0d object: (string key, value)* end
//   0e Map: (key, value)* end           0f Set: value* end
//   10 Date: float64                    11 RegExp: source string, flags string
//   12 ArrayBuffer: varint n, n bytes   13 resizable ArrayBuffer: varint n, varint max, n bytes
//   14 view: kind byte (VIEWS index), buffer value (12, 13 or ref), varint byteOffset, varint length
//   15 Error: flags byte (ERROR_*), name, message, stack, then cause, errors, data if flagged
//   16 Number object: float64           17 String object: string
//   18 Boolean object false             19 Boolean object true
//   1a BigInt object: bigint            1b handle: kind name string, descriptor value
//   1c transferred MessagePort: varint index into context.transfer
//   1e array hole                       1f end of entries
const UNDEFINED = 0x00;
const NULL = 0x01;
const FALSE = 0x02;
const TRUE = 0x03;
const INT = 0x04;
const FLOAT = 0x05;
const BIGINT = 0x06;
const BIGINT_NEG = 0x07;
const UTF8 = 0x08;
const UTF16 = 0x09;
const REF = 0x0a;
const ARRAY = 0x0b;
const SPARSE = 0x0c;
const OBJECT = 0x0d;
const MAP = 0x0e;
const SET = 0x0f;
const DATE = 0x10;
const REGEXP = 0x11;
const BUFFER = 0x12;
const RESIZABLE = 0x13;
const VIEW = 0x14;
const ERROR = 0x15;
const NUMBER_OBJECT = 0x16;
const STRING_OBJECT = 0x17;
const FALSE_OBJECT = 0x18;
const TRUE_OBJECT = 0x19;
const BIGINT_OBJECT = 0x1a;
const HANDLE_TAG = 0x1b;
const PORT = 0x1c;
const NUMBERS = 0x1d; // an array of numbers, packed: u8 width (4: int32, 8: float64), then each
const HOLE = 0x1e;
const END = 0x1f;
const ASCII = 0x40;
const SMALL_INT = 0x80;

const ERROR_CAUSE = 1;
const ERROR_ERRORS = 2;
const ERROR_DATA = 4;
const ERROR_DOM = 8;

// Arrays longer than this are checked for holes first, so `a[1e9] = 1` goes sparse.
const DENSE_MAX = 1024;
// Resizable buffers reserve address space up to their max: refuse absurd ones from the wire.
const MAX_RESIZABLE = 2 ** 32;

type ViewConstructor = new (
  buffer: ArrayBuffer,
  byteOffset: number,
  length: number,
) => ArrayBufferView;

const Float16 = (globalThis as { Float16Array?: ViewConstructor }).Float16Array;
const VIEWS: (ViewConstructor | undefined)[] = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
  Float16,
];
const viewKinds = new Map<object, number>();
VIEWS.forEach((view, index) => {
  if (view !== undefined) viewKinds.set(view.prototype, index);
});

type ErrorConstructor = new (message?: string) => Error;

// Rebuilt by name on arrival; any other name becomes an Error carrying that name.
const errorClasses = new Map<string, ErrorConstructor>();
const builtinErrors: ErrorConstructor[] = [
  Error,
  EvalError,
  RangeError,
  ReferenceError,
  SyntaxError,
  TypeError,
  URIError,
  AggregateError as ErrorConstructor,
];
for (const ctor of builtinErrors) errorClasses.set(ctor.name, ctor);
const denoErrors = (globalThis as { Deno?: { errors?: Record<string, unknown> } }).Deno?.errors;
for (const [name, value] of Object.entries({ ...denoErrors, ...errors })) {
  if (typeof value === "function" && value.prototype instanceof Error) {
    errorClasses.set(name, value as ErrorConstructor);
  }
}

// Platform objects hold state structured clone cannot reach (or that would need an await):
// refuse them rather than send an empty object. Other class instances go as plain objects.
// Looked up on first need: reading globals such as Blob or Request makes Deno
// load their implementations, ~5 ms at every child's start.
const PLATFORM_NAMES = [
  "EventTarget",
  "Blob",
  "URL",
  "URLSearchParams",
  "Headers",
  "Request",
  "Response",
  "ReadableStream",
  "WritableStream",
  "TransformStream",
  "CryptoKey",
  "WeakMap",
  "WeakSet",
  "WeakRef",
  "FinalizationRegistry",
  "Promise",
  "Symbol",
];
let platform: (abstract new () => unknown)[] | undefined;
function platformClasses(): (abstract new () => unknown)[] {
  return platform ??= PLATFORM_NAMES.flatMap((name) => {
    const ctor = (globalThis as Record<string, unknown>)[name];
    return typeof ctor === "function" ? [ctor as abstract new () => unknown] : [];
  });
}
let port: (abstract new () => MessagePort) | null | undefined;
function portClass(): (abstract new () => MessagePort) | null {
  return port ??= (globalThis as { MessagePort?: abstract new () => MessagePort }).MessagePort ??
    null;
}

const utf8Encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF, which is part of the string.
const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const strictUtf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const floatBytes = new Uint8Array(8);
const floatView = new DataView(floatBytes.buffer);

/** Why a value cannot be cloned, and where in it; made a DataCloneError at the top. */
class CloneFailure {
  readonly reason: string;
  path = "";
  constructor(reason: string) {
    this.reason = reason;
  }
}

function fail(reason: string): never {
  throw new CloneFailure(reason);
}

function within(error: unknown, segment: string): unknown {
  if (error instanceof CloneFailure) error.path = segment + error.path;
  return error;
}

function keySegment(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

// --- Encoder state. Module-level for speed; a nested encode (from a describe()) saves it.

const SCRATCH = 4096;
let out = new Uint8Array(SCRATCH);
let outView = new DataView(out.buffer);
let pos = 0;
let refs = new Map<object, number>();
let encodeContext: EncodeContext | undefined;
let handleContext: EncodeContext | undefined;
let encoding = false;
// Scratch for packed number arrays. Deno runs on little-endian machines only
// (x86-64, AArch64), so typed arrays write the byte order the format names.
let numbers = new Float64Array(0);
let ints32 = new Int32Array(0);
// Buffers the library made and never writes again (see seal()).
const sealed = new WeakSet<ArrayBuffer>();
// While encodeParts() runs: the parts so far, and where the current one
// starts in `out`.
let parts: Uint8Array[] | undefined;
let partFrom = 0;

/**
 * Serializes a value with structured-clone semantics, handles and MessagePorts.
 *
 * @param value What to send.
 * @param context Where it goes; handles read it, MessagePorts are pushed to `transfer`.
 * @param label What to call the value in an error message.
 * @returns Fresh bytes the caller owns.
 * @throws {DataCloneError} A part of the value cannot be cloned; the message says where.
 */
export function encode(value: unknown, context?: EncodeContext, label = "value"): Uint8Array {
  return encodeWith(value, context, label, true);
}

/**
 * Like {@linkcode encode}, but returns a view of the codec's own buffer,
 * valid only until the next encode: for a caller that copies the bytes at
 * once (into a frame), and so allocates nothing per message.
 */
export function encodeView(value: unknown, context?: EncodeContext, label = "value"): Uint8Array {
  return encodeWith(value, context, label, false);
}

/**
 * The encoding of an array of the numbers in `values`, as {@linkcode encode}
 * writes an array of numbers: for a caller that collected them in a typed
 * array, and so need not go over them again.
 */
export function encodeNumbers(values: Int32Array | Float64Array): Uint8Array {
  return encodeWith(values, undefined, "numbers", true, writeNumbers as (value: unknown) => void);
}

/**
 * The encoding of `array.slice(from, to)`: when the items are numbers, made
 * without the slice (a pool's map of 100,000 numbers made 800 KB of slices
 * only to encode them).
 */
export function encodeSlice(
  array: unknown[],
  from: number,
  to: number,
  context?: EncodeContext,
  label = "value",
): Uint8Array {
  const write = () => {
    if (to - from < PACKED_MIN || !writePacked(array, from, to)) writeValue(array.slice(from, to));
  };
  return encodeWith(array, context, label, true, write);
}

/** Encodings shorter than this, from {@linkcode encodeShort}, are views. */
export const VIEW_MAX: number = 1 << 14;

/**
 * For bytes that are copied into a frame (or kept) at once: a short value's
 * as a view of the codec's buffer ({@linkcode encodeView}), a long one's in
 * a buffer of its own (a frame sends a large part from where it is, after the
 * next encode has begun).
 */
export function encodeShort(value: unknown, context?: EncodeContext, label = "value"): Uint8Array {
  const view = encodeWith(value, context, label, false);
  return view.length < VIEW_MAX ? view : view.slice();
}

/** Bytes from {@linkcode encodeShort}, made the caller's own. */
export function ownShort(data: Uint8Array): Uint8Array {
  return data.length < VIEW_MAX ? data.slice() : data;
}

/** Sealed buffers this large are parts of their own in {@linkcode encodeParts}. */
export const PART_MIN: number = 1 << 15;

/**
 * Marks bytes the library made and will never change (a pool task's items,
 * its results): {@linkcode encodeParts} sends their buffer from where it is.
 * Bytes that a caller may still change must not be sealed: a message is a
 * copy of what was sent at the call.
 */
export function seal(bytes: Uint8Array): Uint8Array {
  sealed.add(bytes.buffer as ArrayBuffer);
  return bytes;
}

/**
 * Like {@linkcode encodeShort}, as the parts of one encoding: each sealed
 * buffer of {@linkcode PART_MIN} bytes or more is a part of its own, not
 * copied (a pool's batch of tasks would copy its items' bytes twice, into the
 * codec's buffer and out of it, before the write). Parts shorter than
 * {@linkcode VIEW_MAX} are views valid until the next encode: copy them at
 * once (a frame writer does).
 */
export function encodeParts(
  value: unknown,
  context?: EncodeContext,
  label = "value",
): Uint8Array[] {
  if (encoding) return [encodeShort(value, context, label)];
  const found: Uint8Array[] = parts = [];
  partFrom = 0;
  try {
    found.push(encodeWith(value, context, label, false).subarray(partFrom));
  } finally {
    parts = undefined;
  }
  // Parts of `out` (every other one) that are long enough are copied now, as encodeShort does.
  for (let i = 0; i < found.length; i += 2) {
    if (found[i]!.length >= VIEW_MAX) found[i] = found[i]!.slice();
  }
  return found;
}

function encodeWith(
  value: unknown,
  context: EncodeContext | undefined,
  label: string,
  copy: boolean,
  write: (value: unknown) => void = writeValue,
): Uint8Array {
  if (!encoding) {
    encoding = true;
    try {
      return run(value, context, label, copy, write);
    } finally {
      encoding = false;
      // A fresh map is cheaper than clearing this one (a runtime call).
      if (refs.size !== 0) refs = new Map();
      if (out.length > 1 << 20) {
        out = new Uint8Array(SCRATCH);
        outView = new DataView(out.buffer);
      }
      if (numbers.length > 1 << 17) [numbers, ints32] = [new Float64Array(0), new Int32Array(0)];
    }
  }
  const saved = [out, outView, pos, refs, encodeContext, handleContext, parts] as const;
  out = new Uint8Array(256);
  outView = new DataView(out.buffer);
  refs = new Map();
  parts = undefined;
  try {
    // A nested encode has its own buffer: a view of it stays valid.
    return run(value, context, label, false, write);
  } finally {
    [out, outView, pos, refs, encodeContext, handleContext, parts] = saved;
  }
}

function run(
  value: unknown,
  context: EncodeContext | undefined,
  label: string,
  copy: boolean,
  write: (value: unknown) => void,
): Uint8Array {
  pos = 0;
  encodeContext = context;
  handleContext = context;
  const transferred = context?.transfer?.length ?? 0;
  const committed = context?.commit?.length ?? 0;
  try {
    write(value);
  } catch (error) {
    // Nothing partial escapes: what this encode added to the context goes with it.
    if (context?.transfer !== undefined) context.transfer.length = transferred;
    if (context?.commit !== undefined) context.commit.length = committed;
    if (error instanceof CloneFailure) {
      throw new DataCloneError(`Cannot serialize ${label}${error.path}: ${error.reason}`);
    }
    throw error;
  } finally {
    encodeContext = handleContext = undefined;
  }
  return copy ? out.slice(0, pos) : out.subarray(0, pos);
}

function grow(need: number): void {
  const bigger = new Uint8Array(Math.max(out.length * 2, pos + need));
  bigger.set(out.subarray(0, pos));
  out = bigger;
  outView = new DataView(out.buffer);
}

function writeByte(byte: number): void {
  if (pos >= out.length) grow(1);
  out[pos++] = byte;
}

function writeUint(n: number): void {
  if (pos + 8 > out.length) grow(8);
  while (n >= 0x80) {
    out[pos++] = (n & 0x7f) | 0x80;
    n = n < 0x80000000 ? n >>> 7 : Math.floor(n / 128);
  }
  out[pos++] = n;
}

function writeFloat(tag: number, n: number): void {
  if (pos + 9 > out.length) grow(9);
  out[pos] = tag;
  outView.setFloat64(pos + 1, n, true);
  pos += 9;
}

function writeBytes(bytes: Uint8Array): void {
  if (pos + bytes.length > out.length) grow(bytes.length);
  out.set(bytes, pos);
  pos += bytes.length;
}

function writeValue(value: unknown): void {
  switch (typeof value) {
    case "number":
      return writeNumber(value);
    case "string":
      return writeString(value);
    case "object":
      return value === null ? writeByte(NULL) : writeObject(value);
    case "boolean":
      return writeByte(value ? TRUE : FALSE);
    case "undefined":
      return writeByte(UNDEFINED);
    case "bigint":
      return writeBigInt(value);
    case "symbol":
      return fail("a symbol cannot be cloned");
    case "function":
      if ((value as { [HANDLE]?: unknown })[HANDLE] !== undefined) return writeObject(value);
      return fail("a function cannot be cloned");
  }
}

function writeNumber(n: number): void {
  if ((n | 0) === n && (n !== 0 || 1 / n > 0)) {
    if (n >= 0 && n < 0x80) return writeByte(SMALL_INT | n);
    writeByte(INT);
    return writeUint(((n << 1) ^ (n >> 31)) >>> 0);
  }
  writeFloat(FLOAT, n);
}

function writeString(s: string): void {
  const n = s.length;
  if (n < 64) {
    if (pos + n + 1 > out.length) grow(n + 1);
    let p = pos + 1;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      out[p++] = c;
    }
    if (i === n) {
      out[pos] = ASCII | n;
      pos = p;
      return;
    }
  }
  if (!s.isWellFormed()) return writeUtf16(s);
  // Reserve the varint for the longest UTF-8 form, then fill it in padded to that width.
  const max = n * 3;
  const width = max < 0x80 ? 1 : max < 0x4000 ? 2 : max < 0x200000 ? 3 : max < 0x10000000 ? 4 : 5;
  if (pos + 1 + width + max > out.length) grow(1 + width + max);
  out[pos] = UTF8;
  const start = pos + 1 + width;
  const written = utf8Encoder.encodeInto(s, out.subarray(start)).written;
  let rest = written;
  for (let p = pos + 1; p < start - 1; p++) {
    out[p] = (rest & 0x7f) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[start - 1] = rest;
  pos = start + written;
}

function writeUtf16(s: string): void {
  writeByte(UTF16);
  writeUint(s.length);
  if (pos + s.length * 2 > out.length) grow(s.length * 2);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out[pos++] = c & 0xff;
    out[pos++] = c >>> 8;
  }
}

function writeBigInt(n: bigint, tag = n < 0n ? BIGINT_NEG : BIGINT): void {
  let hex = (n < 0n ? -n : n).toString(16);
  if (hex.length & 1) hex = "0" + hex;
  const length = hex.length >>> 1;
  writeByte(tag);
  writeUint(length);
  if (pos + length > out.length) grow(length);
  for (let i = 0; i < length; i++) out[pos++] = parseInt(hex.substring(2 * i, 2 * i + 2), 16);
}

function writeObject(value: object): void {
  const seen = refs.get(value);
  if (seen !== undefined) {
    if (seen < 0) fail("a handle's descriptor cannot contain the handle itself");
    writeByte(REF);
    return writeUint(seen);
  }
  const id = refs.size;
  refs.set(value, id);
  const kind = (value as { [HANDLE]?: HandleKind })[HANDLE];
  if (kind !== undefined) return writeHandle(value, kind, id);
  if (Array.isArray(value)) return writeArray(value);
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    return writePlain(value as Record<string, unknown>);
  }
  writeExotic(value, proto);
}

function writeHandle(value: object, kind: HandleKind, id: number): void {
  refs.set(value, -1 - id);
  writeByte(HANDLE_TAG);
  writeString(kind.name);
  const descriptor = kind.describe(value, handleContext ??= {});
  handleContext.modules?.add(kind.module);
  try {
    writeValue(descriptor);
  } catch (error) {
    throw within(error, `<${kind.name} descriptor>`);
  }
  refs.set(value, id);
}

// Arrays at least this long that hold only numbers are written packed.
const PACKED_MIN = 16;

function writeArray(array: unknown[]): void {
  const length = array.length;
  if (length >= PACKED_MIN && writePacked(array)) return;
  if (length > DENSE_MAX && isSparse(array)) return writeSparse(array);
  writeByte(ARRAY);
  writeUint(length);
  let i = 0;
  try {
    for (; i < length; i++) {
      const item = array[i];
      if (item === undefined && !(i in array)) writeByte(HOLE);
      else writeValue(item);
    }
  } catch (error) {
    throw within(error, `[${i}]`);
  }
}

// An array of numbers (no holes) as 4 or 8 bytes each: a pool's map of
// 100,000 numbers costs a tenth of a value-by-value encoding. False, having
// written nothing, when the array holds anything else. One pass in script
// (check and copy); the rest is typed-array copies, fast before V8 has
// compiled anything, which is when a pool's first map runs.
function writePacked(array: unknown[], from = 0, to = array.length): boolean {
  const length = to - from;
  if (numbers.length < length) numbers = new Float64Array(Math.max(length, numbers.length * 2));
  const values = numbers.subarray(0, length);
  let kind = copyNumbers(array, from, values);
  if (kind === NOT_NUMBERS) return false;
  if (kind === INTS_AND_ZEROS) kind = values.some(isNegativeZero) ? DOUBLES : INTS;
  let packed: Float64Array | Int32Array = values;
  if (kind === INTS) {
    if (ints32.length < length) ints32 = new Int32Array(numbers.length);
    (packed = ints32.subarray(0, length)).set(values);
  }
  writeNumbers(packed);
  return true;
}

// What copyNumbers() found.
const NOT_NUMBERS = 0;
const INTS = 1;
const INTS_AND_ZEROS = 2; // -0 is no int32: the caller looks
const DOUBLES = 3;

const isNegativeZero = (n: number) => Object.is(n, -0);

/**
 * Copies `array`, from `from` on, into `values` (as many items as it has
 * room for), as long as they are numbers. The loop is a function of its own,
 * with no test in it that runs for some items only (as one for -0 would): V8
 * compiles a long loop while it runs, and the compiled code has no feedback
 * for what has not run yet, code after the loop included. Reaching that
 * deoptimizes it, each call.
 */
function copyNumbers(array: unknown[], from: number, values: Float64Array): number {
  let ints = true;
  let zeros = false;
  for (let i = 0; i < values.length; i++) {
    const n = array[from + i];
    if (typeof n !== "number") return NOT_NUMBERS;
    values[i] = n;
    if ((n | 0) !== n) ints = false;
    zeros ||= n === 0;
  }
  return ints ? (zeros ? INTS_AND_ZEROS : INTS) : DOUBLES;
}

function writeNumbers(packed: Int32Array | Float64Array): void {
  writeByte(NUMBERS);
  writeUint(packed.length);
  writeByte(packed.BYTES_PER_ELEMENT);
  writeBytes(new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength));
}

function isSparse(array: unknown[]): boolean {
  let holes = 0;
  for (let i = 0; i < array.length; i++) {
    if (array[i] === undefined && !(i in array) && ++holes > DENSE_MAX && holes * 2 > i) {
      return true;
    }
  }
  return false;
}

function writeSparse(array: unknown[]): void {
  writeByte(SPARSE);
  writeUint(array.length);
  let key = "";
  try {
    for (key of Object.keys(array)) {
      const index = Number(key);
      // Other own properties of arrays are dropped, as for dense arrays.
      if (!(index < array.length) || String(index) !== key) continue;
      writeUint(index);
      writeValue(array[index]);
    }
  } catch (error) {
    throw within(error, `[${key}]`);
  }
  writeByte(END);
}

function writePlain(object: Record<string, unknown>): void {
  writeByte(OBJECT);
  let current = "";
  try {
    // for-in reads fields through V8's enum cache, much faster than Object.keys + lookups.
    for (const key in object) {
      if (!Object.hasOwn(object, key)) continue;
      current = key;
      writeString(key);
      writeValue(object[key]);
    }
  } catch (error) {
    throw within(error, keySegment(current));
  }
  writeByte(END);
}

function writeExotic(value: object, proto: object): void {
  if (ArrayBuffer.isView(value)) return writeView(value, proto);
  if (value instanceof ArrayBuffer) return writeBuffer(value);
  if (value instanceof Map) return writeMap(value);
  if (value instanceof Set) return writeSet(value);
  if (value instanceof Date) return writeFloat(DATE, Date.prototype.getTime.call(value));
  if (value instanceof RegExp) {
    writeByte(REGEXP);
    writeString(value.source);
    return writeString(value.flags);
  }
  if (value instanceof Error) return writeError(value);
  if (value instanceof Number) {
    return writeFloat(NUMBER_OBJECT, Number.prototype.valueOf.call(value));
  }
  if (value instanceof String) {
    writeByte(STRING_OBJECT);
    return writeString(String.prototype.valueOf.call(value));
  }
  if (value instanceof Boolean) {
    return writeByte(Boolean.prototype.valueOf.call(value) ? TRUE_OBJECT : FALSE_OBJECT);
  }
  if (value instanceof BigInt) {
    writeByte(BIGINT_OBJECT);
    return writeBigInt(BigInt.prototype.valueOf.call(value));
  }
  const Port = portClass();
  if (Port !== null && value instanceof Port) return writePort(value);
  if (value instanceof SharedArrayBuffer) {
    return fail("a SharedArrayBuffer cannot be cloned; share memory through a shared handle");
  }
  for (const ctor of platformClasses()) {
    if (value instanceof ctor) {
      return fail(`${/^[AEIO]/.test(ctor.name) ? "an" : "a"} ${ctor.name} cannot be cloned`);
    }
  }
  writePlain(value as Record<string, unknown>);
}

function writeBuffer(buffer: ArrayBuffer): void {
  if (buffer.detached) fail("a detached ArrayBuffer cannot be cloned");
  const length = buffer.byteLength;
  if (parts !== undefined && length >= PART_MIN && sealed.has(buffer) && !buffer.resizable) {
    writeByte(BUFFER);
    writeUint(length);
    parts.push(out.subarray(partFrom, pos), new Uint8Array(buffer));
    partFrom = pos;
    return;
  }
  if (buffer.resizable) {
    writeByte(RESIZABLE);
    writeUint(length);
    writeUint(buffer.maxByteLength);
  } else {
    writeByte(BUFFER);
    writeUint(length);
  }
  writeBytes(new Uint8Array(buffer, 0, length));
}

function writeView(view: ArrayBufferView, proto: object): void {
  let kind = viewKinds.get(proto);
  // Subclasses (node's Buffer) arrive as their base kind, as with structuredClone.
  for (let p: object | null = proto; kind === undefined && p !== null;) {
    p = Object.getPrototypeOf(p);
    if (p !== null) kind = viewKinds.get(p);
  }
  if (kind === undefined) return fail("an unknown ArrayBufferView cannot be cloned");
  writeByte(VIEW);
  writeByte(kind);
  const buffer = view.buffer;
  if (!(buffer instanceof ArrayBuffer)) {
    return fail("a view of a SharedArrayBuffer cannot be cloned; use a shared handle");
  }
  writeObject(buffer);
  writeUint(view.byteOffset);
  writeUint(view instanceof DataView ? view.byteLength : (view as Uint8Array).length);
}

function writeMap(map: Map<unknown, unknown>): void {
  writeByte(MAP);
  let segment = "<Map key>";
  try {
    for (const [key, item] of map) {
      segment = "<Map key>";
      writeValue(key);
      segment = "<Map value>";
      writeValue(item);
    }
  } catch (error) {
    throw within(error, segment);
  }
  writeByte(END);
}

function writeSet(set: Set<unknown>): void {
  writeByte(SET);
  try {
    for (const item of set) writeValue(item);
  } catch (error) {
    throw within(error, "<Set member>");
  }
  writeByte(END);
}

function writeError(error: Error): void {
  const dom = error instanceof DOMException;
  const hasCause = Object.hasOwn(error, "cause");
  const aggregate = error instanceof AggregateError;
  const data = error instanceof BufferTooShort;
  writeByte(ERROR);
  writeByte(
    (hasCause ? ERROR_CAUSE : 0) | (aggregate ? ERROR_ERRORS : 0) | (data ? ERROR_DATA : 0) |
      (dom ? ERROR_DOM : 0),
  );
  const name = error.name;
  writeString(typeof name === "string" ? name : "Error");
  const message = error.message;
  writeOptionalString(message === undefined ? undefined : String(message));
  const stack = error.stack;
  writeOptionalString(typeof stack === "string" ? stack : undefined);
  let segment = ".cause";
  try {
    if (hasCause) writeValue(error.cause);
    segment = ".errors";
    if (aggregate) writeValue(error.errors);
    segment = ".data";
    if (data) writeValue(error.data);
  } catch (failure) {
    throw within(failure, segment);
  }
}

function writeOptionalString(s: string | undefined): void {
  if (s === undefined) writeByte(UNDEFINED);
  else writeString(s);
}

function writePort(port: MessagePort): void {
  const transfer = encodeContext?.transfer;
  if (transfer === undefined) return fail("a MessagePort can only be sent to a worker");
  let index = transfer.indexOf(port);
  if (index < 0) index = transfer.push(port) - 1;
  writeByte(PORT);
  writeUint(index);
}

// --- Decoder state, saved by a nested decode (from a revive()).

const NOTHING = new Uint8Array(0);
let input: Uint8Array = NOTHING;
let at = 0;
let end = 0;
let objects: unknown[] = [];
let decodeContext: DecodeContext | undefined;
let decoding = false;
// Holds a view's or handle's id while its parts decode; a ref to it is corrupt input.
const PENDING = Symbol("pending");

/**
 * Rebuilds a value from {@linkcode encode}'s bytes. Runs no code from the bytes; handles are
 * revived by their registered kinds.
 *
 * @param bytes What `encode` returned.
 * @param context The transferables that came with the bytes.
 * @returns The value.
 * @throws {TypeError} The bytes are truncated, corrupt or not from `encode`.
 */
export function decode(bytes: Uint8Array, context?: DecodeContext): unknown {
  return decodeWith(bytes, context, readValue);
}

/**
 * Like {@linkcode decode}, for a pool's chunk of items, which are only read
 * by index: an array of numbers comes back as the typed array it was packed
 * in. Copying it into an Array is a loop that a fresh worker interprets.
 */
export function decodeItems(bytes: Uint8Array): ArrayLike<unknown> {
  return decodeWith(bytes, undefined, readItems) as ArrayLike<unknown>;
}

function decodeWith(
  bytes: Uint8Array,
  context: DecodeContext | undefined,
  read: () => unknown,
): unknown {
  if (!decoding) {
    decoding = true;
    try {
      return start(bytes, context, read);
    } finally {
      decoding = false;
      // A fresh list is cheaper than emptying this one (a runtime call).
      if (objects.length !== 0) objects = [];
      input = NOTHING;
      decodeContext = undefined;
    }
  }
  const saved = [input, at, end, objects, decodeContext] as const;
  objects = [];
  try {
    return start(bytes, context, read);
  } finally {
    [input, at, end, objects, decodeContext] = saved;
  }
}

function start(
  bytes: Uint8Array,
  context: DecodeContext | undefined,
  read: () => unknown,
): unknown {
  input = bytes;
  at = 0;
  end = bytes.length;
  decodeContext = context;
  let value: unknown;
  try {
    value = read();
  } catch (error) {
    if (error instanceof RangeError && /call stack/i.test(error.message)) {
      throw new TypeError("Cannot decode value: it is nested too deeply");
    }
    throw error;
  }
  if (at !== end) corrupt(`${end - at} bytes after the value`);
  return value;
}

function corrupt(why: string): never {
  throw new TypeError(`Cannot decode value: ${why} at byte ${at}`);
}

function readByte(): number {
  if (at >= end) corrupt("it is truncated");
  return input[at++]!;
}

function readUint(): number {
  let byte = readByte();
  if (byte < 0x80) return byte;
  let n = byte & 0x7f;
  let scale = 128;
  for (let i = 1; i < 8; i++) {
    byte = readByte();
    n += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      if (n > Number.MAX_SAFE_INTEGER) break;
      return n;
    }
    scale *= 128;
  }
  corrupt("a varint is too long");
}

// A count of things each at least `size` bytes long, checked against what is left.
function readCount(size: number): number {
  const n = readUint();
  if (n * size > end - at) corrupt(`a length of ${n} runs past the end`);
  return n;
}

function readFloat(): number {
  if (at + 8 > end) corrupt("it is truncated");
  for (let i = 0; i < 8; i++) floatBytes[i] = input[at++]!;
  return floatView.getFloat64(0, true);
}

function readValue(): unknown {
  if (at >= end) corrupt("it is truncated");
  const tag = input[at++]!;
  if (tag >= SMALL_INT) return tag - SMALL_INT;
  if (tag >= ASCII) return readAscii(tag - ASCII);
  switch (tag) {
    case UNDEFINED:
      return undefined;
    case NULL:
      return null;
    case FALSE:
      return false;
    case TRUE:
      return true;
    case INT: {
      const n = readUint();
      if (n > 0xffffffff) corrupt("an int32 is out of range");
      return (n >>> 1) ^ -(n & 1);
    }
    case FLOAT:
      return readFloat();
    case BIGINT:
    case BIGINT_NEG:
      return readBigInt(tag);
    case UTF8:
    case UTF16:
      return readString(tag);
    case REF: {
      const id = readUint();
      const object = id < objects.length ? objects[id] : PENDING;
      if (object === PENDING) corrupt(`ref ${id} is to no object`);
      return object;
    }
    case ARRAY:
      return readArray();
    case NUMBERS:
      return readPacked();
    case SPARSE:
      return readSparse();
    case OBJECT:
      return readPlain();
    case MAP:
      return readMap();
    case SET:
      return readSet();
    case DATE:
      return keep(new Date(readFloat()));
    case REGEXP:
      return readRegExp();
    case BUFFER:
    case RESIZABLE:
      return readBuffer(tag);
    case VIEW:
      return readView();
    case ERROR:
      return readError();
    case NUMBER_OBJECT:
      return keep(new Number(readFloat()));
    case STRING_OBJECT:
      return keep(new String(readStringValue()));
    case FALSE_OBJECT:
    case TRUE_OBJECT:
      return keep(new Boolean(tag === TRUE_OBJECT));
    case BIGINT_OBJECT: {
      const inner = readByte();
      if (inner !== BIGINT && inner !== BIGINT_NEG) corrupt("a BigInt object holds no bigint");
      return keep(Object(readBigInt(inner)));
    }
    case HANDLE_TAG:
      return readHandle();
    case PORT:
      return readPort();
  }
  at--;
  corrupt(`tag 0x${tag.toString(16)} is unknown`);
}

function keep<T>(object: T): T {
  objects.push(object);
  return object;
}

function readAscii(n: number): string {
  if (at + n > end) corrupt("it is truncated");
  if (n > 16) {
    const s = utf8Decoder.decode(input.subarray(at, at + n));
    // Any byte over 0x7f either joins a sequence (shorter) or becomes U+FFFD.
    if (s.length !== n || s.includes("\uFFFD")) corrupt("an ASCII string has a byte over 0x7f");
    at += n;
    return s;
  }
  let s = "";
  for (let i = 0; i < n; i++) {
    const c = input[at++]!;
    if (c > 0x7f) corrupt("an ASCII string has a byte over 0x7f");
    s += String.fromCharCode(c);
  }
  return s;
}

function readUtf8(n: number): string {
  const bytes = input.subarray(at, at + n);
  let s = utf8Decoder.decode(bytes);
  // The fatal decoder is slower: only ask it when a U+FFFD may hide bad bytes.
  if (s.includes("\uFFFD")) {
    try {
      s = strictUtf8Decoder.decode(bytes);
    } catch {
      corrupt("a string is not UTF-8");
    }
  }
  at += n;
  return s;
}

// Object keys repeat from message to message: reuse one interned string per key, so that
// property stores find their map transition fast.
const keyCache: (string | undefined)[] = new Array(1024);

function readKey(): string {
  const tag = at < end ? input[at]! : 0;
  if (tag < ASCII || tag >= SMALL_INT) return readStringValue();
  const n = tag - ASCII;
  const from = at + 1;
  if (from + n > end) corrupt("it is truncated");
  let hash = n;
  for (let i = from; i < from + n; i++) hash = (hash * 31 + input[i]!) | 0;
  const slot = hash & 1023;
  const cached = keyCache[slot];
  if (cached !== undefined && cached.length === n) {
    let i = 0;
    while (i < n && cached.charCodeAt(i) === input[from + i]) i++;
    if (i === n) {
      at = from + n;
      return cached;
    }
  }
  at = from;
  const key = Object.keys({ [readAscii(n)]: 0 })[0]!;
  keyCache[slot] = key;
  return key;
}

function readString(tag: number): string {
  if (tag === UTF8) return readUtf8(readCount(1));
  const n = readCount(2);
  const units: number[] = [];
  let s = "";
  for (let i = 0; i < n; i++) {
    units.push(input[at]! | (input[at + 1]! << 8));
    at += 2;
    if (units.length === 4096 || i === n - 1) {
      s += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  return s;
}

function readStringValue(): string {
  const tag = readByte();
  if (tag >= ASCII && tag < SMALL_INT) return readAscii(tag - ASCII);
  if (tag === UTF8 || tag === UTF16) return readString(tag);
  at--;
  corrupt("a string is expected");
}

function readOptionalString(): string | undefined {
  if (at < end && input[at] === UNDEFINED) {
    at++;
    return undefined;
  }
  return readStringValue();
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function readBigInt(tag: number): bigint {
  const n = readCount(1);
  let hex = "0x0";
  for (let i = 0; i < n; i++) hex += HEX[input[at++]!];
  const magnitude = BigInt(hex);
  return tag === BIGINT_NEG ? -magnitude : magnitude;
}

function readArray(): unknown[] {
  const length = readCount(1);
  const array: unknown[] = [];
  objects.push(array);
  let holes = false;
  for (let i = 0; i < length; i++) {
    if (at < end && input[at] === HOLE) {
      at++;
      holes = true;
    } else array[i] = readValue();
  }
  // Trailing holes need the length set; setting it is slow, so only then.
  if (holes) array.length = length;
  return array;
}

function readItems(): unknown {
  if (input[at] !== NUMBERS) return readValue();
  at++;
  return readNumbers();
}

function readPacked(): number[] {
  const packed = readNumbers();
  const length = packed.length;
  const array: number[] = new Array(length);
  objects.push(array);
  for (let i = 0; i < length; i++) array[i] = packed[i]!;
  return array;
}

/** A packed array of numbers, its tag read, as a typed array. */
function readNumbers(): Int32Array | Float64Array {
  const length = readUint();
  const width = readByte();
  if (width !== 4 && width !== 8) corrupt(`a packed number width of ${width}`);
  if (length * width > end - at) corrupt(`a length of ${length} runs past the end`);
  let bytes = input.subarray(at, at + length * width);
  // A typed array needs its start aligned to its width.
  if (bytes.byteOffset % width !== 0) bytes = bytes.slice();
  at += length * width;
  return width === 4
    ? new Int32Array(bytes.buffer, bytes.byteOffset, length)
    : new Float64Array(bytes.buffer, bytes.byteOffset, length);
}

function readSparse(): unknown[] {
  const length = readUint();
  if (length > 0xffffffff) corrupt("an array length is out of range");
  const array: unknown[] = [];
  objects.push(array);
  array.length = length;
  while (readEnd() === false) {
    const index = readUint();
    if (index >= length) corrupt(`index ${index} is past the array length`);
    array[index] = readValue();
  }
  return array;
}

function readEnd(): boolean {
  if (at < end && input[at] === END) {
    at++;
    return true;
  }
  return false;
}

function readPlain(): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  objects.push(object);
  while (!readEnd()) {
    const key = readKey();
    const value = readValue();
    if (key === "__proto__") define(object, key, value, true);
    else object[key] = value;
  }
  return object;
}

function define(object: object, key: string, value: unknown, enumerable = false): void {
  Object.defineProperty(object, key, { value, writable: true, enumerable, configurable: true });
}

function readMap(): Map<unknown, unknown> {
  const map = keep(new Map());
  while (!readEnd()) {
    const key = readValue();
    map.set(key, readValue());
  }
  return map;
}

function readSet(): Set<unknown> {
  const set = keep(new Set());
  while (!readEnd()) set.add(readValue());
  return set;
}

function readRegExp(): RegExp {
  const source = readStringValue();
  const flags = readStringValue();
  try {
    return keep(new RegExp(source, flags));
  } catch {
    return corrupt("a RegExp is invalid");
  }
}

function readBuffer(tag: number): ArrayBuffer {
  const length = readCount(1);
  let buffer: ArrayBuffer;
  if (tag === RESIZABLE) {
    const max = readUint();
    if (max < length || max > MAX_RESIZABLE) corrupt("a maxByteLength is out of range");
    buffer = new ArrayBuffer(length, { maxByteLength: max });
    new Uint8Array(buffer).set(input.subarray(at, at + length));
  } else {
    buffer = input.slice(at, at + length).buffer;
  }
  at += length;
  return keep(buffer);
}

function readView(): ArrayBufferView {
  const id = objects.push(PENDING) - 1;
  const view = VIEWS[readByte()];
  if (view === undefined) corrupt("a view kind is unknown");
  const tag = readByte();
  let buffer: unknown;
  if (tag === BUFFER || tag === RESIZABLE) buffer = readBuffer(tag);
  else if (tag === REF) {
    at--;
    buffer = readValue();
  }
  if (!(buffer instanceof ArrayBuffer)) corrupt("a view has no buffer");
  const byteOffset = readUint();
  const length = readUint();
  try {
    return objects[id] = new view(buffer, byteOffset, length);
  } catch {
    return corrupt("a view does not fit its buffer");
  }
}

function readError(): Error {
  const flags = readByte();
  if (flags > 15) corrupt("error flags are unknown");
  const name = readStringValue();
  const message = readOptionalString();
  const stack = readOptionalString();
  let error: Error;
  const known = errorClasses.get(name);
  if (flags & ERROR_DOM) error = new DOMException(message, name);
  else if (known === AggregateError) error = new AggregateError([], message);
  else if (known !== undefined) error = new known(message);
  else {
    error = new Error(message);
    define(error, "name", name);
  }
  if (message === undefined) delete (error as { message?: string }).message;
  define(error, "stack", stack);
  objects.push(error);
  if (flags & ERROR_CAUSE) define(error, "cause", readValue());
  if (flags & ERROR_ERRORS) define(error, "errors", readValue());
  if (flags & ERROR_DATA) {
    const data = readValue();
    if (!(data instanceof Uint8Array)) corrupt("BufferTooShort data is not a Uint8Array");
    define(error, "data", data, error instanceof BufferTooShort);
  }
  return error;
}

function readHandle(): object {
  const id = objects.push(PENDING) - 1;
  const name = readStringValue();
  const descriptor = readValue();
  let kind: HandleKind;
  try {
    kind = handleKind(name);
  } catch (error) {
    return corrupt((error as Error).message);
  }
  const handle = kind.revive(descriptor, decodeContext ?? {});
  objects[id] = handle;
  return handle;
}

function readPort(): unknown {
  const index = readUint();
  const transfer = decodeContext?.transfer;
  if (transfer === undefined || index >= transfer.length) {
    corrupt(`transferred object ${index} did not come with the message`);
  }
  return keep(transfer[index]);
}
