// The authkey challenge's cryptography, shared by connections (pipe.ts) and
// managers: HMAC-SHA256 and a constant-time compare. WebCrypto, not
// node:crypto: loading Node's crypto costs every child ~18 ms at start.

// HMAC pads a short key with zeros to the hash's block: an empty key (which
// WebCrypto refuses) is the same key as 64 zero bytes.
const EMPTY_KEY = new Uint8Array(64);

/** HMAC-SHA256 of `message` under `key`. */
export async function hmacSha256(key: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  const secret = await crypto.subtle.importKey(
    "raw",
    key.length === 0 ? EMPTY_KEY : new Uint8Array(key), // WebCrypto wants its own ArrayBuffer
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", secret, new Uint8Array(message)));
}

/** Whether two byte strings are equal, in time that depends only on their length. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!;
  return difference === 0;
}
