/**
 * The symmetric primitives (lib/crypto/primitives.ts) against WebCrypto used directly, as an
 * independent peer: small records take the synchronous node:crypto path, large ones WebCrypto,
 * and both must give the same bytes and refuse the same forgeries.
 */

import assert from "node:assert/strict";
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  hmacSha256,
  importAesGcmKey,
  importHmacKey,
  randomBytes,
  SYNC_AEAD_LIMIT,
  toBytes,
} from "../../lib/crypto/mod.ts";

const SIZES = [0, 1, 100, SYNC_AEAD_LIMIT, SYNC_AEAD_LIMIT + 1, 256 * 1024];

async function peerKey(raw: Uint8Array): Promise<CryptoKey> {
  return await crypto.subtle.importKey("raw", new Uint8Array(raw), "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
}

Deno.test("AES-GCM: every size, both key lengths, agrees byte for byte with WebCrypto in both directions", async () => {
  for (const keyBytes of [16, 32]) {
    const raw = randomBytes(keyBytes);
    const key = await importAesGcmKey(raw);
    const peer = await peerKey(raw);
    for (const size of SIZES) {
      const iv = randomBytes(12);
      const aad = randomBytes(13);
      const plaintext = randomBytes(size);
      const sealed = await aesGcmEncrypt(key, iv, plaintext, aad);
      const expected = new Uint8Array(
        await crypto.subtle.encrypt(
          { name: "AES-GCM", iv: toBytes(iv), additionalData: toBytes(aad) },
          peer,
          toBytes(plaintext),
        ),
      );
      assert.deepEqual(sealed, expected, `AES-${keyBytes * 8}-GCM, ${size} bytes`);
      assert.deepEqual(await aesGcmDecrypt(key, iv, expected, aad), plaintext);
    }
  }
});

Deno.test("AES-GCM: an altered byte, tag, nonce or additional data, and a ciphertext shorter than its tag are refused on both paths", async () => {
  const raw = randomBytes(32);
  const key = await importAesGcmKey(raw);
  for (const size of [100, SYNC_AEAD_LIMIT + 1]) {
    const iv = randomBytes(12);
    const aad = randomBytes(13);
    const sealed = await aesGcmEncrypt(key, iv, randomBytes(size), aad);
    const flipped = (bytes: Uint8Array, at: number) => {
      const copy = bytes.slice();
      copy[at]! ^= 1;
      return copy;
    };
    const forgeries: [string, Uint8Array, Uint8Array, Uint8Array][] = [
      ["body", flipped(sealed, 0), iv, aad],
      ["tag", flipped(sealed, sealed.length - 1), iv, aad],
      ["nonce", sealed, flipped(iv, 11), aad],
      ["aad", sealed, iv, flipped(aad, 0)],
      ["truncated tag", sealed.subarray(0, sealed.length - 4), iv, aad],
    ];
    for (const [what, data, nonce, extra] of forgeries) {
      await assert.rejects(() => aesGcmDecrypt(key, nonce, data, extra), `${what}, ${size} bytes`);
    }
  }
  for (const length of [0, 1, 12, 15]) {
    await assert.rejects(
      () => aesGcmDecrypt(key, randomBytes(12), randomBytes(length), new Uint8Array()),
      `a ${length}-byte ciphertext`,
    );
  }
});

Deno.test("HMAC-SHA256: a key from importHmacKey and raw bytes give WebCrypto's MAC (RFC 4231 case 2 too)", async () => {
  const rfcKey = new TextEncoder().encode("Jefe");
  const rfcData = new TextEncoder().encode("what do ya want for nothing?");
  const rfcMac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  assert.equal(hex(await hmacSha256(rfcKey, rfcData)), rfcMac);
  assert.equal(hex(await hmacSha256(await importHmacKey(rfcKey), rfcData)), rfcMac);
  const raw = randomBytes(32);
  const peer = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(raw),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  for (const size of SIZES) {
    const data = randomBytes(size);
    const expected = new Uint8Array(await crypto.subtle.sign("HMAC", peer, toBytes(data)));
    assert.deepEqual(await hmacSha256(await importHmacKey(raw), data), expected);
    assert.deepEqual(await hmacSha256(peer, data), expected, "a key made elsewhere: WebCrypto");
  }
});
