/**
 * Blackboard's default handshake (system 1, steps 3–5), the student's side and Blackboard's: the
 * seeds' steps done right.
 *
 *     STEP 3  student → Blackboard  request     "SID:<id> requests to upload report !" | cert 2 |
 *                                               the student's nonce | whether records are AES-GCM
 *     STEP 4  Blackboard → student  sessionKey  RSA-OAEP(session key) | Blackboard's certificate |
 *                                               its nonce | its signature over the transcript so far
 *     STEP 5  student → Blackboard  confirm     HMAC(K_confirm, "student" | transcript hash)
 *             Blackboard → student  ready       HMAC(K_confirm, "blackboard" | transcript hash)
 *
 * The session key never crosses the wire in the clear: the student proves it decrypted the key
 * with a MAC under a key derived from it (the seeds sent the key back instead: `seed.ts`). Both
 * sides then hold a `SecureSession` for step 6: records with sequence numbers, HMAC or AES-GCM
 * (`protocol.ts`), served by `server.ts` and used by the student's `StudentSession`.
 */

import {
  BLACKBOARD_NAME,
  blackboardProtocol,
  confirmationKey,
  confirmationMac,
  HANDSHAKE_MAX_FRAME,
  HANDSHAKE_TIMEOUT_MS,
  NONCE_BYTES,
  receiveHandshake,
  RecordLayer,
  requestLine,
  SecureSession,
  sendHandshake,
  SESSION_KEY_BYTES,
  SESSION_TIMEOUT_MS,
  step4SignedData,
  trafficKeys,
} from "./protocol.ts";
import { type ConnectOptions, connectToBlackboard, StudentSession } from "./client.ts";
import { encryptSessionKey, type ModeContext, type Peer, Refusal } from "./serving.ts";
import { constantTimeEqual, randomBytes, rsaOaepDecrypt, Transcript } from "../crypto/mod.ts";
import {
  CertificateError,
  parseCertificate,
  privateKeyDer,
  signRsa,
  verifyCertificate,
  verifyRsa,
} from "../pki/mod.ts";

// ---------------------------------------------------------------- the student

/**
 * Runs steps 3–5 and returns the session (step 6). Throws with Blackboard's reason when it refuses
 * (`PeerRefusedError`), or a `CertificateError` when Blackboard's own certificate or signature
 * does not verify.
 */
export async function openSession(options: ConnectOptions): Promise<StudentSession> {
  const { identity, log } = options;
  const timeoutMs = options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  const encrypt = options.encrypt ?? false;
  const stream = await connectToBlackboard(options.blackboard, timeoutMs);
  try {
    const t = new Transcript();
    // STEP 3
    const line = requestLine(identity.sid);
    t.add(
      await sendHandshake(stream, "request", {
        request: line,
        certificate: new Uint8Array(identity.cert.rawData),
        nonce: randomBytes(NONCE_BYTES),
        encrypt: encrypt ? 1 : 0,
      }),
    );
    log.step(3, `sent "${line}" with cert 2 and a fresh nonce`);

    // STEP 4: Blackboard's certificate, its signature over the exchange, the session key.
    const { msg, bytes } = await receiveHandshake(stream, ["sessionKey"], timeoutMs);
    const name = options.blackboardName ?? BLACKBOARD_NAME;
    const bbCert = parseCertificate(msg.certificate, "Blackboard's certificate");
    await verifyCertificate(bbCert, {
      root: identity.root,
      purpose: "serverAuth",
      expectedCommonName: name,
    });
    const signed = step4SignedData(t, msg);
    // check: step4-signature tests/blackboard/negative_test.ts
    if (!(await verifyRsa(bbCert, msg.signature, signed))) {
      throw new CertificateError(
        "Blackboard's step-4 signature does not verify: not the real Blackboard, or the exchange was altered",
      );
    }
    t.add(bytes);
    let sessionKey: Uint8Array;
    try {
      sessionKey = await rsaOaepDecrypt(privateKeyDer(identity.keyPem), msg.encryptedKey);
    } catch {
      throw new Error("Cannot decrypt the session key: the private key is not the key of cert 2");
    }
    if (sessionKey.length !== SESSION_KEY_BYTES) {
      throw new Error(`Session key has ${sessionKey.length} bytes, expected ${SESSION_KEY_BYTES}`);
    }
    log.step(
      4,
      `Blackboard's certificate (CN=${name}) and signature verified; session key decrypted with the private key`,
    );

    // STEP 5: prove possession of the key with a MAC; the key never crosses the wire.
    const confirmHash = t.digest();
    const kConfirm = await confirmationKey(sessionKey, confirmHash);
    t.add(
      await sendHandshake(stream, "confirm", {
        mac: await confirmationMac(kConfirm, "student", confirmHash),
      }),
    );
    const readyHash = t.digest();
    const ready = await receiveHandshake(stream, ["ready"], timeoutMs);
    if (
      !constantTimeEqual(
        ready.msg.mac,
        await confirmationMac(kConfirm, "blackboard", readyHash),
      )
    ) {
      throw new Error("Blackboard's key confirmation does not verify");
    }
    const keys = await trafficKeys(sessionKey, readyHash, "student", encrypt);
    log.step(
      5,
      `key confirmation accepted: start to communicate (HMAC-SHA256 records${
        encrypt ? ", AES-GCM" : ""
      })`,
    );
    return new StudentSession(
      identity,
      new SecureSession(stream, new RecordLayer(keys, "student", encrypt)),
      log,
      options.timeoutMs ?? SESSION_TIMEOUT_MS,
    );
  } catch (err) {
    stream.close();
    throw err;
  }
}

// ---------------------------------------------------------------- Blackboard

/**
 * Blackboard's side of steps 3–5: returns the student's ID and the step-6 session, or null when
 * the student closed before saying anything. A failure throws: `Refusal`, `CertificateError`,
 * `FrameError`, `RevocationUnavailableError` are told to the student by `server.ts`.
 */
export async function acceptSession(
  ctx: ModeContext,
  peer: Peer,
): Promise<{ sid: string; session: SecureSession } | null> {
  const { stream, log } = peer;
  const t = new Transcript();
  const hs = ctx.handshakeTimeoutMs;

  // STEP 3: the request, cert 2 and the student's nonce.
  const first = await stream.readFrame({ timeoutMs: hs, maxFrame: HANDSHAKE_MAX_FRAME });
  if (first === null) return null;
  const req = blackboardProtocol.decode(first);
  if (req.type === "seedRequest") {
    throw new Refusal("Blackboard speaks the default protocol, not the seed protocol");
  }
  if (req.type !== "request") throw new Refusal(`Expected request, got ${req.type}`);
  t.add(first);
  // check: request-nonce-length tests/blackboard/negative_test.ts
  if (req.nonce.length !== NONCE_BYTES) throw new Refusal(`The nonce must be ${NONCE_BYTES} bytes`);
  // check: request-encrypt-flag tests/blackboard/negative_test.ts
  if (req.encrypt > 1) throw new Refusal("Malformed request: encrypt must be 0 or 1");
  const encrypt = req.encrypt === 1;
  const cert = await ctx.verifyStudent(peer, req.request, req.certificate);
  const sid = peer.sid!;
  // check: require-encrypt tests/blackboard/session_test.ts
  if (ctx.requireEncrypt && !encrypt) {
    throw new Refusal("Blackboard requires AES-GCM records: run the student with --encrypt");
  }

  // STEP 4: a fresh 256-bit session key, RSA-OAEP to cert 2's key, signed over the transcript.
  const sessionKey = randomBytes(SESSION_KEY_BYTES);
  const values = {
    encryptedKey: await encryptSessionKey(cert, sessionKey),
    certificate: ctx.certDer,
    nonce: randomBytes(NONCE_BYTES),
    signature: new Uint8Array() as Uint8Array,
  };
  values.signature = await signRsa(ctx.signingKey, step4SignedData(t, values));
  t.add(await sendHandshake(stream, "sessionKey", values));
  log.step(
    4,
    `session key (256-bit) for ${sid} encrypted with RSA-OAEP to cert 2's key, signed by Blackboard over the exchange`,
  );

  // STEP 5: the student proves it decrypted the key; the key itself never crosses the wire.
  const confirmHash = t.digest();
  const kConfirm = await confirmationKey(sessionKey, confirmHash);
  const confirm = await receiveHandshake(stream, ["confirm"], hs);
  const expected = await confirmationMac(kConfirm, "student", confirmHash);
  // check: step5-key-confirmation tests/blackboard/handshake_test.ts
  if (!constantTimeEqual(expected, confirm.msg.mac)) {
    throw new Refusal(
      "Key confirmation failed: the student does not hold the private key of cert 2",
    );
  }
  t.add(confirm.bytes);
  const readyHash = t.digest();
  await sendHandshake(stream, "ready", {
    mac: await confirmationMac(kConfirm, "blackboard", readyHash),
  });
  const keys = await trafficKeys(sessionKey, readyHash, "blackboard", encrypt);
  const session = new SecureSession(stream, new RecordLayer(keys, "blackboard", encrypt));
  log.step(
    5,
    `key confirmation from ${sid} valid: start to communicate (HMAC-SHA256 records with sequence numbers${
      encrypt ? ", AES-GCM" : ""
    })`,
  );
  return { sid, session };
}
