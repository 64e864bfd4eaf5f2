/**
 * What verification may remember: each session presents the same cert 2, the same server
 * certificate and the same CRL again, and parsing them (JavaScript ASN.1) and checking their RSA
 * signatures was most of a handshake's time. Kept here, by the SHA-256 of the exact bytes:
 * parsed certificates and CRLs, signatures that verified (never one that failed), the key checks of
 * a public key, and imported public keys. Nothing that depends on the time, a CRL or a name is
 * kept: those checks run every time. Each cache is bounded, oldest out first.
 */

import { createHash } from "node:crypto";
import type { OpenSslVerifyingKey } from "../crypto/mod.ts";

/** A map of at most `max` entries; reading an entry makes it the newest. */
export class BoundedCache<V> {
  readonly max: number;
  readonly #map = new Map<string, V>();

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.max) this.#map.delete(this.#map.keys().next().value!);
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}

/**
 * What `make` gives for `id`, made once and shared by every caller meanwhile and after; a promise
 * that fails is not kept, so the next call tries (and fails) again.
 */
export function remembered<T>(
  cache: BoundedCache<Promise<T>>,
  id: string,
  make: () => Promise<T>,
): Promise<T> {
  let made = cache.get(id);
  if (!made) {
    made = make();
    cache.set(id, made);
    made.catch(() => cache.delete(id));
  }
  return made;
}

/** The SHA-256 of byte strings, each length-prefixed (so that no two lists share a key). */
export function bytesKey(...parts: (ArrayBuffer | Uint8Array)[]): string {
  const hash = createHash("sha256");
  for (const part of parts) {
    const bytes = part instanceof Uint8Array ? part : new Uint8Array(part);
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, bytes.length);
    hash.update(length);
    hash.update(bytes);
  }
  return hash.digest("base64");
}

/** Parsed certificates and CRLs, by their kind and DER. */
const parsed = new BoundedCache<object>(512);

/**
 * What `parse` makes of `data`, made once for each DER (`kind` keeps a certificate and a CRL of
 * the same bytes apart). PEM text is parsed every time; a parse that throws is not kept.
 */
export function parsedOnce<T extends object>(
  kind: string,
  data: string | Uint8Array,
  parse: () => T,
): T {
  if (typeof data === "string") return parse();
  const id = `${kind} ${bytesKey(data)}`;
  const seen = parsed.get(id);
  if (seen) return seen as T;
  const made = parse();
  parsed.set(id, made);
  return made;
}
/** Signatures that verified: issuer key and signed object, by their DER. */
const verifiedSignatures = new BoundedCache<true>(4096);
/** `rsaKeyProblem` of a public key ("" when none), by its DER. */
export const keyProblems = new BoundedCache<string>(1024);
/** Public keys imported for verifying, by their DER. */
export const verifyKeys = new BoundedCache<Promise<CryptoKey>>(1024);
/** Their OpenSSL twins, when OpenSSL is loaded (`null`: none), by their DER. */
export const nativeVerifyKeys = new BoundedCache<OpenSslVerifyingKey | null>(1024);

/** Empties what verification remembers (for tests and measurements). */
export function forgetVerifications(): void {
  for (const cache of [parsed, verifiedSignatures, keyProblems, verifyKeys, nativeVerifyKeys]) {
    cache.clear();
  }
}

/**
 * True when `issuerKey` signed `signed`: verified once, then remembered by the bytes of both. A
 * failure is never remembered (nor a throw, which counts as a failure).
 */
export async function signatureVerifies(
  issuerKey: ArrayBuffer,
  signed: ArrayBuffer,
  verify: () => Promise<boolean>,
): Promise<boolean> {
  const key = bytesKey(issuerKey, signed);
  if (verifiedSignatures.get(key)) return true;
  const ok = await verify().catch(() => false);
  if (ok) verifiedSignatures.set(key, true);
  return ok;
}
