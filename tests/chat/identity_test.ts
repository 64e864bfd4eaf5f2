/**
 * Whom the chat client (a real process) accepts: a server whose certificate chains to the root it
 * was given and names the service, `chat`, whatever address it dialled. Refused: another lab
 * server's certificate (the bank's, same root), and a `chat` certificate from another root even
 * when Deno's own root store trusts that root (DENO_CERT, or the system store), on TLS 1.3 and 1.2.
 * A server that is not there is a failed connection, not an untrusted one.
 */

import assert from "node:assert/strict";
import { serveChat } from "../../lib/chat/mod.ts";
import { connectTls, TlsHandshakeError } from "../../lib/net/mod.ts";
import { waitFor } from "../../lib/runtime/mod.ts";
import { memoryLog, runActor, TestPki, type TestServerCert } from "../_fixtures/helpers.ts";

const SCRIPT = "actors/chat.ts";

/** A chat server in this process serving `cert`, on port 0. */
async function chatServing(cert: TestServerCert) {
  const { log, lines, changes } = memoryLog("chat");
  const server = serveChat({
    cert: await Deno.readTextFile(cert.certPath),
    key: cert.keyPem,
    log,
    port: 0,
  });
  return {
    server,
    port: server.port,
    /** Waits until the server has logged `n` failed TLS handshakes in all. */
    handshakeFailures: (n: number) =>
      waitFor(
        () => {
          const failed = lines.filter((l) => /TLS handshake from 127\.0\.0\.1:\d+ failed/.test(l));
          return failed.length >= n ? failed : undefined;
        },
        {
          what: `${n} failed TLS handshakes in the server's log`,
          timeoutMs: 10_000,
          changes,
          detail: () => `\n${lines.join("\n")}`,
        },
      ),
    [Symbol.asyncDispose]: () => server.close(),
  };
}

/** The chat client as a user runs it: joins, says one line, quits. */
function client(port: number, root: string, extra: string[], env?: Record<string, string>) {
  return runActor(SCRIPT, [
    "client",
    "--server",
    `127.0.0.1:${port}`,
    "--ca-cert",
    root,
    "--nick",
    "alice",
    "--send",
    "hello",
    "--expect",
    "<alice> hello",
    ...extra,
  ], env ? { env } : {});
}

const REFUSED = (kind: string) =>
  new RegExp(`^chat: TLS handshake with 127\\.0\\.0\\.1:\\d+ failed: .*\\[${kind}\\]$`, "m");

Deno.test("the chat client refuses another lab server's certificate (the bank's): it checks the name chat, not the address", async () => {
  await using pki = await TestPki.start();
  // Same root, serverAuth and SAN 127.0.0.1: everything matches but the service's name.
  const bank = await pki.serverCert("bank", ["127.0.0.1"]);
  await using impostor = await chatServing(bank);
  for (const version of [[], ["--tls12"]]) {
    const r = await client(impostor.port, bank.rootPath, version);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, REFUSED("wrong-name"));
    assert.doesNotMatch(r.stdout, /joined as alice/);
  }
  assert.deepEqual(impostor.server.nicks, []);

  // The chat's own certificate, dialled by IP address: accepted (the name is checked, not the
  // address), and the name can be set for a server that carries another.
  const chat = await pki.serverCert("chat", ["127.0.0.1"], ["localhost"]);
  await using real = await chatServing(chat);
  for (const version of [[], ["--tls12"]]) {
    const r = await client(real.port, chat.rootPath, version);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /joined as alice/);
    assert.match(r.stderr, /server certificate verified against .* \(name chat\)/);
  }
  const named = await client(impostor.port, bank.rootPath, ["--server-name", "bank"]);
  assert.equal(named.code, 0, named.stderr);
});

Deno.test("the chat client accepts a chat certificate that does not carry the address it dialled (SAN chat and 10.77.9.9 only, dialled at 127.0.0.1), TLS 1.3 and 1.2", async () => {
  await using pki = await TestPki.start();
  // As 'ca issue --server chat --ip 10.77.9.9' makes it: no 127.0.0.1, no localhost.
  const chat = await pki.serverCert("chat", ["10.77.9.9"]);
  await using server = await chatServing(chat);
  for (const version of [[], ["--tls12"]]) {
    const r = await client(server.port, chat.rootPath, version);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /joined as alice/);
    assert.match(r.stderr, /server certificate verified against .* \(name chat\)/);
  }
  // The premise: checked against the address dialled, this certificate would be refused.
  await assert.rejects(
    connectTls({
      hostname: "127.0.0.1",
      port: server.port,
      caCerts: [await Deno.readTextFile(chat.rootPath)],
      serverName: "127.0.0.1",
    }),
    (err: unknown) => err instanceof TlsHandshakeError && err.kind === "wrong-name",
  );
});

Deno.test("the chat client trusts only --ca-cert: a chat certificate from a root that DENO_CERT or the system store adds is refused (TLS 1.3 and 1.2)", async () => {
  await using lab = await TestPki.start();
  await using other = await TestPki.start();
  const otherChat = await other.serverCert("chat", ["127.0.0.1"], ["localhost"]);
  await using impostor = await chatServing(otherChat);
  const labChat = await lab.serverCert("chat", ["127.0.0.1"], ["localhost"]);
  await using real = await chatServing(labChat);
  const environments: Record<string, string>[] = [
    { DENO_CERT: other.rootPath },
    { DENO_TLS_CA_STORE: "system", SSL_CERT_FILE: other.rootPath },
  ];
  let refusals = 0;
  for (const env of environments) {
    // The premise: in this environment Deno's own TLS client trusts the other root, even when
    // given the lab's root as caCerts (they are added to Deno's store, not put in its place).
    const control = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const conn = await Deno.connectTls({ hostname: "127.0.0.1", port: ${impostor.port},
           caCerts: [await Deno.readTextFile(${JSON.stringify(labChat.rootPath)})] });
         await conn.handshake(); conn.close(); console.log("accepted");`,
      ],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(
      new TextDecoder().decode(control.stdout).trim(),
      "accepted",
      `Deno.connectTls with ${JSON.stringify(env)}: ${new TextDecoder().decode(control.stderr)}`,
    );

    for (const version of [[], ["--tls12"]]) {
      const r = await client(impostor.port, labChat.rootPath, version, env);
      assert.equal(r.code, 1, `${JSON.stringify(env)} ${version}: ${r.stderr}`);
      assert.match(r.stderr, REFUSED("untrusted"));
      assert.doesNotMatch(r.stdout, /joined as alice/);
      // The refusal is the client's: it reached the impostor and broke off the handshake.
      await impostor.handshakeFailures(++refusals);
    }
    // The lab's own root, in the same environment: accepted.
    for (const version of [[], ["--tls12"]]) {
      const r = await client(real.port, labChat.rootPath, version, env);
      assert.equal(r.code, 0, `${JSON.stringify(env)} ${version}: ${r.stderr}`);
      assert.match(r.stdout, /joined as alice/);
    }
  }
  assert.deepEqual(impostor.server.nicks, []);
});

Deno.test("a refused TCP connection is reported as a failed connection, not as an untrusted server", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = closed.addr.port;
  closed.close();
  for (const tls12 of [false, true]) {
    await assert.rejects(
      connectTls({ hostname: "127.0.0.1", port, caCerts: [], serverName: "chat", tls12 }),
      (err: unknown) =>
        err instanceof TlsHandshakeError && err.kind === "failed" && err.code === "ECONNREFUSED",
    );
  }
});
