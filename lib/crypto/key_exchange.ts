/**
 * Ephemeral X25519 key shares (WebCrypto), as both hand-built secure channels use them: the bank's
 * secure handshake (system 2) and Blackboard's default handshake (system 1). Each side makes a
 * fresh share per handshake and forgets its private half afterwards, so a later theft of a
 * long-term key (a certificate's) reveals no past session: forward secrecy.
 */

import { toBytes } from "./primitives.ts";

/** Bytes of an X25519 public share (RFC 7748). */
export const X25519_SHARE_BYTES = 32;

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

/**
 * The X25519 shared secret of `mine` and the peer's public share, or null when the peer's share is
 * not one (wrong length, or a low-order point, whose secret is all zeros: RFC 7748, section 6.1).
 */
export async function sharedSecret(
  mine: KeyShare,
  peerRaw: Uint8Array,
): Promise<Uint8Array | null> {
  if (peerRaw.length !== X25519_SHARE_BYTES) return null;
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
