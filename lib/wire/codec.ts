/**
 * Typed messages, declared once with their wire codes, encoded and decoded side by side.
 *
 * Wire format of one message (the payload of one frame):
 *
 *     u8 type | field | field | …
 *
 * in the declared field order, where a `text` or `bytes` field is a u32 big-endian length and that
 * many bytes (text is UTF-8, checked strictly) and a `uint` field is 8 bytes big-endian (at most
 * 2^53 - 1). Decoding rejects unknown types, short fields and trailing bytes.
 *
 * The same tables drive the Wireshark dissector, so a capture names each message by its step.
 */

import { type FramedStream, FrameError, type ReadFrameOptions } from "./frame.ts";

export type FieldKind = "text" | "bytes" | "uint";
type ValueOf<K extends FieldKind> = K extends "text" ? string
  : K extends "bytes" ? Uint8Array
  : number;

export type Fields = Readonly<Record<string, FieldKind>>;
export type Values<F extends Fields> = { -readonly [P in keyof F]: ValueOf<F[P]> };

export interface MessageSpec {
  /** Wire code, one byte. */
  readonly code: number;
  /** What a capture or log calls it, with the seed's step where there is one. */
  readonly label: string;
  readonly fields: Fields;
}

export type MessageSpecs = Readonly<Record<string, MessageSpec>>;

/** A decoded message: `type` names it, the other properties are its fields. */
export type Message<S extends MessageSpecs, N extends keyof S = keyof S> = {
  [K in N]: { readonly type: K } & Values<S[K]["fields"]>;
}[N];

/** The peer sent a message the protocol does not allow at this point. */
export class UnexpectedMessageError extends FrameError {
  override name = "UnexpectedMessageError";
}

/**
 * A protocol refusal: one side turned the other away with the protocol's `error` message. Which
 * side refused is the subclass, as in tlslite-ng's TLSRemoteAlert and TLSLocalAlert:
 * `RemoteRefusal` (the peer refused us) or `LocalRefusal` (we refused the peer).
 */
export class ProtocolRefusal extends Error {
  override name = "ProtocolRefusal";
}

/**
 * The peer refused us: it sent the protocol's `error` message. `reason` is the peer's text as it
 * arrived: data from the peer, to pass through `printable` before it reaches a terminal. The
 * message is the reason, after `context` when one is given (`Bob refused: …`).
 */
export class RemoteRefusal extends ProtocolRefusal {
  override name = "RemoteRefusal";
  /** The peer's own words. */
  readonly reason: string;

  constructor(reason: string, options: { context?: string } = {}) {
    super(options.context === undefined ? reason : `${options.context}: ${reason}`);
    this.reason = reason;
  }
}

/** The older name of `RemoteRefusal`: the same class, so `instanceof` works with either name. */
export const PeerRefusedError = RemoteRefusal;
export type PeerRefusedError = RemoteRefusal;

/**
 * We refused the peer: `code` is a short stable reason for code, logs and tests to match
 * (`malformed-request`, `enrolment-refused`, …); the message is the one line sent to the peer in
 * the protocol's `error` message.
 */
export class LocalRefusal extends ProtocolRefusal {
  override name = "LocalRefusal";
  readonly code: string;

  constructor(code: string, text: string) {
    super(text);
    this.code = code;
  }
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A protocol: a name and its message table. */
export class Protocol<S extends MessageSpecs> {
  readonly name: string;
  readonly messages: S;
  readonly #byCode = new Map<number, string>();

  constructor(name: string, messages: S) {
    this.name = name;
    this.messages = messages;
    for (const [type, spec] of Object.entries(messages)) {
      if (!Number.isInteger(spec.code) || spec.code < 0 || spec.code > 0xff) {
        throw new RangeError(`Message ${name}.${type} has a code outside one byte`);
      }
      if (this.#byCode.has(spec.code)) {
        throw new RangeError(`Message ${name}.${type} reuses code ${spec.code}`);
      }
      this.#byCode.set(spec.code, type);
    }
  }

  /** Encodes a message of the given type. */
  encode<N extends keyof S & string>(type: N, values: Values<S[N]["fields"]>): Uint8Array {
    const spec = this.messages[type]!;
    // Each field checked and measured first, then copied once into the message.
    const parts: (number | Uint8Array)[] = [];
    let size = 1;
    for (const [field, kind] of Object.entries(spec.fields)) {
      const value = (values as Record<string, unknown>)[field];
      if (kind === "uint") {
        if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
          throw new TypeError(`${this.name}.${type}.${field} must be a non-negative integer`);
        }
        parts.push(value);
        size += 8;
      } else {
        const body = kind === "text"
          ? (typeof value === "string" ? utf8.encode(value) : undefined)
          : (value instanceof Uint8Array ? value : undefined);
        if (body === undefined) {
          throw new TypeError(`${this.name}.${type}.${field} must be ${kind}`);
        }
        parts.push(body);
        size += 4 + body.length;
      }
    }
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    out[0] = spec.code;
    let off = 1;
    for (const part of parts) {
      if (typeof part === "number") {
        view.setBigUint64(off, BigInt(part));
        off += 8;
      } else {
        view.setUint32(off, part.length);
        out.set(part, off + 4);
        off += 4 + part.length;
      }
    }
    return out;
  }

  /** Decodes one message; throws `FrameError` on anything but an exact, well-formed message. */
  decode(bytes: Uint8Array): Message<S> {
    // check: codec-empty-message tests/wire/frame_codec_test.ts tests/wire/frame_kind_test.ts
    if (bytes.length === 0) throw new FrameError(`Empty ${this.name} message`, "malformed");
    const type = this.#byCode.get(bytes[0]!);
    // check: codec-unknown-type tests/wire/frame_codec_test.ts tests/wire/frame_kind_test.ts
    if (type === undefined) {
      throw new FrameError(
        `Unknown ${this.name} message type 0x${bytes[0]!.toString(16).padStart(2, "0")}`,
        "malformed",
      );
    }
    const spec = this.messages[type]!;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out: Record<string, unknown> = { type };
    let off = 1;
    for (const [field, kind] of Object.entries(spec.fields)) {
      const where = `${this.name} ${type}: field ${field}`;
      if (kind === "uint") {
        // check: codec-uint-truncated tests/wire/frame_codec_test.ts tests/wire/frame_kind_test.ts
        if (off + 8 > bytes.length) throw new FrameError(`Truncated ${where}`, "truncated");
        const v = view.getBigUint64(off);
        // check: codec-uint-range tests/wire/frame_codec_test.ts tests/wire/frame_kind_test.ts
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new FrameError(`Out of range ${where}`, "malformed");
        }
        out[field] = Number(v);
        off += 8;
        continue;
      }
      // check: codec-field-length-truncated tests/wire/frame_codec_test.ts tests/wire/frame_kind_test.ts
      if (off + 4 > bytes.length) throw new FrameError(`Truncated ${where}`, "truncated");
      const len = view.getUint32(off);
      off += 4;
      // check: codec-field-body-truncated tests/wire/codec_field_test.ts
      if (off + len > bytes.length) throw new FrameError(`Truncated ${where}`, "truncated");
      // A view, not a copy: a message's byte fields share the buffer of the bytes decoded.
      const body = bytes.subarray(off, off + len);
      off += len;
      if (kind === "bytes") {
        out[field] = body;
      } else {
        try {
          out[field] = strictUtf8.decode(body);
        } catch {
          throw new FrameError(`Invalid UTF-8 in ${where}`, "malformed");
        }
      }
    }
    // check: codec-trailing-bytes tests/wire/frame_codec_test.ts tests/wire/frame_kind_test.ts
    if (off !== bytes.length) {
      throw new FrameError(
        `${bytes.length - off} trailing bytes after ${this.name} ${type}`,
        "malformed",
      );
    }
    return out as Message<S>;
  }

  /** The label of a message type, for logs. */
  label(type: keyof S & string): string {
    return this.messages[type]!.label;
  }
}

/** Declares a protocol; `const` keeps the literal field kinds for typing. */
export function defineProtocol<const S extends MessageSpecs>(
  name: string,
  messages: S,
): Protocol<S> {
  return new Protocol(name, messages);
}

type WithError = { error: { code: number; label: string; fields: { reason: "text" } } };

/**
 * A framed connection speaking one protocol: send typed messages, receive the ones expected now.
 * A protocol that declares `error: { reason: text }` turns a received error into `RemoteRefusal`,
 * and sends a `LocalRefusal` with `refuse`.
 */
export class Channel<S extends MessageSpecs> {
  readonly protocol: Protocol<S>;
  readonly stream: FramedStream;

  constructor(protocol: Protocol<S>, stream: FramedStream) {
    this.protocol = protocol;
    this.stream = stream;
  }

  async send<N extends keyof S & string>(type: N, values: Values<S[N]["fields"]>): Promise<void> {
    await this.stream.writeFrame(this.protocol.encode(type, values));
  }

  /**
   * Receives the next message, which must be one of `types`. End of stream before it is an error
   * naming what was expected.
   */
  async receive<N extends keyof S & string>(
    types: readonly N[],
    options: { timeoutMs?: number } = {},
  ): Promise<Message<S, N>> {
    const frame = await this.stream.readFrame(options);
    const expected = types.join(" or ");
    if (frame === null) {
      throw new FrameError(`Connection closed while waiting for ${expected}`, "closed");
    }
    const msg = this.protocol.decode(frame);
    if ((types as readonly string[]).includes(msg.type as string)) return msg as Message<S, N>;
    // check: channel-refusal tests/wire/refusal_test.ts
    if (msg.type === "error" && "error" in this.protocol.messages) {
      throw new RemoteRefusal((msg as unknown as Message<WithError>).reason);
    }
    throw new UnexpectedMessageError(`Expected ${expected}, got ${String(msg.type)}`);
  }

  /**
   * Tells the peer why it is refused (the protocol's `error` message with the refusal's text) and
   * returns the refusal, for the caller to log or throw. Requires a protocol with `error`.
   */
  async refuse(refusal: LocalRefusal): Promise<LocalRefusal> {
    if (!("error" in this.protocol.messages)) {
      throw new TypeError(`${this.protocol.name} has no error message to refuse with`);
    }
    await this.stream.writeFrame(
      (this.protocol as unknown as Protocol<WithError>).encode("error", {
        reason: refusal.message,
      }),
    );
    return refusal;
  }

  /** Receives the next message of any type, or `null` at a clean end of stream. */
  async next(options: { timeoutMs?: number } = {}): Promise<Message<S> | null> {
    const frame = await this.stream.readFrame(options);
    return frame === null ? null : this.protocol.decode(frame);
  }

  close(): void {
    this.stream.close();
  }
}

/** A message received with its exact bytes (what a handshake transcript hashes). */
export interface Received<S extends MessageSpecs, N extends keyof S = keyof S> {
  msg: Message<S, N>;
  bytes: Uint8Array;
}

/**
 * How `receiveExpected` reports each way the next message can fail to be the one expected; each
 * returns the error to throw. `expected` is the expected types joined by " or ".
 */
export interface ReceiveExpectedOptions extends ReadFrameOptions {
  /** The stream ended cleanly first (default: `FrameError` "Connection closed while waiting for …"). */
  onClosed?: (expected: string) => Error;
  /** The frame is not a well-formed message (default: the codec's `FrameError` as is). */
  onMalformed?: (err: unknown) => Error;
  /** The peer sent the protocol's `error` message (default: `PeerRefusedError` with its reason). */
  onRefused?: (reason: string) => Error;
  /** Another message arrived (default: `UnexpectedMessageError` "Expected …, got …"). */
  onUnexpected?: (received: string, expected: string) => Error;
}

/**
 * Receives the next message on `stream`, which must be one of `types` of `protocol`, and returns
 * it with its exact bytes. Errors of the read itself (deadline, oversized or truncated frame, a
 * broken connection) propagate as the stream throws them; every other failure is reported through
 * the options' hooks, so that each protocol keeps its own wording.
 */
export async function receiveExpected<S extends MessageSpecs, N extends keyof S & string>(
  stream: FramedStream,
  protocol: Protocol<S>,
  types: readonly N[],
  options: ReceiveExpectedOptions = {},
): Promise<Received<S, N>> {
  const expected = types.join(" or ");
  const { onClosed, onMalformed, onRefused, onUnexpected, ...read } = options;
  const bytes = await stream.readFrame(read);
  if (bytes === null) {
    throw onClosed?.(expected) ??
      new FrameError(`Connection closed while waiting for ${expected}`, "closed");
  }
  let msg: Message<S>;
  try {
    msg = protocol.decode(bytes);
  } catch (err) {
    throw onMalformed?.(err) ?? err;
  }
  const type = msg.type as string;
  if ((types as readonly string[]).includes(type)) return { msg: msg as Message<S, N>, bytes };
  // check: receive-expected-refusal tests/wire/receive_expected_test.ts
  if (type === "error" && "error" in protocol.messages) {
    const { reason } = msg as unknown as Message<WithError>;
    throw onRefused?.(reason) ?? new PeerRefusedError(reason);
  }
  throw onUnexpected?.(type, expected) ??
    new UnexpectedMessageError(`Expected ${expected}, got ${type}`);
}
