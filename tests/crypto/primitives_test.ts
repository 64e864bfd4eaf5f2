/**
 * The symmetric primitives (lib/crypto/primitives.ts) and the X25519 key shares
 * (lib/crypto/key_exchange.ts) against WebCrypto used directly, as an independent peer: small
 * records take the synchronous node:crypto path, large ones WebCrypto, and both must give the same
 * bytes and refuse the same forgeries; HKDF and X25519 go through node:crypto and must agree with
 * WebCrypto's.
 */

import assert from "node:assert/strict";
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  fromHex,
  hkdfSha256,
  hmacSha256,
  importAesGcmKey,
  importHmacKey,
  newKeyShare,
  randomBytes,
  sharedSecret,
  SYNC_AEAD_LIMIT,
  toBytes,
  toHex,
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

Deno.test("HKDF-SHA256: RFC 5869's vectors, and WebCrypto's output for random inputs and lengths", async () => {
  // RFC 5869, A.1 (test case 1) and A.3 (test case 3: empty salt and info).
  const ikm = fromHex("0b".repeat(22));
  assert.equal(
    toHex(
      await hkdfSha256(
        ikm,
        fromHex("000102030405060708090a0b0c"),
        fromHex("f0f1f2f3f4f5f6f7f8f9"),
        42,
      ),
    ),
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  );
  assert.equal(
    toHex(await hkdfSha256(ikm, new Uint8Array(0), new Uint8Array(0), 42)),
    "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
  );
  for (const length of [16, 32, 64, 255 * 32]) {
    const [key, salt, info] = [randomBytes(32), randomBytes(32), randomBytes(20)];
    const peer = await crypto.subtle.importKey("raw", toBytes(key), "HKDF", false, ["deriveBits"]);
    const expected = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt: toBytes(salt), info: toBytes(info) },
        peer,
        length * 8,
      ),
    );
    assert.deepEqual(await hkdfSha256(key, salt, info, length), expected);
  }
  // More than 255 blocks is no HKDF output at all.
  await assert.rejects(hkdfSha256(randomBytes(32), randomBytes(32), "x", 255 * 32 + 1));
});

Deno.test("X25519: a share agrees with WebCrypto's X25519 both ways; a wrong length or a low-order point gives no secret", async () => {
  for (let i = 0; i < 5; i++) {
    const mine = await newKeyShare();
    assert.equal(mine.publicRaw.length, 32);
    const peer = await crypto.subtle.generateKey({ name: "X25519" }, false, [
      "deriveBits",
    ]) as CryptoKeyPair;
    const peerRaw = new Uint8Array(await crypto.subtle.exportKey("raw", peer.publicKey));
    const ours = await sharedSecret(mine, peerRaw);
    const mineForPeer = await crypto.subtle.importKey(
      "raw",
      toBytes(mine.publicRaw),
      { name: "X25519" },
      false,
      [],
    );
    const theirs = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: mineForPeer }, peer.privateKey, 256),
    );
    assert.ok(ours);
    assert.deepEqual(ours, theirs);
  }
  const mine = await newKeyShare();
  assert.equal(await sharedSecret(mine, new Uint8Array(31)), null);
  assert.equal(await sharedSecret(mine, new Uint8Array(33)), null);
  // Points of small order (RFC 7748, section 6.1): u = 0 and u = 1.
  assert.equal(await sharedSecret(mine, new Uint8Array(32)), null);
  assert.equal(await sharedSecret(mine, Uint8Array.of(1, ...new Uint8Array(31))), null);
});
