/**
 * Ephemeral X25519 key shares, as both hand-built secure channels use them: the bank's secure
 * handshake (system 2) and Blackboard's default handshake (system 1). Each side makes a fresh share
 * per handshake and forgets its private half afterwards, so a later theft of a long-term key (a
 * certificate's) reveals no past session: forward secrecy.
 *
 * Through `node:crypto`'s synchronous calls rather than WebCrypto: each WebCrypto call is answered
 * through the runtime's thread pool, and the four of one side's exchange took about 200 µs where
 * these take about 100 (tests/crypto/primitives_test.ts checks the two agree).
 */

import { Buffer } from "node:buffer";
import { createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from "node:crypto";
import { fromHex } from "./primitives.ts";

/** Bytes of an X25519 public share (RFC 7748). */
export const X25519_SHARE_BYTES = 32;

/** What precedes the 32 bytes of an X25519 public key in its SubjectPublicKeyInfo (RFC 8410). */
const X25519_SPKI_PREFIX = fromHex("302a300506032b656e032100");

/** One side's ephemeral X25519 key: the private half never leaves its key object. */
export interface KeyShare {
  privateKey: KeyObject;
  publicRaw: Uint8Array;
}

export function newKeyShare(): Promise<KeyShare> {
  const pair = generateKeyPairSync("x25519");
  const spki = new Uint8Array(pair.publicKey.export({ format: "der", type: "spki" }));
  return Promise.resolve({
    privateKey: pair.privateKey,
    publicRaw: spki.slice(X25519_SPKI_PREFIX.length),
  });
}

/**
 * The X25519 shared secret of `mine` and the peer's public share, or null when the peer's share is
 * not one (wrong length, or a low-order point, whose secret is all zeros: RFC 7748, section 6.1).
 */
export function sharedSecret(
  mine: KeyShare,
  peerRaw: Uint8Array,
): Promise<Uint8Array | null> {
  if (peerRaw.length !== X25519_SHARE_BYTES) return Promise.resolve(null);
  try {
    const spki = new Uint8Array(X25519_SPKI_PREFIX.length + X25519_SHARE_BYTES);
    spki.set(X25519_SPKI_PREFIX);
    spki.set(peerRaw, X25519_SPKI_PREFIX.length);
    const peer = createPublicKey({ key: Buffer.from(spki.buffer), format: "der", type: "spki" });
    const bits = new Uint8Array(diffieHellman({ privateKey: mine.privateKey, publicKey: peer }));
    // A low-order share gives an all-zero secret: refuse it (RFC 7748, section 6.1).
    return Promise.resolve(bits.length === 32 && bits.some((b) => b !== 0) ? bits : null);
  } catch {
    return Promise.resolve(null);
  }
}
