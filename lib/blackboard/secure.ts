/**
 * Blackboard's default handshake (system 1, steps 3–5), the student's side and Blackboard's: the
 * seeds' steps done right.
 *
 *     STEP 3  student → Blackboard  request     "SID:<id> requests to upload report !" | cert 2 |
 *                                               the student's nonce | its ephemeral X25519 share |
 *                                               the record kind (AES-GCM unless told otherwise)
 *     STEP 4  Blackboard → student  sessionKey  Blackboard's ephemeral X25519 share | its
 *                                               certificate | the CA's current CRL (stapled) | its
 *                                               nonce | its signature over the transcript so far
 *     STEP 5  student → Blackboard  confirm     the student's signature over the transcript (cert
 *                                               2's key) | HMAC(K_confirm, "student" | hash)
 *             Blackboard → student  ready       HMAC(K_confirm, "blackboard" | transcript hash)
 *
 * The session key is HKDF over the X25519 secret, salted with the transcript: it never crosses the
 * wire, and both X25519 private halves are forgotten after the handshake, so a later theft of
 * student.key (or of Blackboard's key) opens no recorded session (forward secrecy). The seeds
 * RSA-encrypted the session key to cert 2 instead (`seed.ts`): whoever steals student.key reads
 * every recorded session. The student checks Blackboard's certificate against the CRL it staples;
 * Blackboard checks that the student holds cert 2's key by its step-5 signature. Both sides then
 * hold a `SecureSession` for step 6: records with sequence numbers, AES-GCM by default
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
  recordKindOf,
  RecordLayer,
  requestLine,
  SecureSession,
  sendHandshake,
  SESSION_TIMEOUT_MS,
  sessionKeyFrom,
  STEP4_MAX_FRAME,
  step4SignedData,
  step5SignedData,
  trafficKeys,
} from "./protocol.ts";
import { crlMemoryOf } from "../ca/mod.ts";
import { type ConnectOptions, connectToBlackboard, StudentSession } from "./client.ts";
import { type ModeContext, type Peer, Refusal } from "./serving.ts";
import {
  constantTimeEqual,
  newKeyShare,
  randomBytes,
  sharedSecret,
  Transcript,
} from "../crypto/mod.ts";
import {
  CertificateError,
  checkStapledCrl,
  crlNumber,
  der,
  importSigningKey,
  parseCertificate,
  signRsa,
  verifyCertificate,
  verifyRsa,
} from "../pki/mod.ts";

// ---------------------------------------------------------------- the student

/**
 * Runs steps 3–5 and returns the session (step 6). Throws with Blackboard's reason when it refuses
 * (`PeerRefusedError`), or a `CertificateError` when Blackboard's own certificate, its stapled CRL
 * or its signature does not verify.
 */
export async function openSession(options: ConnectOptions): Promise<StudentSession> {
  const { identity, log } = options;
  const timeoutMs = options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  const records = options.records ?? "aes-gcm";
  const encrypt = records === "aes-gcm";
  const stream = await connectToBlackboard(options.blackboard, timeoutMs);
  try {
    const t = new Transcript();
    // STEP 3: the request, cert 2, a fresh nonce and a fresh X25519 share.
    const share = await newKeyShare();
    const line = requestLine(identity.sid);
    t.add(
      await sendHandshake(stream, "request", {
        request: line,
        certificate: new Uint8Array(identity.cert.rawData),
        nonce: randomBytes(NONCE_BYTES),
        share: share.publicRaw,
        records,
      }),
    );
    log.step(3, `sent "${line}" with cert 2, a fresh nonce and an ephemeral X25519 share`);

    // STEP 4: Blackboard's certificate, its stapled CRL, its signature over the exchange, its share.
    const { msg, bytes } = await receiveHandshake(
      stream,
      ["sessionKey"],
      timeoutMs,
      STEP4_MAX_FRAME,
    );
    const name = options.blackboardName ?? BLACKBOARD_NAME;
    const bbCert = parseCertificate(msg.certificate, "Blackboard's certificate");
    await verifyCertificate(bbCert, {
      root: identity.root,
      purpose: "serverAuth",
      expectedCommonName: name,
    });
    const signed = step4SignedData(t, msg);
    // check: step4-signature tests/blackboard/handshake_test.ts tests/blackboard/negative_test.ts
    if (!(await verifyRsa(bbCert, msg.signature, signed))) {
      throw new CertificateError(
        "Blackboard's step-4 signature does not verify: not the real Blackboard, or the exchange was altered",
      );
    }
    const crl = await checkStapledCrl(bbCert, msg.crl, {
      root: identity.root,
      what: "Blackboard's stapled CRL",
      memory: options.crlMemory ?? crlMemoryOf(identity),
    });
    t.add(bytes);
    const secret = await sharedSecret(share, msg.share);
    if (secret === null) {
      throw new CertificateError("Blackboard's X25519 share is not a valid public key: refused");
    }
    const h4 = t.digest();
    const sessionKey = await sessionKeyFrom(secret, h4);
    log.step(
      4,
      `Blackboard's certificate (CN=${name}) and signature verified, not revoked (stapled CRL #${
        crlNumber(crl) ?? "?"
      }); session key agreed by ephemeral X25519 (forward secrecy), never on the wire`,
    );

    // STEP 5: sign the exchange with cert 2's key, and prove the session key with a MAC.
    const signature = await signRsa(await importSigningKey(identity.keyPem), step5SignedData(h4));
    const kConfirm = await confirmationKey(sessionKey, h4);
    t.add(
      await sendHandshake(stream, "confirm", {
        signature,
        mac: await confirmationMac(kConfirm, "student", h4),
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
      `key confirmation accepted: start to communicate (${
        encrypt ? "AES-GCM" : "HMAC-SHA256, MAC only: readable on the wire"
      } records with sequence numbers)`,
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

  // STEP 3: the request, cert 2, the student's nonce and X25519 share.
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
  const records = recordKindOf(req.records);
  if (records === undefined) {
    throw new Refusal("Malformed request: records must be aes-gcm or hmac");
  }
  const cert = await ctx.verifyStudent(peer, req.request, req.certificate);
  const sid = peer.sid!;
  // check: bb-records-aes-gcm tests/blackboard/session_test.ts
  if (records === "hmac" && ctx.records !== "hmac") {
    throw new Refusal(
      "Blackboard requires AES-GCM records: MAC-only records (--records hmac) are a teaching option that Blackboard must allow too",
    );
  }
  const share = await newKeyShare();
  const secret = await sharedSecret(share, req.share);
  // check: bb-student-share tests/blackboard/handshake_test.ts
  if (secret === null) {
    throw new Refusal("Malformed request: the X25519 share is not a valid public key");
  }

  // STEP 4: Blackboard's share, certificate and current CRL, signed over the transcript.
  const crl = await ctx.revocation.current();
  const values = {
    share: share.publicRaw,
    certificate: ctx.certDer,
    crl: der(crl),
    nonce: randomBytes(NONCE_BYTES),
    signature: new Uint8Array() as Uint8Array,
  };
  values.signature = await signRsa(ctx.signingKey, step4SignedData(t, values));
  t.add(await sendHandshake(stream, "sessionKey", values));
  const h4 = t.digest();
  const sessionKey = await sessionKeyFrom(secret, h4);
  log.step(
    4,
    `ephemeral X25519 share for ${sid} with Blackboard's certificate and the CA's CRL #${
      crlNumber(crl) ?? "?"
    } (stapled), signed by Blackboard over the exchange; session key from X25519 and HKDF`,
  );

  // STEP 5: the student signs the exchange with cert 2's key and proves the session key by a MAC.
  const kConfirm = await confirmationKey(sessionKey, h4);
  const confirm = await receiveHandshake(stream, ["confirm"], hs);
  // check: bb-student-signature tests/blackboard/handshake_test.ts
  if (!(await verifyRsa(cert, confirm.msg.signature, step5SignedData(h4)))) {
    throw new Refusal(
      "Key confirmation failed: the student does not hold the private key of cert 2",
    );
  }
  const expected = await confirmationMac(kConfirm, "student", h4);
  // check: step5-key-confirmation tests/blackboard/handshake_test.ts
  if (!constantTimeEqual(expected, confirm.msg.mac)) {
    throw new Refusal(
      "Key confirmation failed: the MAC does not verify (the exchange was altered on the way)",
    );
  }
  t.add(confirm.bytes);
  const readyHash = t.digest();
  await sendHandshake(stream, "ready", {
    mac: await confirmationMac(kConfirm, "blackboard", readyHash),
  });
  const encrypt = records === "aes-gcm";
  const keys = await trafficKeys(sessionKey, readyHash, "blackboard", encrypt);
  const session = new SecureSession(stream, new RecordLayer(keys, "blackboard", encrypt));
  log.step(
    5,
    `signature and key confirmation from ${sid} valid: start to communicate (${
      encrypt ? "AES-GCM" : "HMAC-SHA256, MAC only"
    } records with sequence numbers)`,
  );
  return { sid, session };
}
