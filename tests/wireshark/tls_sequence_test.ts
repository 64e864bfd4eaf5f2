/**
 * Captures of real TLS connections on loopback (a Deno.listenTls server with a CA-issued leaf;
 * node:tls clients in TLS 1.3 and 1.2; Python's ssl offering only AES128-SHA, as seed 004 did),
 * checked against pcap/expected/*.json: the checker passes on the real capture and fails on a
 * capture with a record removed, with records reordered, or without the key log.
 */

import assert from "node:assert/strict";
import {
  Capture,
  checkCapture,
  checkConnections,
  type Expectation,
  loadExpectation,
  readTlsConnections,
  tshark,
} from "../../lib/wireshark/mod.ts";
import { ActorProcess, run, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";

const PEER = "tests/_fixtures/tls_peer.ts";

interface Fixture {
  /** The pcapng with the key log embedded. */
  file: string;
  /** The raw capture and key log, kept to build altered captures. */
  raw: string;
  keyLog: string;
  port: number;
  expectations: Record<"tls12" | "tls13" | "refused", Expectation>;
  pythonOut: string;
}

let fixture: Promise<Fixture> | undefined;

/** One capture for all tests: a TLS 1.2, a TLS 1.3 and a refused AES128-SHA connection. */
function captureOnce(dir: string): Promise<Fixture> {
  fixture ??= (async () => {
    await using pki = await TestPki.start();
    const leaf = await pki.serverCert("localhost", ["127.0.0.1"]);
    const workDir = `${dir}/work`;
    const keyLog = `${dir}/keys.log`;
    await Deno.writeTextFile(keyLog, "", { mode: 0o600 });
    const env = { SSLKEYLOGFILE: keyLog };
    await using server = new ActorProcess(PEER, ["serve", leaf.certPath, leaf.keyPath], { env });
    const port = Number((await server.waitFor(/listening (\d+)/))[1]);
    const capture = await Capture.start({ ports: [port], workDir });
    const peer = (args: string[]) => runActor(PEER, ["connect", String(port), ...args], { env });
    const tls12 = await peer([leaf.rootPath, "1.2"]);
    assert.equal(tls12.stdout.trim(), "echo: hello", tls12.stderr);
    const tls13 = await peer([leaf.rootPath]);
    assert.equal(tls13.stdout.trim(), "echo: hello", tls13.stderr);
    // The seed's client context, verbatim in spirit: TLS 1.2 and set_ciphers('AES128-SHA').
    const python = await run("python3", [
      "-c",
      `import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers('AES128-SHA')
ctx.load_verify_locations(sys.argv[2])
try:
    ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='localhost')
    print('connected')
except ssl.SSLError as e:
    print('refused:', e.reason)`,
      String(port),
      leaf.rootPath,
    ]);
    await capture.stop();
    const raw = `${dir}/raw.pcapng`;
    await Deno.copyFile(capture.rawPath, raw);
    // The server appended to the same key log as the clients; copy it in for the capture.
    await Deno.copyFile(keyLog, capture.keyLogPath);
    const { path, secrets } = await capture.finish(`${dir}/out/tls.pcapng`);
    assert.ok(secrets, "the key log should have been embedded");
    await server.stop();
    return {
      file: path,
      raw,
      keyLog,
      port,
      pythonOut: python.stdout.trim(),
      expectations: {
        tls12: await loadExpectation("tls12"),
        tls13: await loadExpectation("tls13"),
        refused: await loadExpectation("aes128-sha-refused"),
      },
    };
  })();
  return fixture;
}

/** Rebuilds a capture from the raw one: `editcap` selects frames, secrets are injected again. */
async function rebuild(f: Fixture, dir: string, name: string, pieces: string[]): Promise<string> {
  const parts: string[] = [];
  for (const [i, range] of pieces.entries()) {
    const part = `${dir}/${name}-${i}.pcapng`;
    const res = await run("editcap", ["-r", f.raw, part, range]);
    assert.equal(res.code, 0, res.stderr);
    parts.push(part);
  }
  const merged = `${dir}/${name}-merged.pcapng`;
  const m = await run("mergecap", ["-F", "pcapng", "-a", "-w", merged, ...parts]);
  assert.equal(m.code, 0, m.stderr);
  const out = `${dir}/${name}.pcapng`;
  const e = await run("editcap", ["--inject-secrets", `tls,${f.keyLog}`, merged, out]);
  assert.equal(e.code, 0, e.stderr);
  return out;
}

async function lastFrame(file: string): Promise<number> {
  const out = await tshark(["-r", file, "-T", "fields", "-e", "frame.number"]);
  return Number(out.trim().split("\n").pop());
}

Deno.test("capture: TLS 1.3, TLS 1.2 and the AES128-SHA refusal match pcap/expected", async (t) => {
  await using dir = await tempDir("lab-capture-");
  const f = await captureOnce(dir.path);
  const all = [
    { expectation: f.expectations.tls12 },
    { expectation: f.expectations.tls13 },
    { expectation: f.expectations.refused },
  ];

  await t.step("the pcapng is readable by everyone and decrypts itself", async () => {
    assert.equal((await Deno.stat(f.file)).mode! & 0o777, 0o644);
    // `tshark -r FILE` with no options: the handshake and application data show decrypted.
    const plain = await tshark(["-r", f.file]);
    assert.match(plain, /Encrypted Extensions, Certificate, Certificate Verify, Finished/);
    assert.match(plain, /Client Key Exchange, Change Cipher Spec, Finished/);
    const data = await tshark(["-r", f.file, "-Y", "tls.app_data", "-T", "fields", "-e", "data"]);
    // "echo: hello" in hex: the decrypted application data.
    assert.match(data, /6563686f3a2068656c6c6f/);
  });

  await t.step("the checker passes on the real capture, each connection once", async () => {
    const result = await checkCapture(f.file, all, { serverPorts: [f.port] });
    assert.ok(result.ok, result.report);
    assert.equal(result.connections.length, 3);
    assert.deepEqual(result.checks.map((c) => c.expectation.name), [
      "tls12",
      "tls13",
      "aes128-sha-refused",
    ]);
    // The report says what the seed showed and a rustls server does not send.
    assert.match(result.report, /Certificate Status/);
    assert.match(result.report, /New Session Ticket/);
    assert.match(result.report, /rustls/);
  });

  await t.step("AES128-SHA only: the client is refused with a handshake failure", () => {
    assert.match(f.pythonOut, /^refused: .*HANDSHAKE_FAILURE/i);
  });

  await t.step("a capture with a record removed fails, naming the missing record", async () => {
    const conns = await readTlsConnections(f.file, { serverPorts: [f.port] });
    const tls12 = conns.find((c) => c.records[1]?.wire.includes("Server Key Exchange"))!;
    // The packet that carries the server's Change Cipher Spec is dropped (with whatever else that
    // segment carries: its Finished may travel in the same one).
    const ccs = tls12.records.find((r) => r.from === "server" && r.wire === "Change Cipher Spec")!;
    assert.ok(ccs, "the TLS 1.2 connection should have a server Change Cipher Spec");
    const last = await lastFrame(f.raw);
    const removed = await rebuild(f, dir.path, "removed", [
      `1-${ccs.frame - 1}`,
      `${ccs.frame + 1}-${last}`,
    ]);
    const result = await checkCapture(removed, [{ expectation: f.expectations.tls12 }], {
      serverPorts: [f.port],
    });
    assert.equal(result.ok, false);
    const check = result.checks.find((c) => c.expectation.name === "tls12")!;
    assert.equal(check.ok, false);
    assert.ok(
      check.problems.some((p) => /missing: server → client Change Cipher Spec/.test(p)),
      result.report,
    );
    assert.match(result.report, /✗/);
  });

  await t.step("a capture with records reordered fails", async () => {
    const conns = await readTlsConnections(f.file, { serverPorts: [f.port] });
    const tls12 = conns.find((c) => c.records[1]?.wire.includes("Server Key Exchange"))!;
    // Two packets whose order is causal, not timing: the client's Client Key Exchange (with its
    // Change Cipher Spec and Finished) must reach the server before the server's Change Cipher
    // Spec answers it. (The server's Change Cipher Spec and Finished may share one segment or
    // not: that is timing, so the test never assumes either.)
    const cke = tls12.records.find((r) =>
      r.from === "client" && r.wire.includes("Client Key Exchange")
    )!;
    const ccs = tls12.records.find((r) => r.from === "server" && r.wire === "Change Cipher Spec")!;
    assert.ok(cke && ccs, "the TLS 1.2 connection should have both");
    assert.ok(cke.frame < ccs.frame);
    const last = await lastFrame(f.raw);
    // The server's Change Cipher Spec goes on the wire before the client's key exchange.
    const reordered = await rebuild(f, dir.path, "reordered", [
      `1-${cke.frame - 1}`,
      `${ccs.frame}`,
      `${cke.frame}-${ccs.frame - 1}`,
      `${ccs.frame + 1}-${last}`,
    ]);
    const result = await checkCapture(reordered, [{ expectation: f.expectations.tls12 }], {
      serverPorts: [f.port],
    });
    assert.equal(result.ok, false, result.report);
    assert.ok(result.checks.some((c) => c.expectation.name === "tls12" && !c.ok));
  });

  await t.step("the same records in another order fail (record level)", async () => {
    const conns = await readTlsConnections(f.file, { serverPorts: [f.port] });
    // Server Hello is always the second record (it answers the Client Hello); where the other
    // records fall in a live capture is timing (the client's Change Cipher Spec may cross the
    // server's flight), so each one is found by who sent it and what it is, never by position.
    const tls13 = conns.find((c) => c.records[1]?.wire === "Server Hello")!;
    const at = (records: typeof tls13.records, from: "client" | "server", wire: string) => {
      const i = records.findIndex((r) => r.from === from && r.wire === wire);
      assert.ok(i > 0, `no ${wire} from the ${from} in the TLS 1.3 connection`);
      return i;
    };
    const expect = [{ expectation: f.expectations.tls13 }];
    const good = checkConnections([tls13], expect);
    assert.ok(good.ok, good.report);
    // Server Hello after the server's Change Cipher Spec: refused.
    const swapped = { ...tls13, records: [...tls13.records] };
    const serverCcs = at(swapped.records, "server", "Change Cipher Spec");
    [swapped.records[1], swapped.records[serverCcs]] = [
      swapped.records[serverCcs]!,
      swapped.records[1]!,
    ];
    const bad = checkConnections([swapped], expect);
    assert.equal(bad.ok, false);
    assert.match(bad.report, /✗/);
    // The client's Change Cipher Spec crossing the server's flight on the wire (right after the
    // Server Hello): accepted.
    const crossing = { ...tls13, records: [...tls13.records] };
    const clientCcs = at(crossing.records, "client", "Change Cipher Spec");
    crossing.records.splice(2, 0, crossing.records.splice(clientCcs, 1)[0]!);
    assert.ok(checkConnections([crossing], expect).ok);
    // …but not before the Server Hello it answers.
    const early = { ...tls13, records: [...tls13.records] };
    early.records.splice(1, 0, early.records.splice(clientCcs, 1)[0]!);
    assert.equal(checkConnections([early], expect).ok, false);
  });

  await t.step("without the key log the checker fails: records not decrypted", async () => {
    const result = await checkCapture(f.raw, all, { serverPorts: [f.port] });
    assert.equal(result.ok, false);
    assert.match(result.report, /not decrypted/);
    // The refusal has nothing encrypted: it still matches.
    assert.ok(result.checks.some((c) => c.expectation.name === "aes128-sha-refused" && c.ok));
  });
});
