import { deserialize, serialize } from "node:v8";
import { decode, encode } from "../_codec.ts";

const small = [42, null, "hello"];
const jsonOut = new Uint8Array(1024);
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

function viaJson(value: unknown): unknown {
  const { written } = textEncoder.encodeInto(JSON.stringify(value), jsonOut);
  return JSON.parse(textDecoder.decode(jsonOut.subarray(0, written)));
}

Deno.bench("codec encode+decode", { group: "codec small", baseline: true }, () => {
  decode(encode(small));
});
Deno.bench("JSON.stringify+encodeInto+decode+JSON.parse", { group: "codec small" }, () => {
  viaJson(small);
});
Deno.bench("structuredClone", { group: "codec small" }, () => {
  structuredClone(small);
});
Deno.bench("node:v8 serialize+deserialize", { group: "codec small" }, () => {
  deserialize(serialize(small));
});
Deno.bench("codec encode only", { group: "codec small parts" }, () => {
  encode(small);
});
const smallBytes = encode(small);
Deno.bench("codec decode only", { group: "codec small parts" }, () => {
  decode(smallBytes);
});

const medium = {
  id: 12345,
  name: "worker-7",
  ratio: 0.75,
  negative: -42,
  big: 2 ** 40,
  flag: true,
  nothing: null,
  missing: undefined,
  when: new Date(1_700_000_000_000),
  tags: ["alpha", "beta", "gamma"],
  matrix: [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
  lookup: new Map<string, number>([["a", 1], ["b", 2], ["c", 3]]),
  seen: new Set([1, 2, 3]),
  nested: { depth: 1, inner: { depth: 2, items: [1.5, 2.5] } },
  text: "The quick brown fox jumps over the lazy dog",
  unicode: "héllo wörld ✓",
  counter: 7n,
  pattern: /ab+c/gi,
  bytes: new Uint8Array([1, 2, 3, 4]),
  list: [{ k: 1 }, { k: 2 }],
};

Deno.bench("codec encode+decode", { group: "codec medium", baseline: true }, () => {
  decode(encode(medium));
});
Deno.bench("structuredClone", { group: "codec medium" }, () => {
  structuredClone(medium);
});
Deno.bench("node:v8 serialize+deserialize", { group: "codec medium" }, () => {
  deserialize(serialize(medium));
});

const large = new Uint8Array(64 * 1024).map((_, i) => i & 0xff);

Deno.bench("codec encode+decode", { group: "codec 64 KiB Uint8Array", baseline: true }, () => {
  decode(encode(large));
});
Deno.bench("structuredClone", { group: "codec 64 KiB Uint8Array" }, () => {
  structuredClone(large);
});
Deno.bench("node:v8 serialize+deserialize", { group: "codec 64 KiB Uint8Array" }, () => {
  deserialize(serialize(large));
});
