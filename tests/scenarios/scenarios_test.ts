/**
 * The capture scenarios with the real chat (actors/chat.ts, server and clients as processes):
 * three TLS 1.3 clients; a TLS 1.2 client and a client offering only AES128-SHA. Each capture must
 * match pcap/expected (per record; its raw twin per packet), show no handshake waiting for a
 * delayed ACK (the chat's TCP_NODELAY), and be drawn as a ladder diagram (SVG and HTML pages) with
 * one arrow per record, each client's lane named after it. Also: the capture task's command line
 * (the ladder itself: tests/wireshark/ladder_test.ts).
 */

import assert from "node:assert/strict";
import { runScenario } from "../../tasks/scenarios/mod.ts";
import { labReading, readTlsConnections, tshark } from "../../lib/wireshark/mod.ts";
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
      // The diagram: one arrow per TLS record, lanes for the server and each client by name, in
      // pages of at most 25 arrows.
      const records = conns.reduce((n, c) => n + c.records.length, 0);
      assert.equal(r.diagram!.arrows, records);
      const pages = r.diagram!.pages;
      assert.equal(pages.length, Math.ceil(records / 25));
      let svg = "";
      let rows = 0;
      for (const p of pages) {
        await assertWellFormedXml(p.svg);
        const page = await Deno.readTextFile(p.svg);
        const html = await Deno.readTextFile(p.html);
        assert.ok(html.includes(page.trim()), "the page embeds the SVG");
        assert.ok(html.includes("TLS decrypts itself"));
        rows += (html.match(/<tr><td>/g) ?? []).length;
        svg += page;
      }
      assert.equal(rows, records);
      assert.match(svg, />chat server</);
      assert.match(svg, />Client Hello</);
      assert.doesNotMatch(svg, />client \d</);
      // Every record's full name is in its arrow's tooltip (a long label wraps on the diagram).
      const arrow = (text: string) => `chat server → ${text}`;
      if (name === "chat-tls12") {
        assert.match(svg, />dave</);
        assert.match(svg, />python3</);
        assert.ok(
          svg.includes(
            arrow(
              "dave: Server Hello, Certificate, Server Key Exchange, Server Hello Done</title>",
            ),
          ),
        );
        assert.ok(svg.includes(arrow("python3: Alert (Fatal, Handshake Failure)</title>")));
      } else {
        for (const nick of ["alice", "bob", "carol"]) assert.match(svg, new RegExp(`>${nick}<`));
        assert.ok(
          svg.includes(
            arrow("carol: Encrypted Extensions, Certificate, Certificate Verify, Finished</title>"),
          ),
        );
        // Decrypted chat frames are named by pcap/lab.lua, in the diagram too.
        assert.match(svg, />Application Data \[chat say\]</);
        const chat = await tshark([
          ...labReading(r.capture!),
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
    });
  }
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
