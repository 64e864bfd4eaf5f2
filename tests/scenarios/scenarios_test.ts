/**
 * The capture scenarios with the real chat (actors/chat.ts, server and clients as processes):
 * three TLS 1.3 clients; a TLS 1.2 client and a client offering only AES128-SHA. Each capture must
 * match pcap/expected (per record; its raw twin per packet), show no handshake waiting for a
 * delayed ACK (the chat's TCP_NODELAY), and be drawn as a ladder diagram (SVG and HTML) with one
 * arrow per record.
 * Also: the ladder itself, and the capture task's command line.
 */

import assert from "node:assert/strict";
import { runScenario } from "../../tasks/scenarios/mod.ts";
import {
  type ActorMap,
  buildLadder,
  type CaptureMessage,
  LUA_DISSECTOR,
  readTlsConnections,
  renderHtml,
  renderSvg,
  tshark,
} from "../../lib/wireshark/mod.ts";
import { run, runActor, tempDir } from "../_fixtures/helpers.ts";

/** Parses XML with an independent parser (Python's), failing on anything malformed. */
async function assertWellFormedXml(path: string): Promise<void> {
  const res = await run("python3", [
    "-c",
    "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])",
    path,
  ]);
  assert.equal(res.code, 0, res.stderr);
}

Deno.test("capture scenarios: chat over TLS 1.3 and TLS 1.2, checked and drawn", async (t) => {
  await using dir = await tempDir("lab-scenarios-");
  for (const name of ["chat-tls13", "chat-tls12"] as const) {
    await t.step(name, async () => {
      const lines: string[] = [];
      const r = await runScenario(name, {
        outDir: `${dir.path}/out`,
        workParent: `${dir.path}/work`,
        capture: true,
        diagram: true,
        sink: (l) => lines.push(l),
      });
      const why = `${r.error ?? ""}\n${r.checks.map((c) => c.report).join("\n")}\n${
        lines.join("\n")
      }`;
      assert.ok(r.ok, why);
      assert.equal((await Deno.stat(r.capture!)).mode! & 0o777, 0o644);
      const tls = r.checks.find((c) => c.what.startsWith("TLS records"))!;
      assert.ok(tls.ok);
      // The raw twin (no keys), checked packet by packet as the seed's Wireshark list shows it.
      assert.equal(r.rawCapture, `${dir.path}/out/${name}.raw.pcapng`);
      assert.equal((await Deno.stat(r.rawCapture!)).mode! & 0o777, 0o644);
      const packets = r.checks.find((c) => c.what.startsWith("TLS packets of the raw twin"))!;
      assert.ok(packets?.ok, packets?.report);
      assert.match(
        packets.what,
        name === "chat-tls13"
          ? /tls13-packets ×3/
          : /tls12-packets ×1, aes128-sha-refused-packets ×1/,
      );
      // No handshake waited for a delayed ACK (Nagle): the chat server's TCP_NODELAY on the wire.
      const timing = r.checks.find((c) => c.what.startsWith("TLS handshakes never wait"))!;
      assert.ok(timing.ok, timing.report);
      assert.match(timing.what, name === "chat-tls13" ? /\(3 checked\)/ : /\(1 checked\)/);
      if (name === "chat-tls12") {
        assert.match(
          timing.report!,
          /server's Change Cipher Spec and Finished (in one TCP segment|back to back)/,
        );
      }
      const conns = await readTlsConnections(r.capture!);
      if (name === "chat-tls13") {
        assert.match(tls.what, /tls13 ×3/);
        assert.equal(conns.length, 3);
        // The chat's lines went through: joined, said, private message, left.
        const out = lines.join("\n");
        assert.match(out, /<alice> hello from alice/);
        assert.match(out, /\[private\] <carol -> bob> psst, bob/);
      } else {
        assert.match(tls.what, /tls12 ×1, aes128-sha-refused ×1/);
        assert.ok(r.notes.some((n) => /AES128-SHA refused/.test(n)), r.notes.join("\n"));
        assert.match(tls.report!, /Certificate Status/);
      }
      // The diagram: one arrow per TLS record, lanes for the server and each client.
      const records = conns.reduce((n, c) => n + c.records.length, 0);
      assert.equal(r.diagram!.arrows, records);
      await assertWellFormedXml(r.diagram!.svg);
      const svg = await Deno.readTextFile(r.diagram!.svg);
      assert.match(svg, />chat server</);
      assert.match(svg, />client 1</);
      assert.match(svg, />Client Hello</);
      if (name === "chat-tls12") {
        assert.match(svg, />Server Hello, Certificate, Server Key Exchange, Server Hello Done</);
        assert.match(svg, />Alert \(Fatal, Handshake Failure\)</);
      } else {
        assert.match(svg, />client 3</);
        assert.match(svg, />Encrypted Extensions, Certificate, Certificate Verify, Finished</);
        // Decrypted chat frames are named by pcap/lab.lua, in the diagram too.
        assert.match(svg, />Application Data \[chat say\]</);
        const chat = await tshark([
          "-X",
          `lua_script:${LUA_DISSECTOR}`,
          "-r",
          r.capture!,
          "-Y",
          "labchat",
          "-T",
          "fields",
          "-e",
          "labchat.type",
          "-e",
          "labchat.text",
          "-E",
          "occurrence=a",
        ]);
        const types = new Set(chat.split(/[\n\t,]/));
        for (const t of ["hello", "welcome", "joined", "say", "said", "who", "users", "msg"]) {
          assert.ok(types.has(t), `chat ${t} not dissected: ${[...types].join(" ")}`);
        }
        assert.match(chat, /\tpsst, bob/);
      }
      const html = await Deno.readTextFile(r.diagram!.html);
      assert.ok(html.includes(svg.trim()), "the page embeds the SVG");
      assert.equal((html.match(/<tr><td>/g) ?? []).length, records);
    });
  }
});

Deno.test("diagram: arrows between named actors, in frame order, labels escaped", () => {
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
  const svg = renderSvg(ladder, "t <1>");
  assert.ok(svg.includes("STEP 3 request | cert 2 &#60;&#38;&#62;"));
  assert.ok(!svg.includes("<&>"));
  assert.ok(svg.includes("<title>t &#60;1&#62;</title>"));
  const html = renderHtml(ladder, svg, { title: "t", capture: "a&b.pcapng" });
  assert.ok(html.includes("a&#38;b.pcapng"));
});

Deno.test("capture task: usage errors and --help", async () => {
  const perms = ["--allow-read=.", "--allow-run=dumpcap,editcap,tshark"];
  const bad = await runActor("tasks/capture.ts", ["nope"], { permissions: perms });
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /unknown scenario 'nope' \(one of: enrol, upload, bank, chat-tls13, chat-tls12, seed, attack-enrol-impersonation, attack-enrol-code-theft, attack-bank-mitm, attack-bank-replay, attack-session-key-sniff, attack-message-replay, attack-cross-service, attack-crl-rollback, attack-error-injection, attacks, all\)/,
  );
  const none = await runActor("tasks/capture.ts", [], { permissions: perms });
  assert.equal(none.code, 2);
  assert.match(none.stderr, /missing SCENARIO/);
  const outside = await runActor("tasks/capture.ts", ["enrol", "--out", "/nowhere"], {
    permissions: [...perms, "--allow-write=."],
  });
  assert.equal(outside.code, 2);
  assert.match(outside.stderr, /--out must be inside the project/);
  const help = await runActor("tasks/capture.ts", ["--help"], { permissions: perms });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /chat-tls12 +System 3/);
  assert.match(help.stdout, /attack-bank-mitm +Trudy, bank-mitm/);
  assert.match(
    help.stdout,
    /attacks +attack-enrol-impersonation, attack-enrol-code-theft, attack-bank-mitm, attack-bank-replay, attack-session-key-sniff, attack-message-replay, attack-cross-service, attack-crl-rollback, attack-error-injection\n/,
  );
  assert.match(
    help.stdout,
    /all +upload, bank, chat-tls13, chat-tls12, attack-enrol-impersonation/,
  );
});
