/**
 * The student's side of Blackboard (system 1): connecting, and step 6 of the default mode over a
 * finished handshake: authenticated messages and resumable report uploads. The handshakes are in
 * `secure.ts` (default: `openSession`) and `seed.ts` (`--protocol seed`: `openSeedSession`).
 */

import { createHash } from "node:crypto";
import {
  ensureDir,
  errorMessage,
  exists,
  formatBytes,
  type HostPort,
  type StepLog,
  writeFileAtomic,
} from "../runtime/mod.ts";
import { FramedStream, PeerRefusedError } from "../wire/mod.ts";
import { constantTimeEqual, randomBytes, sha256, toHex } from "../crypto/mod.ts";
import type { StudentIdentity } from "../ca/mod.ts";
import type { CrlMemory } from "../pki/mod.ts";
import {
  CHUNK_SIZE,
  messageProblem,
  RecordError,
  type RecordKind,
  type SecureSession,
  SESSION_MAX_FRAME,
  type SessionMessage,
} from "./protocol.ts";
import { reportNameOf } from "./report_names.ts";

/** Chunks sealed and written at once during an upload (each at most CHUNK_SIZE bytes). */
const IN_FLIGHT = 4;

/** What the student needs to open a session (either mode). */
export interface ConnectOptions {
  blackboard: HostPort;
  identity: StudentIdentity;
  log: StepLog;
  /** Step 6's records: "aes-gcm" (the default) or "hmac" (MAC only, teaching). */
  records?: RecordKind;
  /** The CN that Blackboard's certificate must carry (default "blackboard"). */
  blackboardName?: string;
  timeoutMs?: number;
  /** The newest CRL seen (default: the file in the student's home, `crlMemoryOf`). */
  crlMemory?: CrlMemory;
}

/** Connects to Blackboard, framing the connection for the handshake and step 6. */
export async function connectToBlackboard(
  address: HostPort,
  timeoutMs: number,
): Promise<FramedStream> {
  const conn = await Deno.connect({ hostname: address.hostname, port: address.port }).catch(
    (err) => {
      throw new Error(
        `Cannot reach Blackboard at ${address.hostname}:${address.port}: ${err.message}`,
      );
    },
  );
  return new FramedStream(conn, { maxFrame: SESSION_MAX_FRAME, readTimeoutMs: timeoutMs });
}

export interface UploadOptions {
  /** Where upload IDs are kept between runs (default `<home>/uploads`). */
  stateDir?: string;
  onProgress?: (sent: number, total: number) => void;
  /** Bytes per chunk (default and maximum 256 KiB). */
  chunkSize?: number;
}

export interface UploadReceipt {
  stored: string;
  size: number;
  sha256: string;
  resumedFrom: number;
}

interface UploadState {
  uploadId: string;
  path: string;
  size: number;
  mtimeMs: number;
}

/** Step 6: authenticated messages and uploads over a finished handshake. */
export class StudentSession {
  readonly sid: string;
  /** The record layer itself (tests use it to act as a misbehaving student). */
  readonly secure: SecureSession;
  readonly #identity: StudentIdentity;
  readonly #log: StepLog;
  readonly #timeoutMs: number;

  constructor(identity: StudentIdentity, secure: SecureSession, log: StepLog, timeoutMs: number) {
    this.sid = identity.sid;
    this.#identity = identity;
    this.secure = secure;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Sends one message | HMAC and waits until Blackboard confirms it. A cleartext frame instead of
   * the confirmation (`CleartextFrameError`) is a broken connection, not Blackboard's word: the
   * message may well have been printed, so it is not reported as refused.
   */
  async send(text: string): Promise<void> {
    const problem = messageProblem(text);
    if (problem !== null) throw new RangeError(problem);
    await this.#broken(async () => {
      await this.secure.send("message", { text });
      await this.secure.receive(["received"], { timeoutMs: this.#timeoutMs });
    });
    this.#log.step(
      6,
      `message sent ${
        this.secure.encrypt ? "AES-GCM sealed" : "as message | HMAC"
      }, Blackboard confirmed it`,
    );
  }

  /**
   * Runs `exchange`; when a cleartext frame or a bad record ends the session, tells Blackboard
   * why inside the session (an authenticated `error`), closes, and throws.
   */
  async #broken<T>(exchange: () => Promise<T>): Promise<T> {
    try {
      return await exchange();
    } catch (err) {
      if (err instanceof RecordError) {
        this.#log.warn(err.message);
        await this.secure.refuse(err.message);
        this.close();
      }
      throw err;
    }
  }

  /**
   * Uploads a file in authenticated chunks, resuming a partial upload of the same file (same
   * path, size and modification time) from the offset Blackboard holds. Memory use does not depend
   * on the file's size.
   */
  async upload(path: string, options: UploadOptions = {}): Promise<UploadReceipt> {
    return await this.#broken(() => this.#upload(path, options));
  }

  /**
   * A connection lost in the middle of an upload (Blackboard stopped, the network cut): Blackboard
   * keeps what it received, and the same upload resumes from there. Refusals and bad records are
   * not pauses: they pass through as they are.
   */
  #paused(err: unknown, sent: number, size: number): never {
    if (
      err instanceof PeerRefusedError || err instanceof RecordError ||
      err instanceof UploadPausedError
    ) throw err;
    throw new UploadPausedError(sent, size, err);
  }

  async #upload(path: string, options: UploadOptions): Promise<UploadReceipt> {
    const chunkSize = Math.min(options.chunkSize ?? CHUNK_SIZE, CHUNK_SIZE);
    const info = await Deno.stat(path).catch((err) => {
      throw new Error(`Cannot read ${path}: ${err.message}`);
    });
    if (!info.isFile) throw new Error(`Cannot upload ${path}: not a regular file`);
    const size = info.size;
    const name = reportNameOf(path);
    const stateDir = options.stateDir ?? `${this.#identity.home}/uploads`;
    const state = await loadUploadState(stateDir, path, info);

    await this.secure.send("uploadBegin", { uploadId: state.state.uploadId, name, size });
    const { offset } = await this.secure.receive(["uploadOffset"], { timeoutMs: this.#timeoutMs });
    if (offset > size) throw new Error(`Blackboard holds ${offset} bytes of a ${size}-byte file`);
    this.#log.step(
      6,
      offset > 0
        ? `resuming ${name} (${size} bytes) from byte ${offset}, acknowledged by Blackboard`
        : `uploading ${name} (${size} bytes) in chunks of ${chunkSize / 1024} KiB`,
    );

    using file = await Deno.open(path, { read: true });
    const hash = createHash("sha256");
    const buf = new Uint8Array(Math.max(chunkSize, 64 * 1024));
    // The bytes Blackboard already has still count in the whole file's SHA-256.
    let pos = 0;
    while (pos < offset) {
      const n = await readFull(file, buf.subarray(0, Math.min(buf.length, offset - pos)));
      if (n === 0) throw new Error(`${path} shrank during the upload`);
      hash.update(buf.subarray(0, n));
      pos += n;
    }
    options.onProgress?.(pos, size);

    // Blackboard says nothing while chunks flow, except to refuse: listen for that meanwhile, so
    // a refusal stops the upload at once with Blackboard's reason.
    let settled: { msg: SessionMessage | null } | { err: unknown } | undefined;
    const incoming = this.secure.next({ timeoutMs: 7 * 86_400_000 }).then(
      (msg) => (settled = { msg }),
      (err) => (settled = { err }),
    );
    const stop = (): never => {
      const s = settled!;
      if ("err" in s) throw s.err;
      if (s.msg?.type === "error") throw new PeerRefusedError(s.msg.reason);
      throw new Error(`Blackboard sent ${s.msg?.type ?? "end of stream"} during the upload`);
    };
    const sendOrStop = async (send: () => Promise<void>) => {
      if (settled) stop();
      try {
        await send();
      } catch (err) {
        // A refusal may be on its way just behind a failed write.
        await Promise.race([incoming, new Promise((r) => setTimeout(r, 1000))]);
        if (settled) stop();
        throw err;
      }
    };
    // Up to IN_FLIGHT chunks are sealed and written while the next is read: `send` copies each
    // chunk before it returns, so `buf` is free again at once. A failure is reported at the first
    // chunk (in file order) that did not go out.
    const inFlight: { at: number; end: number; done: Promise<{ err: unknown } | null> }[] = [];
    const settleOldest = async () => {
      const oldest = inFlight.shift()!;
      const failed = await oldest.done;
      if (failed) this.#paused(failed.err, oldest.at, size);
      options.onProgress?.(oldest.end, size);
    };
    while (pos < size) {
      const n = await readFull(file, buf.subarray(0, Math.min(chunkSize, size - pos)));
      if (n === 0) throw new Error(`${path} shrank during the upload`);
      const data = buf.subarray(0, n);
      hash.update(data);
      const at = pos;
      const done = sendOrStop(() => this.secure.send("chunk", { offset: at, data })).then(
        () => null,
        (err) => ({ err }),
      );
      pos += n;
      inFlight.push({ at, end: pos, done });
      if (inFlight.length >= IN_FLIGHT) await settleOldest();
    }
    while (inFlight.length > 0) await settleOldest();
    const digest = new Uint8Array(hash.digest());
    await sendOrStop(() => this.secure.send("uploadEnd", { sha256: digest })).catch((err) =>
      this.#paused(err, pos, size)
    );
    // Blackboard syncs the whole file before it answers.
    const waitMs = Math.max(this.#timeoutMs, 60_000);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      incoming,
      new Promise((r) => (timer = setTimeout(r, waitMs))),
    ]);
    clearTimeout(timer);
    if (!settled) {
      this.close();
      throw new Error(`No receipt from Blackboard within ${waitMs / 1000} s`);
    }
    const s = settled as { msg: SessionMessage | null } | { err: unknown };
    if (!("msg" in s) || s.msg?.type !== "receipt") {
      try {
        stop();
      } catch (err) {
        this.#paused(err, pos, size);
      }
    }
    const receipt = (s as { msg: SessionMessage<"receipt"> }).msg;
    if (receipt.size !== size || !constantTimeEqual(receipt.sha256, digest)) {
      throw new Error("Blackboard's receipt does not match the file sent");
    }
    await Deno.remove(state.path).catch(() => {});
    this.#log.step(
      6,
      `receipt: stored as ${receipt.stored}, ${receipt.size} bytes, SHA-256 ${toHex(digest)}`,
    );
    return { stored: receipt.stored, size, sha256: toHex(digest), resumedFrom: offset };
  }

  close(): void {
    this.secure.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The upload stopped with the connection; the same command resumes it. */
export class UploadPausedError extends Error {
  override name = "UploadPausedError";
  readonly sent: number;
  readonly size: number;

  constructor(sent: number, size: number, cause: unknown) {
    super(
      `upload paused at ${formatBytes(sent)} of ${formatBytes(size)} (${sent} of ${size} bytes): ${
        errorMessage(cause)
      }; run the same command to resume`,
      { cause },
    );
    this.sent = sent;
    this.size = size;
  }
}

async function readFull(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buf.length) {
    const n = await file.read(buf.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

/**
 * The upload ID of a file: reused when the same file (real path, size, modification time) was
 * being uploaded before, so that Blackboard can find the partial; a new random one otherwise. It is
 * written before the first chunk is sent.
 */
async function loadUploadState(
  stateDir: string,
  path: string,
  info: Deno.FileInfo,
): Promise<{ path: string; state: UploadState }> {
  const real = await Deno.realPath(path);
  const mtimeMs = info.mtime?.getTime() ?? 0;
  const key = toHex((await sha256(`${real}\0${info.size}\0${mtimeMs}`)).subarray(0, 16));
  const statePath = `${stateDir}/${key}.json`;
  if (await exists(statePath)) {
    try {
      const state = JSON.parse(await Deno.readTextFile(statePath)) as UploadState;
      if (
        state.path === real && state.size === info.size && state.mtimeMs === mtimeMs &&
        /^[0-9a-f]{32}$/.test(state.uploadId)
      ) {
        return { path: statePath, state };
      }
    } catch {
      // Unreadable state: start a new upload.
    }
  }
  const state: UploadState = {
    uploadId: toHex(randomBytes(16)),
    path: real,
    size: info.size,
    mtimeMs,
  };
  await ensureDir(stateDir, 0o700);
  await writeFileAtomic(statePath, JSON.stringify(state), { mode: 0o600 });
  return { path: statePath, state };
}
