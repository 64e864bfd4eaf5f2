/**
 * The Blackboard protocol on TCP 3141 (system 1, steps 3–6), declared once: message tables, what
 * is signed over the transcript (lib/crypto's `Transcript`), the key schedule and the step-6 record
 * layer.
 *
 * Default mode (the seeds' steps done right):
 *
 *     student → Blackboard  request     STEP 3 "SID:<id> requests to upload report !" | cert 2 |
 *                                              nonce | the student's ephemeral X25519 share |
 *                                              records ("aes-gcm", or "hmac" to teach)
 *     Blackboard → student  sessionKey  STEP 4 Blackboard's ephemeral X25519 share | its cert |
 *                                              the CA's current CRL (stapled) | nonce |
 *                                              its signature over the transcript so far
 *     student → Blackboard  confirm     STEP 5 the student's signature over the transcript (cert 2's
 *                                              key) | HMAC(K_confirm, "student" | transcript hash)
 *     Blackboard → student  ready       STEP 5 HMAC(K_confirm, "blackboard" | transcript hash)
 *     either way            sealed      STEP 6 seq | AES-GCM(K_dir, nonce = seq, aad = dir | seq)
 *     either way            record      STEP 6 seq | message | HMAC(K_dir, dir | seq | message)
 *                                              (MAC-only records: `--records hmac`, teaching only)
 *     Blackboard → student  error       a refusal during the handshake, one line (then the
 *                                       connection closes); after it, refusals travel inside a
 *                                       record (the session table's `error`), and a cleartext
 *                                       frame is a broken connection, never believed
 *
 * The session key is HKDF over the X25519 secret, salted with the transcript hash: it never
 * crosses the wire, in any form, and no long-term key opens it later (forward secrecy).
 *
 * Seed mode (`--protocol seed`, teaching only: the seeds' steps 4 to 6 exactly as written):
 *
 *     seedRequest   STEP 3 request | cert 2
 *     seedSessionKey STEP 4 RSA-OAEP(session key) to cert 2's key
 *     seedKeyEcho   STEP 5 the decrypted session key, sent back in the clear
 *     seedOk        STEP 5 check pass
 *     seedMessage   STEP 6 message | HMAC(session key, message), no sequence number
 *
 * Inside `record` and `sealed`, the payload is one message of `sessionProtocol` (a text message,
 * or the upload messages): a capture shows it by name in a `record`, never in a `sealed`.
 */

import { createHash } from "node:crypto";
import { printable, UNPRINTABLE } from "../runtime/mod.ts";
import {
  defineProtocol,
  type FramedStream,
  FrameError,
  type Message,
  PeerRefusedError,
  type Received,
  receiveExpected,
  type Values,
} from "../wire/mod.ts";
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  concatBytes,
  constantTimeEqual,
  hkdfSha256,
  hmacSha256,
  importAesGcmKey,
  importHmacKey,
  sequenceNonce,
  toBytes,
  type Transcript,
} from "../crypto/mod.ts";

export const BLACKBOARD_PORT = 3141;
/** The CN (and SAN DNS name) the student expects on Blackboard's certificate. */
export const BLACKBOARD_NAME = "blackboard";
/** Handshake messages from the student carry a certificate: a few KiB. */
export const HANDSHAKE_MAX_FRAME = 16 * 1024;
/**
 * STEP 4 carries Blackboard's certificate and the CA's CRL, which grows with each revocation (the
 * CA's own frames allow 16 KiB for it): the student reads it with this limit.
 */
export const STEP4_MAX_FRAME = 64 * 1024;
/** Bytes of report data per chunk. */
export const CHUNK_SIZE = 256 * 1024;
/** A step-6 frame: a chunk plus its headers, MAC or tag. */
export const SESSION_MAX_FRAME = CHUNK_SIZE + 1024;
/** Longest text message (UTF-8 bytes). */
export const MAX_MESSAGE_BYTES = 4096;
/** Deadline for each handshake read. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Deadline for each read once the session runs (an idle student is dropped). */
export const SESSION_TIMEOUT_MS = 60_000;
export const NONCE_BYTES = 32;
export const SESSION_KEY_BYTES = 32;

/**
 * What protects step 6's records: AES-GCM (the default: confidentiality and integrity), or HMAC
 * only (`--records hmac`, teaching only: integrity, the text readable on the wire).
 */
export type RecordKind = "aes-gcm" | "hmac";
export const RECORD_KINDS: readonly RecordKind[] = ["aes-gcm", "hmac"];

/** A record kind from a peer or a command line, or undefined when it is not one. */
export function recordKindOf(text: string): RecordKind | undefined {
  return (RECORD_KINDS as readonly string[]).includes(text) ? text as RecordKind : undefined;
}

/**
 * Why a step-6 message cannot be accepted, or null when it can: longer than `MAX_MESSAGE_BYTES`,
 * or holding what `UNPRINTABLE` names (control characters, line separators, and the bidirectional
 * overrides and isolates such as U+202E that make text read differently from what it is), as the
 * chat refuses them. The student checks before sending; Blackboard refuses such a message.
 */
export function messageProblem(text: string): string | null {
  // check: message-size tests/blackboard/negative_test.ts
  if (toBytes(text).length > MAX_MESSAGE_BYTES) {
    return `Message too long: at most ${MAX_MESSAGE_BYTES} bytes`;
  }
  // check: message-text tests/blackboard/session_test.ts
  if (UNPRINTABLE.test(text)) {
    return "Message refused: it contains control characters or bidirectional overrides (such as U+202E)";
  }
  return null;
}

/** Step 3's request line, exactly as the seeds wrote it. */
export function requestLine(sid: string): string {
  return `SID:${sid} requests to upload report !`;
}

/** The student ID in a step-3 request line, or undefined when the line is not one. */
export function parseRequestLine(line: string): string | undefined {
  return /^SID:(\d{10}) requests to upload report !$/.exec(line)?.[1];
}

export const blackboardProtocol = defineProtocol("Blackboard", {
  request: {
    code: 0x01,
    label: "STEP 3 request | cert 2",
    fields: {
      request: "text",
      certificate: "bytes",
      nonce: "bytes",
      share: "bytes",
      records: "text",
    },
  },
  sessionKey: {
    code: 0x02,
    label: "STEP 4 session key: X25519 share | cert | stapled CRL, signed by Blackboard",
    fields: {
      share: "bytes",
      certificate: "bytes",
      crl: "bytes",
      nonce: "bytes",
      signature: "bytes",
    },
  },
  confirm: {
    code: 0x03,
    label: "STEP 5 student's signature | key confirmation (HMAC)",
    fields: { signature: "bytes", mac: "bytes" },
  },
  ready: { code: 0x04, label: "STEP 5 start to communicate", fields: { mac: "bytes" } },
  record: {
    code: 0x10,
    label: "STEP 6 message | HMAC (sequence numbered)",
    fields: { seq: "uint", payload: "bytes", mac: "bytes" },
  },
  sealed: {
    code: 0x11,
    label: "STEP 6 message (AES-GCM, sequence numbered)",
    fields: { seq: "uint", ciphertext: "bytes" },
  },
  seedRequest: {
    code: 0x21,
    label: "STEP 3 request | cert 2 (seed)",
    fields: { request: "text", certificate: "bytes" },
  },
  seedSessionKey: {
    code: 0x22,
    label: "STEP 4 encrypted session key, RSA-OAEP (seed)",
    fields: { encryptedKey: "bytes" },
  },
  seedKeyEcho: {
    code: 0x23,
    label: "STEP 5 decrypted session key IN THE CLEAR (seed)",
    fields: { sessionKey: "bytes" },
  },
  seedOk: { code: 0x24, label: "STEP 5 check pass (seed)", fields: {} },
  seedMessage: {
    code: 0x25,
    label: "STEP 6 message | HMAC, no sequence number (seed)",
    fields: { message: "text", hmac: "bytes" },
  },
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});

export type BlackboardSpecs = typeof blackboardProtocol.messages;

/** The messages inside a step-6 record. */
export const sessionProtocol = defineProtocol("Blackboard session", {
  message: { code: 0x01, label: "STEP 6 message", fields: { text: "text" } },
  received: { code: 0x02, label: "STEP 6 message received", fields: {} },
  uploadBegin: {
    code: 0x10,
    label: "upload: begin or resume",
    fields: { uploadId: "text", name: "text", size: "uint" },
  },
  uploadOffset: { code: 0x11, label: "upload: resume from offset", fields: { offset: "uint" } },
  chunk: { code: 0x12, label: "upload: chunk", fields: { offset: "uint", data: "bytes" } },
  uploadEnd: { code: 0x13, label: "upload: end, SHA-256 of the file", fields: { sha256: "bytes" } },
  receipt: {
    code: 0x14,
    label: "upload: receipt",
    fields: { stored: "text", size: "uint", sha256: "bytes" },
  },
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});

export type SessionSpecs = typeof sessionProtocol.messages;
export type SessionMessage<N extends keyof SessionSpecs = keyof SessionSpecs> = Message<
  SessionSpecs,
  N
>;

// ---------------------------------------------------------------- transcript and keys

const LABEL = "secure-channel-lab blackboard v1";

/**
 * What Blackboard signs in step 4: a context label and SHA-256(hash of the transcript so far |
 * the step-4 message with an empty signature field), so the signature covers the request (cert 2,
 * the student's nonce and X25519 share, the record kind) and all of step 4: Blackboard's X25519
 * share, its certificate, the stapled CRL and its nonce.
 */
export function step4SignedData(
  transcript: Transcript,
  values: Values<BlackboardSpecs["sessionKey"]["fields"]>,
): Uint8Array {
  const t = transcript.digest();
  const unsigned = blackboardProtocol.encode("sessionKey", {
    ...values,
    signature: new Uint8Array(),
  });
  const h = createHash("sha256").update(t).update(unsigned).digest();
  return concatBytes(toBytes(`${LABEL} STEP 4 signature\0`), new Uint8Array(h));
}

/**
 * The session key: HKDF over the X25519 secret, salted with the transcript hash after step 4 (both
 * shares, both nonces, both certificates, the stapled CRL and Blackboard's signature).
 */
export async function sessionKeyFrom(
  secret: Uint8Array,
  transcriptHash: Uint8Array,
): Promise<Uint8Array> {
  return await hkdfSha256(secret, transcriptHash, `${LABEL} session key`, SESSION_KEY_BYTES);
}

/**
 * What the student signs in step 5 with cert 2's key: a context label and the transcript hash
 * after step 4. It proves that the holder of cert 2's key made this exchange (the X25519 share
 * alone proves nothing about who sent it).
 */
export function step5SignedData(transcriptHash: Uint8Array): Uint8Array {
  return concatBytes(toBytes(`${LABEL} STEP 5 student signature\0`), transcriptHash);
}

/** The key that both step-5 MACs are made with. */
export async function confirmationKey(
  sessionKey: Uint8Array,
  transcriptHash: Uint8Array,
): Promise<CryptoKey> {
  return await importHmacKey(
    await hkdfSha256(sessionKey, transcriptHash, `${LABEL} key confirmation`),
  );
}

/** A step-5 MAC: `who` is "student" or "blackboard", over the transcript hash. */
export async function confirmationMac(
  key: CryptoKey,
  who: "student" | "blackboard",
  transcriptHash: Uint8Array,
): Promise<Uint8Array> {
  return await hmacSha256(key, concatBytes(toBytes(`${who} confirms\0`), transcriptHash));
}

export type Direction = "student->blackboard" | "blackboard->student";

/** Step 6's per-direction keys, derived from the session key and the whole handshake. */
export interface TrafficKeys {
  send: CryptoKey;
  receive: CryptoKey;
}

export async function trafficKeys(
  sessionKey: Uint8Array,
  transcriptHash: Uint8Array,
  role: "student" | "blackboard",
  encrypt: boolean,
): Promise<TrafficKeys> {
  const derive = async (dir: Direction) => {
    const raw = await hkdfSha256(
      sessionKey,
      transcriptHash,
      `${LABEL} ${dir} ${encrypt ? "aes-gcm" : "hmac"}`,
    );
    return encrypt ? await importAesGcmKey(raw) : await importHmacKey(raw);
  };
  const up = await derive("student->blackboard");
  const down = await derive("blackboard->student");
  return role === "student" ? { send: up, receive: down } : { send: down, receive: up };
}

// ---------------------------------------------------------------- step 6 records

/** A step-6 record refused: replayed, reordered, altered or truncated. */
export class RecordError extends FrameError {
  override name = "RecordError";
}

/**
 * The default mode, after the handshake: a frame that is not a record arrived (a cleartext
 * `error` that anyone on the path can write, or any other message). Nothing authenticates it, so
 * what it says is not believed: the connection is broken and is closed.
 */
export class CleartextFrameError extends RecordError {
  override name = "CleartextFrameError";
  /** The message type that arrived (`error`, …). */
  readonly received: string;

  constructor(received: string, said?: string) {
    super(
      `Connection broken: a cleartext ${received} arrived after the handshake${
        said === undefined ? "" : ` ('${printable(said)}')`
      }; only authenticated records count, so it is not believed`,
    );
    this.received = received;
  }
}

function recordHeader(dir: Direction, seq: number): Uint8Array {
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(seq));
  return concatBytes(toBytes(`${LABEL} ${dir}\0`), head);
}

/**
 * The step-6 record layer of one side: each record carries the next sequence number of its
 * direction, under the MAC (or as the AES-GCM nonce and additional data). A record whose number is
 * not the one expected next, or whose MAC or tag does not verify, is refused.
 */
export class RecordLayer {
  readonly #keys: TrafficKeys;
  readonly #encrypt: boolean;
  readonly #sendDir: Direction;
  readonly #receiveDir: Direction;
  #sendSeq = 0;
  #receiveSeq = 0;

  constructor(keys: TrafficKeys, role: "student" | "blackboard", encrypt: boolean) {
    this.#keys = keys;
    this.#encrypt = encrypt;
    this.#sendDir = role === "student" ? "student->blackboard" : "blackboard->student";
    this.#receiveDir = role === "student" ? "blackboard->student" : "student->blackboard";
  }

  get encrypt(): boolean {
    return this.#encrypt;
  }

  /** Protects one payload; returns the encoded outer message (a frame's payload). */
  async seal(payload: Uint8Array): Promise<Uint8Array> {
    const seq = this.#sendSeq++;
    const head = recordHeader(this.#sendDir, seq);
    if (this.#encrypt) {
      const ciphertext = await aesGcmEncrypt(this.#keys.send, sequenceNonce(seq), payload, head);
      return blackboardProtocol.encode("sealed", { seq, ciphertext });
    }
    const mac = await hmacSha256(this.#keys.send, concatBytes(head, payload));
    return blackboardProtocol.encode("record", { seq, payload, mac });
  }

  /** Checks one received outer message and returns its payload. */
  async open(frame: Uint8Array): Promise<Uint8Array> {
    const msg = blackboardProtocol.decode(frame);
    // After the handshake a cleartext `error` is not the peer's word: anyone can write one.
    // check: blackboard-cleartext-after-handshake tests/blackboard/session_test.ts tests/trudy/error_injection_test.ts
    if (msg.type !== "record" && msg.type !== "sealed") {
      throw new CleartextFrameError(msg.type, msg.type === "error" ? msg.reason : undefined);
    }
    const want = this.#encrypt ? "sealed" : "record";
    // check: record-kind tests/blackboard/records_test.ts
    if (msg.type !== want) {
      throw new RecordError(`Expected a step-6 ${want}, got ${msg.type}`);
    }
    const seq = this.#receiveSeq;
    // check: record-sequence tests/blackboard/records_test.ts
    if (msg.seq !== seq) {
      throw new RecordError(
        `Record refused: sequence number ${msg.seq}, expected ${seq} (replayed or reordered)`,
      );
    }
    const head = recordHeader(this.#receiveDir, seq);
    let payload: Uint8Array;
    if (msg.type === "sealed") {
      try {
        payload = await aesGcmDecrypt(this.#keys.receive, sequenceNonce(seq), msg.ciphertext, head);
      } catch {
        throw new RecordError(`Record ${seq} refused: AES-GCM tag does not verify (altered)`);
      }
    } else {
      const expected = await hmacSha256(this.#keys.receive, concatBytes(head, msg.payload));
      // check: record-hmac tests/blackboard/records_test.ts
      if (!constantTimeEqual(expected, msg.mac)) {
        throw new RecordError(`Record ${seq} refused: HMAC does not verify (altered)`);
      }
      payload = msg.payload;
    }
    this.#receiveSeq++;
    return payload;
  }
}

/** Records at least this large (upload chunks) make `SecureSession.next` read the next frame ahead. */
const READ_AHEAD_FROM = 64 * 1024;

/**
 * A finished handshake (typestate): only here can step-6 messages be sent and received. The
 * peer's `error` inside a record (authenticated) becomes `PeerRefusedError`; a cleartext frame
 * is `CleartextFrameError` (a broken connection, not believed).
 */
export class SecureSession {
  readonly stream: FramedStream;
  readonly #records: RecordLayer;
  /** The last write started: the next one waits for it, so frames leave in sequence order. */
  #lastWrite: Promise<void> = Promise.resolve();
  /** The frame read ahead after a large record, if any. */
  #readAhead: Promise<Uint8Array | null> | undefined;
  /** The first write that failed: every later send throws it without writing. */
  #writeFailed: unknown;

  constructor(stream: FramedStream, records: RecordLayer) {
    this.stream = stream;
    this.#records = records;
  }

  get encrypt(): boolean {
    return this.#records.encrypt;
  }

  /**
   * Sends one message. The message is encoded (its fields copied) and given its sequence number
   * when `send` is called, so the caller may reuse its buffers at once and need not wait before
   * the next `send`: records are sealed concurrently and written in the order they were sent.
   */
  async send<N extends keyof SessionSpecs & string>(
    type: N,
    values: Values<SessionSpecs[N]["fields"]>,
  ): Promise<void> {
    const sealed = this.#records.seal(sessionProtocol.encode(type, values));
    const previous = this.#lastWrite;
    const write = (async () => {
      const payload = await sealed;
      await previous;
      // After a failed write no later record goes out: the stream is closed, the session over.
      if (this.#writeFailed) throw this.#writeFailed;
      try {
        await this.stream.writeFrame(payload);
      } catch (err) {
        this.#writeFailed = err;
        this.stream.close();
        throw err;
      }
    })();
    this.#lastWrite = write.catch(() => {});
    await write;
  }

  /**
   * The next message, or null at a clean end of stream between records. After a large record (an
   * upload's chunk) the next frame is read while this one is opened; it is only read, not
   * believed, until a later `next` opens it in turn.
   */
  async next(options: { timeoutMs?: number } = {}): Promise<SessionMessage | null> {
    const ahead = this.#readAhead;
    this.#readAhead = undefined;
    const frame = await (ahead ?? this.stream.readFrame(options));
    if (frame === null) return null;
    if (frame.length >= READ_AHEAD_FROM) {
      const following = this.stream.readFrame(options);
      following.catch(() => {}); // seen by the next `next`, or dropped with the connection
      this.#readAhead = following;
    }
    try {
      return sessionProtocol.decode(await this.#records.open(frame));
    } catch (err) {
      // A refused record ends the session: nothing read after it is waited for.
      if (this.#readAhead) this.stream.close();
      throw err;
    }
  }

  /** The next message, which must be one of `types`. */
  async receive<N extends keyof SessionSpecs & string>(
    types: readonly N[],
    options: { timeoutMs?: number } = {},
  ): Promise<SessionMessage<N>> {
    const expected = types.join(" or ");
    const msg = await this.next(options);
    if (msg === null) {
      throw new FrameError(`Connection closed while waiting for ${expected}`, "closed");
    }
    if ((types as readonly string[]).includes(msg.type)) return msg as SessionMessage<N>;
    if (msg.type === "error") throw new PeerRefusedError(msg.reason);
    throw new FrameError(`Expected ${expected}, got ${msg.type}`);
  }

  /**
   * Ends the session with a refusal inside an authenticated record (the session table's `error`),
   * ignoring a connection that is already gone.
   */
  async refuse(reason: string): Promise<void> {
    await this.send("error", { reason }).catch(() => {});
  }

  close(): void {
    this.stream.close();
  }
}

// ---------------------------------------------------------------- handshake helpers

/**
 * Receives one handshake message, which must be one of `types`, with its exact bytes (for the
 * transcript): lib/wire's `receiveExpected` bound to this protocol and the handshake's frame limit.
 * An `error` from the peer becomes `PeerRefusedError`; end of stream or anything else is a
 * `FrameError`.
 */
export async function receiveHandshake<N extends keyof BlackboardSpecs & string>(
  stream: FramedStream,
  types: readonly N[],
  timeoutMs: number,
  maxFrame = HANDSHAKE_MAX_FRAME,
): Promise<Received<BlackboardSpecs, N>> {
  return await receiveExpected(stream, blackboardProtocol, types, { maxFrame, timeoutMs });
}

/** Sends one handshake message and returns its bytes (for the transcript). */
export async function sendHandshake<N extends keyof BlackboardSpecs & string>(
  stream: FramedStream,
  type: N,
  values: Values<BlackboardSpecs[N]["fields"]>,
): Promise<Uint8Array> {
  const bytes = blackboardProtocol.encode(type, values);
  await stream.writeFrame(bytes);
  return bytes;
}
