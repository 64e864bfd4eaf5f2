import assert from "node:assert/strict";
import { ChatRefusedError, encodeClientMessage, type ServerMessage } from "../../lib/chat/mod.ts";
import { ChatFixture, is, rawHello, readAll } from "../_fixtures/chat.ts";

const utf8 = new TextEncoder();

function frame(payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === "string" ? utf8.encode(payload) : payload;
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

const said = (from: string, text: string) => (m: ServerMessage) =>
  m.type === "said" && m.from === from && m.text === text;

Deno.test("three clients chat: joins, broadcast, /who, /msg and leaves, as each sees it", async () => {
  await using chat = await ChatFixture.start();
  const alice = await chat.join("alice");
  assert.deepEqual(alice.client.welcome.users, ["alice"]);
  const bob = await chat.join("bob", { tls12: true });
  assert.equal(bob.client.protocol, "TLSv1.2");
  assert.deepEqual(bob.client.welcome.users, ["alice", "bob"]);
  await alice.waitFor((m) => m.type === "joined" && m.nick === "bob");
  const carol = await chat.join("carol");
  assert.deepEqual(carol.client.welcome.users, ["alice", "bob", "carol"]);
  for (const m of [alice, bob]) await m.waitFor((x) => x.type === "joined" && x.nick === "carol");

  await alice.send({ type: "say", text: "hello all" });
  for (const m of [alice, bob, carol]) await m.waitFor(said("alice", "hello all"));

  await bob.send({ type: "who" });
  const who = await bob.waitFor(is("users"));
  assert.deepEqual(who.type === "users" && [...who.users].sort(), ["alice", "bob", "carol"]);

  await carol.send({ type: "msg", to: "ALICE", text: "just between us" });
  const priv = (m: ServerMessage) => m.type === "private" && m.text === "just between us";
  const got = await alice.waitFor(priv);
  assert.deepEqual(got.type === "private" && [got.from, got.to], ["carol", "alice"]);
  await carol.waitFor(priv); // the sender's confirmation
  await carol.send({ type: "msg", to: "nobody", text: "hi" });
  const err = await carol.waitFor(is("error"));
  assert.equal(err.type === "error" && err.reason, "No such user: nobody");

  await bob.client.quit();
  const bye = await bob.waitFor(is("bye"));
  assert.equal(bye.type === "bye" && bye.reason, "Goodbye");
  await bob.closed();
  for (const m of [alice, carol]) {
    const left = await m.waitFor((x) => x.type === "left" && x.nick === "bob");
    assert.equal(left.type === "left" && left.reason, "quit");
  }
  // A private message reaches only its two parties; bob, who left, never saw it.
  assert.ok(!bob.inbox.some(priv));
  carol.client.close();
  const left = await alice.waitFor((x) => x.type === "left" && x.nick === "carol");
  assert.equal(left.type === "left" && left.reason, "connection closed");
  assert.deepEqual(chat.server.nicks, ["alice"]);
});

Deno.test("nicknames already taken, empty, too long or with control characters are refused", async () => {
  await using chat = await ChatFixture.start();
  await chat.join("alice");
  const cases: [string, string][] = [
    ["alice", "Nickname 'alice' is already taken"],
    ["ALICE", "Nickname 'ALICE' is already taken"],
    ["", "Nickname is empty"],
    ["x".repeat(25), "Nickname is longer than 24 characters"],
    ["x".repeat(100), "Nickname is longer than 24 characters"], // refused before sending
    ["evil\u001b[2J", "Nickname contains control characters"],
    ["tab\there", "Nickname contains control characters"],
    ["two words", "Nickname may only contain letters, digits, '_', '.' and '-'"],
  ];
  for (const [nick, reason] of cases) {
    await assert.rejects(
      chat.join(nick),
      (err: unknown) => err instanceof ChatRefusedError && err.message === reason,
      `nick ${JSON.stringify(nick)}`,
    );
  }
  assert.ok(await chat.join("x".repeat(24)));
  assert.ok(await chat.join("Zoë_2.0-b"));
  assert.deepEqual(chat.server.nicks.length, 3);
});

Deno.test("lookalike nicknames are refused beside the one online, and messages to a nick reach who joined as it", async () => {
  await using chat = await ChatFixture.start();
  const admin = await chat.join("admin");
  const lookalike = (nick: string, online: string) =>
    `Nickname '${nick}' looks like '${online}', who is online`;
  const cases: [string, string][] = [
    ["\u0430dmin", lookalike("\u0430dmin", "admin")], // Cyrillic а (U+0430)
    ["\uFF41\uFF44\uFF4D\uFF49\uFF4E", lookalike("\uFF41\uFF44\uFF4D\uFF49\uFF4E", "admin")], // fullwidth
    ["adm\u0131n", lookalike("adm\u0131n", "admin")], // dotless ı (U+0131)
    ["ADMIN", "Nickname 'ADMIN' is already taken"],
  ];
  for (const [nick, reason] of cases) {
    await assert.rejects(
      chat.join(nick),
      (err: unknown) => err instanceof ChatRefusedError && err.message === reason,
      `nick ${JSON.stringify(nick)}`,
    );
    await chat.logMatching(new RegExp(`refused: ${RegExp.escape(reason)}$`));
  }
  const admin2 = await chat.join("admin2");
  await admin.waitFor((m) => m.type === "joined" && m.nick === "admin2");
  assert.deepEqual(chat.server.nicks, ["admin", "admin2"]);

  // A private message to `admin` reaches the member who joined as `admin`; one addressed to a
  // lookalike too, since only one of a nickname and its lookalikes can be online.
  for (const to of ["admin", "\u0430dmin"]) {
    await admin2.send({ type: "msg", to, text: `for ${to}` });
    const got = await admin.waitFor((m) => m.type === "private" && m.text === `for ${to}`);
    assert.deepEqual(got.type === "private" && [got.from, got.to], ["admin2", "admin"]);
  }
  await admin.send({ type: "msg", to: "Admin2", text: "for admin2" });
  const back = await admin2.waitFor((m) => m.type === "private" && m.text === "for admin2");
  assert.deepEqual(back.type === "private" && [back.from, back.to], ["admin", "admin2"]);
  await admin.send({ type: "who" });
  const who = await admin.waitFor(is("users"));
  assert.deepEqual(who.type === "users" && who.users, ["admin", "admin2"]);

  // The other way round: once the lookalike is online, `admin` itself is refused.
  admin.client.close();
  await admin2.waitFor((m) => m.type === "left" && m.nick === "admin");
  await chat.join("\u0430dmin");
  await assert.rejects(
    chat.join("admin"),
    (err: unknown) =>
      err instanceof ChatRefusedError && err.message === lookalike("admin", "\u0430dmin"),
  );
});

Deno.test("plain TCP on the TLS port gets a TLS alert, no chat frame, and is closed; others still served", async () => {
  await using chat = await ChatFixture.start();
  using tcp = await Deno.connect({ hostname: "127.0.0.1", port: chat.port });
  await tcp.write(frame(encodeClientMessage({ type: "hello", nick: "plain" })));
  const buf = new Uint8Array(1024);
  const got: number[] = [];
  for (;;) {
    const n = await tcp.read(buf).catch(() => null);
    if (n === null) break;
    got.push(...buf.subarray(0, n));
  }
  // The TLS server refuses the plain bytes with a TLS alert record (content type 21, TLS 1.x,
  // a 2-byte alert, level fatal), never a frame of ours, and never silence.
  assert.ok(got.length >= 7, `no TLS alert, only ${got.length} bytes: [${got.slice(0, 8)}]`);
  assert.equal(got[0], 21, `not a TLS alert record: [${got.slice(0, 8)}]`);
  assert.equal(got[1], 3, `not TLS: [${got.slice(0, 8)}]`);
  assert.deepEqual(got.slice(3, 5), [0, 2], `not one alert: [${got.slice(0, 8)}]`);
  assert.equal(got[5], 2, `not a fatal alert: [${got.slice(0, 8)}]`);
  await chat.logMatching(/TLS handshake from 127\.0\.0\.1:\d+ failed/);
  const alice = await chat.join("alice");
  assert.equal(alice.client.nick, "alice");
});

Deno.test("a client that completes TLS and sends nothing is closed at the hello deadline", async () => {
  await using chat = await ChatFixture.start({ helloTimeoutMs: 400 });
  const { framed } = await chat.raw();
  const started = performance.now();
  const msgs = await readAll(framed, 5000);
  const elapsed = performance.now() - started;
  framed.close();
  assert.deepEqual(msgs, [{ type: "bye", reason: "No hello within 400 ms" }]);
  assert.ok(elapsed >= 300 && elapsed < 3000, `closed after ${elapsed} ms`);
});

Deno.test("a joined client that goes silent is reaped; one that pings stays", async () => {
  await using chat = await ChatFixture.start({ idleTimeoutMs: 600 });
  const pinger = await chat.join("pinger");
  const silent = await chat.join("silent", { keepAlive: false });
  const bye = await silent.waitFor(is("bye"), 5000);
  assert.equal(bye.type === "bye" && bye.reason, "Idle for 600 ms");
  await silent.closed();
  const left = await pinger.waitFor((m) => m.type === "left" && m.nick === "silent");
  assert.equal(left.type === "left" && left.reason, "Idle for 600 ms");
  // Another idle deadline, marked by the reaping of a second silent client that joins now: the
  // pinger, saying nothing but pings since it joined, outlives it too.
  const silent2 = await chat.join("silent2", { keepAlive: false });
  await silent2.waitFor(is("bye"), 5000);
  await pinger.waitFor((m) => m.type === "left" && m.nick === "silent2");
  assert.ok(!pinger.ended);
  assert.deepEqual(chat.server.nicks, ["pinger"]);
});

Deno.test("a frame longer than the limit is refused before buffering and the client dropped", async () => {
  await using chat = await ChatFixture.start();
  const alice = await chat.join("alice");
  const { conn, framed } = await chat.raw();
  assert.equal((await rawHello(framed, "mallory")).type, "welcome");
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, 64 * 1024 * 1024); // announces 64 MiB, sends none
  await conn.write(header);
  const msgs = await readAll(framed);
  framed.close();
  const reason = "Frame of 67108864 bytes exceeds the limit of 16384 bytes";
  assert.deepEqual(msgs.at(-1), { type: "bye", reason });
  const left = await alice.waitFor((m) => m.type === "left" && m.nick === "mallory");
  assert.equal(left.type === "left" && left.reason, reason);
});

Deno.test("invalid JSON and badly shaped messages are refused with a reason", async () => {
  await using chat = await ChatFixture.start();
  const cases: [string, string][] = [
    ["{not json", "Invalid message: not JSON"],
    ['{"type":"say","text":42}', "Invalid message: field 'text' of 'say' must be a string"],
    ['{"type":"say","text":"hi","admin":true}', "Invalid message: unexpected field 'admin'"],
    ['{"type":"eval","code":"1"}', "Invalid message: unknown type 'eval'"],
    ["[1,2]", "Invalid message: expected a JSON object"],
  ];
  for (const [payload, reason] of cases) {
    const { conn, framed } = await chat.raw();
    assert.equal((await rawHello(framed, "mallory")).type, "welcome");
    await conn.write(frame(payload));
    const msgs = await readAll(framed);
    framed.close();
    const bye = msgs.at(-1);
    assert.ok(bye?.type === "bye" && bye.reason.startsWith(reason), JSON.stringify(msgs));
    await chat.logMatching(/mallory: connection closed/);
    chat.lines.length = 0;
  }
  // Before hello as well.
  const { conn, framed } = await chat.raw();
  await conn.write(frame("\u0000\u00ff"));
  const msgs = await readAll(framed);
  framed.close();
  assert.match(msgs[0]?.type === "bye" ? msgs[0].reason : "", /^Invalid message: not (JSON|UTF-8)/);
});

Deno.test("a flood over the rate limit is dropped, then the flooder disconnected", async () => {
  await using chat = await ChatFixture.start({ rate: 5, burst: 5 });
  const bob = await chat.join("bob");
  const { framed } = await chat.raw();
  assert.equal((await rawHello(framed, "flooder")).type, "welcome");
  const sends: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) {
    sends.push(framed.writeFrame(encodeClientMessage({ type: "say", text: `spam ${i}` })));
  }
  await Promise.allSettled(sends);
  const msgs = await readAll(framed);
  framed.close();
  assert.ok(
    msgs.some((m) =>
      m.type === "error" &&
      m.reason ===
        "Rate limit (at most 5 messages a second, bursts of 5): message dropped, and the next ones until you slow down"
    ),
  );
  assert.deepEqual(msgs.at(-1), {
    type: "bye",
    reason:
      "Flooding: 6 messages over the rate limit in a row (at most 5 messages a second, bursts of 5)",
  });
  await bob.waitFor((m) => m.type === "left" && m.nick === "flooder");
  const spam = bob.inbox.filter((m) => m.type === "said" && m.from === "flooder");
  // The burst (5), plus the odd token refilled while the flood was read (a loaded machine).
  assert.ok(spam.length >= 5 && spam.length <= 7, `bob saw ${spam.length} of 50`);
});

Deno.test("a burst over the rate limit: one notice when it starts, one with the count when it ends", async () => {
  await using chat = await ChatFixture.start({ rate: 5, burst: 2 });
  const alice = await chat.join("alice");
  // Burst of 2, then 2 dropped (under the 2 + 1 that would disconnect her).
  for (let i = 0; i < 4; i++) await alice.send({ type: "say", text: `m${i}` });
  await alice.waitFor((m) =>
    m.type === "error" &&
    m.reason ===
      "Rate limit (at most 5 messages a second, bursts of 2): message dropped, and the next ones until you slow down"
  );
  // The next message after a token came back: the count of what was dropped, then the message.
  await alice.waitFor(said("alice", "m1"));
  // What is tested is a rate: the time for one token (200 ms at 5 a second) has to pass.
  await new Promise((resolve) => setTimeout(resolve, 250));
  await alice.send({ type: "say", text: "after" });
  await alice.waitFor((m) =>
    m.type === "error" &&
    m.reason ===
      "Rate limit (at most 5 messages a second, bursts of 2): 2 message(s) dropped in all"
  );
  await alice.waitFor(said("alice", "after"));
});

Deno.test("a message longer than the server's limit is refused, the connection stays", async () => {
  await using chat = await ChatFixture.start({ maxText: 100 });
  const alice = await chat.join("alice");
  await alice.send({ type: "say", text: "y".repeat(101) });
  const err = await alice.waitFor(is("error"));
  assert.equal(err.type === "error" && err.reason, "Message too long: 101 characters (limit 100)");
  await alice.send({ type: "say", text: "bad \u001b[31mred" });
  await alice.waitFor((m) =>
    m.type === "error" && m.reason === "Message contains control characters"
  );
  await alice.send({ type: "say", text: "y".repeat(100) });
  await alice.waitFor(said("alice", "y".repeat(100)));
});

Deno.test("a client that stops reading never delays the others, and is disconnected (measured)", async () => {
  await using chat = await ChatFixture.start({
    maxQueueBytes: 256 * 1024,
    writeTimeoutMs: 3000,
    rate: 100_000,
    burst: 100_000,
    maxText: 4000,
  });
  const alice = await chat.join("alice");
  const bob = await chat.join("bob");
  // The stuck client joins, then never reads again.
  const stuck = await chat.raw();
  assert.equal((await rawHello(stuck.framed, "stuck")).type, "welcome");
  await bob.waitFor((m) => m.type === "joined" && m.nick === "stuck");

  const padding = "x".repeat(3990);
  const sentAt: number[] = [];
  const latency: number[] = [];
  const window = 16; // messages in flight, so that alice's and bob's queues stay small
  const stuckLeft = (m: ServerMessage) => m.type === "left" && m.nick === "stuck";
  let n = 0;
  const bobFrom = bob.inbox.length;
  const seen = () =>
    bob.inbox.slice(bobFrom).filter((m) => m.type === "said" && m.from === "alice").length;
  const started = performance.now();
  // Until the stuck client is dropped (its socket buffers full, then its queue), and then more.
  let extra = 200;
  while (extra > 0 && n < 6000) {
    if (bob.inbox.some(stuckLeft)) extra--;
    while (n - seen() >= window) await bob.waitFor(() => false, 20).catch(() => {});
    sentAt.push(performance.now());
    await alice.send({ type: "say", text: `${n} ${padding}` });
    n++;
  }
  while (seen() < n) await bob.waitFor(() => false, 20).catch(() => {});
  const elapsed = performance.now() - started;
  const got = bob.inbox.map((m, i) => [m, bob.arrivals[i]!] as const).filter(([m]) =>
    m.type === "said" && m.from === "alice"
  );
  for (const [m, at] of got) {
    const seq = Number((m as { text: string }).text.split(" ")[0]);
    latency.push(at - sentAt[seq]!);
  }
  latency.sort((a, b) => a - b);
  const max = latency.at(-1)!;
  const p50 = latency[Math.floor(latency.length / 2)]!;
  const left = bob.inbox.find(stuckLeft);
  console.log(
    `  ${n} messages of 4 KB while a client stopped reading: bob got ${got.length}, ` +
      `latency p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms, ${
        ((n * 4) / (elapsed / 1000) / 1024).toFixed(1)
      } MB/s; stuck client: ${left?.type === "left" ? left.reason : "still connected"}`,
  );
  assert.equal(got.length, n);
  assert.match(
    left?.type === "left" ? left.reason : "",
    /^Not reading: (more than 256 KiB queued|no write progress within 3 s)$/,
  );
  // Nobody waited for the stuck client's write deadline.
  assert.ok(max < 2500, `slowest delivery to bob ${max} ms`);
  stuck.framed.close();
  assert.deepEqual(chat.server.nicks.sort(), ["alice", "bob"]);
});

Deno.test("50 clients at once: a broadcast reaches every one", async () => {
  // All 50 come from 127.0.0.1: more than the default per-address cap lets in at once.
  await using chat = await ChatFixture.start({ maxPerAddress: 64 });
  const members = [];
  for (let i = 0; i < 50; i += 10) {
    const batch = Array.from({ length: 10 }, (_, j) => chat.join(`user${i + j}`));
    members.push(...await Promise.all(batch));
  }
  const from = members.map((m) => m.inbox.length);
  await members[0]!.send({ type: "say", text: "to everyone" });
  await Promise.all(
    members.map((m, i) => m.waitFor(said("user0", "to everyone"), 10_000, from[i])),
  );
  assert.equal(chat.server.nicks.length, 50);
});

Deno.test("the server refuses clients over its maximum", async () => {
  await using chat = await ChatFixture.start({ maxClients: 2 });
  await chat.join("one");
  await chat.join("two");
  await assert.rejects(chat.join("three"), /^ChatRefusedError: Server is full \(2 clients\)$/);
});

Deno.test("shutdown tells every client, then stops accepting", async () => {
  const chat = await ChatFixture.start();
  try {
    const alice = await chat.join("alice");
    const bob = await chat.join("bob", { tls12: true });
    await chat.server.close();
    for (const m of [alice, bob]) {
      const bye = await m.waitFor(is("bye"));
      assert.equal(bye.type === "bye" && bye.reason, "Server is shutting down");
      await m.closed();
    }
    await assert.rejects(chat.join("late"));
  } finally {
    await chat[Symbol.asyncDispose]();
  }
});
