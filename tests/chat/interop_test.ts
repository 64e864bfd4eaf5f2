/**
 * The chat server against independent TLS peers: OpenSSL (TLS 1.2 and 1.3, and the seed's
 * AES128-SHA, refused), GnuTLS, and a Python `ssl` client speaking the frame format; and our client
 * refusing a server that a root it does not trust vouches for.
 */

import assert from "node:assert/strict";
import { ChatFixture, is } from "../_fixtures/chat.ts";
import { hasCommand, run, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { TlsHandshakeError } from "../../lib/net/mod.ts";

const RAN_AGAINST = "127.0.0.1";

Deno.test("openssl s_client completes TLS 1.3 and TLS 1.2 and verifies the chain with cuhk.cer", async () => {
  assert.ok(await hasCommand("openssl"), "openssl is not installed");
  await using chat = await ChatFixture.start();
  const common = [
    "s_client",
    "-connect",
    `${RAN_AGAINST}:${chat.port}`,
    "-CAfile",
    chat.cert.rootPath,
    "-verify_return_error",
    "-verify_hostname",
    "localhost",
    "-servername",
    "localhost",
  ];
  const v13 = await run("openssl", [...common, "-tls1_3"], { stdin: "" });
  assert.equal(v13.code, 0, v13.stderr);
  assert.match(
    v13.stdout,
    /New, TLSv1\.3, Cipher is TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)/,
  );
  assert.match(v13.stdout, /Verified peername: localhost/);
  assert.match(v13.stdout, /Verify return code: 0 \(ok\)/);

  const v12 = await run("openssl", [...common, "-tls1_2"], { stdin: "" });
  assert.equal(v12.code, 0, v12.stderr);
  // Forward secrecy and an AEAD: ECDHE with GCM or ChaCha20, never the seed's CBC + SHA-1.
  assert.match(
    v12.stdout,
    /New, TLSv1\.2, Cipher is ECDHE-RSA-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)/,
  );
  assert.match(v12.stdout, /Verify return code: 0 \(ok\)/);

  // By IP address too: the certificate's SAN carries 127.0.0.1.
  const ip = await run("openssl", [
    "s_client",
    "-connect",
    `${RAN_AGAINST}:${chat.port}`,
    "-CAfile",
    chat.cert.rootPath,
    "-verify_return_error",
    "-verify_ip",
    "127.0.0.1",
  ], { stdin: "" });
  assert.equal(ip.code, 0, ip.stderr);
  // Each of them completed the handshake, then closed without a hello.
  await chat.logMatching(/closed before hello/);
});

Deno.test("a client offering only the seed's AES128-SHA gets a handshake failure", async () => {
  assert.ok(await hasCommand("openssl"), "openssl is not installed");
  await using chat = await ChatFixture.start();
  const r = await run("openssl", [
    "s_client",
    "-connect",
    `${RAN_AGAINST}:${chat.port}`,
    "-tls1_2",
    "-cipher",
    "AES128-SHA",
    "-CAfile",
    chat.cert.rootPath,
  ], { stdin: "" });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /alert handshake failure/);
  assert.match(r.stdout, /no peer certificate available/);
  await chat.logMatching(/TLS handshake from 127\.0\.0\.1:\d+ failed: peer is incompatible/);
  assert.deepEqual(chat.server.nicks, []);
});

Deno.test("gnutls-cli completes the handshake and trusts the chain through cuhk.cer", async () => {
  assert.ok(await hasCommand("gnutls-cli"), "gnutls-cli is not installed (gnutls-bin)");
  await using chat = await ChatFixture.start();
  const r = await run("gnutls-cli", [
    "--x509cafile",
    chat.cert.rootPath,
    "--verify-hostname",
    "localhost",
    "-p",
    String(chat.port),
    RAN_AGAINST,
  ], { stdin: "" });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const out = r.stdout + r.stderr;
  assert.match(out, /The certificate is trusted/);
  assert.match(out, /Handshake was completed/);
});

const PYTHON_CLIENT = `
import json, socket, ssl, struct, sys
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)  # verifies the chain and the host name
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
def send(s, obj):
    data = json.dumps(obj).encode()
    s.sendall(struct.pack(">I", len(data)) + data)
def exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk: raise EOFError("server closed")
        buf += chunk
    return buf
def recv(s):
    (n,) = struct.unpack(">I", exactly(s, 4))
    if n > 256 * 1024: raise ValueError("frame too large")
    m = json.loads(exactly(s, n))
    print("recv", json.dumps(m, sort_keys=True), flush=True)
    return m
with socket.create_connection((host, port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        print("version", s.version(), s.cipher()[0], flush=True)
        send(s, {"type": "hello", "nick": "python"})
        assert recv(s)["type"] == "welcome"
        send(s, {"type": "say", "text": "hello from python"})
        while True:
            m = recv(s)
            if m["type"] == "said" and m["from"] == "deno": break
        send(s, {"type": "quit"})
        while recv(s)["type"] != "bye": pass
`;

Deno.test("a Python ssl client (TLS 1.2) exchanges chat messages in the frame format", async () => {
  assert.ok(await hasCommand("python3"), "python3 is not installed");
  await using chat = await ChatFixture.start();
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/client.py`, PYTHON_CLIENT);
  const deno = await chat.join("deno");
  const python = run("python3", [
    `${dir.path}/client.py`,
    RAN_AGAINST,
    String(chat.port),
    chat.cert.rootPath,
  ]);
  await deno.waitFor((m) => m.type === "said" && m.from === "python", 10_000);
  await deno.send({ type: "say", text: "hi python" });
  const r = await python;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^version TLSv1\.2 ECDHE-RSA-/m);
  assert.match(r.stdout, /"from": "deno", "text": "hi python"/);
  assert.match(r.stdout, /"reason": "Goodbye", "type": "bye"/);
  const said = deno.inbox.find((m) => m.type === "said" && m.from === "python");
  assert.equal(said?.type === "said" && said.text, "hello from python");
  await deno.waitFor((m) => m.type === "left" && m.nick === "python");
});

Deno.test("a client that trusts another CA refuses the server (TLS 1.3 and 1.2, and openssl)", async () => {
  await using chat = await ChatFixture.start();
  await using other = await TestPki.start();
  const otherRoot = other.ca.rootPem;
  await assert.rejects(
    chat.join("alice", { caCerts: [otherRoot] }),
    /TLS handshake with 127\.0\.0\.1:\d+ failed: .*(UnknownIssuer|unknown issuer|certificate)/i,
  );
  await assert.rejects(
    chat.join("alice", { caCerts: [otherRoot], tls12: true }),
    /TLS handshake with 127\.0\.0\.1:\d+ failed: .*(certificate|issuer)/i,
  );
  const r = await run("openssl", [
    "s_client",
    "-connect",
    `${RAN_AGAINST}:${chat.port}`,
    "-CAfile",
    other.rootPath,
    "-verify_return_error",
  ], { stdin: "" });
  assert.notEqual(r.code, 0);
  assert.match(
    r.stdout + r.stderr,
    /unable to get local issuer certificate|certificate verify failed/,
  );
  // The right root but the wrong name is refused too, on both versions (node:tls on both paths
  // since the client trusts only its roots: the error is typed, not rustls' NotValidForName).
  for (const tls12 of [false, true]) {
    await assert.rejects(
      chat.join("alice", { serverName: "blackboard", tls12 }),
      (err: unknown) =>
        err instanceof TlsHandshakeError && err.kind === "wrong-name" &&
        /^TLS handshake with 127\.0\.0\.1:\d+ failed: /.test(err.message),
    );
  }
  assert.deepEqual(chat.server.nicks, []);
  // With the right root, the same client joins.
  const alice = await chat.join("alice");
  await alice.send({ type: "who" });
  await alice.waitFor(is("users"));
});
