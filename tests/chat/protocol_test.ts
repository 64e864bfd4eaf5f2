import assert from "node:assert/strict";
import {
  CLIENT_MESSAGES,
  type ClientMessage,
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  formatServerMessage,
  nickClash,
  nickKey,
  nickProblem,
  parseInputLine,
  SERVER_MESSAGES,
  type ServerMessage,
  skeleton,
  textProblem,
} from "../../lib/chat/mod.ts";
import { printable } from "../../lib/runtime/mod.ts";

const utf8 = new TextEncoder();

const CLIENT_SAMPLES: ClientMessage[] = [
  { type: "hello", nick: "alice" },
  { type: "say", text: "hello, world — 你好 🎉" },
  { type: "msg", to: "bob", text: "psst" },
  { type: "who" },
  { type: "ping" },
  { type: "quit" },
];

const SERVER_SAMPLES: ServerMessage[] = [
  {
    type: "welcome",
    nick: "alice",
    users: ["alice", "bob"],
    idleMs: 90000,
    maxText: 1000,
    rate: 5,
  },
  { type: "joined", nick: "bob", time: 1_700_000_000_000 },
  { type: "left", nick: "bob", reason: "quit", time: 1_700_000_000_000 },
  { type: "said", from: "alice", text: "hi", time: 1_700_000_000_000 },
  { type: "private", from: "alice", to: "bob", text: "hi", time: 1_700_000_000_000 },
  { type: "users", users: [] },
  { type: "pong" },
  { type: "error", reason: "No such user: x" },
  { type: "bye", reason: "Goodbye" },
];

Deno.test("every message type round-trips, and each table sample covers its type", () => {
  for (const m of CLIENT_SAMPLES) assert.deepEqual(decodeClientMessage(encodeClientMessage(m)), m);
  for (const m of SERVER_SAMPLES) assert.deepEqual(decodeServerMessage(encodeServerMessage(m)), m);
  assert.deepEqual(
    CLIENT_SAMPLES.map((m) => m.type).sort(),
    Object.keys(CLIENT_MESSAGES).sort(),
  );
  assert.deepEqual(
    SERVER_SAMPLES.map((m) => m.type).sort(),
    Object.keys(SERVER_MESSAGES).sort(),
  );
});

Deno.test("decoding is strict: wrong shapes, extra or missing fields, bad UTF-8 are refused", () => {
  const bad: [string | Uint8Array, RegExp][] = [
    ["", /not JSON/],
    ["null", /expected a JSON object/],
    ['"say"', /expected a JSON object/],
    ["[]", /expected a JSON object/],
    ["{}", /missing string field 'type'/],
    ['{"type":1}', /missing string field 'type'/],
    ['{"type":"welcome","nick":"x"}', /unknown type 'welcome'/], // a server message from a client
    ['{"type":"constructor"}', /unknown type 'constructor'/],
    ['{"type":"__proto__"}', /unknown type '__proto__'/],
    ['{"type":"say"}', /missing field 'text' in 'say'/],
    ['{"type":"say","text":null}', /field 'text' of 'say' must be a string/],
    ['{"type":"say","text":"x","__proto__":{"admin":true}}', /unexpected field '__proto__'/],
    ['{"type":"who","x":1}', /unexpected field 'x' in 'who'/],
    ['{"type":"say","text":"\\ud800"}', /is not well-formed Unicode/],
    [`{"type":"say","text":"${"a".repeat(4001)}"}`, /is longer than 4000 characters/],
    [new Uint8Array([0x7b, 0xff, 0x7d]), /not UTF-8/],
  ];
  for (const [input, pattern] of bad) {
    const bytes = typeof input === "string" ? utf8.encode(input) : input;
    assert.throws(() => decodeClientMessage(bytes), (err: Error) => {
      assert.equal(err.name, "ChatProtocolError");
      assert.match(err.message, pattern);
      return true;
    }, String(input).slice(0, 60));
  }
  // Server side: numbers must be non-negative integers, lists of strings.
  assert.throws(
    () => decodeServerMessage(utf8.encode('{"type":"joined","nick":"a","time":1.5}')),
    /must be a non-negative integer/,
  );
  assert.throws(
    () => decodeServerMessage(utf8.encode('{"type":"users","users":["a",2]}')),
    /has an item that must be a string/,
  );
});

Deno.test("every strict prefix of a valid message fails to decode, and random bytes never pass silently", () => {
  for (const m of CLIENT_SAMPLES) {
    const bytes = encodeClientMessage(m);
    for (let i = 0; i < bytes.length; i++) {
      assert.throws(() => decodeClientMessage(bytes.subarray(0, i)));
    }
  }
  for (let i = 0; i < 2000; i++) {
    const bytes = crypto.getRandomValues(new Uint8Array(1 + (i % 40)));
    try {
      const m = decodeClientMessage(bytes);
      // Only a well-formed message may come out.
      assert.ok(Object.hasOwn(CLIENT_MESSAGES, m.type));
    } catch (err) {
      assert.equal((err as Error).name, "ChatProtocolError");
    }
  }
});

Deno.test("encoding refuses what decoding would refuse", () => {
  assert.throws(
    () => encodeClientMessage({ type: "say", text: 5 } as unknown as ClientMessage),
    /^TypeError: Cannot encode chat message: field 'text' of 'say' must be a string$/,
  );
});

Deno.test("nickname and text rules", () => {
  assert.equal(nickProblem("alice"), null);
  assert.equal(nickProblem("Zoë-2.0_x"), null);
  assert.equal(nickProblem(""), "Nickname is empty");
  assert.equal(nickProblem("a".repeat(25)), "Nickname is longer than 24 characters");
  assert.equal(nickProblem("a\u0000b"), "Nickname contains control characters");
  assert.equal(nickProblem("evil\u202Egnp"), "Nickname contains control characters");
  assert.equal(nickProblem("a b"), "Nickname may only contain letters, digits, '_', '.' and '-'");
  assert.equal(
    nickProblem("<alice>"),
    "Nickname may only contain letters, digits, '_', '.' and '-'",
  );
  assert.equal(textProblem("hi", 10), null);
  assert.equal(textProblem("", 10), "Message is empty");
  assert.equal(textProblem("🎉".repeat(10), 10), null); // characters, not UTF-16 units
  assert.equal(textProblem("x".repeat(11), 10), "Message too long: 11 characters (limit 10)");
  assert.equal(textProblem("\u001b[2J", 10), "Message contains control characters");
  assert.equal(printable("a\u001b[31mb"), "a\\u{1b}[31mb");
});

// Lookalikes of `admin`: Cyrillic а (U+0430), fullwidth letters, dotless ı (U+0131).
const CYRILLIC_A = "\u0430dmin";
const FULLWIDTH = "\uFF41\uFF44\uFF4D\uFF49\uFF4E";
const DOTLESS_I = "adm\u0131n";

Deno.test("nickKey: the same name in any case, and its lookalikes (UTS #39 skeleton), share a key", () => {
  assert.equal(CYRILLIC_A.codePointAt(0), 0x430);
  assert.equal(DOTLESS_I.codePointAt(3), 0x131);
  assert.notEqual(CYRILLIC_A, "admin");
  for (const nick of ["admin", "Admin", "ADMIN", CYRILLIC_A, FULLWIDTH, DOTLESS_I]) {
    assert.equal(nickKey(nick), nickKey("admin"), `nick ${JSON.stringify(nick)}`);
  }
  // Composed and decomposed forms, mathematical letters, Greek alpha: the same key too.
  assert.equal(nickKey("Zo\u00EB"), nickKey("zoe\u0308"));
  assert.equal(nickKey("\u{1D41A}dmin"), nickKey("admin"));
  assert.equal(nickKey("\u0391DMIN"), nickKey("admin"));
  // confusables.txt's own examples: `m` looks like `rn`, `l` like `I` and `1`.
  assert.equal(nickKey("m"), nickKey("rn"));
  assert.equal(skeleton("I"), "l");
  assert.equal(skeleton("1"), "l");
  // Distinct ordinary nicknames keep distinct keys.
  const distinct = ["admin", "admin2", "alice", "bob", "carol", "zoë", "zoe", "dave_1", "dave-1"];
  assert.equal(new Set(distinct.map(nickKey)).size, distinct.length);
});

Deno.test("nickClash: the same name is taken; a lookalike says which online nickname it looks like", () => {
  assert.equal(nickClash("admin", "admin"), "Nickname 'admin' is already taken");
  assert.equal(nickClash("ADMIN", "admin"), "Nickname 'ADMIN' is already taken");
  for (const nick of [CYRILLIC_A, FULLWIDTH, DOTLESS_I]) {
    assert.equal(
      nickClash(nick, "admin"),
      `Nickname '${nick}' looks like 'admin', who is online`,
      `nick ${JSON.stringify(nick)}`,
    );
    // And the other way round: `admin` cannot join beside a lookalike already online.
    assert.equal(
      nickClash("admin", nick),
      `Nickname 'admin' looks like '${nick}', who is online`,
    );
  }
  assert.equal(nickClash("rn", "m"), "Nickname 'rn' looks like 'm', who is online");
  assert.equal(nickClash("admin2", "admin"), null);
  assert.equal(nickClash("alice", "bob"), null);
  // Names reach the message through printable(): no control character gets through.
  assert.equal(nickClash("a\u001b", "a\u001b"), "Nickname 'a\\u{1b}' is already taken");
});

Deno.test("input lines become messages: text, /who, /msg, /quit; mistakes are explained", () => {
  assert.deepEqual(parseInputLine("hello"), { type: "say", text: "hello" });
  assert.deepEqual(parseInputLine("  "), null);
  assert.deepEqual(parseInputLine("/who"), { type: "who" });
  assert.deepEqual(parseInputLine("/quit"), { type: "quit" });
  assert.deepEqual(parseInputLine("/msg bob hi there"), {
    type: "msg",
    to: "bob",
    text: "hi there",
  });
  assert.deepEqual(parseInputLine("/say /who is a command"), {
    type: "say",
    text: "/who is a command",
  });
  assert.deepEqual(parseInputLine("/msg bob"), { problem: "Usage: /msg NICK text" });
  assert.deepEqual(parseInputLine("z".repeat(4001)), {
    problem: "Message too long: 4001 characters (limit 4000)",
  });
  assert.deepEqual(parseInputLine("/nick x"), {
    problem: "Unknown command /nick (/who, /msg NICK text, /quit, /say text)",
  });
});

Deno.test("received messages print with time and sender, control characters escaped", () => {
  const t = Date.UTC(2026, 0, 1, 12, 0, 1);
  assert.equal(
    formatServerMessage({ type: "said", from: "alice", text: "hi", time: t }),
    "12:00:01 <alice> hi",
  );
  assert.equal(
    formatServerMessage({ type: "private", from: "alice", to: "bob", text: "x", time: t }),
    "12:00:01 [private] <alice -> bob> x",
  );
  assert.equal(
    formatServerMessage({ type: "left", nick: "bob", reason: "quit", time: t }),
    "12:00:01 * bob left (quit)",
  );
  // A hostile server cannot drive the terminal.
  assert.equal(
    formatServerMessage({ type: "said", from: "m", text: "\u001b]0;pwned\u0007", time: t }),
    "12:00:01 <m> \\u{1b}]0;pwned\\u{7}",
  );
  assert.equal(
    formatServerMessage({ type: "bye", reason: "Goodbye" }, t),
    "12:00:01 * you left the chat. Goodbye",
  );
});

Deno.test("error messages never carry the peer's control characters or long input", () => {
  const evil = `{"type":"\\u001b[2J${"x".repeat(100)}"}`;
  assert.throws(
    () => decodeClientMessage(utf8.encode(evil)),
    (err: Error) => err.message === `Invalid message: unknown type '\\u{1b}[2J${"x".repeat(28)}…'`,
  );
  assert.throws(
    () => decodeClientMessage(utf8.encode(`{"type":"who","\\u0007":1}`)),
    (err: Error) => err.message === "Invalid message: unexpected field '\\u{7}' in 'who'",
  );
  assert.throws(
    () => decodeClientMessage(utf8.encode(`{"secret": "\u001b${"y".repeat(5000)}`)),
    (err: Error) => err.message === "Invalid message: not JSON",
  );
});
