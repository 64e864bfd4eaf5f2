/**
 * Blackboard's network side (system 1, steps 3–6): verifies each student's cert 2 against the
 * pinned root and a fresh CRL, hands out a session key, checks the key confirmation, then serves
 * authenticated messages and report uploads. Many students at once; a failure refuses one student
 * with one clear line and never touches the others.
 *
 * This file runs a connection: step 3's certificate checks (both modes), refusals, and step 6 of
 * the default mode (messages and uploads). The handshakes read top to bottom in `secure.ts`
 * (default) and `seed.ts` (`--protocol seed`), each with the student's side too.
 */

import {
  errorMessage,
  formatBytes,
  printable,
  type StepLog,
  unlessAborted,
} from "../runtime/mod.ts";
import { DeadlineError, FrameError, PeerRefusedError } from "../wire/mod.ts";
import { toHex } from "../crypto/mod.ts";
import {
  type Certificate,
  CertificateError,
  crlNumber,
  parseCertificate,
  type Revocation,
  RevocationUnavailableError,
  verifyCertificate,
} from "../pki/mod.ts";
import {
  BLACKBOARD_PORT,
  blackboardProtocol,
  HANDSHAKE_TIMEOUT_MS,
  messageProblem,
  parseRequestLine,
  type RecordKind,
  type SecureSession,
  SESSION_MAX_FRAME,
  SESSION_TIMEOUT_MS,
} from "./protocol.ts";
import { type ModeContext, type Peer, Refusal } from "./serving.ts";
import { acceptSession } from "./secure.ts";
import { serveSeed } from "./seed.ts";
import { HandshakeGate, type HandshakeLimit, serveFramed, type Server } from "../net/mod.ts";
import { type PartialUpload, SWEEP_INTERVAL_MS, type UploadStore } from "./upload_store.ts";
import { UploadError } from "./report_names.ts";

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
  /** "hmac" allows MAC-only records too (teaching only); default "aes-gcm": AES-GCM records only. */
  records?: RecordKind;
  hostname?: string;
  port?: number;
  signal?: AbortSignal;
  handshakeTimeoutMs?: number;
  sessionTimeoutMs?: number;
  maxConnections?: number;
  /** Connections one address may hold at once (default 16). */
  maxPerAddress?: number;
  /** Handshakes one address may start per second, and at once (default 20, 40). */
  handshakeLimit?: Partial<HandshakeLimit>;
}

export function serveBlackboard(options: BlackboardOptions): Server {
  const certDer = new Uint8Array(options.cert.rawData);
  const print = options.print ?? ((line: string) => console.log(line));
  const ctx: Context = {
    ...options,
    print,
    certDer,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    sessionTimeoutMs: options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS,
    verifyStudent: (peer, line, certificate) => verifyStudent(options, peer, line, certificate),
    printMessage: (sid, text) => {
      // Both modes: a message with control characters or bidi overrides is refused, never shown.
      const problem = messageProblem(text);
      if (problem !== null) throw new Refusal(problem);
      print(`Message from ${sid}: ${printable(text)}`);
    },
  };
  // Step 4 costs Blackboard a signature for anyone who asks: per address, before a byte is read.
  const gate = new HandshakeGate(options.handshakeLimit, options.log);
  const server = serveFramed({
    hostname: options.hostname,
    port: options.port ?? BLACKBOARD_PORT,
    log: options.log,
    signal: options.signal,
    maxConnections: options.maxConnections,
    maxPerAddress: options.maxPerAddress,
    stream: { maxFrame: SESSION_MAX_FRAME, readTimeoutMs: ctx.handshakeTimeoutMs },
    handler: async (stream, { remote, log, stopping }, conn) => {
      const host = (conn.remoteAddr as Deno.NetAddr).hostname ?? remote;
      const admitted = await gate.admit(
        host,
        remote,
        (reason) => stream.writeFrame(blackboardProtocol.encode("error", { reason })),
      );
      if (!admitted) return stream.close();
      const peer: Peer = { remote, log, stream, sid: undefined, refused: false };
      try {
        if (options.protocol === "seed") await serveSeed(ctx, peer);
        else {
          const accepted = await acceptSession(ctx, peer);
          if (accepted) {
            await serveSession(ctx, peer, accepted.session, accepted.sid, stopping);
          }
        }
      } catch (err) {
        await refuse(peer, err);
      } finally {
        if (peer.refused && !stream.closed) await lingerClose(conn);
        stream.close();
      }
    },
  });
  server.finished.then(() => gate.flush(), () => gate.flush());
  return server;
}

/**
 * Removes expired partial uploads now (Blackboard's start-up: resolves when done) and then every
 * hour until `signal` aborts.
 */
export async function sweepPartials(
  store: UploadStore,
  log: StepLog,
  signal: AbortSignal,
): Promise<void> {
  const sweep = async () => {
    try {
      const { removed, bytes } = await store.sweep();
      if (removed > 0) {
        log.info(
          `removed ${removed} unfinished upload(s) untouched for ${
            Math.round(store.partialExpiryMs / 3600_000)
          } h (${formatBytes(bytes)})`,
        );
      }
    } catch (err) {
      log.error(`sweeping unfinished uploads failed: ${errorMessage(err)}`);
    }
  };
  await sweep();
  if (signal.aborted) return;
  const timer = setInterval(sweep, SWEEP_INTERVAL_MS);
  Deno.unrefTimer(timer);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

interface Context
  extends Omit<BlackboardOptions, "handshakeTimeoutMs" | "sessionTimeoutMs">, ModeContext {
  print: (line: string) => void;
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

/**
 * Why a student is refused, in one line for the student, after logging it; undefined when there
 * is nothing to tell (a deadline passed, or the student gave up or broke the connection).
 */
function refusalReason(peer: Peer, err: unknown): string | undefined {
  const who = peer.sid ? `SID ${peer.sid} (${peer.remote})` : peer.remote;
  if (err instanceof DeadlineError) {
    peer.log.warn(`dropped ${who}: ${err.message}`);
    return undefined;
  }
  if (err instanceof PeerRefusedError) {
    peer.log.warn(`${who} gave up: ${printable(err.message)}`);
    return undefined;
  }
  if (err instanceof FrameError && (err.kind === "closed" || err.kind === "truncated")) {
    peer.log.warn(`${who}: ${err.message}`);
    return undefined;
  }
  if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
    // The server closed the connection under a read: its shutdown's grace period ran out.
    peer.log.warn(`${who}: connection closed as Blackboard stopped`);
    return undefined;
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
  return reason;
}

/**
 * During the handshake: logs why a student is refused and tells the student in one line (the
 * outer `error`, in the clear: nothing is authenticated yet, and a refusal carries no secret);
 * the caller closes.
 */
async function refuse(peer: Peer, err: unknown): Promise<void> {
  const reason = refusalReason(peer, err);
  if (reason === undefined || peer.stream.closed) return;
  peer.refused = true;
  await peer.stream.writeFrame(blackboardProtocol.encode("error", { reason })).catch(() => {});
}

/** Step 3's checks: the request line, cert 2 against the pinned root, the CRL, CN = ID. */
async function verifyStudent(
  ctx: BlackboardOptions,
  peer: Peer,
  line: string,
  certificate: Uint8Array,
): Promise<Certificate> {
  const sid = parseRequestLine(line);
  // check: request-line tests/blackboard/negative_test.ts
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

async function serveSession(
  ctx: Context,
  peer: Peer,
  session: SecureSession,
  sid: string,
  stopping: AbortSignal,
): Promise<void> {
  const { log } = peer;
  let upload: PartialUpload | undefined;
  // Blackboard stopping (SIGINT): the session ends between two messages, with the student told.
  try {
    for (;;) {
      const msg = await unlessAborted(session.next({ timeoutMs: ctx.sessionTimeoutMs }), stopping);
      if (msg === "aborted") {
        let reason = "Blackboard is shutting down";
        if (upload) {
          await upload.close();
          log.warn(
            `${sid}: Blackboard is stopping; partial ${upload.name} kept at byte ${upload.offset} for a resume`,
          );
          reason +=
            `: your upload is kept at byte ${upload.offset} of ${upload.size}; run the same command to resume`;
        } else {
          log.info(`${sid}: told the session ends, Blackboard is stopping`);
        }
        await session.refuse(reason);
        peer.refused = true;
        return;
      }
      if (msg === null) {
        if (upload) {
          // Closed (synced, released) before it is reported kept.
          await upload.close();
          log.warn(
            `${sid} left in the middle of ${upload.name} at byte ${upload.offset} of ${upload.size}: partial kept for a resume`,
          );
        }
        log.info(`${sid} closed the session`);
        return;
      }
      switch (msg.type) {
        case "message": {
          const problem = messageProblem(msg.text);
          if (problem !== null) throw new Refusal(problem);
          log.step(
            6,
            `message from ${sid}: ${
              session.encrypt ? "AES-GCM tag" : "HMAC"
            } and sequence number valid`,
          );
          ctx.printMessage(sid, msg.text);
          await session.send("received", {});
          break;
        }
        case "uploadBegin": {
          // check: one-upload-per-session tests/blackboard/negative_test.ts
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
          // check: chunk-needs-upload tests/blackboard/negative_test.ts
          if (!upload) throw new Refusal("Chunk without an upload in progress");
          await upload.write(msg.offset, msg.data);
          break;
        }
        case "uploadEnd": {
          if (!upload) throw new Refusal("Upload end without an upload in progress");
          // Still this session's upload until it is finished: a refusal (ended early, a write that
          // failed) leaves it to the `finally` below, which closes it and keeps the partial.
          const receipt = await upload.finish(msg.sha256);
          upload = undefined;
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
        case "error":
          // The student ended the session, inside a record (it saw a cleartext frame or a bad
          // record): its words, through printable().
          log.warn(`${sid} ended the session: ${printable(msg.reason)}`);
          return;
        default:
          throw new Refusal(`Unexpected ${msg.type} from the student`);
      }
    }
  } catch (err) {
    if (err instanceof FrameError && upload) {
      await upload.close();
      log.warn(
        `${sid}: ${err.message}; partial ${upload.name} kept at byte ${upload.offset} for a resume`,
      );
    }
    // After the handshake every refusal travels inside an authenticated record, never in the
    // clear: a refused record, a cleartext frame, a refusal of Blackboard's own, an internal error.
    const reason = refusalReason(peer, err);
    if (reason !== undefined && !peer.stream.closed) {
      await session.refuse(reason);
      peer.refused = true;
    }
  } finally {
    await upload?.close();
  }
}
