/**
 * INSECURE, SEED MODE ONLY: the seed's textbook RSA (raw RSA, no padding), kept so that the bank's
 * `--protocol seed` reproduces seed 001 and Trudy can show why it fails.
 *
 * Textbook RSA is deterministic (the same secret always gives the same ciphertext) and malleable,
 * and the seed sends it to a key that nothing authenticates. Never use it for anything else: the
 * lab's secure modes use RSA-OAEP (`rsaOaepEncrypt`) or an ephemeral X25519 exchange.
 *
 * No primitive is implemented here: node:crypto does the RSA operation with `RSA_NO_PADDING`.
 */

import { constants, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { privateDecrypt, publicEncrypt } from "node:crypto";

/** An RSA key as node:crypto holds it, for the seed's textbook RSA only. */
export type TextbookRsaKey = KeyObject;

/** The public key of a SubjectPublicKeyInfo (DER); throws when it is not readable. */
export function textbookRsaPublicKey(spki: Uint8Array): TextbookRsaKey {
  return createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
}

/** The private key of a PKCS#8 PEM. */
export function textbookRsaPrivateKey(pkcs8Pem: string): TextbookRsaKey {
  return createPrivateKey(pkcs8Pem);
}

function modulusBytes(key: TextbookRsaKey): number {
  return (key.asymmetricKeyDetails?.modulusLength ?? 2048) / 8;
}

/**
 * INSECURE (seed mode only): raw RSA of `message`, left-padded with zero bytes to the modulus
 * size, as the seed did. The same message always gives the same ciphertext.
 */
export function insecureTextbookRsaEncrypt(key: TextbookRsaKey, message: Uint8Array): Uint8Array {
  const size = modulusBytes(key);
  if (message.length > size) {
    throw new RangeError(`A textbook-RSA message holds at most ${size} bytes`);
  }
  const block = new Uint8Array(size);
  block.set(message, size - message.length);
  return new Uint8Array(publicEncrypt({ key, padding: constants.RSA_NO_PADDING }, block));
}

/**
 * INSECURE (seed mode only): raw RSA decryption; returns the whole block (modulus size), with the
 * message at its end behind zero bytes. Nothing checks integrity: any ciphertext decrypts.
 */
export function insecureTextbookRsaDecrypt(
  key: TextbookRsaKey,
  ciphertext: Uint8Array,
): Uint8Array {
  return new Uint8Array(privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, ciphertext));
}
