/**
 * A handshake transcript: a running SHA-256 over the exchange's messages, each prefixed with its
 * 4-byte big-endian length so that no two ways of splitting the same bytes hash alike.
 *
 * Both hand-built secure channels use it: Blackboard (system 1) and the bank (system 2). What is
 * hashed, for messages m1, m2, …:
 *
 *     SHA-256( len(m1) | m1 | len(m2) | m2 | … )      len = u32 big-endian
 *
 * The hash runs as messages are added (node:crypto's incremental SHA-256), so a digest costs one
 * copy of the hash state, not a pass over the whole exchange.
 */

import { createHash, type Hash } from "node:crypto";

function lengthPrefix(part: Uint8Array): Uint8Array {
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, part.length);
  return len;
}

/** A running SHA-256 over length-prefixed messages, in order. */
export class Transcript {
  #hash: Hash = createHash("sha256");
  #count = 0;

  constructor(parts: readonly Uint8Array[] = []) {
    for (const p of parts) this.add(p);
  }

  /** How many messages have been added. */
  get length(): number {
    return this.#count;
  }

  /** Appends one message (its exact bytes as sent or received). */
  add(message: Uint8Array): void {
    this.#hash.update(lengthPrefix(message));
    this.#hash.update(message);
    this.#count++;
  }

  /**
   * The hash of everything added so far, followed by `extra` parts hashed the same way (each
   * length-prefixed) without adding them: the transcript goes on unchanged.
   */
  digest(...extra: Uint8Array[]): Uint8Array {
    const h = this.#hash.copy();
    for (const p of extra) {
      h.update(lengthPrefix(p));
      h.update(p);
    }
    return new Uint8Array(h.digest());
  }

  /** An independent copy: what the transcript is now, to hash later while this one goes on. */
  snapshot(): Transcript {
    const copy = new Transcript();
    copy.#hash = this.#hash.copy();
    copy.#count = this.#count;
    return copy;
  }
}

/** SHA-256 over `parts`, each length-prefixed: the digest of a transcript of exactly these parts. */
export function transcriptHash(parts: readonly Uint8Array[]): Uint8Array {
  return new Transcript(parts).digest();
}
