/**
 * lib/wireshark/ladder.ts, ladder_svg.ts and diagram.ts without a browser, on real capture data
 * (tests/_fixtures/ladders: what each capture scenario's diagram is drawn from): lanes named after
 * the actors, an attack's halves and Trudy's red notes, every error with its reason, pages of at
 * most 25 arrows with links between them, "TLS decrypts itself" only where there is TLS, and the
 * files written. tests/wireshark/ladder_browser_test.ts measures the same diagrams in Chromium.
 */

import assert from "node:assert/strict";
import {
  type ActorMap,
  ARROWS_PER_PAGE,
  buildLadder,
  type CaptureMessage,
  isError,
  type Ladder,
  ladderLines,
  markLadder,
  paginate,
  renderHtml,
  renderSvg,
  renderSvgPages,
  textWidth,
  wrapText,
  writeLadderFiles,
} from "../../lib/wireshark/mod.ts";
import { DATA_DIR, ensureDir } from "../../lib/runtime/mod.ts";
import { ATTACK_SCENARIOS } from "../../tasks/scenarios/mod.ts";
import { type LadderFixture, loadLadderInputs } from "../_fixtures/ladder_inputs.ts";

const fixtures = await loadLadderInputs();
const fixture = (name: string): LadderFixture => fixtures.find((f) => f.name === name)!;

function ladderOf(f: LadderFixture): Ladder {
  const ladder = buildLadder(f.input.messages, f.input.actors);
  assert.deepEqual(markLadder(ladder, f.input.marks ?? []), [], `${f.name}: every mark lands`);
  return ladder;
}

/** A temporary folder under data/ (the tasks' permissions keep files inside the project). */
async function dataTempDir(): Promise<AsyncDisposable & { path: string }> {
  await ensureDir(DATA_DIR);
  const path = await Deno.makeTempDir({ dir: DATA_DIR, prefix: "test-ladder-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test("ladder: the chat's lanes are named after the actors, not numbered", () => {
  const tls13 = ladderOf(fixture("chat-tls13"));
  assert.deepEqual(tls13.actors, ["chat server", "alice", "bob", "carol"]);
  const tls12 = ladderOf(fixture("chat-tls12"));
  // dave by his nickname; the client refused in the handshake (no hello) by the tool that ran it.
  assert.deepEqual(tls12.actors, ["chat server", "dave", "python3"]);
  assert.ok(
    tls12.arrows.some((a) =>
      a.from === "chat server" && a.to === "python3" && /Alert/.test(a.label)
    ),
  );
  for (const f of fixtures) {
    for (const lane of ladderOf(f).actors) assert.doesNotMatch(lane, /client \d/, f.name);
  }
});

Deno.test("ladder: an attack's two halves, seed mode then the default, in one block each", () => {
  assert.equal(ATTACK_SCENARIOS.length, 9);
  for (const name of ATTACK_SCENARIOS) {
    const ladder = ladderOf(fixture(name));
    const order = ladder.arrows.map((a) => a.section).filter((s, i, all) => s !== all[i - 1]);
    const expected = name === "attack-crl-rollback" ? ["default"] : ["seed", "default"];
    assert.deepEqual(order, expected, name);
    assert.deepEqual(ladder.sections.map((s) => s.key), expected, name);
  }
  // Not an attack: no sections.
  assert.ok(ladderOf(fixture("bank")).arrows.every((a) => a.section === undefined));
});

Deno.test("ladder: each attack's key moments carry a red note saying what Trudy changed", () => {
  const notes = (name: string) =>
    ladderOf(fixture(name)).arrows.filter((a) => a.note !== undefined)
      .map((a) => `${a.section}: ${a.from} → ${a.to}: ${a.label} | ${a.note}`);
  for (const name of ATTACK_SCENARIOS) {
    assert.ok(notes(name).length >= 1, name);
    assert.equal(notes(name).length, fixture(name).input.marks!.length, name);
  }
  const mitm = notes("attack-bank-mitm");
  assert.ok(
    mitm.includes(
      "seed: Trudy → Alice: STEP 2 Hi, I'm Bob (seed) | " +
        "Trudy's own public key in place of Bob's",
    ),
    mitm.join("\n"),
  );
  assert.ok(
    mitm.some((n) => /^seed: Trudy → Bob \(bank\): STEP 6 record .*10\.00 → 900\.00/.test(n)),
  );
  assert.ok(
    notes("attack-session-key-sniff").some((n) =>
      /^seed: Trudy → Blackboard: STEP 6 message .*forged by Trudy/.test(n)
    ),
  );
  // The replayed CRL: Trudy hands Blackboard number 1 again after the CA's number 2.
  const crl = ladderOf(fixture("attack-crl-rollback")).arrows
    .filter((a) => a.from === "Trudy" && a.to === "Blackboard" && a.label === "CRL");
  assert.deepEqual(crl.map((a) => a.detail), ["number 1", "number 2", "number 1"]);
  assert.match(crl[2]!.note!, /old CRL/);
  // A mark that matches nothing is reported, not dropped silently.
  const ladder = ladderOf(fixture("attack-bank-mitm"));
  const missed = markLadder(ladder, [{ from: "Bob (bank)", to: "Alice", label: "x", note: "n" }]);
  assert.equal(missed.length, 1);
});

Deno.test("ladder: every error arrow carries its reason", () => {
  let errors = 0;
  for (const f of fixtures) {
    for (const a of ladderOf(f).arrows.filter((a) => isError(a.label))) {
      errors++;
      assert.ok(a.detail && a.detail.length > 5, `${f.name}: frame ${a.frame} ${a.label}`);
    }
  }
  assert.ok(errors >= 10, `${errors} error arrows in the fixtures`);
  const mitm = ladderOf(fixture("attack-bank-mitm"));
  assert.ok(
    ladderLines(mitm).some((l) =>
      /^Alice → Trudy +error: STEP 2 Hi, I'm Bob failed: Cannot verify certificate bank/.test(l)
    ),
  );
  // An error inside a MAC-only record too.
  assert.ok(
    ladderOf(fixture("attack-message-replay")).arrows.some((a) =>
      a.label.endsWith("[error]") && /sequence number 0, expected 1/.test(a.detail ?? "")
    ),
  );
});

Deno.test("ladder: pages of at most 25 arrows, as even as possible, cut where a half ends", () => {
  const synthetic = (n: number): Ladder => ({
    actors: ["a", "b"],
    sections: [],
    arrows: Array.from({ length: n }, (_, i) => ({
      from: "a",
      to: "b",
      label: `m${i}`,
      time: i,
      frame: i + 1,
      protocol: "Bank",
    })),
  });
  const sizes = (l: Ladder) => paginate(l).map((p) => p.arrows.length);
  assert.deepEqual(sizes(synthetic(0)), [0]);
  assert.deepEqual(sizes(synthetic(25)), [25]);
  assert.deepEqual(sizes(synthetic(26)), [13, 13]);
  assert.deepEqual(sizes(synthetic(51)), [17, 17, 17]);
  for (const f of fixtures) {
    const ladder = ladderOf(f);
    const pages = paginate(ladder);
    assert.deepEqual(pages.flatMap((p) => p.arrows), ladder.arrows, f.name);
    for (const p of pages) {
      assert.ok(p.arrows.length <= ARROWS_PER_PAGE, `${f.name} page ${p.number}`);
      assert.equal(p.of, pages.length);
    }
    if (ladder.arrows.length > ARROWS_PER_PAGE) assert.ok(pages.length > 1, f.name);
  }
  // bank-mitm: 22 seed arrows, then 6 of the default: the page ends with the seed half.
  const mitm = paginate(ladderOf(fixture("attack-bank-mitm")));
  assert.equal(mitm.length, 2);
  assert.ok(mitm[0]!.arrows.every((a) => a.section === "seed"));
  assert.ok(mitm[1]!.arrows.every((a) => a.section === "default"));
});

Deno.test("ladder: labels wrap inside their width; a label too long ends in …", () => {
  const label = "Server Hello, Certificate, Server Key Exchange, Server Hello Done";
  const lines = wrapText(label, 300, 16);
  assert.ok(lines.length >= 2);
  assert.equal(lines.join(" "), label);
  for (const l of lines) assert.ok(textWidth(l, 16) <= 300, l);
  const long = wrapText("x ".repeat(400), 200, 16, { maxLines: 4 });
  assert.equal(long.length, 4);
  assert.ok(long[3]!.endsWith("…"));
  const word = wrapText("a".repeat(100), 120, 16);
  assert.ok(word.length > 1 && word.every((l) => textWidth(l, 16) <= 120));
  // DejaVu Sans is wide: 16 px "W" is 15.8 px, "i" 4.5 px.
  assert.equal(textWidth("W", 16), 15.84);
  assert.equal(textWidth("i", 16), 4.48);
});

Deno.test("ladder: 'TLS decrypts itself' only on a page of a capture with TLS; links between pages", () => {
  for (const f of fixtures) {
    const ladder = ladderOf(f);
    const pages = renderSvgPages(ladder, f.input.title);
    const tls = f.name.startsWith("chat-");
    for (const page of pages) {
      const html = renderHtml(ladder, page, {
        title: f.input.title,
        capture: `${f.name}.pcapng`,
        name: f.name,
      });
      assert.equal(html.includes("TLS decrypts itself"), tls, `${f.name} page ${page.view.number}`);
      assert.ok(html.includes(page.svg.trim()), "the page embeds its SVG");
      assert.equal((html.match(/<tr[^>]*><td>/g) ?? []).length, page.view.arrows.length);
      if (pages.length === 1) {
        assert.doesNotMatch(html, /<nav/);
        continue;
      }
      const n = page.view.number;
      for (let k = 1; k <= pages.length; k++) {
        const file = k === 1 ? `${f.name}.html` : `${f.name}-page${k}.html`;
        if (k === n) assert.match(html, new RegExp(`<strong aria-current="page">${k}</strong>`));
        else assert.ok(html.includes(`href="${file}">${k}</a>`), `${f.name} ${n} → ${k}`);
      }
      assert.equal(/rel="prev"/.test(html), n > 1);
      assert.equal(/rel="next"/.test(html), n < pages.length);
    }
  }
});

Deno.test("ladder: arrows between named actors, in frame order, labels escaped", () => {
  const m = (frame: number, src: number, dst: number, stream: number, label: string) =>
    ({
      frame,
      time: frame / 10,
      stream,
      srcPort: src,
      dstPort: dst,
      protocol: "CUHK",
      label,
    }) as CaptureMessage;
  const messages = [
    m(3, 9335, 50001, 0, "STEP 2 cert 2"),
    m(1, 50001, 9335, 0, "STEP 1 CSR"),
    m(5, 50002, 3141, 1, "STEP 3 request | cert 2 <&>"),
    m(9, 50005, 9335, 5, "CRL request"),
    m(10, 9335, 50005, 5, "CRL"),
    m(6, 40000, 40001, 2, "not ours"),
    m(7, 50003, 8443, 3, "Client Hello"),
    m(8, 50004, 8443, 4, "Client Hello"),
  ];
  const map: ActorMap = {
    servers: { 9335: "CUHK", 3141: "Blackboard", 8443: "chat server" },
    clients: { 9335: "Student", 3141: "Student", 8443: "client" },
    byFirstMessage: { "CRL request": "Blackboard" },
    numbered: [8443],
  };
  const ladder = buildLadder(messages, map);
  assert.deepEqual(ladder.actors, [
    "Student",
    "CUHK",
    "Blackboard",
    "client 1",
    "chat server",
    "client 2",
  ]);
  assert.deepEqual(
    ladder.arrows.map((a) => `${a.from} > ${a.to}: ${a.label}`),
    [
      "Student > CUHK: STEP 1 CSR",
      "CUHK > Student: STEP 2 cert 2",
      "Student > Blackboard: STEP 3 request | cert 2 <&>",
      "client 1 > chat server: Client Hello",
      "client 2 > chat server: Client Hello",
      "Blackboard > CUHK: CRL request",
      "CUHK > Blackboard: CRL",
    ],
  );
  // A lane order puts the named actors first.
  const ordered = buildLadder(messages, { ...map, order: ["chat server", "Blackboard"] });
  assert.deepEqual(ordered.actors.slice(0, 3), ["chat server", "Blackboard", "Student"]);
  assert.equal(ordered.arrows.length, ladder.arrows.length);
  // Names in order of connection come before numbers.
  const inOrder = buildLadder(messages, { ...map, inOrder: { 8443: ["openssl"] } });
  assert.deepEqual(inOrder.actors.slice(3), ["openssl", "chat server", "client 1"]);
  const page = renderSvg(ladder, "t <1>");
  assert.ok(page.svg.includes("STEP 3 request | cert 2 &#60;&#38;&#62;"));
  assert.ok(!page.svg.includes("<&>"));
  assert.ok(page.svg.includes("<title>t &#60;1&#62;</title>"));
  const html = renderHtml(ladder, page, { title: "t", capture: "a&b.pcapng", name: "t" });
  assert.ok(html.includes("a&#38;b.pcapng"));
});

Deno.test("ladder: the files of every page, mode 0644; pages and PNGs of an earlier drawing removed", async () => {
  await using dir = await dataTempDir();
  const base = `${dir.path}/chat-tls13`;
  // Left from an earlier, longer drawing: a fourth page and PNGs (this drawing has no browser).
  for (const stale of ["-page4.svg", "-page4.html", "-page4.png", ".png", "-page2.png"]) {
    await Deno.writeTextFile(`${base}${stale}`, "old");
  }
  await Deno.writeTextFile(`${dir.path}/chat-tls13x-page2.svg`, "not ours");
  const files = await writeLadderFiles(fixture("chat-tls13").input, base, {
    capture: `${dir.path}/chat-tls13.pcapng`,
  });
  assert.equal(files.pages.length, 3);
  assert.equal(files.svg, `${base}.svg`);
  assert.equal(files.pages[1]!.html, `${base}-page2.html`);
  assert.equal(files.png, undefined);
  assert.equal(files.arrows, fixture("chat-tls13").input.messages.length);
  const names = [];
  for await (const e of Deno.readDir(dir.path)) names.push(e.name);
  assert.deepEqual(names.sort(), [
    "chat-tls13-page2.html",
    "chat-tls13-page2.svg",
    "chat-tls13-page3.html",
    "chat-tls13-page3.svg",
    "chat-tls13.html",
    "chat-tls13.svg",
    "chat-tls13x-page2.svg",
  ]);
  for (const p of files.pages) {
    for (const path of [p.svg, p.html]) {
      assert.equal((await Deno.stat(path)).mode! & 0o777, 0o644, path);
    }
  }
  // The page links the capture beside it by its name.
  assert.match(await Deno.readTextFile(files.html), /href="chat-tls13\.pcapng"/);
});

Deno.test("ladder: by address on the netlab, the victim's leg ends at Trudy, her own leg at the server", () => {
  // alice 10.0.1.10 dials the bank 10.0.2.3:6001; Trudy's nft redirect hands it to her relay on
  // port 40001 (stream 0, answered in place), which dials the bank from 10.0.2.1 (stream 1). After
  // her rule goes, alice dials the bank directly (stream 2, forwarded: not intercepted).
  const m = (
    frame: number,
    stream: number,
    [src, srcPort]: [string, number],
    [dst, dstPort]: [string, number],
    label: string,
    intercepted = false,
  ): CaptureMessage => ({
    frame,
    time: frame / 10,
    stream,
    srcPort,
    dstPort,
    src,
    dst,
    protocol: "Bank",
    label,
    ...(intercepted ? { intercepted } : {}),
  });
  const alice: [string, number] = ["10.0.1.10", 50000];
  const aliceAgain: [string, number] = ["10.0.1.10", 50002];
  const bank: [string, number] = ["10.0.2.3", 6001];
  const trudy: [string, number] = ["10.0.2.1", 50001];
  const messages = [
    m(1, 0, alice, bank, "STEP 1 Hello", true),
    m(2, 1, trudy, bank, "STEP 1 Hello"),
    m(3, 1, bank, trudy, "STEP 2 Hi, I'm Bob"),
    m(4, 0, bank, alice, "STEP 2 Hi, I'm Bob", true),
    m(5, 2, aliceAgain, bank, "STEP 1 Hello"),
    m(6, 2, bank, aliceAgain, "STEP 2 Hi, I'm Bob"),
  ];
  const byPort: ActorMap = {
    servers: { 6001: "bank 10.0.2.3", 40001: "trudy 10.0.2.1" },
    clients: { 6001: "alice 10.0.1.10", 40001: "alice 10.0.1.10" },
    order: ["alice 10.0.1.10", "trudy 10.0.2.1", "bank 10.0.2.3"],
  };
  const lines = (map: ActorMap) =>
    buildLadder(messages, map).arrows.map((a) => `${a.from} > ${a.to}: ${a.label}`);
  // By port alone Trudy's two legs look alike: no lane for her.
  assert.ok(lines(byPort).every((l) => !l.includes("trudy")));
  const map: ActorMap = {
    ...byPort,
    addresses: { "10.0.1.1": "trudy 10.0.2.1", "10.0.2.1": "trudy 10.0.2.1" },
    redirects: [{ server: "10.0.2.3", port: 6001, to: 40001 }],
  };
  const ladder = buildLadder(messages, map);
  assert.deepEqual(ladder.actors, ["alice 10.0.1.10", "trudy 10.0.2.1", "bank 10.0.2.3"]);
  assert.deepEqual(lines(map), [
    "alice 10.0.1.10 > trudy 10.0.2.1: STEP 1 Hello",
    "trudy 10.0.2.1 > bank 10.0.2.3: STEP 1 Hello",
    "bank 10.0.2.3 > trudy 10.0.2.1: STEP 2 Hi, I'm Bob",
    "trudy 10.0.2.1 > alice 10.0.1.10: STEP 2 Hi, I'm Bob",
    "alice 10.0.1.10 > bank 10.0.2.3: STEP 1 Hello",
    "bank 10.0.2.3 > alice 10.0.1.10: STEP 2 Hi, I'm Bob",
  ]);
  // An address with its port names only that endpoint.
  const onePort = buildLadder(messages, {
    ...byPort,
    addresses: { "10.0.2.1:50001": "Trudy's relay" },
  });
  assert.deepEqual(
    onePort.arrows.filter((a) => a.frame === 2).map((a) => `${a.from} > ${a.to}`),
    ["Trudy's relay > bank 10.0.2.3"],
  );
});
