/**
 * The raw twin of a real capture (the chat-tls12 scenario: the chat server and a TLS 1.2 client
 * as processes, dumpcap on lo) checked packet by packet against pcap/expected/tls12-packets.json,
 * the seed's list: it passes; the same capture with a packet removed, packets reordered, or the
 * server's Change Cipher Spec and Finished split by a client packet fails; a duplicated packet
 * (a retransmission to tshark) is left out and changes nothing.
 */

import assert from "node:assert/strict";
import { runScenario, type ScenarioResult } from "../../tasks/scenarios/mod.ts";
import {
  checkPackets,
  type Expectation,
  loadExpectation,
  readTlsPackets,
  type TlsRecord,
  tshark,
} from "../../lib/wireshark/mod.ts";
import { run, tempDir } from "../_fixtures/helpers.ts";

/** The server port of a chat capture: the destination of its first packet. */
async function serverPort(file: string): Promise<number> {
  const out = await tshark(["-r", file, "-c", "1", "-T", "fields", "-e", "tcp.dstport"]);
  return Number(out.trim());
}

/** A capture made of `raw`'s frames in the order of `pieces` (editcap ranges), no keys. */
async function rebuild(raw: string, dir: string, name: string, pieces: string[]): Promise<string> {
  const parts: string[] = [];
  for (const [i, range] of pieces.entries()) {
    const part = `${dir}/${name}-${i}.pcapng`;
    const res = await run("editcap", ["-r", raw, part, range]);
    assert.equal(res.code, 0, res.stderr);
    parts.push(part);
  }
  const out = `${dir}/${name}.pcapng`;
  const m = await run("mergecap", ["-F", "pcapng", "-a", "-w", out, ...parts]);
  assert.equal(m.code, 0, m.stderr);
  return out;
}

async function lastFrame(file: string): Promise<number> {
  const out = await tshark(["-r", file, "-T", "fields", "-e", "frame.number"]);
  return Number(out.trim().split("\n").pop());
}

Deno.test("raw twin: the chat's TLS 1.2 capture packet by packet is the seed's list; altered, it fails", async (t) => {
  await using dir = await tempDir("lab-raw-twin-");
  const lines: string[] = [];
  const r: ScenarioResult = await runScenario("chat-tls12", {
    outDir: `${dir.path}/out`,
    workParent: `${dir.path}/work`,
    capture: true,
    diagram: false,
    sink: (l) => lines.push(l),
  });
  assert.ok(
    r.ok,
    `${r.error ?? ""}\n${r.checks.map((c) => c.report).join("\n")}\n${lines.join("\n")}`,
  );
  const raw = r.rawCapture!;
  assert.equal(raw, `${dir.path}/out/chat-tls12.raw.pcapng`);
  const port = await serverPort(raw);
  const tls12: Expectation = await loadExpectation("tls12-packets");
  const expect = [{ expectation: tls12 }, {
    expectation: await loadExpectation("aes128-sha-refused-packets"),
  }];
  const options = { serverPorts: [port] };
  const packets = (await readTlsPackets(raw, options))[0]!.records;
  const frame = (from: "client" | "server", wire: string): TlsRecord => {
    const p = packets.find((p) => p.from === from && p.wire === wire);
    assert.ok(p, `no ${wire} from the ${from}: ${packets.map((p) => p.wire).join(" | ")}`);
    return p;
  };

  await t.step(
    "the raw twin has no keys: Wireshark shows Encrypted Handshake Message",
    async () => {
      assert.equal((await Deno.stat(raw)).mode! & 0o777, 0o644);
      const plain = await tshark(["-r", raw]);
      assert.match(plain, /Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message/);
      assert.doesNotMatch(plain, /Finished/);
      // The decrypted capture beside it names the same packet's Finished.
      const decrypted = await tshark(["-r", r.capture!]);
      assert.match(decrypted, /Client Key Exchange, Change Cipher Spec, Finished/);
    },
  );

  await t.step("the scenario checked it packet by packet, and it matches", async () => {
    const c = r.checks.find((c) => c.what.startsWith("TLS packets of the raw twin"))!;
    assert.ok(c, r.checks.map((c) => c.what).join("\n"));
    assert.ok(c.ok, c.report);
    assert.match(c.what, /tls12-packets ×1, aes128-sha-refused-packets ×1/);
    const result = await checkPackets(raw, expect, options);
    assert.ok(result.ok, result.report);
    // What the capture shows: the first three lines exactly, one packet each.
    assert.deepEqual(packets.slice(0, 3).map((p) => [p.from, p.wire]), [
      ["client", "Client Hello"],
      ["server", "Server Hello, Certificate, Server Key Exchange, Server Hello Done"],
      ["client", "Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message"],
    ]);
    // Then the server's Change Cipher Spec and Finished: one packet, or two back to back (rustls
    // writes them one sendto() each), and the report says which.
    const server = packets.slice(3).filter((p) => p.from === "server").slice(0, 2);
    if (server[0]!.wire === "Change Cipher Spec, Encrypted Handshake Message") {
      assert.doesNotMatch(result.report, /\(2 packets back to back/);
    } else {
      assert.deepEqual(server.map((p) => p.wire), [
        "Change Cipher Spec",
        "Encrypted Handshake Message",
      ]);
      assert.match(result.report, /\(2 packets back to back: frames \d+ and \d+, [\d.]+ ms apart/);
    }
  });

  await t.step(
    "strictly per packet, the only difference from the seed's list is that split",
    async () => {
      const strict = await checkPackets(raw, expect, { ...options, joinFlights: false });
      const split = frame(
        "server",
        packets.some((p) => p.wire === "Change Cipher Spec")
          ? "Change Cipher Spec"
          : "Change Cipher Spec, Encrypted Handshake Message",
      );
      if (split.wire === "Change Cipher Spec") {
        assert.equal(strict.ok, false);
        const problems = strict.checks[0]!.problems;
        assert.ok(
          problems.every((p) =>
            /Change Cipher Spec|Encrypted Handshake Message|should match/.test(p)
          ),
          strict.report,
        );
      } else {
        assert.ok(strict.ok, strict.report);
      }
    },
  );

  const last = await lastFrame(raw);
  const cke = frame(
    "client",
    "Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message",
  );
  const hello = frame("client", "Client Hello");
  const finished = packets.find((p) =>
    p.from === "server" && /Encrypted Handshake Message$/.test(p.wire)
  )!;
  const ccs = packets.find((p) => p.from === "server" && /^Change Cipher Spec/.test(p.wire))!;

  await t.step("a packet removed (the server's Finished): fails", async () => {
    const removed = await rebuild(raw, dir.path, "removed", [
      `1-${finished.frame - 1}`,
      `${finished.frame + 1}-${last}`,
    ]);
    const result = await checkPackets(removed, expect, options);
    assert.equal(result.ok, false, result.report);
    assert.match(result.report, /✗/);
  });

  await t.step(
    "packets reordered (the server's answer before the client's key exchange): fails",
    async () => {
      const reordered = await rebuild(raw, dir.path, "reordered", [
        `1-${cke.frame - 1}`,
        `${ccs.frame}-${finished.frame}`,
        `${cke.frame}-${ccs.frame - 1}`,
        `${finished.frame + 1}-${last}`,
      ]);
      const result = await checkPackets(reordered, expect, options);
      assert.equal(result.ok, false, result.report);
    },
  );

  await t.step(
    "the server's Change Cipher Spec and Finished split by a client packet: fails",
    async () => {
      // The client's first packet after the server's Finished (its ACK) moved between the two: the
      // same bytes, but no longer back to back.
      const after = await tshark([
        "-r",
        raw,
        "-Y",
        `frame.number > ${finished.frame} && tcp.srcport != ${port}`,
        "-T",
        "fields",
        "-e",
        "frame.number",
      ]);
      const ack = Number(after.trim().split("\n")[0]);
      assert.ok(ack > finished.frame, `no client packet after frame ${finished.frame}`);
      if (ccs.frame === finished.frame) {
        // One packet: nothing to split on the wire; the synthetic tests cover it.
        return;
      }
      const split = await rebuild(raw, dir.path, "split", [
        `1-${ccs.frame}`,
        `${ack}`,
        `${ccs.frame + 1}-${ack - 1}`,
        `${ack + 1}-${last}`,
      ]);
      const result = await checkPackets(split, expect, options);
      assert.equal(result.ok, false, result.report);
      assert.match(
        result.report,
        /missing: server → client Change Cipher Spec, Encrypted Handshake Message/,
      );
    },
  );

  await t.step(
    "a packet duplicated (a retransmission to tshark): left out, still the seed's list",
    async () => {
      const duplicated = await rebuild(raw, dir.path, "duplicated", [
        `1-${hello.frame}`,
        `${hello.frame}`,
        `${hello.frame + 1}-${last}`,
      ]);
      const retrans = await tshark([
        "-r",
        duplicated,
        "-Y",
        "tcp.analysis.retransmission || tcp.analysis.spurious_retransmission",
        "-T",
        "fields",
        "-e",
        "frame.number",
      ]);
      assert.equal(retrans.trim(), String(hello.frame + 1), "tshark flags the copy");
      const result = await checkPackets(duplicated, expect, options);
      assert.ok(result.ok, result.report);
    },
  );
});
