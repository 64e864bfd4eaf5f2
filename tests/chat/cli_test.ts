/**
 * The chat actor as a user and a script drive it: `serve` on port 0 printing where it listens,
 * scripted clients (TLS 1.3 and 1.2), an interactive client on standard input, SIGINT, key logs.
 */

import assert from "node:assert/strict";
import { ActorProcess, PROJECT_ROOT, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { startChatActor } from "../_fixtures/chat.ts";

const SCRIPT = "actors/chat.ts";

async function startServer(pki: TestPki, extra: string[] = [], env?: Record<string, string>) {
  const { server, port, cert } = await startChatActor(pki, {
    args: extra,
    ...(env ? { env } : {}),
  });
  return { server, port, root: cert.rootPath };
}

Deno.test("scripted clients chat over TLS 1.3 and TLS 1.2; an interactive one reads stdin", async () => {
  await using pki = await TestPki.start();
  const { server, port, root } = await startServer(pki);
  await using _ = server;
  const common = ["client", "--server", `127.0.0.1:${port}`, "--ca-cert", root];
  const bob = runActor(SCRIPT, [
    ...common,
    "--nick",
    "bob",
    "--expect",
    "\\* alice joined",
    "--expect",
    "<alice> hi bob",
    "--send",
    "hi alice",
    "--send",
    "/msg alice a secret",
    "--expect",
    "\\[private\\] <bob -> alice> a secret",
    "--expect",
    "<alice> done",
  ]);
  await server.waitFor(/bob joined from/);
  const alice = await runActor(SCRIPT, [
    ...common,
    "--tls12",
    "--nick",
    "alice",
    "--send",
    "hi bob",
    "--expect",
    "<bob> hi alice",
    "--expect",
    "\\[private\\] <bob -> alice> a secret",
    "--send",
    "/who",
    "--expect",
    "online \\(2\\): (bob, alice|alice, bob)",
    "--send",
    "done",
  ]);
  assert.equal(alice.code, 0, alice.stderr);
  assert.match(alice.stderr, /TLSv1\.2 TLS_ECDHE_RSA_WITH_AES_(128|256)_GCM_SHA(256|384)/);
  assert.match(alice.stdout, /^\d\d:\d\d:\d\d \* joined as alice; online \(2\): bob, alice$/m);
  assert.match(alice.stdout, /^\d\d:\d\d:\d\d <bob> hi alice$/m);
  assert.match(alice.stdout, /\* you left the chat\. Goodbye/);
  assert.doesNotMatch(alice.stdout, /disconnected by the server/);
  const b = await bob;
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /^\d\d:\d\d:\d\d <alice> hi bob$/m);
  assert.match(b.stderr, /server certificate verified against/);

  const carol = await runActor(SCRIPT, [...common, "--nick", "carol"], {
    stdin: "hello from stdin\n/nonsense\n/who\n",
  });
  assert.equal(carol.code, 0, carol.stderr);
  assert.match(carol.stdout, /<carol> hello from stdin/);
  assert.match(carol.stdout, /online \(1\): carol/);
  assert.match(carol.stderr, /Unknown command \/nonsense/);
  await server.waitFor(/carol: connection closed/);
});

Deno.test("a refused nickname, a missed expectation and bad options end with one clear line", async () => {
  await using pki = await TestPki.start();
  const { server, port, root } = await startServer(pki);
  await using _ = server;
  const common = ["client", "--server", `127.0.0.1:${port}`, "--ca-cert", root];
  const bad = await runActor(SCRIPT, [...common, "--nick", "two words", "--send", "x"]);
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr,
    /^chat: Nickname may only contain letters, digits, '_', '\.' and '-'$/m,
  );
  const missed = await runActor(SCRIPT, [
    ...common,
    "--nick",
    "dave",
    "--expect",
    "never said",
    "--timeout",
    "1",
  ]);
  assert.equal(missed.code, 1);
  assert.match(missed.stderr, /^chat: Timed out after 1 s waiting for \/never said\/$/m);

  const noNick = await runActor(SCRIPT, ["client"]);
  assert.equal(noNick.code, 2);
  assert.match(noNick.stderr, /^chat client: missing required option --nick$/m);
  const badPort = await runActor(SCRIPT, ["serve", "--port", "70000"]);
  assert.equal(badPort.code, 2);
  assert.match(badPort.stderr, /--port must be a port number from 0 to 65535, got '70000'/);
  const noKey = await runActor(SCRIPT, ["serve", "--port", "0", "--cert", root, "--key", "nope"]);
  assert.equal(noKey.code, 1);
  assert.match(noKey.stderr, /^chat: Cannot read the server key: nope does not exist/m);
  const help = await runActor(SCRIPT, ["client", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--tls12/);
});

Deno.test("SIGINT: the server tells every client, stops accepting and exits cleanly", async () => {
  await using pki = await TestPki.start();
  const { server, port, root } = await startServer(pki);
  const waiting = runActor(SCRIPT, [
    "client",
    "--server",
    `127.0.0.1:${port}`,
    "--ca-cert",
    root,
    "--nick",
    "eve",
    "--expect",
    "never said",
    "--timeout",
    "30",
  ]);
  await server.waitFor(/eve joined from/);
  const status = await server.stop("SIGINT");
  assert.equal(status.code, 0, server.stderr);
  assert.match(server.stderr, /shutting down: telling 1 clients/);
  assert.match(server.stderr, /\] stopped$/m);
  const eve = await waiting;
  assert.equal(eve.code, 1);
  assert.match(eve.stdout, /disconnected by the server: Server is shutting down/);
  assert.match(
    eve.stderr,
    /Connection ended while waiting for \/never said\/: Server is shutting down/,
  );
});

Deno.test("with SSLKEYLOGFILE set, the server writes the TLS key log of its TLS 1.3 and 1.2 clients (for the captures)", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const serverLog = `${dir.path}/server.keys`;
  const { server, port, root } = await startServer(pki, [], { SSLKEYLOGFILE: serverLog });
  await using _ = server;
  for (const [name, tls12] of [["k13", false], ["k12", true]] as const) {
    const keyLog = `${dir.path}/${name}.keys`;
    const r = await runActor(SCRIPT, [
      "client",
      "--server",
      `127.0.0.1:${port}`,
      "--ca-cert",
      root,
      "--nick",
      name,
      ...(tls12 ? ["--tls12"] : []),
      "--send",
      "logged",
      "--expect",
      "logged",
    ], { env: { SSLKEYLOGFILE: keyLog } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, tls12 ? /TLSv1\.2 TLS_ECDHE_/ : /TLSv1\.3 TLS_/);
    // The client connects through node:tls on both versions (the only way to trust cuhk.cer
    // alone), and Deno's node:tls writes no key log (no 'keylog' event either): the server's key
    // log is the one that decrypts a capture, for TLS 1.3 as for TLS 1.2. (Before, the TLS 1.3
    // client went through Deno.startTls and wrote CLIENT_TRAFFIC_SECRET_0 lines to its own log.)
  }
  const text = await Deno.readTextFile(serverLog);
  assert.match(text, /^CLIENT_TRAFFIC_SECRET_0 [0-9a-f]{64} [0-9a-f]{64,96}$/m); // TLS 1.3
  assert.match(text, /^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}$/m); // TLS 1.2
});

Deno.test("SSLKEYLOGFILE outside the project is refused before any TLS; one inside readable by others is made 0600", async () => {
  // The chat task's own permissions: env for this one variable, writes under data/ only.
  const permissions = [
    "--allow-net=127.0.0.1,localhost,[::1]",
    "--allow-read=.",
    "--allow-write=data",
    "--allow-env=SSLKEYLOGFILE",
  ];
  const outside = await runActor(SCRIPT, ["client", "--nick", "eve"], {
    permissions,
    env: { SSLKEYLOGFILE: "/tmp/lab-keys-outside.log" },
  });
  assert.equal(outside.code, 2, outside.stderr);
  assert.match(
    outside.stderr,
    /^chat: SSLKEYLOGFILE=\/tmp\/lab-keys-outside\.log is outside the project: every TLS session key would be written there \(nothing was\)\. Use a file under data\//,
  );
  await Deno.remove("/tmp/lab-keys-outside.log").catch(() => {});

  await Deno.mkdir(`${PROJECT_ROOT}/data`, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: `${PROJECT_ROOT}/data`, prefix: "test-keylog-" });
  const relative = `data/${dir.slice(dir.lastIndexOf("/") + 1)}/keys.log`;
  await Deno.writeFile(`${dir}/keys.log`, new Uint8Array(), { mode: 0o644 });
  await Deno.chmod(`${dir}/keys.log`, 0o644);
  const inside = await runActor(SCRIPT, ["client", "--nick", "eve", "--server", "127.0.0.1:1"], {
    permissions,
    env: { SSLKEYLOGFILE: relative },
  });
  assert.match(
    inside.stderr,
    new RegExp(
      `chat: SSLKEYLOGFILE=${relative} could be read by others \\(mode 644\\): made it 0600`,
    ),
  );
  assert.equal((await Deno.stat(`${dir}/keys.log`)).mode! & 0o777, 0o600);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a client killed (Ctrl-C) leaves: the server logs that it left, not rustls's close_notify error", async () => {
  await using pki = await TestPki.start();
  const { server, port, root } = await startServer(pki);
  await using _ = server;
  const client = new ActorProcess(SCRIPT, [
    "client",
    "--server",
    `127.0.0.1:${port}`,
    "--ca-cert",
    root,
    "--nick",
    "carol",
    "--expect",
    "something that never comes",
  ]);
  await client.waitFor(/joined as carol/);
  await client.stop("SIGKILL");
  await server.waitFor(/carol left without saying goodbye \(Ctrl-C or a lost connection\)/);
  await server.waitFor(/carol: connection closed/);
  assert.doesNotMatch(server.stderr, /close_notify|docs\.rs|read failed/);
});
