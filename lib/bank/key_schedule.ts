/**
 * The secure handshake's key exchange and key schedule: ephemeral X25519 shares (WebCrypto), what
 * each side signs (a context label and a transcript hash), and the per-direction record keys from
 * HKDF over the X25519 secret, salted with the transcript hash.
 */

import { BANK_VERSION } from "./protocol.ts";
import { concatBytes, hkdfSha256, toBytes } from "../crypto/mod.ts";

/** Alice's and Bob's nonces: 32 random bytes each. */
export const NONCE_BYTES = 32;
const utf8 = new TextEncoder();

/** One side's ephemeral X25519 key: the private half stays in WebCrypto. */
export interface KeyShare {
  privateKey: CryptoKey;
  publicRaw: Uint8Array;
}

export async function newKeyShare(): Promise<KeyShare> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ]) as CryptoKeyPair;
  return {
    privateKey: pair.privateKey,
    publicRaw: new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)),
  };
}

export async function sharedSecret(
  mine: KeyShare,
  peerRaw: Uint8Array,
): Promise<Uint8Array | null> {
  if (peerRaw.length !== 32) return null;
  try {
    const peer = await crypto.subtle.importKey(
      "raw",
      toBytes(peerRaw),
      { name: "X25519" },
      false,
      [],
    );
    const bits = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: peer }, mine.privateKey, 256),
    );
    // A low-order share gives an all-zero secret: refuse it (RFC 7748, section 6.1).
    return bits.some((b) => b !== 0) ? bits : null;
  } catch {
    return null;
  }
}

export function signedData(context: string, hash: Uint8Array): Uint8Array {
  return concatBytes(utf8.encode(`${BANK_VERSION} ${context}\0`), hash);
}

export async function sessionKeys(
  secret: Uint8Array,
  salt: Uint8Array,
): Promise<{ aliceToBob: Uint8Array; bobToAlice: Uint8Array }> {
  return {
    aliceToBob: await hkdfSha256(secret, salt, `${BANK_VERSION} alice to bob`),
    bobToAlice: await hkdfSha256(secret, salt, `${BANK_VERSION} bob to alice`),
  };
}
