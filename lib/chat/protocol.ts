/**
 * The chat protocol (system 3), declared once: every message either side may send, with a small
 * schema per message type, and strict encode/decode side by side.
 *
 * Wire format: the seed's length-prefixed frames (`lib/wire/frame.ts`, 4-byte big-endian length), each
 * carrying one UTF-8 JSON object `{"type": …, …fields}`. The seed used pickle, which runs code on
 * load; JSON.parse only builds data, and every decoded object is checked against its schema: known
 * type, exactly the declared keys, each value of the declared kind and within its bound.
 */

import { FrameError } from "../wire/mod.ts";
import unhomoglyph from "unhomoglyph";
import { printable } from "../runtime/mod.ts";

export const CHAT_PORT = 8443;
/**
 * The chat's service name: its certificate carries it (CN and SAN), and clients check it whatever
 * address they dial, so no other lab server's certificate passes as the chat's.
 */
export const CHAT_NAME = "chat";

/** Largest frame a client may send (checked before buffering). */
export const CLIENT_MAX_FRAME = 16 * 1024;
/** Largest frame a server may send (a `/who` list of many users is the biggest). */
export const SERVER_MAX_FRAME = 256 * 1024;
/** The server's `bye` after a client's own `quit`: not a disconnection. */
export const QUIT_GOODBYE = "Goodbye";

/** Longest nickname, in characters. */
export const MAX_NICK = 24;
/** Longest chat text the schema admits; the server's own limit (`maxText`) may be lower. */
export const MAX_TEXT = 4000;

/** Invalid message from the peer: not JSON, unknown type, or a field of the wrong shape. */
export class ChatProtocolError extends FrameError {
  override name = "ChatProtocolError";
}

type Rule =
  | { readonly kind: "string"; readonly max: number }
  | { readonly kind: "int" }
  | { readonly kind: "strings"; readonly max: number; readonly maxItems: number };

type ValueOf<R extends Rule> = R extends { kind: "string" } ? string
  : R extends { kind: "int" } ? number
  : readonly string[];

type Schema = Readonly<Record<string, Rule>>;
type Schemas = Readonly<Record<string, Schema>>;

/** The message type `T` of a table: `{ type: T } & its fields`. */
export type MessageOf<S extends Schemas, T extends keyof S = keyof S> = {
  [K in T]: { readonly type: K } & { readonly [F in keyof S[K]]: ValueOf<S[K][F]> };
}[T];

// Nicknames are checked further by nickProblem(): this bound only keeps the message small.
const nick = { kind: "string", max: 2 * MAX_NICK } as const;
const text = { kind: "string", max: MAX_TEXT } as const;
const reason = { kind: "string", max: 500 } as const;
const int = { kind: "int" } as const;
const users = { kind: "strings", max: MAX_NICK, maxItems: 100_000 } as const;

/** What a client may send. */
export const CLIENT_MESSAGES = {
  /** First message: the nickname to join with. */
  hello: { nick },
  /** Broadcast to everyone. */
  say: { text },
  /** `/msg NICK text`: a private message. */
  msg: { to: nick, text },
  /** `/who`. */
  who: {},
  /** Keep-alive, so that an idle human is not reaped like a half-open connection. */
  ping: {},
  /** `/quit`. */
  quit: {},
} as const satisfies Schemas;

/** What the server may send. `time` is milliseconds since the epoch, stamped by the server. */
export const SERVER_MESSAGES = {
  /** Answer to `hello`: joined, with who is online and the server's limits. */
  welcome: { nick, users, idleMs: int, maxText: int, rate: int },
  joined: { nick, time: int },
  left: { nick, reason, time: int },
  said: { from: nick, text, time: int },
  private: { from: nick, to: nick, text, time: int },
  users: { users },
  pong: {},
  /** A refused request; the connection stays open. */
  error: { reason },
  /** The server is closing this connection, and why. */
  bye: { reason },
} as const satisfies Schemas;

export type ClientMessage = MessageOf<typeof CLIENT_MESSAGES>;
export type ServerMessage = MessageOf<typeof SERVER_MESSAGES>;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Encodes a client message (checked against its schema first). */
export function encodeClientMessage(msg: ClientMessage): Uint8Array {
  return encodeMessage(CLIENT_MESSAGES, msg);
}

/** Encodes a server message (checked against its schema first). */
export function encodeServerMessage(msg: ServerMessage): Uint8Array {
  return encodeMessage(SERVER_MESSAGES, msg);
}

/** Decodes and validates a frame from a client; throws `ChatProtocolError`. */
export function decodeClientMessage(payload: Uint8Array): ClientMessage {
  return decodeMessage(CLIENT_MESSAGES, payload) as ClientMessage;
}

/** Decodes and validates a frame from the server; throws `ChatProtocolError`. */
export function decodeServerMessage(payload: Uint8Array): ServerMessage {
  return decodeMessage(SERVER_MESSAGES, payload) as ServerMessage;
}

function encodeMessage(table: Schemas, msg: { type: string }): Uint8Array {
  const problem = shapeProblem(table, msg);
  if (problem) throw new TypeError(`Cannot encode chat message: ${problem}`);
  return utf8.encode(JSON.stringify(msg));
}

function decodeMessage(table: Schemas, payload: Uint8Array): { type: string } {
  let text: string;
  try {
    text = strictUtf8.decode(payload);
  } catch {
    throw new ChatProtocolError("Invalid message: not UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // No parser detail: it would echo the peer's bytes into logs and answers.
    throw new ChatProtocolError("Invalid message: not JSON");
  }
  const problem = shapeProblem(table, value);
  // check: chat-decode-refusal tests/chat/protocol_test.ts
  if (problem) throw new ChatProtocolError(`Invalid message: ${problem}`);
  return value as { type: string };
}

/** Why `value` is not a valid message of `table`, or null when it is. */
function shapeProblem(table: Schemas, value: unknown): string | null {
  // check: chat-json-object tests/chat/protocol_test.ts
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "expected a JSON object";
  }
  const obj = value as Record<string, unknown>;
  const type = obj.type;
  if (typeof type !== "string") return "missing string field 'type'";
  // check: chat-unknown-type tests/chat/protocol_test.ts
  if (!Object.hasOwn(table, type)) return `unknown type '${quoted(type)}'`;
  const schema = table[type]!;
  for (const key of Object.keys(obj)) {
    // check: chat-unexpected-field tests/chat/protocol_test.ts
    if (key !== "type" && !Object.hasOwn(schema, key)) {
      return `unexpected field '${quoted(key)}' in '${type}'`;
    }
  }
  for (const [field, rule] of Object.entries(schema)) {
    // check: chat-missing-field tests/chat/protocol_test.ts
    if (!Object.hasOwn(obj, field)) return `missing field '${field}' in '${type}'`;
    const problem = ruleProblem(rule, obj[field]);
    if (problem) return `field '${field}' of '${type}' ${problem}`;
  }
  return null;
}

/** A peer-chosen name, short and with control characters escaped, for an error message. */
function quoted(s: string): string {
  const short = [...s].slice(0, 32).join("");
  return printable(short) + (short.length < s.length ? "…" : "");
}

function ruleProblem(rule: Rule, value: unknown): string | null {
  switch (rule.kind) {
    case "string":
      return stringProblem(value, rule.max);
    case "int":
      return Number.isSafeInteger(value) && (value as number) >= 0
        ? null
        : "must be a non-negative integer";
    case "strings": {
      if (!Array.isArray(value)) return "must be a list of strings";
      if (value.length > rule.maxItems) return `has more than ${rule.maxItems} items`;
      for (const item of value) {
        const problem = stringProblem(item, rule.max);
        if (problem) return `has an item that ${problem}`;
      }
      return null;
    }
  }
}

function stringProblem(value: unknown, max: number): string | null {
  // check: chat-field-string tests/chat/protocol_test.ts
  if (typeof value !== "string") return "must be a string";
  // check: chat-field-unicode tests/chat/protocol_test.ts
  if (!value.isWellFormed()) return "is not well-formed Unicode";
  // check: chat-field-length tests/chat/protocol_test.ts
  if (value.length > max * 2 || charCount(value) > max) return `is longer than ${max} characters`;
  return null;
}

/** Characters (code points), not UTF-16 units. */
export function charCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * Control characters, and the bidirectional overrides that make text display differently from
 * what it is (the "Trojan Source" characters): refused in nicknames and chat text.
 */
const UNSAFE_CHARS = /[\p{Cc}\u202A-\u202E\u2066-\u2069]/u;
const NICK_CHARS = /^[\p{L}\p{N}_.-]+$/u;

/** Why `nick` cannot be a nickname, or null when it can. */
export function nickProblem(nick: string): string | null {
  // check: chat-nick-empty tests/chat/protocol_test.ts
  if (nick.length === 0) return "Nickname is empty";
  // check: chat-nick-control tests/chat/protocol_test.ts
  if (UNSAFE_CHARS.test(nick)) return "Nickname contains control characters";
  // check: chat-nick-length tests/chat/protocol_test.ts
  if (charCount(nick) > MAX_NICK) return `Nickname is longer than ${MAX_NICK} characters`;
  // check: chat-nick-charset tests/chat/protocol_test.ts
  if (!NICK_CHARS.test(nick)) {
    return "Nickname may only contain letters, digits, '_', '.' and '-'";
  }
  return null;
}

/** Why `text` cannot be sent as chat text under a `maxText` limit, or null when it can. */
export function textProblem(text: string, maxText: number): string | null {
  // check: chat-text-empty tests/chat/protocol_test.ts
  if (text.length === 0) return "Message is empty";
  const n = charCount(text);
  // check: chat-text-length tests/chat/protocol_test.ts
  if (n > maxText) return `Message too long: ${n} characters (limit ${maxText})`;
  // check: chat-text-control tests/chat/protocol_test.ts
  if (UNSAFE_CHARS.test(text)) return "Message contains control characters";
  return null;
}

/**
 * The UTS #39 skeleton of `text`: NFD, each character replaced by its prototype from Unicode's
 * confusables.txt, NFD again. Two strings with the same skeleton look alike: Cyrillic `а`
 * (U+0430) and Latin `a`, dotless `ı` (U+0131) and `i`, `m` and `rn`. The mapping is
 * confusables.txt itself, as the `unhomoglyph` package ships it (Unicode 13.0.0); a skeleton is
 * only for comparing, never for display.
 */
export function skeleton(text: string): string {
  return unhomoglyph(text.normalize("NFD")).normalize("NFD");
}

/**
 * The key under which a nickname is unique, and by which a message addressed to one finds its
 * member: the skeleton of the nickname with compatibility forms and case folded (NFKC, then lower
 * case). `Admin`, `аdmin` (Cyrillic а), `ａｄｍｉｎ` (fullwidth) and `admın` (dotless ı) all have
 * the key of `admin`, so none of them can join while `admin` is online, and the other way round;
 * a private message to any of them reaches `admin`.
 */
export function nickKey(nick: string): string {
  return skeleton(nick.normalize("NFKC").toLowerCase());
}

/**
 * Why `nick` cannot join while `online` is joined, or null when both may be online together:
 * the same name in another case, or one that looks like it (the same `nickKey`).
 */
export function nickClash(nick: string, online: string): string | null {
  if (sameName(nick, online)) return `Nickname '${printable(nick)}' is already taken`;
  // check: chat-nick-lookalike tests/chat/protocol_test.ts tests/chat/server_test.ts
  if (nickKey(nick) === nickKey(online)) {
    return `Nickname '${printable(nick)}' looks like '${printable(online)}', who is online`;
  }
  return null;
}

/** The same letters, ignoring case: `Alice` and `alice`. */
function sameName(a: string, b: string): boolean {
  return a.normalize("NFC").toLowerCase() === b.normalize("NFC").toLowerCase();
}
