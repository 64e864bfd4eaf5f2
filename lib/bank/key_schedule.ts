/**
 * The secure handshake's key exchange and key schedule: ephemeral X25519 shares (WebCrypto), what
 * each side signs (a context label and a transcript hash), and the per-direction record keys from
 * HKDF over the X25519 secret, salted with the transcript hash.
 */

import { BANK_VERSION } from "./protocol.ts";
import { concatBytes, hkdfSha256 } from "../crypto/mod.ts";

export { type KeyShare, newKeyShare, sharedSecret } from "../crypto/mod.ts";

/** Alice's and Bob's nonces: 32 random bytes each. */
export const NONCE_BYTES = 32;
const utf8 = new TextEncoder();

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
