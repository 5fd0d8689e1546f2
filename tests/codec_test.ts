import assert from "node:assert/strict";
import {
  decode,
  decodeItems,
  encode,
  encodeNumbers,
  encodeParts,
  encodeSlice,
  encodeView,
  PART_MIN,
  seal,
  VIEW_MAX,
} from "../_codec.ts";
import {
  type DecodeContext,
  type EncodeContext,
  HANDLE,
  type HandleKind,
  registerHandleKind,
} from "../_handles.ts";
import {
  AuthenticationError,
  BrokenBarrierError,
  BufferTooShort,
  DataCloneError,
  Empty,
  EOFError,
  Full,
  ProcessError,
  RemoteError,
  ShutDown,
  TimeoutError,
  ValueError,
  WorkerLostError,
} from "../errors.ts";

function roundTrip<T>(value: T, context?: EncodeContext, back?: DecodeContext): T {
  return decode(encode(value, context), back) as T;
}

function cloneCases(): [string, unknown][] {
  const buffer = new ArrayBuffer(16);
  new Uint8Array(buffer).set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  const cases: [string, unknown][] = [
    ["undefined", undefined],
    ["null", null],
    ["true", true],
    ["false", false],
    ["zero", 0],
    ["negative zero", -0],
    ["small int", 127],
    ["int past a byte", 128],
    ["negative int", -1],
    ["int32 min", -(2 ** 31)],
    ["int32 max", 2 ** 31 - 1],
    ["past int32", 2 ** 31],
    ["safe max", Number.MAX_SAFE_INTEGER],
    ["float", 3.14159],
    ["tiny float", 5e-324],
    ["NaN", NaN],
    ["Infinity", Infinity],
    ["-Infinity", -Infinity],
    ["empty string", ""],
    ["ascii", "hello"],
    ["ascii of 63", "x".repeat(63)],
    ["ascii of 64", "y".repeat(64)],
    ["long ascii", "The quick brown fox ".repeat(500)],
    ["latin-1", "héllo wörld"],
    ["bmp", "✓ 中文 Ελληνικά"],
    ["astral", "😀🎉 emoji"],
    ["BOM first", "\uFEFFbom"],
    ["NUL", "a\0b"],
    ["lone high surrogate", "a\uD800b"],
    ["lone low surrogate", "\uDC00"],
    ["long lone surrogate", "\uD83D".repeat(100) + "z"],
    ["bigint zero", 0n],
    ["bigint", 123456789012345678901234567890n],
    ["negative bigint", -98765432109876543210n],
    ["huge bigint", 2n ** 4096n + 1n],
    ["int64 edge", -(2n ** 63n)],
    ["empty array", []],
    ["array", [42, null, "hello"]],
    ["nested arrays", [[1, [2, [3, []]]]]],
    ["array with undefined", [undefined, undefined]],
    ["empty object", {}],
    ["object", { a: 1, b: "two", c: [3], d: { e: null } }],
    ["numeric keys", { 2: "b", 1: "a", x: "c" }],
    ["odd keys", { "": 1, "with space": 2, "ключ": 3, "\uD800": 4 }],
    ["__proto__ key", JSON.parse('{"__proto__": {"polluted": true}}')],
    ["Map", new Map<unknown, unknown>([[1, "a"], ["b", { c: 2 }], [{ k: 1 }, [3]]])],
    ["Set", new Set<unknown>([1, "a", { b: 2 }, [3]])],
    ["Date", new Date(1_700_000_000_123)],
    ["invalid Date", new Date(NaN)],
    ["RegExp", /a+b*\//gimsuy],
    ["RegExp u", /\p{L}+/u],
    ["ArrayBuffer", buffer],
    ["empty ArrayBuffer", new ArrayBuffer(0)],
    ["resizable ArrayBuffer", new ArrayBuffer(4, { maxByteLength: 64 })],
    ["Int8Array", new Int8Array([-128, 0, 127])],
    ["Uint8Array", new Uint8Array([0, 255])],
    ["Uint8ClampedArray", new Uint8ClampedArray([0, 255])],
    ["Int16Array", new Int16Array([-32768, 32767])],
    ["Uint16Array", new Uint16Array([65535])],
    ["Int32Array", new Int32Array([-(2 ** 31)])],
    ["Uint32Array", new Uint32Array([2 ** 32 - 1])],
    ["Float32Array", new Float32Array([1.5, NaN, -0])],
    ["Float64Array", new Float64Array([Math.PI, -Infinity])],
    ["BigInt64Array", new BigInt64Array([-(2n ** 63n)])],
    ["BigUint64Array", new BigUint64Array([2n ** 64n - 1n])],
    ["DataView", new DataView(buffer, 2, 5)],
    ["view with offset", new Uint16Array(buffer, 4, 3)],
    ["subarray", new Uint8Array(buffer).subarray(3, 9)],
    ["Number object", new Number(-0)],
    ["String object", new String("boxed ✓")],
    ["Boolean object", new Boolean(false)],
    ["true Boolean object", new Boolean(true)],
    ["BigInt object", Object(-5n)],
    [
      "class instance",
      new (class Point {
        x = 1;
        y = 2;
      })(),
    ],
    ["null prototype", Object.assign(Object.create(null), { a: 1 })],
    ["getter", {
      get g() {
        return 7;
      },
    }],
    ["Error", new Error("plain")],
    ["TypeError with cause", new TypeError("bad", { cause: { code: 1 } })],
    ["RangeError", new RangeError("range")],
    ["mixed", {
      id: 12345,
      tags: ["a", "b"],
      when: new Date(0),
      lookup: new Map([["a", 1]]),
      bytes: new Uint8Array([1, 2, 3]),
      nested: { deep: { deeper: [1.5, -2] } },
    }],
  ];
  const Float16 = (globalThis as { Float16Array?: new (values: number[]) => unknown })
    .Float16Array;
  if (Float16 !== undefined) cases.push(["Float16Array", new Float16([1.5, -2])]);
  return cases;
}

Deno.test("encode() and decode() round-trip like structuredClone", async (t) => {
  for (const [name, value] of cloneCases()) {
    await t.step(name, () => {
      assert.deepEqual(roundTrip(value), structuredClone(value));
    });
  }
});

Deno.test("encode() keeps the types, prototypes and exact values", async (t) => {
  await t.step("negative zero", () => assert.ok(Object.is(roundTrip(-0), -0)));
  await t.step("lone surrogates", () => {
    const s = "\uD800x\uDFFF" + "\uDBFF".repeat(70);
    assert.equal(roundTrip(s), s);
  });
  await t.step("null prototype becomes Object.prototype", () => {
    const decoded = roundTrip(Object.create(null));
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
  });
  await t.step("class instance becomes a plain object", () => {
    class Thing {
      own = 1;
      method(): number {
        return 1;
      }
    }
    const decoded = roundTrip(new Thing());
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
    assert.deepEqual(decoded, { own: 1 });
  });
  await t.step("__proto__ stays an own property", () => {
    const decoded = roundTrip(JSON.parse('{"__proto__": {"x": 1}}')) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
    assert.ok(Object.hasOwn(decoded, "__proto__"));
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });
  await t.step("RegExp drops lastIndex", () => {
    const regexp = /a/g;
    regexp.lastIndex = 3;
    assert.equal(roundTrip(regexp).lastIndex, 0);
  });
  await t.step("resizable ArrayBuffer stays resizable", () => {
    const decoded = roundTrip(new ArrayBuffer(4, { maxByteLength: 64 }));
    assert.ok(decoded.resizable);
    assert.equal(decoded.maxByteLength, 64);
  });
  await t.step("a subclass of Uint8Array arrives as Uint8Array", () => {
    class Bytes extends Uint8Array {}
    const decoded = roundTrip(new Bytes([1, 2]));
    assert.equal(Object.getPrototypeOf(decoded), Uint8Array.prototype);
  });
  await t.step("boxed primitives", () => {
    assert.ok(roundTrip(new Number(1)) instanceof Number);
    assert.ok(roundTrip(new String("s")) instanceof String);
    assert.ok(roundTrip(Object(1n)) instanceof BigInt);
    assert.equal(roundTrip(new Boolean(true)).valueOf(), true);
  });
  await t.step("small ints are one byte", () => {
    assert.equal(encode(0).length, 1);
    assert.equal(encode(127).length, 1);
    assert.equal(encode("hello").length, 6);
  });
});

Deno.test("encode() keeps holes and the length of sparse arrays", async (t) => {
  await t.step("one hole", () => {
    // deno-lint-ignore no-sparse-arrays
    const decoded = roundTrip([1, , 3]);
    assert.equal(decoded.length, 3);
    assert.equal(1 in decoded, false);
    assert.equal(decoded[2], 3);
  });
  await t.step("trailing holes", () => {
    const array = [1];
    array.length = 5;
    const decoded = roundTrip(array);
    assert.equal(decoded.length, 5);
    assert.equal(4 in decoded, false);
  });
  await t.step("a huge sparse array stays small", () => {
    const array: unknown[] = [];
    array[1e9] = "far";
    array[5] = "near";
    const bytes = encode(array);
    assert.ok(bytes.length < 64);
    const decoded = decode(bytes) as unknown[];
    assert.equal(decoded.length, 1e9 + 1);
    assert.equal(decoded[1e9], "far");
    assert.equal(decoded[5], "near");
    assert.equal(6 in decoded, false);
  });
  await t.step("a long dense array", () => {
    const array = Array.from({ length: 5000 }, (_, i) => i * 1.5);
    assert.deepEqual(roundTrip(array), array);
  });
});

Deno.test("encode() keeps shared references and cycles", async (t) => {
  await t.step("shared object", () => {
    const shared = { n: 1 };
    const decoded = roundTrip({ a: shared, b: [shared] });
    assert.equal(decoded.a, decoded.b[0]);
  });
  await t.step("self cycle", () => {
    const a: Record<string, unknown> = { name: "a" };
    a.self = a;
    const decoded = roundTrip(a);
    assert.equal(decoded.self, decoded);
  });
  await t.step("cycle through Map, Set and array", () => {
    const map = new Map<string, unknown>();
    const set = new Set<unknown>([map]);
    const array: unknown[] = [set];
    map.set("back", array);
    const decoded = roundTrip(array);
    const decodedSet = decoded[0] as Set<unknown>;
    const decodedMap = [...decodedSet][0] as Map<string, unknown>;
    assert.equal(decodedMap.get("back"), decoded);
  });
  await t.step("two views share one buffer", () => {
    const buffer = new ArrayBuffer(8);
    const bytes = new Uint8Array(buffer);
    const words = new Uint16Array(buffer, 2, 2);
    const decoded = roundTrip({ bytes, words, buffer });
    assert.equal(decoded.bytes.buffer, decoded.words.buffer);
    assert.equal(decoded.buffer, decoded.bytes.buffer);
    decoded.words[0] = 0xffff;
    assert.equal(decoded.bytes[2], 0xff);
    assert.equal(decoded.words.byteOffset, 2);
  });
  await t.step("a view keeps its whole buffer", () => {
    const view = new Uint8Array([1, 2, 3, 4]).subarray(1, 3);
    const decoded = roundTrip(view);
    assert.equal(decoded.buffer.byteLength, 4);
    assert.equal(decoded.byteOffset, 1);
    assert.deepEqual([...decoded], [2, 3]);
  });
  await t.step("error cause cycle", () => {
    const error = new Error("loop");
    error.cause = error;
    const decoded = roundTrip(error);
    assert.equal(decoded.cause, decoded);
  });
});

Deno.test("encode() rebuilds errors by name with the sender's stack", async (t) => {
  const builtins = [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError];
  for (const Class of builtins) {
    await t.step(Class.name, () => {
      const error = new Class("boom");
      const decoded = roundTrip(error);
      assert.ok(decoded instanceof Class);
      assert.equal(decoded.name, Class.name);
      assert.equal(decoded.message, "boom");
      assert.equal(decoded.stack, error.stack);
    });
  }
  const ours = [
    ProcessError,
    Empty,
    Full,
    ShutDown,
    EOFError,
    AuthenticationError,
    TimeoutError,
    ValueError,
    BrokenBarrierError,
    RemoteError,
    WorkerLostError,
    DataCloneError,
  ];
  for (const Class of ours) {
    await t.step(Class.name, () => {
      const decoded = roundTrip(new Class("ours"));
      assert.ok(decoded instanceof Class);
      assert.ok(decoded instanceof ProcessError);
      assert.equal(decoded.name, Class.name);
      assert.equal(decoded.message, "ours");
    });
  }
  await t.step("BufferTooShort carries data", () => {
    const decoded = roundTrip(new BufferTooShort("short", new Uint8Array([1, 2, 3])));
    assert.ok(decoded instanceof BufferTooShort);
    assert.deepEqual(decoded.data, new Uint8Array([1, 2, 3]));
  });
  await t.step("AggregateError carries errors", () => {
    const decoded = roundTrip(new AggregateError([new TypeError("a"), 2], "many"));
    assert.ok(decoded instanceof AggregateError);
    assert.equal(decoded.message, "many");
    assert.ok(decoded.errors[0] instanceof TypeError);
    assert.equal(decoded.errors[1], 2);
  });
  await t.step("cause is restored", () => {
    const decoded = roundTrip(new Error("outer", { cause: new RangeError("inner") }));
    assert.ok(decoded.cause instanceof RangeError);
    assert.equal((decoded.cause as Error).message, "inner");
    assert.ok(Object.hasOwn(decoded, "cause"));
    assert.equal(Object.keys(decoded).length, 0);
  });
  await t.step("no cause stays no cause", () => {
    assert.equal(Object.hasOwn(roundTrip(new Error("x")), "cause"), false);
  });
  await t.step("unknown name becomes an Error with that name", () => {
    class CustomError extends Error {
      override name = "CustomError";
    }
    const error = new CustomError("custom");
    const decoded = roundTrip(error);
    assert.equal(Object.getPrototypeOf(decoded), Error.prototype);
    assert.equal(decoded.name, "CustomError");
    assert.equal(decoded.message, "custom");
    assert.equal(decoded.stack, error.stack);
  });
  await t.step("DOMException", () => {
    const decoded = roundTrip(new DOMException("stopped", "AbortError"));
    assert.ok(decoded instanceof DOMException);
    assert.equal(decoded.name, "AbortError");
    assert.equal(decoded.message, "stopped");
  });
  await t.step("Deno errors", () => {
    const decoded = roundTrip(new Deno.errors.NotFound("gone"));
    assert.ok(decoded instanceof Deno.errors.NotFound);
  });
});

function cloneFailure(value: unknown, label?: string): string {
  try {
    encode(value, undefined, label);
  } catch (error) {
    assert.ok(error instanceof DataCloneError);
    return error.message;
  }
  assert.fail("encode() did not throw");
}

Deno.test("encode() throws DataCloneError naming where the value fails", async (t) => {
  const fn = () => {};
  const cases: [string, unknown, string][] = [
    ["top level", fn, "Cannot serialize value: a function cannot be cloned"],
    ["array index", [1, fn], "Cannot serialize value[1]: a function cannot be cloned"],
    ["object key", { a: { b: [0, 1, Symbol("s")] } }, "value.a.b[2]: a symbol cannot be cloned"],
    ["odd key", { "a b": fn }, 'value["a b"]: a function'],
    ["Map key", new Map([[fn, 1]]), "value<Map key>: a function"],
    ["Map value", { m: new Map([["k", { fn }]]) }, "value.m<Map value>.fn: a function"],
    ["Set member", new Set([fn]), "value<Set member>: a function"],
    ["error cause", new Error("e", { cause: { fn } }), "value.cause.fn: a function"],
    ["WeakMap", [new WeakMap()], "value[0]: a WeakMap cannot be cloned"],
    ["WeakSet", new WeakSet(), "value: a WeakSet cannot be cloned"],
    ["WeakRef", new WeakRef({}), "value: a WeakRef cannot be cloned"],
    ["Promise", { p: Promise.resolve() }, "value.p: a Promise cannot be cloned"],
    ["Symbol object", Object(Symbol("s")), "value: a Symbol cannot be cloned"],
    ["URL", new URL("http://x"), "value: a URL cannot be cloned"],
    ["AbortSignal", new AbortController().signal, "value: an EventTarget cannot be cloned"],
    ["SharedArrayBuffer", new SharedArrayBuffer(8), "value: a SharedArrayBuffer"],
    ["symbol", Symbol("s"), "Cannot serialize value: a symbol cannot be cloned"],
  ];
  for (const [name, value, expected] of cases) {
    await t.step(
      name,
      () => assert.ok(cloneFailure(value).includes(expected), cloneFailure(value)),
    );
  }
  await t.step("label", () => {
    assert.equal(
      cloneFailure([{ fn }], "args"),
      "Cannot serialize args[0].fn: a function cannot be cloned",
    );
  });
  await t.step("detached ArrayBuffer", () => {
    const buffer = new ArrayBuffer(8);
    buffer.transfer();
    assert.match(cloneFailure(buffer), /detached ArrayBuffer/);
  });
  await t.step("the next encode is clean after a failure", () => {
    const shared = { x: 1 };
    cloneFailure([shared, fn]);
    assert.deepEqual(roundTrip([shared, shared]), [{ x: 1 }, { x: 1 }]);
  });
});

interface Counter {
  [HANDLE]: typeof counterKind;
  id: number;
  inner?: Counter;
}

const calls = { describe: 0, revive: 0 };

const counterKind = registerHandleKind<Counter, { id: number; inner?: Counter }>({
  name: "test-codec-kind",
  module: import.meta.url,
  describe(handle, context) {
    calls.describe++;
    context.commit?.push(() => {});
    return handle.inner === undefined ? { id: handle.id } : { id: handle.id, inner: handle.inner };
  },
  revive(descriptor) {
    calls.revive++;
    // Tolerant, so that the fuzz test's damaged descriptors only test the codec.
    const { id, inner } = (descriptor ?? {}) as { id?: number; inner?: Counter };
    return makeCounter(id ?? 0, inner);
  },
});

function makeCounter(id: number, inner?: Counter): Counter {
  return inner === undefined ? { [HANDLE]: counterKind, id } : { [HANDLE]: counterKind, id, inner };
}

interface Wrapped {
  [HANDLE]: unknown;
  payload: unknown;
}

const bytesKind: HandleKind<Wrapped, Uint8Array> = registerHandleKind<Wrapped, Uint8Array>({
  name: "test-codec-bytes-kind",
  module: import.meta.url,
  // A nested encode from inside an encode.
  describe: (handle) => encode(handle.payload),
  revive(descriptor): Wrapped {
    return { [HANDLE]: bytesKind, payload: decode(descriptor) };
  },
});

Deno.test("encode() sends handles as descriptors and decode() revives them", async (t) => {
  await t.step("describe and revive are called", () => {
    calls.describe = calls.revive = 0;
    const decoded = roundTrip({ counter: makeCounter(7) });
    assert.equal(calls.describe, 1);
    assert.equal(calls.revive, 1);
    assert.equal(decoded.counter.id, 7);
    assert.equal(decoded.counter[HANDLE], counterKind);
  });
  await t.step("nested handles", () => {
    const decoded = roundTrip([makeCounter(1, makeCounter(2))]);
    assert.equal(decoded[0]!.inner!.id, 2);
    assert.equal(decoded[0]!.inner![HANDLE], counterKind);
  });
  await t.step("the same handle twice is one object", () => {
    calls.describe = calls.revive = 0;
    const counter = makeCounter(3);
    const decoded = roundTrip({ first: counter, again: [counter] });
    assert.equal(decoded.first, decoded.again[0]);
    assert.equal(calls.describe, 1);
    assert.equal(calls.revive, 1);
  });
  await t.step("describe gets the context, commit is left to the caller", () => {
    const commit: (() => void)[] = [];
    roundTrip(makeCounter(4), { commit });
    assert.equal(commit.length, 1);
  });
  await t.step("a failure rolls back what this encode added to the context", () => {
    const commit: (() => void)[] = [];
    assert.throws(() => encode([makeCounter(5), () => {}], { commit }), DataCloneError);
    assert.equal(commit.length, 0);
  });
  await t.step("a nested encode in describe does not disturb the outer one", () => {
    const shared = { s: 1 };
    const value = [shared, { [HANDLE]: bytesKind, payload: [shared, "inner"] }, shared, "tail"];
    const decoded = roundTrip(value);
    assert.equal(decoded[0], decoded[2]);
    assert.equal(decoded[3], "tail");
    assert.deepEqual((decoded[1] as { payload: unknown }).payload, [{ s: 1 }, "inner"]);
  });
  await t.step("a descriptor failure names the handle", () => {
    const bad = { [HANDLE]: counterKind, id: () => 1 } as unknown as Counter;
    assert.equal(
      cloneFailure({ h: makeCounter(1, bad) }),
      "Cannot serialize value.h<test-codec-kind descriptor>.inner<test-codec-kind descriptor>.id: " +
        "a function cannot be cloned",
    );
  });
  await t.step("an unknown kind cannot be decoded", () => {
    const bytes = encode(makeCounter(1));
    bytes[bytes.indexOf("k".charCodeAt(0))] = "q".charCodeAt(0);
    assert.throws(() => decode(bytes), /^TypeError: Cannot decode value: Cannot revive/);
  });
});

Deno.test("encode() transfers MessagePorts only to a worker", async (t) => {
  const { port1, port2 } = new MessageChannel();
  try {
    await t.step("without a transfer list", () => {
      assert.equal(
        cloneFailure({ port: port1 }),
        "Cannot serialize value.port: a MessagePort can only be sent to a worker",
      );
    });
    await t.step("with a transfer list", () => {
      const transfer: Transferable[] = [];
      const bytes = encode({ a: port1, b: [port1, port2] }, { transfer });
      assert.deepEqual(transfer, [port1, port2]);
      const decoded = decode(bytes, { transfer }) as { a: MessagePort; b: MessagePort[] };
      assert.equal(decoded.a, port1);
      assert.equal(decoded.b[0], port1);
      assert.equal(decoded.b[1], port2);
    });
    await t.step("a port already in the list is not pushed again", () => {
      const transfer: Transferable[] = [port2];
      const bytes = encode([port1, port2], { transfer });
      assert.deepEqual(transfer, [port2, port1]);
      assert.deepEqual(decode(bytes, { transfer }), [port1, port2]);
    });
    await t.step("a failure takes the ports back out", () => {
      const transfer: Transferable[] = [];
      assert.throws(() => encode([port1, () => {}], { transfer }), DataCloneError);
      assert.equal(transfer.length, 0);
    });
    await t.step("a missing port cannot be decoded", () => {
      const bytes = encode(port1, { transfer: [] });
      assert.throws(() => decode(bytes), /^TypeError: Cannot decode/);
      assert.throws(() => decode(bytes, { transfer: [] }), /^TypeError: Cannot decode/);
    });
  } finally {
    port1.close();
    port2.close();
  }
});

Deno.test("decode() rejects trailing, truncated and unknown bytes", () => {
  const bytes = encode({ a: [1, "two"] });
  assert.throws(() => decode(new Uint8Array([...bytes, 0])), /^TypeError: Cannot decode/);
  assert.throws(() => decode(bytes.subarray(0, bytes.length - 1)), /^TypeError: Cannot decode/);
  assert.throws(() => decode(new Uint8Array()), /^TypeError: Cannot decode/);
  assert.throws(() => decode(new Uint8Array([0x3f])), /^TypeError: Cannot decode/);
  // An ASCII string with a byte over 0x7f, short and long.
  assert.throws(() => decode(new Uint8Array([0x41, 0xe9])), /^TypeError: Cannot decode/);
  const long = new Uint8Array(41).fill(0x61);
  long[0] = 0x40 + 40;
  long[20] = 0xc3;
  assert.throws(() => decode(long), /^TypeError: Cannot decode/);
  // UTF-8 that is not.
  assert.throws(() => decode(new Uint8Array([0x08, 2, 0xc3, 0x28])), /^TypeError: Cannot decode/);
  // A length far past the end allocates nothing.
  assert.throws(
    () => decode(new Uint8Array([0x12, 0xff, 0xff, 0xff, 0xff, 0x0f])),
    /^TypeError: Cannot decode/,
  );
  // A ref to nothing.
  assert.throws(() => decode(new Uint8Array([0x0a, 0])), /^TypeError: Cannot decode/);
});

Deno.test("decode() of nesting too deep throws TypeError", () => {
  const bytes = new Uint8Array(200_000);
  for (let i = 0; i < bytes.length; i += 2) bytes.set([0x0b, 1], i);
  assert.throws(() => decode(bytes), /^TypeError: Cannot decode/);
});

function prng(seed: number): () => number {
  // mulberry32
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function decodesOrRejects(bytes: Uint8Array): void {
  try {
    decode(bytes, { transfer: [] });
  } catch (error) {
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, /^Cannot decode/);
  }
}

Deno.test("decode() of random or damaged bytes decodes or throws TypeError", async (t) => {
  const random = prng(0xc0dec);
  await t.step("random bytes", () => {
    for (let i = 0; i < 3000; i++) {
      const bytes = new Uint8Array(Math.floor(random() * 64));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
      // Bias toward real tags so that containers nest.
      if (bytes.length > 0 && random() < 0.5) bytes[0] = Math.floor(random() * 0x20);
      decodesOrRejects(bytes);
    }
  });
  await t.step("mutated and truncated encodings", () => {
    const valid = cloneCases()
      .filter(([name]) => !name.startsWith("huge") && !name.startsWith("long"))
      .map(([, value]) => encode(value));
    valid.push(encode(makeCounter(1, makeCounter(2))));
    for (let i = 0; i < 4000; i++) {
      const source = valid[i % valid.length]!;
      const bytes = source.slice();
      const mode = Math.floor(random() * 3);
      if (mode === 0) {
        decodesOrRejects(bytes.subarray(0, Math.floor(random() * bytes.length)));
        continue;
      }
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips && bytes.length > 0; f++) {
        const at = Math.floor(random() * bytes.length);
        bytes[at] = mode === 1 ? Math.floor(random() * 256) : bytes[at]! ^ (1 << (f % 8));
      }
      decodesOrRejects(bytes);
    }
  });
});

Deno.test("encode() packs arrays of numbers and keeps every value", async (t) => {
  const ints = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 2003 - 1000);
  const cases: [string, number[]][] = [
    ["int32s", ints],
    ["int32 extremes", [...ints.slice(0, 20), 2 ** 31 - 1, -(2 ** 31)]],
    ["doubles", ints.map((n) => n / 3)],
    ["ints with one double", [...ints.slice(0, 20), 0.5]],
    ["ints beyond int32", [...ints.slice(0, 20), 2 ** 31, -(2 ** 31) - 1, 2 ** 53]],
    ["special doubles", [...ints.slice(0, 16), -0, NaN, Infinity, -Infinity, Number.MIN_VALUE]],
    ["int32s and one -0", [0, ...ints.slice(0, 20), -0, 0]],
    ["int32s and zeros", [0, ...ints.slice(0, 20), 0]],
    ["exactly 16", ints.slice(0, 16)],
  ];
  for (const [name, array] of cases) {
    await t.step(name, () => {
      const back = roundTrip(array);
      assert.equal(back.length, array.length);
      for (let i = 0; i < array.length; i++) assert.ok(Object.is(back[i], array[i]), `[${i}]`);
    });
  }
  await t.step("is smaller than value by value", () => {
    // 1000 int32s: 4 bytes each, where most of them take 3 value by value.
    assert.ok(encode(ints).length < 4_020);
    assert.ok(encode([0, ...ints, 0]).length < 4_030, "zeros are int32s too");
  });
  await t.step("a packed array referenced twice stays one array", () => {
    const shared = ints.slice(0, 32);
    const [a, b] = roundTrip([shared, shared]);
    assert.equal(a, b);
    assert.deepEqual(a, shared);
  });
  await t.step("an array with holes or other values is not packed", () => {
    const holey = ints.slice(0, 20);
    delete holey[3];
    const back = roundTrip(holey);
    assert.ok(!(3 in back));
    assert.deepEqual(roundTrip([...ints.slice(0, 20), "x"]), [...ints.slice(0, 20), "x"]);
  });
  await t.step("decodes from bytes at any alignment", () => {
    for (const array of [ints, ints.map((n) => n / 3)]) {
      const bytes = encode(array);
      for (let shift = 0; shift < 8; shift++) {
        const moved = new Uint8Array(bytes.length + shift);
        moved.set(bytes, shift);
        assert.deepEqual(decode(moved.subarray(shift)), array, `shifted by ${shift}`);
      }
    }
  });
  await t.step("a short array after a long one takes only its own values", () => {
    encode(ints.map((n) => n / 3));
    assert.deepEqual(roundTrip(ints.slice(0, 17)), ints.slice(0, 17));
    assert.deepEqual(roundTrip([0.25, ...ints.slice(0, 16)]), [0.25, ...ints.slice(0, 16)]);
  });
  await t.step("a bad width or length is refused", () => {
    const bytes = encode(ints.slice(0, 16));
    const badWidth = bytes.slice();
    badWidth[badWidth.indexOf(4, 2)] = 3;
    assert.throws(() => decode(badWidth), TypeError);
    assert.throws(() => decode(bytes.subarray(0, bytes.length - 1)), TypeError);
  });
});

Deno.test("encodeNumbers() and decodeItems() read and write packed arrays without an Array", async (t) => {
  const ints = Array.from({ length: 40 }, (_, i) => (i * 7919) % 2003 - 1000);
  await t.step("encodeNumbers() writes what encode() writes for the numbers", () => {
    assert.deepEqual(encodeNumbers(Int32Array.from(ints)), encode(ints));
    const doubles = ints.map((n) => n / 3);
    assert.deepEqual(encodeNumbers(Float64Array.from(doubles)), encode(doubles));
    const inside = new Int32Array(64).subarray(8, 8 + ints.length);
    inside.set(ints);
    assert.deepEqual(decode(encodeNumbers(inside)), ints, "a view at an offset");
    assert.deepEqual(decode(encodeNumbers(new Int32Array(0))), []);
  });
  await t.step("decodeItems() gives packed numbers as their typed array", () => {
    const items = decodeItems(encode(ints));
    assert.ok(items instanceof Int32Array);
    assert.deepEqual(Array.from(items), ints);
    const doubles = decodeItems(encode(ints.map((n) => n + 0.5)));
    assert.ok(doubles instanceof Float64Array);
    assert.deepEqual(Array.from(doubles), ints.map((n) => n + 0.5));
    const moved = new Uint8Array(encode(ints).length + 1);
    moved.set(encode(ints), 1);
    assert.deepEqual(Array.from(decodeItems(moved.subarray(1))), ints, "unaligned bytes");
  });
  await t.step("decodeItems() decodes anything else as decode() does", () => {
    const other = [[1, 2], "x", ...ints];
    assert.deepEqual(decodeItems(encode(other)), other);
    assert.deepEqual(decodeItems(encode(ints.slice(0, 3))), ints.slice(0, 3));
    assert.throws(() => decodeItems(encode(ints).subarray(0, 20)), TypeError);
    assert.throws(() => decodeItems(new Uint8Array(0)), TypeError);
  });
});

Deno.test("encodeSlice() writes what encode() writes for the slice", () => {
  const ints = Array.from({ length: 100 }, (_, i) => i * 3 - 50);
  const cases: [unknown[], number, number][] = [
    [ints, 0, 100],
    [ints, 10, 60], // ints, packed
    [ints, 90, 100], // too short to pack
    [ints, 5, 5],
    [ints.map((n) => n / 4), 3, 70], // doubles
    [[...ints.slice(0, 30), -0, ...ints.slice(30)], 20, 50], // -0 is no int32
    [[...ints.slice(0, 40), "x", ...ints.slice(40)], 20, 60], // not all numbers
    [[...ints.slice(0, 40), "x", ...ints.slice(40)], 50, 90], // numbers after the stray
  ];
  for (const [array, from, to] of cases) {
    assert.deepEqual(encodeSlice(array, from, to), encode(array.slice(from, to)), `${from}..${to}`);
  }
  const holes = [1, 2, , 4, ...ints];
  assert.deepEqual(encodeSlice(holes, 1, 40), encode(holes.slice(1, 40)), "holes stay holes");
  const shared = { a: 1 };
  const objects = [shared, 2, shared, [shared]];
  const copy = decode(encodeSlice(objects, 0, 4)) as unknown[];
  assert.equal(copy[0], copy[2], "references within the slice are kept");
  assert.throws(() => encodeSlice([1, () => {}], 0, 2, undefined, "items"), DataCloneError);
});

Deno.test("encodeView() returns the bytes encode() would, in the codec's buffer", () => {
  const value = [42, null, "hello", new Map([[1, { a: [1n] }]])];
  const view = encodeView(value);
  assert.deepEqual(view, encode(value));
  const first = encodeView("first").slice();
  const again = encodeView("first");
  assert.deepEqual(again, first);
  // The next encode reuses the buffer: a view is only good until then.
  encodeView("other");
  assert.notDeepEqual(again, first);
  assert.deepEqual(decode(first), "first");
});

const join = (parts: Uint8Array[]) => {
  const all = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
};

Deno.test("encodeParts() sends sealed buffers from where they are; its parts join into encode()'s bytes", () => {
  const a = seal(new Uint8Array(PART_MIN * 2).fill(7));
  const b = seal(new Uint8Array(PART_MIN).fill(9));
  const value = [1, a, "x".repeat(VIEW_MAX), { b, again: a }, new Uint8Array(PART_MIN)];
  const parts = encodeParts(value);
  assert.equal(parts.length, 5, "two sealed buffers cut the encoding in five");
  assert.equal(parts[1]!.buffer, a.buffer, "not copied");
  assert.equal(parts[3]!.buffer, b.buffer, "not copied");
  const whole = join(parts);
  assert.deepEqual(whole, encode(value));
  // A part of the codec's buffer this long is a copy: the next encode leaves it be.
  const head = parts[2]!.slice();
  encode(["other", "y".repeat(VIEW_MAX * 2)]);
  assert.deepEqual(parts[2], head);
  const back = decode(whole) as [number, Uint8Array, string, { b: Uint8Array; again: Uint8Array }];
  assert.deepEqual(back, value);
  assert.equal(back[3].again, back[1], "a buffer sent twice is one object");
});

Deno.test("encodeParts() copies what is not sealed or short, and fails whole", () => {
  const loose = new Uint8Array(PART_MIN * 2).fill(1);
  const short = seal(new Uint8Array(PART_MIN - 1).fill(2));
  for (const value of [[loose], [short], "plain"]) {
    const parts = encodeParts(value);
    assert.equal(parts.length, 1);
    assert.deepEqual(parts[0], encode(value));
  }
  const sealed = seal(new Uint8Array(PART_MIN).fill(3));
  assert.throws(() => encodeParts([sealed, () => {}]), DataCloneError);
  // Nothing of the failed call is left over for the next one.
  const parts = encodeParts([sealed]);
  assert.equal(parts.length, 3);
  assert.deepEqual(join(parts), encode([sealed]));
});
