/**
 * What Blackboard's two modes share on the server side for one student's connection: the student
 * as a peer, what each mode is given (`ModeContext`), and the refusal that is stated to the
 * student as is. Each mode's steps are in `secure.ts` and `seed.ts`; `server.ts` runs them.
 */

import type { StepLog } from "../runtime/mod.ts";
import type { FramedStream } from "../wire/mod.ts";
import { rsaOaepEncrypt } from "../crypto/mod.ts";
import type { Certificate, Revocation } from "../pki/mod.ts";
import type { RecordKind } from "./protocol.ts";

/** One student's connection. */
export interface Peer {
  remote: string;
  log: StepLog;
  stream: FramedStream;
  /** The student ID, once step 3's request line is read. */
  sid: string | undefined;
  /** A refusal was sent: close gently so that it reaches the student. */
  refused: boolean;
}

/** What a mode's server side is given by `serveBlackboard`. */
export interface ModeContext {
  /** Blackboard's own certificate (DER) and its signing key, for step 4's signature. */
  certDer: Uint8Array;
  signingKey: CryptoKey;
  /**
   * "aes-gcm" (the default): students must ask for AES-GCM records. "hmac": MAC-only records are
   * allowed too (teaching only).
   */
  records?: RecordKind;
  /** The shared revocation checker: STEP 4 staples its current CRL. */
  revocation: Revocation;
  handshakeTimeoutMs: number;
  sessionTimeoutMs: number;
  /**
   * STEP 3's checks, the same in both modes: the request line, cert 2 against the pinned root,
   * the CRL (fail closed), CN = the ID. Sets `peer.sid`; returns cert 2.
   */
  verifyStudent(peer: Peer, line: string, certificate: Uint8Array): Promise<Certificate>;
  /** Prints a student's valid step-6 message, sanitised, as the seeds do. */
  printMessage(sid: string, text: string): void;
}

/** A refusal that Blackboard states to the student as is. */
export class Refusal extends Error {
  override name = "Refusal";
}

/** STEP 4 of the seed mode: the session key, RSA-OAEP (SHA-256) to cert 2's public key. */
export async function encryptSessionKey(cert: Certificate, key: Uint8Array): Promise<Uint8Array> {
  return await rsaOaepEncrypt(new Uint8Array(cert.publicKey.rawData), key);
}
