import assert from "node:assert/strict";
import { hmacSha256, sameBytes } from "../_hmac.ts";

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const text = (s: string) => new TextEncoder().encode(s);

Deno.test("hmacSha256 gives RFC 4231's digests", async () => {
  // Test case 2 of RFC 4231.
  assert.equal(
    hex(await hmacSha256(text("Jefe"), text("what do ya want for nothing?"))),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  );
  // Test case 6: a key longer than the block is hashed first.
  assert.equal(
    hex(
      await hmacSha256(
        new Uint8Array(131).fill(0xaa),
        text("Test Using Larger Than Block-Size Key - Hash Key First"),
      ),
    ),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
  );
});

Deno.test("hmacSha256 takes an empty key, as 64 zero bytes", async () => {
  const message = text("challenge");
  assert.deepEqual(
    await hmacSha256(new Uint8Array(0), message),
    await hmacSha256(new Uint8Array(64), message),
  );
  assert.notDeepEqual(
    await hmacSha256(new Uint8Array(0), message),
    await hmacSha256(text("k"), message),
  );
});

Deno.test("sameBytes compares whole byte strings", () => {
  assert.equal(sameBytes(text("abc"), text("abc")), true);
  assert.equal(sameBytes(text("abc"), text("abd")), false);
  assert.equal(sameBytes(text("abc"), text("ab")), false);
  assert.equal(sameBytes(new Uint8Array(0), new Uint8Array(0)), true);
});
