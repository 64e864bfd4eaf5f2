/**
 * Blackboard's network side (system 1, steps 3–6): verifies each student's cert 2 against the
 * pinned root and a fresh CRL, hands out a session key, checks the key confirmation, then serves
 * authenticated messages and report uploads. Many students at once; a failure refuses one student
 * with one clear line and never touches the others.
 */

import { errorMessage, type StepLog } from "../runtime/mod.ts";
import { DeadlineError, type FramedStream, FrameError, PeerRefusedError } from "../wire/mod.ts";
import {
  constantTimeEqual,
  hmacSha256,
  randomBytes,
  rsaOaepEncrypt,
  toBytes,
  toHex,
  Transcript,
} from "../crypto/mod.ts";
import {
  type Certificate,
  CertificateError,
  crlNumber,
  parseCertificate,
  type Revocation,
  RevocationUnavailableError,
  signRsa,
  verifyCertificate,
} from "../pki/mod.ts";
import {
  BLACKBOARD_PORT,
  blackboardProtocol,
  confirmationKey,
  confirmationMac,
  HANDSHAKE_MAX_FRAME,
  HANDSHAKE_TIMEOUT_MS,
  MAX_MESSAGE_BYTES,
  NONCE_BYTES,
  parseRequestLine,
  receiveHandshake,
  RecordLayer,
  SecureSession,
  sendHandshake,
  SESSION_KEY_BYTES,
  SESSION_MAX_FRAME,
  SESSION_TIMEOUT_MS,
  step4SignedData,
  trafficKeys,
} from "./protocol.ts";
import { serveFramed, type Server } from "../net/mod.ts";
import { type PartialUpload, UploadError, type UploadStore } from "./upload_store.ts";

// ---------------------------------------------------------------- the server

export type BlackboardMode = "default" | "seed";

export interface BlackboardOptions {
  /** The pinned root (cuhk.cer). */
  root: Certificate;
  /** Blackboard's own certificate (serverAuth) and its signing key. */
  cert: Certificate;
  signingKey: CryptoKey;
  /** The shared revocation checker (lib/pki), fed by the CA's CRL. */
  revocation: Revocation;
  store: UploadStore;
  log: StepLog;
  /** Where each valid message is printed, as the seeds do (default: standard output). */
  print?: (line: string) => void;
  protocol?: BlackboardMode;
  /** Refuse students who do not ask for AES-GCM records. */
  requireEncrypt?: boolean;
  hostname?: string;
  port?: number;
  signal?: AbortSignal;
  handshakeTimeoutMs?: number;
  sessionTimeoutMs?: number;
  maxConnections?: number;
}

/** Makes a message printable on one terminal line: control characters are escaped. */
export function printable(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

export function serveBlackboard(options: BlackboardOptions): Server {
  const certDer = new Uint8Array(options.cert.rawData);
  const ctx: Context = {
    ...options,
    print: options.print ?? ((line) => console.log(line)),
    certDer,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    sessionTimeoutMs: options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS,
  };
  return serveFramed({
    hostname: options.hostname,
    port: options.port ?? BLACKBOARD_PORT,
    log: options.log,
    signal: options.signal,
    maxConnections: options.maxConnections,
    stream: { maxFrame: SESSION_MAX_FRAME, readTimeoutMs: ctx.handshakeTimeoutMs },
    handler: async (stream, { remote, log }, conn) => {
      const peer: Peer = { remote, log, stream, sid: undefined, refused: false };
      try {
        if (options.protocol === "seed") await handleSeed(ctx, peer);
        else await handleDefault(ctx, peer);
      } catch (err) {
        await refuse(peer, err);
      } finally {
        if (peer.refused && !stream.closed) await lingerClose(conn);
        stream.close();
      }
    },
  });
}

interface Context extends BlackboardOptions {
  print: (line: string) => void;
  certDer: Uint8Array;
  handshakeTimeoutMs: number;
  sessionTimeoutMs: number;
}

interface Peer {
  remote: string;
  log: StepLog;
  stream: FramedStream;
  sid: string | undefined;
  /** A refusal was sent: close gently so that it reaches the student. */
  refused: boolean;
}

/**
 * Closes after a refusal without losing it: a student still streaming chunks would otherwise get
 * a reset that can discard the refusal. Half-closes, then reads and drops what is in flight for a
 * moment (bounded in time and bytes).
 */
async function lingerClose(conn: Deno.Conn): Promise<void> {
  try {
    await conn.closeWrite();
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // Closed.
    }
  }, 1000);
  try {
    const buf = new Uint8Array(64 * 1024);
    let total = 0;
    while (total < 64 * 1024 * 1024) {
      const n = await conn.read(buf);
      if (n === null) break;
      total += n;
    }
  } catch {
    // Closed by the timer or the peer.
  } finally {
    clearTimeout(timer);
  }
}

/** A refusal that Blackboard states to the student as is. */
class Refusal extends Error {
  override name = "Refusal";
}

/** Logs why a student is refused, tells the student in one line, and leaves the closing to the caller. */
async function refuse(peer: Peer, err: unknown): Promise<void> {
  const who = peer.sid ? `SID ${peer.sid} (${peer.remote})` : peer.remote;
  if (err instanceof DeadlineError) {
    peer.log.warn(`dropped ${who}: ${err.message}`);
    return;
  }
  if (err instanceof PeerRefusedError) {
    peer.log.warn(`${who} gave up: ${err.message}`);
    return;
  }
  let reason: string;
  if (
    err instanceof Refusal || err instanceof CertificateError || err instanceof FrameError ||
    err instanceof UploadError
  ) {
    reason = err.message;
  } else if (err instanceof RevocationUnavailableError) {
    peer.log.error(err.message);
    reason = "Blackboard cannot check revocation right now: try again later";
  } else {
    peer.log.error(`internal error with ${who}: ${errorMessage(err)}`);
    reason = "Blackboard failed: internal error";
  }
  peer.log.warn(`refused ${who}: ${reason}`);
  if (peer.stream.closed) return;
  peer.refused = true;
  // The outer `error` message, in the clear: a refusal carries no secret.
  await peer.stream.writeFrame(blackboardProtocol.encode("error", { reason })).catch(() => {});
}

/** Step 3's checks: the request line, cert 2 against the pinned root, the CRL, CN = ID. */
async function verifyStudent(
  ctx: Context,
  peer: Peer,
  line: string,
  certificate: Uint8Array,
): Promise<Certificate> {
  const sid = parseRequestLine(line);
  if (sid === undefined) {
    throw new Refusal(`Malformed request: expected 'SID:<10 digits> requests to upload report !'`);
  }
  peer.sid = sid;
  peer.log.step(3, `request from ${peer.remote}: "${printable(line)}" with cert 2`);
  const cert = parseCertificate(certificate, "cert 2");
  const crl = await ctx.revocation.current();
  await verifyCertificate(cert, {
    root: ctx.root,
    purpose: "clientAuth",
    crl,
    expectedCommonName: sid,
    keyEncipherment: true,
  });
  peer.log.step(
    3,
    `cert 2 of ${sid} verified: signed by the pinned root, valid until ${cert.notAfter.toISOString()}, clientAuth, CN = ${sid}, not revoked (CRL #${
      crlNumber(crl) ?? "?"
    })`,
  );
  return cert;
}

async function encryptSessionKey(cert: Certificate, key: Uint8Array): Promise<Uint8Array> {
  return await rsaOaepEncrypt(new Uint8Array(cert.publicKey.rawData), key);
}

async function handleDefault(ctx: Context, peer: Peer): Promise<void> {
  const { stream, log } = peer;
  const t = new Transcript();
  const hs = ctx.handshakeTimeoutMs;

  // STEP 3: the request, cert 2 and the student's nonce.
  const first = await stream.readFrame({ timeoutMs: hs, maxFrame: HANDSHAKE_MAX_FRAME });
  if (first === null) return;
  const req = blackboardProtocol.decode(first);
  if (req.type === "seedRequest") {
    throw new Refusal("Blackboard speaks the default protocol, not the seed protocol");
  }
  if (req.type !== "request") throw new Refusal(`Expected request, got ${req.type}`);
  t.add(first);
  if (req.nonce.length !== NONCE_BYTES) throw new Refusal(`The nonce must be ${NONCE_BYTES} bytes`);
  if (req.encrypt > 1) throw new Refusal("Malformed request: encrypt must be 0 or 1");
  const encrypt = req.encrypt === 1;
  const cert = await verifyStudent(ctx, peer, req.request, req.certificate);
  const sid = peer.sid!;
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
  await serveSession(ctx, peer, session, sid);
}

async function serveSession(
  ctx: Context,
  peer: Peer,
  session: SecureSession,
  sid: string,
): Promise<void> {
  const { log } = peer;
  let upload: PartialUpload | undefined;
  try {
    for (;;) {
      const msg = await session.next({ timeoutMs: ctx.sessionTimeoutMs });
      if (msg === null) {
        if (upload) {
          log.warn(
            `${sid} left in the middle of ${upload.name} at byte ${upload.offset} of ${upload.size}: partial kept for a resume`,
          );
        }
        log.info(`${sid} closed the session`);
        return;
      }
      switch (msg.type) {
        case "message": {
          if (new TextEncoder().encode(msg.text).length > MAX_MESSAGE_BYTES) {
            throw new Refusal(`Message too long: at most ${MAX_MESSAGE_BYTES} bytes`);
          }
          log.step(6, `message from ${sid}: HMAC and sequence number valid`);
          ctx.print(`Message from ${sid}: ${printable(msg.text)}`);
          await session.send("received", {});
          break;
        }
        case "uploadBegin": {
          if (upload) throw new Refusal("An upload is already in progress in this session");
          upload = await ctx.store.begin(sid, msg.uploadId, msg.name, msg.size);
          log.step(
            6,
            upload.offset > 0
              ? `${sid} resumes ${upload.name} (${msg.size} bytes) from byte ${upload.offset}`
              : `${sid} starts uploading ${upload.name} (${msg.size} bytes)`,
          );
          await session.send("uploadOffset", { offset: upload.offset });
          break;
        }
        case "chunk": {
          if (!upload) throw new Refusal("Chunk without an upload in progress");
          await upload.write(msg.offset, msg.data);
          break;
        }
        case "uploadEnd": {
          if (!upload) throw new Refusal("Upload end without an upload in progress");
          const current = upload;
          upload = undefined;
          const receipt = await current.finish(msg.sha256);
          const hex = toHex(receipt.sha256);
          log.step(6, `stored ${receipt.stored} (${receipt.size} bytes, SHA-256 ${hex})`);
          ctx.print(
            `Report from ${sid}: ${receipt.stored} (${receipt.size} bytes, SHA-256 ${hex})`,
          );
          await session.send("receipt", {
            stored: receipt.stored,
            size: receipt.size,
            sha256: receipt.sha256,
          });
          break;
        }
        default:
          throw new Refusal(`Unexpected ${msg.type} from the student`);
      }
    }
  } catch (err) {
    if (err instanceof Refusal || err instanceof UploadError) {
      // The session is intact: the refusal goes as an authenticated record.
      await session.send("error", { reason: err.message }).catch(() => {});
      log.warn(`refused SID ${sid} (${peer.remote}): ${err.message}`);
      peer.refused = true;
      return;
    }
    // A record refused (RecordError) or a broken stream: the session is over; `refuse` answers.
    if (err instanceof FrameError && upload) {
      log.warn(
        `${sid}: ${err.message}; partial ${upload.name} kept at byte ${upload.offset} for a resume`,
      );
    }
    throw err;
  } finally {
    await upload?.close();
  }
}

async function handleSeed(ctx: Context, peer: Peer): Promise<void> {
  const { stream, log } = peer;
  const hs = ctx.handshakeTimeoutMs;
  const first = await stream.readFrame({ timeoutMs: hs, maxFrame: HANDSHAKE_MAX_FRAME });
  if (first === null) return;
  const req = blackboardProtocol.decode(first);
  if (req.type === "request") {
    throw new Refusal("Blackboard runs in seed mode: the student must use --protocol seed");
  }
  if (req.type !== "seedRequest") throw new Refusal(`Expected seedRequest, got ${req.type}`);
  const cert = await verifyStudent(ctx, peer, req.request, req.certificate);
  const sid = peer.sid!;

  const sessionKey = randomBytes(SESSION_KEY_BYTES);
  await sendHandshake(stream, "seedSessionKey", {
    encryptedKey: await encryptSessionKey(cert, sessionKey),
  });
  log.step(4, `session key for ${sid} encrypted with RSA-OAEP to cert 2's key (seed: unsigned)`);

  const echo = await receiveHandshake(stream, ["seedKeyEcho"], hs);
  if (!constantTimeEqual(echo.msg.sessionKey, sessionKey)) {
    throw new Refusal("Session key check failed: the key sent back is not the session key");
  }
  await sendHandshake(stream, "seedOk", {});
  log.step(5, `decrypted session key from ${sid} matches (seed: it crossed the wire in the clear)`);

  for (;;) {
    const frame = await stream.readFrame({ timeoutMs: ctx.sessionTimeoutMs });
    if (frame === null) {
      log.info(`${sid} closed the session`);
      return;
    }
    const msg = blackboardProtocol.decode(frame);
    if (msg.type !== "seedMessage") throw new Refusal(`Expected seedMessage, got ${msg.type}`);
    const mac = await hmacSha256(sessionKey, toBytes(msg.message));
    if (!constantTimeEqual(mac, msg.hmac)) {
      throw new Refusal("HMAC does not match: message refused");
    }
    log.step(6, `message from ${sid}: HMAC valid (seed: no sequence number)`);
    ctx.print(`Message from ${sid}: ${printable(msg.message)}`);
  }
}
