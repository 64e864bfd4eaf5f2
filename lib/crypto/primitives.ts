/**
 * Crypto helpers over WebCrypto and the runtime's `node:crypto`: no primitive is implemented
 * here, only wired together.
 *
 * The symmetric keys made by `importAesGcmKey` and `importHmacKey` are WebCrypto keys that also
 * remember a `node:crypto` key object. WebCrypto runs every call on a thread pool and answers
 * through a promise: about 35 µs for a 100-byte record, where the synchronous `node:crypto` call
 * takes 5–7 µs. So records up to `SYNC_AEAD_LIMIT` bytes, and every HMAC, go through
 * `node:crypto`; large AES-GCM inputs (upload chunks), where WebCrypto is faster, stay on it.
 * Same algorithms, same checks: the GCM tag must be 16 bytes and verify, or decryption throws.
 */

import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  timingSafeEqual,
} from "node:crypto";

/** AES-GCM inputs up to this size use node:crypto (synchronous); larger ones WebCrypto. */
export const SYNC_AEAD_LIMIT = 16 * 1024;

const GCM_TAG_BYTES = 16;

/** The node:crypto twin of each symmetric key made here (the raw bytes are seen only then). */
const nodeKeys = new WeakMap<CryptoKey, KeyObject>();

const utf8 = new TextEncoder();

/** Bytes from the platform CSPRNG. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  // getRandomValues fills at most 65536 bytes per call.
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}

export function toBytes(data: Uint8Array | string): Uint8Array<ArrayBuffer> {
  if (typeof data === "string") return utf8.encode(data);
  // WebCrypto wants an ArrayBuffer-backed view; copy only when it is not one already.
  return data.buffer instanceof ArrayBuffer
    ? data as Uint8Array<ArrayBuffer>
    : new Uint8Array(data) as Uint8Array<ArrayBuffer>;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) throw new SyntaxError(`Not a hex string: ${hex}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", toBytes(data)));
}

/** Constant-time comparison; different lengths compare unequal without a data-dependent loop. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

export async function importHmacKey(raw: Uint8Array): Promise<CryptoKey> {
  const key = await crypto.subtle.importKey(
    "raw",
    toBytes(raw),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
  nodeKeys.set(key, createSecretKey(raw));
  return key;
}

export async function hmacSha256(
  key: CryptoKey | Uint8Array,
  data: Uint8Array | string,
): Promise<Uint8Array> {
  const twin = key instanceof Uint8Array ? createSecretKey(key) : nodeKeys.get(key);
  if (twin) return new Uint8Array(createHmac("sha256", twin).update(toBytes(data)).digest());
  return new Uint8Array(await crypto.subtle.sign("HMAC", key as CryptoKey, toBytes(data)));
}

/** Computes the HMAC of `data` and compares it with `mac` in constant time. */
export async function hmacSha256Verify(
  key: CryptoKey | Uint8Array,
  data: Uint8Array | string,
  mac: Uint8Array,
): Promise<boolean> {
  return constantTimeEqual(await hmacSha256(key, data), mac);
}

/**
 * HKDF-SHA256 (RFC 5869): `length` bytes from `ikm`, bound to `salt` and `info`. Through
 * `node:crypto`'s synchronous `hkdfSync` (5-10 µs) rather than WebCrypto's import and derive (60-70
 * µs through the runtime's thread pool; a handshake derives several keys). tests/crypto compares
 * the two, and RFC 5869's vectors.
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array | string,
  length = 32,
): Promise<Uint8Array> {
  try {
    return Promise.resolve(
      new Uint8Array(hkdfSync("sha256", ikm, salt, toBytes(info), length)),
    );
  } catch (err) {
    return Promise.reject(err);
  }
}

/** RSA-OAEP with SHA-256, encrypting to a SubjectPublicKeyInfo (DER). */
export async function rsaOaepEncrypt(spki: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "spki",
    toBytes(spki),
    { name: "RSA-OAEP", hash: "SHA-256" },
    false,
    ["encrypt"],
  );
  return new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP" }, key, toBytes(plaintext)));
}

/** RSA-OAEP with SHA-256, decrypting with a PKCS#8 private key (DER). */
export async function rsaOaepDecrypt(
  pkcs8: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "pkcs8",
    toBytes(pkcs8),
    { name: "RSA-OAEP", hash: "SHA-256" },
    false,
    ["decrypt"],
  );
  return new Uint8Array(
    await crypto.subtle.decrypt({ name: "RSA-OAEP" }, key, toBytes(ciphertext)),
  );
}

export async function importAesGcmKey(raw: Uint8Array): Promise<CryptoKey> {
  const key = await crypto.subtle.importKey("raw", toBytes(raw), "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  if (raw.length === 16 || raw.length === 32) nodeKeys.set(key, createSecretKey(raw));
  return key;
}

/** The node:crypto cipher name for a key object made by importAesGcmKey. */
function gcmCipher(key: KeyObject): "aes-128-gcm" | "aes-256-gcm" {
  return key.symmetricKeySize === 16 ? "aes-128-gcm" : "aes-256-gcm";
}

/** AES-GCM with a 12-byte IV and additional data; the tag is appended to the ciphertext. */
export async function aesGcmEncrypt(
  key: CryptoKey,
  iv: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Promise<Uint8Array> {
  const twin = nodeKeys.get(key);
  if (twin && plaintext.length <= SYNC_AEAD_LIMIT) {
    const cipher = createCipheriv(gcmCipher(twin), twin, iv, { authTagLength: GCM_TAG_BYTES });
    cipher.setAAD(aad);
    const body = cipher.update(plaintext);
    const final = cipher.final();
    return concatBytes(body, final, cipher.getAuthTag());
  }
  return new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: toBytes(iv), additionalData: toBytes(aad) },
      key,
      toBytes(plaintext),
    ),
  );
}

/** AES-GCM decryption; throws when the tag does not verify. */
export async function aesGcmDecrypt(
  key: CryptoKey,
  iv: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
): Promise<Uint8Array> {
  const twin = nodeKeys.get(key);
  if (twin && ciphertext.length <= SYNC_AEAD_LIMIT + GCM_TAG_BYTES) {
    // The tag is the last 16 bytes: a shorter input, or a tag that does not verify, throws
    // (authTagLength pins the tag's length, so a truncated tag is never checked as a short one).
    try {
      const end = Math.max(0, ciphertext.length - GCM_TAG_BYTES);
      const decipher = createDecipheriv(gcmCipher(twin), twin, iv, {
        authTagLength: GCM_TAG_BYTES,
      });
      decipher.setAAD(aad);
      decipher.setAuthTag(ciphertext.subarray(end));
      const body = decipher.update(ciphertext.subarray(0, end));
      return concatBytes(body, decipher.final());
    } catch (err) {
      throw new DOMException(
        `AES-GCM decryption failed: ${err instanceof Error ? err.message : String(err)}`,
        "OperationError",
      );
    }
  }
  return new Uint8Array(
    await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: toBytes(iv), additionalData: toBytes(aad) },
      key,
      toBytes(ciphertext),
    ),
  );
}

/** A 96-bit AES-GCM nonce from a 64-bit sequence number (never reused under one key). */
export function sequenceNonce(seq: number): Uint8Array {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(4, BigInt(seq));
  return iv;
}
