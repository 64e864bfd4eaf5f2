/**
 * Blackboard's seed mode (`--protocol seed`, teaching only), the student's side and Blackboard's:
 * the seeds' steps 3–6 exactly as written, flaws included.
 *
 *     STEP 3  student → Blackboard  seedRequest     request line | cert 2
 *     STEP 4  Blackboard → student  seedSessionKey  RSA-OAEP(session key) to cert 2's key, unsigned
 *     STEP 5  student → Blackboard  seedKeyEcho     the decrypted session key, IN THE CLEAR
 *             Blackboard → student  seedOk          check pass: "start to communicate"
 *     STEP 6  student → Blackboard  seedMessage     message | HMAC(session key, message), with no
 *                                                   sequence number
 *
 * Anyone on the path reads the session key at step 5 (Trudy's session-key-sniff), then forges or
 * replays step-6 messages (message-replay). The default mode (`secure.ts`) fixes each of these.
 * Only step 4's encryption is not the seeds': RSA-OAEP, never textbook RSA or RC4 as seed 000 did.
 */

import {
  blackboardProtocol,
  HANDSHAKE_MAX_FRAME,
  HANDSHAKE_TIMEOUT_MS,
  receiveHandshake,
  requestLine,
  sendHandshake,
  SESSION_KEY_BYTES,
} from "./protocol.ts";
import { type ConnectOptions, connectToBlackboard } from "./client.ts";
import { encryptSessionKey, type ModeContext, type Peer, Refusal } from "./serving.ts";
import type { StepLog } from "../runtime/mod.ts";
import type { FramedStream } from "../wire/mod.ts";
import {
  constantTimeEqual,
  hmacSha256,
  randomBytes,
  rsaOaepDecrypt,
  toBytes,
} from "../crypto/mod.ts";
import { privateKeyDer } from "../pki/mod.ts";

// ---------------------------------------------------------------- the student

/**
 * The seeds' protocol (teaching only): after step 4 the student sends the decrypted session key
 * back in the clear, and messages are message | HMAC(session key, message) with no sequence
 * number. Anyone on the path reads the key and can forge or replay messages.
 */
export class SeedSession {
  readonly sid: string;
  readonly #stream: FramedStream;
  readonly #sessionKey: Uint8Array;
  readonly #log: StepLog;

  constructor(sid: string, stream: FramedStream, sessionKey: Uint8Array, log: StepLog) {
    this.sid = sid;
    this.#stream = stream;
    this.#sessionKey = sessionKey;
    this.#log = log;
  }

  /** STEP 6 as the seeds wrote it: message | HMAC, nothing else. */
  async send(text: string): Promise<void> {
    const hmac = await hmacSha256(this.#sessionKey, toBytes(text));
    await sendHandshake(this.#stream, "seedMessage", { message: text, hmac });
    this.#log.step(6, "message sent as message | HMAC (seed: no sequence number)");
  }

  close(): void {
    this.#stream.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The student's side of seed steps 3–5; step 6 is `SeedSession.send`. */
export async function openSeedSession(options: ConnectOptions): Promise<SeedSession> {
  const { identity, log } = options;
  const timeoutMs = options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  const stream = await connectToBlackboard(options.blackboard, timeoutMs);
  try {
    // STEP 3: the request and cert 2.
    const line = requestLine(identity.sid);
    await sendHandshake(stream, "seedRequest", {
      request: line,
      certificate: new Uint8Array(identity.cert.rawData),
    });
    log.step(3, `sent "${line}" with cert 2 (seed)`);
    // STEP 4: the session key, decrypted with the private key; nothing proves who sent it.
    const { msg } = await receiveHandshake(stream, ["seedSessionKey"], timeoutMs);
    let sessionKey: Uint8Array;
    try {
      sessionKey = await rsaOaepDecrypt(privateKeyDer(identity.keyPem), msg.encryptedKey);
    } catch {
      throw new Error("Cannot decrypt the session key: the private key is not the key of cert 2");
    }
    log.step(4, "session key decrypted with the private key (seed: Blackboard is not verified)");
    // STEP 5: the seeds' check: the decrypted key goes back, in the clear.
    await sendHandshake(stream, "seedKeyEcho", { sessionKey });
    log.warn("STEP 5 seed mode: the decrypted session key was just sent back IN THE CLEAR");
    await receiveHandshake(stream, ["seedOk"], timeoutMs);
    log.step(5, "Blackboard checked the session key: start to communicate (seed)");
    return new SeedSession(identity.sid, stream, sessionKey, log);
  } catch (err) {
    stream.close();
    throw err;
  }
}

// ---------------------------------------------------------------- Blackboard

/** Blackboard's side of seed steps 3–6: the handshake, then each message until the student leaves. */
export async function serveSeed(ctx: ModeContext, peer: Peer): Promise<void> {
  const { stream, log } = peer;
  const hs = ctx.handshakeTimeoutMs;

  // STEP 3: the request and cert 2, checked as in the default mode.
  const first = await stream.readFrame({ timeoutMs: hs, maxFrame: HANDSHAKE_MAX_FRAME });
  if (first === null) return;
  const req = blackboardProtocol.decode(first);
  if (req.type === "request") {
    throw new Refusal("Blackboard runs in seed mode: the student must use --protocol seed");
  }
  if (req.type !== "seedRequest") throw new Refusal(`Expected seedRequest, got ${req.type}`);
  const cert = await ctx.verifyStudent(peer, req.request, req.certificate);
  const sid = peer.sid!;

  // STEP 4: a fresh session key, RSA-OAEP to cert 2's key, unsigned.
  const sessionKey = randomBytes(SESSION_KEY_BYTES);
  await sendHandshake(stream, "seedSessionKey", {
    encryptedKey: await encryptSessionKey(cert, sessionKey),
  });
  log.step(4, `session key for ${sid} encrypted with RSA-OAEP to cert 2's key (seed: unsigned)`);

  // STEP 5: the student sends the key back in the clear; Blackboard compares it.
  const echo = await receiveHandshake(stream, ["seedKeyEcho"], hs);
  // check: seed-key-echo tests/blackboard/negative_test.ts
  if (!constantTimeEqual(echo.msg.sessionKey, sessionKey)) {
    throw new Refusal("Session key check failed: the key sent back is not the session key");
  }
  await sendHandshake(stream, "seedOk", {});
  log.step(5, `decrypted session key from ${sid} matches (seed: it crossed the wire in the clear)`);

  // STEP 6: message | HMAC(session key, message); no sequence number, so a replay passes.
  for (;;) {
    const frame = await stream.readFrame({ timeoutMs: ctx.sessionTimeoutMs });
    if (frame === null) {
      log.info(`${sid} closed the session`);
      return;
    }
    const msg = blackboardProtocol.decode(frame);
    if (msg.type !== "seedMessage") throw new Refusal(`Expected seedMessage, got ${msg.type}`);
    const mac = await hmacSha256(sessionKey, toBytes(msg.message));
    // check: seed-message-hmac tests/blackboard/negative_test.ts
    if (!constantTimeEqual(mac, msg.hmac)) {
      throw new Refusal("HMAC does not match: message refused");
    }
    log.step(6, `message from ${sid}: HMAC valid (seed: no sequence number)`);
    ctx.printMessage(sid, msg.message);
  }
}
