/**
 * The bank's record layers (STEP 6) and the session that uses one once a handshake is over.
 *
 * - `SecureRecords`: AES-GCM under one key per direction, the nonce made from a sequence number
 *   that the record also carries, so a replayed, reordered or altered record is refused with the
 *   reason.
 * - `SeedRecords`: the seed's flaw kept for teaching: AES-256-ECB under Alice's secret, the same
 *   plaintext always giving the same ciphertext, with no integrity and no sequence number.
 *
 * `BankSession` is what a finished handshake turns into: only it can send and receive banking
 * operations, so nothing is sent before the handshake ends. In the default mode only
 * authenticated records count from then on: a refusal travels inside a record (`bankOps.error`),
 * and a cleartext frame (an `error` from anyone on the path, or any other message) is a broken
 * connection, `CleartextFrameError`, whose words are not believed. Seed mode keeps the seed's
 * behaviour: a cleartext `error` is taken as the peer's refusal.
 */

import { createCipheriv, createDecipheriv } from "node:crypto";
import {
  type BankMode,
  type BankOp,
  type BankOps,
  bankOps,
  bankProtocol,
  stepName,
} from "./protocol.ts";
import {
  type FramedStream,
  FrameError,
  PeerRefusedError,
  UnexpectedMessageError,
  type Values,
} from "../wire/mod.ts";
import { aesGcmDecrypt, aesGcmEncrypt, importAesGcmKey, sequenceNonce } from "../crypto/mod.ts";
import { printable } from "../runtime/mod.ts";

/** A record that cannot be accepted: replayed, reordered, altered or undecryptable. */
export class RecordError extends Error {
  override name = "RecordError";
}

export interface RecordLayer {
  readonly mode: BankMode;
  /** Protects one plaintext and returns the frame payload to send. */
  seal(plaintext: Uint8Array): Promise<Uint8Array>;
  /** Checks and decrypts one received frame payload (already known not to be an `error`). */
  open(payload: Uint8Array): Promise<Uint8Array>;
}

function aad(seq: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(seq));
  return out;
}

/** AES-GCM records with sequence numbers: one key per direction, never a nonce twice. */
export class SecureRecords implements RecordLayer {
  readonly mode = "secure" as const;
  readonly #sendKey: CryptoKey;
  readonly #receiveKey: CryptoKey;
  #sendSeq = 0;
  #receiveSeq = 0;

  private constructor(sendKey: CryptoKey, receiveKey: CryptoKey) {
    this.#sendKey = sendKey;
    this.#receiveKey = receiveKey;
  }

  static async create(sendKey: Uint8Array, receiveKey: Uint8Array): Promise<SecureRecords> {
    return new SecureRecords(await importAesGcmKey(sendKey), await importAesGcmKey(receiveKey));
  }

  async seal(plaintext: Uint8Array): Promise<Uint8Array> {
    const seq = this.#sendSeq++;
    const data = await aesGcmEncrypt(this.#sendKey, sequenceNonce(seq), plaintext, aad(seq));
    return bankProtocol.encode("record", { seq, data });
  }

  async open(payload: Uint8Array): Promise<Uint8Array> {
    const msg = bankProtocol.decode(payload);
    // check: bank-record-type tests/bank/negative_test.ts
    if (msg.type !== "record") {
      throw new RecordError(`${stepName(6)}: expected a record, got ${msg.type}`);
    }
    const expected = this.#receiveSeq;
    // check: bank-record-replayed tests/bank/negative_test.ts
    if (msg.seq < expected) {
      throw new RecordError(
        `${
          stepName(6)
        }: replayed record refused (sequence ${msg.seq} was already received, ${expected} expected)`,
      );
    }
    // check: bank-record-reordered tests/bank/negative_test.ts
    if (msg.seq > expected) {
      throw new RecordError(
        `${
          stepName(6)
        }: reordered record refused (sequence ${msg.seq} arrived, ${expected} expected)`,
      );
    }
    let plaintext: Uint8Array;
    try {
      plaintext = await aesGcmDecrypt(
        this.#receiveKey,
        sequenceNonce(msg.seq),
        msg.data,
        aad(msg.seq),
      );
    } catch {
      throw new RecordError(
        `${stepName(6)}: tampered record refused (sequence ${msg.seq} fails authentication)`,
      );
    }
    this.#receiveSeq++;
    return plaintext;
  }
}

/**
 * The seed's records: AES-256-ECB keyed by Alice's 32-byte secret. Deterministic, no integrity, no
 * order: whoever has the secret reads and rewrites them, and a copy is accepted as often as sent.
 */
export class SeedRecords implements RecordLayer {
  readonly mode = "seed" as const;
  readonly #key: Uint8Array;

  constructor(secret: Uint8Array) {
    if (secret.length !== 32) throw new RangeError("The seed's secret must be 32 bytes");
    this.#key = secret;
  }

  seal(plaintext: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(bankProtocol.encode("seedRecord", { data: this.encrypt(plaintext) }));
  }

  open(payload: Uint8Array): Promise<Uint8Array> {
    const msg = bankProtocol.decode(payload);
    if (msg.type !== "seedRecord") {
      throw new RecordError(`${stepName(6)}: expected a seed record, got ${msg.type}`);
    }
    return Promise.resolve(this.decrypt(msg.data));
  }

  /** AES-256-ECB with PKCS#7 padding (node:crypto does the cipher). */
  encrypt(plaintext: Uint8Array): Uint8Array {
    const c = createCipheriv("aes-256-ecb", this.#key, null);
    return new Uint8Array(Buffer.concat([c.update(plaintext), c.final()]));
  }

  decrypt(ciphertext: Uint8Array): Uint8Array {
    try {
      const d = createDecipheriv("aes-256-ecb", this.#key, null);
      return new Uint8Array(Buffer.concat([d.update(ciphertext), d.final()]));
    } catch {
      throw new RecordError(`${stepName(6)}: record does not decrypt under the session secret`);
    }
  }
}

/**
 * The default mode, after the handshake: a frame that is not a record arrived (a cleartext
 * `error`, or any other message). Nothing authenticates it, so whatever it says is not believed:
 * the connection is broken (someone on the path, or a broken peer) and is closed. Alice then
 * retries her request, with the same request id, on a new connection.
 */
export class CleartextFrameError extends FrameError {
  override name = "CleartextFrameError";
  /** The message type that arrived (`error`, …), or undefined when it did not decode. */
  readonly received: string | undefined;

  constructor(received: string | undefined, said?: string) {
    super(
      `${stepName(6)}: connection broken: a cleartext ${
        received ?? "frame"
      } arrived after the handshake${
        said === undefined ? "" : ` ('${printable(said)}')`
      }; only authenticated records count, so it is not believed`,
      "malformed",
    );
    this.received = received;
  }
}

/** The peer sent an operation this side does not know; the record itself was fine. */
export class UnknownOperationError extends FrameError {
  override name = "UnknownOperationError";
}

/** A finished handshake: banking operations over a record layer. */
export class BankSession {
  readonly mode: BankMode;
  readonly stream: FramedStream;
  readonly records: RecordLayer;
  /** The account: the certificate's CN (secure) or the name Alice claimed (seed). */
  readonly customer: string;

  constructor(stream: FramedStream, records: RecordLayer, customer: string) {
    this.stream = stream;
    this.records = records;
    this.mode = records.mode;
    this.customer = customer;
  }

  /** Sends one banking operation in a record. */
  async send<N extends keyof BankOps & string>(
    type: N,
    values: Values<BankOps[N]["fields"]>,
  ): Promise<void> {
    await this.writeRaw(await this.records.seal(bankOps.encode(type, values)));
  }

  /**
   * Receives the next record's plaintext; `null` at a clean end of stream. A bad record throws
   * `RecordError`. A cleartext `error`: in seed mode, and in the default mode while the handshake
   * is still on (`handshake`: the welcome, which confirms the keys), it is the peer's refusal,
   * `PeerRefusedError`; once the handshake is over in the default mode, it and any other frame
   * that is not a record are `CleartextFrameError` (a broken connection, not believed).
   */
  async receivePlain(
    options: { timeoutMs?: number; handshake?: boolean } = {},
  ): Promise<Uint8Array | null> {
    const { handshake, ...read } = options;
    const frame = await this.stream.readFrame(read);
    if (frame === null) return null;
    const believeCleartext = this.mode === "seed" || handshake === true;
    // check: bank-cleartext-after-handshake tests/bank/session_test.ts tests/trudy/error_injection_test.ts
    if (!believeCleartext && frame[0] !== bankProtocol.messages.record.code) {
      let received: string | undefined;
      let said: string | undefined;
      try {
        const msg = bankProtocol.decode(frame);
        received = msg.type;
        if (msg.type === "error") said = msg.reason;
      } catch {
        received = undefined;
      }
      throw new CleartextFrameError(received, said);
    }
    if (frame[0] === bankProtocol.messages.error.code) {
      const msg = bankProtocol.decode(frame);
      if (msg.type === "error") throw new PeerRefusedError(msg.reason);
    }
    return await this.records.open(frame);
  }

  /** Receives the next operation of any type; `null` at a clean end of stream. */
  async next(options: { timeoutMs?: number; handshake?: boolean } = {}): Promise<BankOp | null> {
    const plain = await this.receivePlain(options);
    if (plain === null) return null;
    try {
      return bankOps.decode(plain);
    } catch (err) {
      throw new UnknownOperationError(
        `${stepName(6)}: ${err instanceof Error ? err.message : String(err)}`,
        err instanceof FrameError ? err.kind : "malformed",
      );
    }
  }

  /**
   * Receives the next operation, which must be one of `types`. The peer's authenticated `error`
   * becomes `PeerRefusedError` (its words are the peer's: pass them through `printable`).
   */
  async receive<N extends keyof BankOps & string>(
    types: readonly N[],
    options: { timeoutMs?: number; handshake?: boolean } = {},
  ): Promise<BankOp<N>> {
    const op = await this.next(options);
    const expected = types.join(" or ");
    if (op === null) {
      throw new FrameError(`Connection closed while waiting for ${expected}`, "closed");
    }
    if ((types as readonly string[]).includes(op.type)) return op as BankOp<N>;
    if (op.type === "error") throw new PeerRefusedError(op.reason);
    throw new UnexpectedMessageError(`Expected ${expected}, got ${op.type}`);
  }

  /** Seals raw operation bytes (for tests and the attacker, who need records of their own). */
  async seal(plaintext: Uint8Array): Promise<Uint8Array> {
    return await this.records.seal(plaintext);
  }

  /** Writes one frame payload as it is. */
  async writeRaw(payload: Uint8Array): Promise<void> {
    await this.stream.writeFrame(payload);
  }

  /**
   * Ends the session with a refusal, ignoring a closed connection: in the default mode inside an
   * authenticated record (`bankOps.error`), in seed mode in the clear as the seed did.
   */
  async refuse(reason: string): Promise<void> {
    if (this.mode === "seed") {
      await this.stream.writeFrame(bankProtocol.encode("error", { reason })).catch(() => {});
    } else {
      await this.send("error", { reason }).catch(() => {});
    }
  }

  close(): void {
    this.stream.close();
  }
}
