/**
 * RSA keys and signatures (RSASSA-PKCS1-v1_5 with SHA-256, the one scheme here): generating,
 * importing and exporting keys, signing, and checking a signature. WebCrypto does the math, or
 * OpenSSL when the actor loaded it (lib/crypto/openssl_rsa.ts): the same bytes, faster.
 */

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  openSslRsaOutcome,
  OpenSslSigningKey,
  OpenSslVerifyingKey,
  toBytes,
} from "../crypto/mod.ts";
import { BoundedCache, bytesKey, nativeVerifyKeys, verifyKeys } from "./cache.ts";

/** The signature scheme of every RSA key here. */
export const RSA_SIGN = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as const;
const RSA_SIGN_GEN = { ...RSA_SIGN, publicExponent: new Uint8Array([1, 0, 1]) } as const;

// ---------------------------------------------------------------- keys

/** An RSA key pair for signing (RSASSA-PKCS1-v1_5, SHA-256), extractable so it can be stored. */
export async function generateRsaKeyPair(bits = 2048): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey({ ...RSA_SIGN_GEN, modulusLength: bits }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

/** The PKCS#8 DER inside a `PRIVATE KEY` PEM. */
export function privateKeyDer(pem: string): Uint8Array {
  const blocks = x509.PemConverter.decodeWithHeaders(pem).filter((b) => b.type === "PRIVATE KEY");
  if (blocks.length !== 1) throw new SyntaxError("Expected one PKCS#8 'PRIVATE KEY' PEM block");
  return new Uint8Array(blocks[0]!.rawData);
}

/**
 * The OpenSSL twin of each signing key (lib/crypto/openssl_rsa.ts), when OpenSSL is loaded: made
 * at import, or from the key's PKCS#8 on first use if it is extractable; `null` when it has none.
 */
const signingTwins = new WeakMap<CryptoKey, OpenSslSigningKey | null>();

function modulusBits(key: CryptoKey): number {
  return (key.algorithm as RsaHashedKeyAlgorithm).modulusLength;
}

/**
 * Signing keys imported, by the SHA-256 of their PKCS#8 DER: a student signs every session with
 * the same key, and importing it (WebCrypto's, then OpenSSL's copy) took about as long as the
 * signature itself (0.43 against 0.41 ms for RSA-2048).
 */
const signingKeys = new BoundedCache<Promise<CryptoKey>>(64);

/** Imports a PKCS#8 PEM RSA key for signing (once for each key; the same key object after). */
export async function importSigningKey(pem: string): Promise<CryptoKey> {
  const der = privateKeyDer(pem);
  const id = bytesKey(der);
  let key = signingKeys.get(id);
  if (!key) {
    key = importSigningDer(der);
    signingKeys.set(id, key);
    // A key that cannot be imported is not kept: the next call tries (and fails) again.
    key.catch(() => signingKeys.delete(id));
  }
  return await key;
}

async function importSigningDer(der: Uint8Array): Promise<CryptoKey> {
  const key = await crypto.subtle.importKey("pkcs8", toBytes(der), RSA_SIGN, false, ["sign"]);
  if (openSslRsaOutcome().loaded) {
    signingTwins.set(key, OpenSslSigningKey.fromPkcs8(der, modulusBits(key)) ?? null);
  }
  return key;
}

async function signingTwin(key: CryptoKey): Promise<OpenSslSigningKey | undefined> {
  if (!openSslRsaOutcome().loaded) return undefined;
  let twin = signingTwins.get(key);
  if (twin === undefined) {
    twin = null;
    if (key.extractable && key.type === "private" && key.algorithm.name === RSA_SIGN.name) {
      const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
      twin = OpenSslSigningKey.fromPkcs8(der, modulusBits(key)) ?? null;
    }
    signingTwins.set(key, twin);
  }
  return twin ?? undefined;
}

/**
 * A PKCS#8 PEM RSA key as an extractable key pair (RSASSA-PKCS1-v1_5, SHA-256), as
 * `generateRsaKeyPair` returns one; the public half is rebuilt from the private key's n and e.
 */
export async function importKeyPair(pem: string): Promise<CryptoKeyPair> {
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    toBytes(privateKeyDer(pem)),
    RSA_SIGN,
    true,
    ["sign"],
  );
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  const publicKey = await crypto.subtle.importKey(
    "jwk",
    { kty: "RSA", n: jwk.n!, e: jwk.e!, ext: true },
    RSA_SIGN,
    true,
    ["verify"],
  );
  return { privateKey, publicKey };
}

/** The public half of a PKCS#8 RSA key, as SubjectPublicKeyInfo DER. */
export async function publicKeyOf(pem: string): Promise<Uint8Array> {
  const { publicKey } = await importKeyPair(pem);
  return new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
}

/**
 * An RSASSA-PKCS1-v1_5 SHA-256 signature: OpenSSL's when it is loaded (the same bytes, about
 * twice as fast, off the event loop), WebCrypto's otherwise or if OpenSSL refuses.
 */
export async function signRsa(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  const twin = await signingTwin(key);
  if (twin) {
    try {
      return await twin.sign(data);
    } catch {
      // WebCrypto below gives the same signature, or the reason it cannot.
    }
  }
  return new Uint8Array(await crypto.subtle.sign(RSA_SIGN, key, toBytes(data)));
}

/** OpenSSL's copy of a public key (SubjectPublicKeyInfo DER), when OpenSSL is loaded and it is RSA. */
function nativeVerifyKey(spki: ArrayBuffer): OpenSslVerifyingKey | undefined {
  if (!openSslRsaOutcome().loaded) return undefined;
  const id = bytesKey(spki);
  let native = nativeVerifyKeys.get(id);
  if (native === undefined) {
    native = OpenSslVerifyingKey.fromSpki(new Uint8Array(spki)) ?? null;
    nativeVerifyKeys.set(id, native);
  }
  return native ?? undefined;
}

/** Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature with a certificate's public key. */
export async function verifyRsa(
  cert: x509.X509Certificate,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  const native = nativeVerifyKey(cert.publicKey.rawData);
  if (native) return native.verify(signature, data);
  const id = bytesKey(cert.publicKey.rawData);
  let imported = verifyKeys.get(id);
  if (!imported) {
    imported = cert.publicKey.export(RSA_SIGN, ["verify"]);
    verifyKeys.set(id, imported);
    // A key that cannot be imported is not kept: the next call tries (and fails) again.
    imported.catch(() => verifyKeys.delete(id));
  }
  const key = await imported;
  return await crypto.subtle.verify(RSA_SIGN, key, toBytes(signature), toBytes(data));
}

/** A DER element: its tag, where its contents start, and where it ends. */
interface Element {
  tag: number;
  start: number;
  body: number;
  end: number;
}

/** The DER element at `at` (definite length, within `der`), or undefined. */
function element(der: Uint8Array, at: number): Element | undefined {
  if (at + 2 > der.length) return undefined;
  const tag = der[at]!;
  let length = der[at + 1]!;
  let body = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 3 || body + n > der.length) return undefined;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[body + i]!;
    body += n;
  }
  const end = body + length;
  return end <= der.length ? { tag, start: at, body, end } : undefined;
}

/** What an object signed by a key is: what its to-be-signed part holds differs. */
export type SignedKind = "certificate" | "crl" | "csr";

/**
 * A certificate's, CRL's or CSR's DER split into what was signed (the first element, as received)
 * and the signature's algorithm identifier; for a certificate or a CRL, also the algorithm
 * identifier inside what was signed (RFC 5280 wants both the same). Undefined if it does not fit.
 */
function signedParts(
  der: Uint8Array,
  kind: SignedKind,
): { tbs: Uint8Array; algorithm: Uint8Array; inner?: Uint8Array } | undefined {
  const SEQUENCE = 0x30, INTEGER = 0x02, VERSION = 0xa0;
  const outer = element(der, 0);
  if (!outer || outer.tag !== SEQUENCE || outer.end !== der.length) return undefined;
  const tbs = element(der, outer.body);
  const algorithm = tbs && element(der, tbs.end);
  if (!tbs || tbs.tag !== SEQUENCE || !algorithm || algorithm.tag !== SEQUENCE) return undefined;
  const parts = {
    tbs: der.subarray(tbs.start, tbs.end),
    algorithm: der.subarray(algorithm.start, algorithm.end),
  };
  if (kind === "csr") return parts;
  // TBSCertificate: [0] version (optional), serialNumber, signature; TBSCertList: version
  // (optional), signature.
  let field = element(der, tbs.body);
  if (kind === "certificate") {
    if (field?.tag === VERSION) field = element(der, field.end);
    if (field?.tag !== INTEGER) return undefined;
    field = element(der, field.end);
  } else if (field?.tag === INTEGER) {
    field = element(der, field.end);
  }
  if (field?.tag !== SEQUENCE || field.end > tbs.end) return undefined;
  return { ...parts, inner: der.subarray(field.start, field.end) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** sha256WithRSAEncryption (1.2.840.113549.1.1.11) with NULL parameters, or without. */
const SHA256_WITH_RSA = [
  Uint8Array.of(0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 11, 0x05, 0),
  Uint8Array.of(0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 11),
];

/** A certificate, a CRL or a CSR as the library parsed it. */
interface SignedObject {
  readonly rawData: ArrayBuffer;
  readonly signature: ArrayBuffer;
}

/**
 * True when the key `signer` (SubjectPublicKeyInfo DER) signed `object`. With OpenSSL loaded, and
 * an object signed with sha256WithRSAEncryption by an RSA key (and, in a certificate or a CRL, the
 * same algorithm named inside), OpenSSL checks the signature over the signed bytes as received;
 * anything else goes to `fallback` (the library's own `verify`, through WebCrypto), as before.
 */
export async function signedBy(
  kind: SignedKind,
  object: SignedObject,
  signer: ArrayBuffer,
  fallback: () => Promise<boolean>,
): Promise<boolean> {
  const native = nativeVerifyKey(signer);
  const parts = native && signedParts(new Uint8Array(object.rawData), kind);
  if (!native || !parts) return await fallback();
  const algorithm = parts.algorithm;
  // check: native-signature-algorithm tests/crypto/openssl_rsa_test.ts
  if (!SHA256_WITH_RSA.some((a) => sameBytes(a, algorithm))) return await fallback();
  if (parts.inner && !sameBytes(parts.inner, algorithm)) return await fallback();
  return native.verify(new Uint8Array(object.signature), parts.tbs);
}
