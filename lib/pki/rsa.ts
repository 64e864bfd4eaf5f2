/**
 * RSA keys and signatures (RSASSA-PKCS1-v1_5 with SHA-256, the one scheme here): generating,
 * importing and exporting keys, signing, and checking a signature. WebCrypto does the math, or
 * OpenSSL when the actor loaded it (lib/crypto/openssl_rsa.ts): the same bytes, faster.
 */

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  constantTimeEqual,
  openSslRsaOutcome,
  OpenSslSigningKey,
  OpenSslVerifyingKey,
  toBytes,
} from "../crypto/mod.ts";
import { BoundedCache, bytesKey, nativeVerifyKeys, remembered, verifyKeys } from "./cache.ts";
import { SHA256_WITH_RSA, SHA256_WITH_RSA_NO_PARAMS, type SignedKind, signedParts } from "./der.ts";

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
  return await remembered(signingKeys, bytesKey(der), () => importSigningDer(der));
}

/** Imports PKCS#8 DER for signing (and OpenSSL's copy), then zeroes the DER. */
async function importSigningDer(der: Uint8Array): Promise<CryptoKey> {
  try {
    const key = await crypto.subtle.importKey("pkcs8", toBytes(der), RSA_SIGN, false, ["sign"]);
    if (openSslRsaOutcome().loaded) {
      signingTwins.set(key, OpenSslSigningKey.fromPkcs8(der, modulusBits(key)) ?? null);
    }
    return key;
  } finally {
    der.fill(0);
  }
}

async function signingTwin(key: CryptoKey): Promise<OpenSslSigningKey | undefined> {
  if (!openSslRsaOutcome().loaded) return undefined;
  let twin = signingTwins.get(key);
  if (twin === undefined) {
    twin = null;
    if (key.extractable && key.type === "private" && key.algorithm.name === RSA_SIGN.name) {
      const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
      twin = OpenSslSigningKey.fromPkcs8(der, modulusBits(key)) ?? null;
      der.fill(0);
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

/**
 * OpenSSL's copy of a public key (SubjectPublicKeyInfo DER; `id` its `bytesKey`), when OpenSSL is
 * loaded and it is RSA.
 */
function nativeVerifyKey(spki: ArrayBuffer, id = bytesKey(spki)): OpenSslVerifyingKey | undefined {
  if (!openSslRsaOutcome().loaded) return undefined;
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
  const spki = cert.publicKey.rawData;
  const id = bytesKey(spki);
  const native = nativeVerifyKey(spki, id);
  if (native) return native.verify(signature, data);
  const key = await remembered(verifyKeys, id, () => cert.publicKey.export(RSA_SIGN, ["verify"]));
  return await crypto.subtle.verify(RSA_SIGN, key, toBytes(signature), toBytes(data));
}

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
  const sha256WithRsa = constantTimeEqual(algorithm, SHA256_WITH_RSA) ||
    constantTimeEqual(algorithm, SHA256_WITH_RSA_NO_PARAMS);
  // check: native-signature-algorithm tests/crypto/openssl_rsa_test.ts
  if (!sha256WithRsa) return await fallback();
  if (parts.inner && !constantTimeEqual(parts.inner, algorithm)) return await fallback();
  return native.verify(new Uint8Array(object.signature), parts.tbs);
}
