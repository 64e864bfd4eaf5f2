/**
 * Bob and Alice as real processes: scripted sessions in both modes through the CLI, 20 concurrent
 * customers' sessions on shared accounts, and a server killed with SIGKILL in the middle of that
 * run and restarted.
 */

import assert from "node:assert/strict";
import { bankProtocol } from "../../lib/bank/mod.ts";
import {
  ACTOR_PERMISSIONS,
  ActorProcess,
  hasCommand,
  PROJECT_ROOT,
  run,
  runActor,
  tempDir,
  TestPki,
} from "../_fixtures/helpers.ts";
import { assertLedger, BANK, type Ledger, runCustomers, startBob } from "../_fixtures/bank.ts";
import { crlPem } from "../../lib/pki/mod.ts";
import { FramedStream } from "../../lib/wire/mod.ts";
import { denoCommand, denoRunArgs } from "../../lib/runtime/mod.ts";

Deno.test("bank CLI: scripted sessions in both modes, refusals and bad amounts", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const alice = await pki.student("1155000001");
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  const secure = await startBob(cert, `${dir.path}/secure`, { ca: pki.caAddr });
  const seed = await startBob(cert, `${dir.path}/seed`, { mode: "seed" });
  try {
    const bank = `127.0.0.1:${secure.port}`;
    const r = await runActor(BANK, [
      "client",
      "--bank",
      bank,
      "--home",
      alice.home,
      "deposit",
      "10.50",
      "withdraw",
      "3",
      "balance",
      "exit",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), [
      "deposited 10.50, balance 10.50",
      "withdrew 3.00, balance 7.50",
      "balance 7.50",
    ]);
    for (
      const step of [
        "STEP 1 Hello",
        "STEP 2 Hi, I'm Bob",
        "STEP 3 prove it",
        "STEP 4 Bob's proof",
        "STEP 5 Alice's secret",
      ]
    ) {
      assert.ok(r.stderr.includes(step), step);
    }
    // Operations on standard input, the seed's codes; a refused withdrawal makes the exit non-zero.
    const lines = await runActor(
      BANK,
      ["client", "--bank", bank, "--home", alice.home, "--quiet"],
      { stdin: "1 5\n2 100\n3\nstatement\n4\n" },
    );
    assert.equal(lines.code, 1, lines.stderr);
    const out = lines.stdout.trim().split("\n");
    assert.equal(out[0], "deposited 5.00, balance 12.50");
    assert.equal(out[1], "refused: Insufficient funds: balance 12.50, withdrawal 100.00");
    assert.equal(out[2], "balance 12.50");
    assert.match(out[3]!, /^statement \S+ withdraw 100\.00 refused, balance 12\.50$/);
    // A bad amount: one clear line, exit 2, nothing sent (no new connection at Bob).
    const before = (secure.bob.stderr.match(/STEP 1 Hello from/g) ?? []).length;
    for (const amount of ["-5", "0", "1e9", "12.345", "abc", ""]) {
      const bad = await runActor(BANK, [
        "client",
        "--bank",
        bank,
        "--home",
        alice.home,
        "--",
        "deposit",
        amount,
      ]);
      assert.equal(bad.code, 2, `${amount}: ${bad.stderr}`);
      assert.match(bad.stderr, /Invalid amount|needs an amount/, amount);
    }
    const unknown = await runActor(BANK, [
      "client",
      "--bank",
      bank,
      "--home",
      alice.home,
      "steal",
      "5",
    ]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown operation 'steal'/);
    assert.equal((secure.bob.stderr.match(/STEP 1 Hello from/g) ?? []).length, before);

    // Seed mode.
    const s = await runActor(BANK, [
      "client",
      "--bank",
      `127.0.0.1:${seed.port}`,
      "--protocol",
      "seed",
      "--customer",
      "alice",
      "deposit",
      "10.50",
      "withdraw",
      "3",
      "balance",
      "exit",
    ]);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(s.stdout.trim().split("\n"), [
      "deposited 10.50, balance 10.50",
      "withdrew 3.00, balance 7.50",
      "balance 7.50",
    ]);
    assert.match(s.stderr, /WARNING --protocol seed/);
    assert.match(seed.bob.stderr, /WARNING --protocol seed/);
    // A secure client at the seed server is told why.
    const mismatch = await runActor(BANK, [
      "client",
      "--bank",
      `127.0.0.1:${seed.port}`,
      "--home",
      alice.home,
      "balance",
    ]);
    assert.equal(mismatch.code, 1);
    assert.match(
      mismatch.stderr,
      /Bob refused: STEP 1 Hello failed: .*the peer speaks the secure protocol/,
    );
  } finally {
    await secure.bob.stop();
    await seed.bob.stop();
  }
});

Deno.test("bank serve --ca: Bob fetches the CA's CRL and refuses a revoked customer at STEP 5", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const revoked = await pki.student("1155000001");
  const fine = await pki.student("1155000002");
  pki.ca.revoke({ sid: revoked.sid });
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  const { bob, port } = await startBob(cert, dir.path, { ca: pki.caAddr });
  try {
    assert.match(bob.stderr, /CRL from the CA at 127\.0\.0\.1:\d+: 1 revoked/);
    const bank = `127.0.0.1:${port}`;
    const r = await runActor(BANK, ["client", "--bank", bank, "--home", revoked.home, "balance"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /Bob refused: STEP 5 Alice's secret failed: Cannot verify certificate 1155000001: it has been revoked/,
    );
    const ok = await runActor(BANK, ["client", "--bank", bank, "--home", fine.home, "balance"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "balance 0.00\n");
  } finally {
    await bob.stop();
  }
});

Deno.test("bank serve --crl: Bob refuses customers once the CRL file is past nextUpdate, and reads a fresh one", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const alice = await pki.student("1155000001");
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  const crlFile = `${dir.path}/crl.pem`;
  const VALID_MS = 6000;
  await Deno.writeTextFile(crlFile, crlPem(await pki.ca.crl(VALID_MS)));
  const written = Date.now();
  const { bob, port } = await startBob(cert, `${dir.path}/bob`, {
    extra: ["--crl", crlFile, "--crl-refresh", "1"],
  });
  try {
    assert.match(bob.stderr, /CRL from the file .*crl\.pem: 0 revoked/);
    const balance = () =>
      runActor(BANK, ["client", "--bank", `127.0.0.1:${port}`, "--home", alice.home, "balance"]);
    await new Promise((r) => setTimeout(r, Math.max(0, written + VALID_MS + 200 - Date.now())));
    const stale = await balance();
    assert.equal(stale.code, 1, stale.stderr);
    assert.match(
      stale.stderr,
      /Bob refused: STEP 2 Hi, I'm Bob failed: Bob cannot check revocation right now: try again later/,
    );
    assert.match(bob.stderr, /ERROR Cannot check revocation: CRL has expired/);
    // The operator writes a fresh CRL: Bob reads it at the next handshake.
    await Deno.writeTextFile(crlFile, crlPem(await pki.ca.crl()));
    const fresh = await balance();
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.equal(fresh.stdout, "balance 0.00\n");
  } finally {
    await bob.stop();
  }
});

Deno.test("20 concurrent clients x 100 operations on shared accounts stay consistent", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const students = await Promise.all(
    ["1155000001", "1155000002", "1155000003", "1155000004"].map((sid) => pki.student(sid)),
  );
  // 20 customers from 127.0.0.1 at once: more than the default per-address cap.
  const { bob, port } = await startBob(await pki.serverCert("bank", ["127.0.0.1"]), dir.path, {
    ca: pki.caAddr,
    extra: ["--max-per-address", "32"],
  });
  let ledger: Ledger;
  try {
    ledger = await runCustomers(pki, students, port, { clients: 20, ops: 100, retryForMs: 0 });
    assert.equal(ledger.applied.size + ledger.refused, 2000);
    assert.ok(ledger.applied.size > 1000, `${ledger.applied.size} applied`);
    assert.equal(ledger.replayed, 0);
  } finally {
    const status = await bob.stop("SIGINT");
    assert.equal(status.code, 0, bob.stderr.slice(-2000));
  }
  assertLedger(`${dir.path}/accounts.db`, students, ledger);
});

Deno.test("Bob killed with SIGKILL mid-run and restarted: no acknowledged operation lost, none applied twice", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const students = await Promise.all(
    ["1155000001", "1155000002", "1155000003", "1155000004"].map((sid) => pki.student(sid)),
  );
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  let { bob, port } = await startBob(cert, dir.path, { ca: pki.caAddr });
  let restart: Promise<void> | undefined;
  let ledger: Ledger;
  try {
    ledger = await runCustomers(pki, students, port, {
      clients: 20,
      ops: 100,
      retryForMs: 30_000,
      onProgress: (done) => {
        if (done !== 700 || restart) return;
        restart = (async () => {
          const status = await bob.stop("SIGKILL");
          assert.equal(status.signal, "SIGKILL");
          ({ bob, port } = await startBob(cert, dir.path, { port, ca: pki.caAddr }));
        })();
      },
    });
    await restart;
    assert.ok(restart, "the server was killed and restarted");
    assert.equal(ledger.applied.size + ledger.refused, 2000);
    assert.ok(ledger.reconnects >= 1, "clients reconnected after the kill");
    console.log(
      `killed at 700: ${ledger.reconnects} reconnects, ${ledger.replayed} retried requests answered from the ledger`,
    );
  } finally {
    await restart?.catch(() => {});
    await bob.stop("SIGINT");
  }
  assertLedger(`${dir.path}/accounts.db`, students, ledger);
});

Deno.test("bank serve: a key file others can read is refused; seed mode never reads or changes the certified bank.key", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  const keyPem = await Deno.readTextFile(cert.keyPath);
  await Deno.chmod(cert.keyPath, 0o644);
  const open = await runActor(BANK, [
    "serve",
    "--port",
    "0",
    "--data-dir",
    `${dir.path}/default`,
    "--cert",
    cert.certPath,
    "--key",
    cert.keyPath,
    "--ca-cert",
    cert.rootPath,
    "--ca",
    pki.caAddr,
  ]);
  assert.equal(open.code, 1, open.stderr);
  assert.match(
    open.stderr,
    /^bank: Refusing to use \S+bank\.key: mode 644 lets others read the key \(chmod 600 it\)$/m,
  );
  assert.doesNotMatch(open.stderr, /listening on/);

  // Seed mode, even pointed at the certified key: a throwaway key of its own, in memory only.
  await Deno.chmod(cert.keyPath, 0o600);
  const before = await Deno.stat(cert.keyPath);
  const { bob, port } = await startBob(cert, `${dir.path}/seed`, { mode: "seed" });
  try {
    assert.match(bob.stderr, /seed mode: a throwaway RSA-2048 key pair made for this run/);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const stream = new FramedStream(conn, { readTimeoutMs: 5000 });
    await stream.writeFrame(
      bankProtocol.encode("seedHello", { greeting: "Hello", customer: "alice" }),
    );
    const hi = bankProtocol.decode((await stream.readFrame())!);
    stream.close();
    assert.equal(hi.type, "seedHiBob");
    const certified = new Uint8Array(cert.cert.publicKey.rawData);
    assert.notDeepEqual(hi.type === "seedHiBob" ? hi.publicKey : undefined, certified);
    assert.equal(hi.type === "seedHiBob" ? hi.publicKey.length : 0, certified.length);
  } finally {
    await bob.stop();
  }
  const after = await Deno.stat(cert.keyPath);
  assert.equal(await Deno.readTextFile(cert.keyPath), keyPem, "bank.key unchanged");
  assert.equal(after.mtime?.getTime(), before.mtime?.getTime());
});

Deno.test("Bob checks revocation by default: a customer revoked with 'ca revoke' is refused within 10 s (real CA, Bob and Alice)", async () => {
  await using dir = await tempDir("lab-bank-revoke-");
  const cwd = dir.path;
  const ok = async (script: string, args: string[]) => {
    const r = await runActor(script, args, { cwd });
    assert.equal(r.code, 0, `${script} ${args.join(" ")}: ${r.stderr}`);
    return r;
  };
  const SID = "1155000009";
  await ok("actors/ca.ts", ["init"]);
  await ok("actors/ca.ts", [
    "issue",
    "--server",
    "bank",
    "--ip",
    "127.0.0.1",
    "--out",
    "data/bank",
  ]);
  await using ca = new ActorProcess("actors/ca.ts", ["serve", "--port", "0"], { cwd });
  const caAddr = `127.0.0.1:${(await ca.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]!}`;
  const code = (await ok("actors/ca.ts", ["code", "--sid", SID])).stdout.trim();
  await ok("actors/student.ts", ["enroll", "--sid", SID, "--code", code, "--ca", caAddr]);
  // Bob as the README runs him, with only the CA's address (the default refresh: 5 s).
  await using bob = new ActorProcess(BANK, ["serve", "--port", "0", "--ca", caAddr], { cwd });
  const bank = `127.0.0.1:${(await bob.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]!}`;
  assert.match(bob.stderr, /CRL from the CA at 127\.0\.0\.1:\d+: 0 revoked/);
  const balance = () =>
    runActor(BANK, ["client", "--bank", bank, "--sid", SID, "balance"], { cwd });
  const before = await balance();
  assert.equal(before.code, 0, before.stderr);
  assert.equal(before.stdout, "balance 0.00\n");

  await ok("actors/ca.ts", ["revoke", "--sid", SID]);
  const revokedAt = Date.now();
  let refused: Awaited<ReturnType<typeof balance>> | undefined;
  while (Date.now() - revokedAt < 10_000) {
    const r = await balance();
    if (r.code !== 0) {
      refused = r;
      break;
    }
  }
  assert.ok(refused, "Bob still served the revoked customer 10 s after 'ca revoke'");
  assert.ok(Date.now() - revokedAt < 10_000 + 5_000, "the refusal came from a run started in 10 s");
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(
    refused.stderr,
    /Bob refused: STEP 5 Alice's secret failed: Cannot verify certificate 1155000009: it has been revoked/,
  );
  assert.match(bob.stderr, /CRL from the CA at 127\.0\.0\.1:\d+: 1 revoked/);
  assert.equal((await bob.stop("SIGINT")).code, 0, bob.stderr);
});

Deno.test("Bob without --ca or --crl checks the CA at its default address, and does not start without a CRL", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  // Whatever answers on 127.0.0.1:9335 here (nothing, or another lab's CA with another root), it
  // is not this lab's CA: Bob must say where he looked, and not start.
  const r = await runActor(BANK, [
    "serve",
    "--port",
    "0",
    "--data-dir",
    dir.path,
    "--cert",
    cert.certPath,
    "--key",
    cert.keyPath,
    "--ca-cert",
    cert.rootPath,
  ], { timeoutMs: 30_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /Cannot check revocation: .*and no valid CRL is held/);
  assert.match(r.stderr, /127\.0\.0\.1:9335/);
  assert.match(r.stderr, /start the CA first, or give --ca HOST:PORT .* or --crl FILE/);
  assert.doesNotMatch(r.stderr, /listening on|revocation is not checked/);
});

Deno.test({
  name:
    "bank client at a terminal: the seed's menu with the right prompts, and a normal Exit is status 0 even after a refusal",
  ignore: !(await hasCommand("python3")),
  fn: async () => {
    await using pki = await TestPki.start();
    await using dir = await tempDir();
    const alice = await pki.student("1155000009");
    const cert = await pki.serverCert("bank", ["127.0.0.1"]);
    const { bob, port } = await startBob(cert, `${dir.path}/bank`, { ca: pki.caAddr });
    try {
      // A real terminal (a pty), so that the client shows its menu; answers typed after each prompt.
      const r = await run("python3", [
        `${PROJECT_ROOT}/tests/_fixtures/pty_dialog.py`,
        ...["operation code", "1", "amount to deposit", "10.00"],
        ...["operation code", "2", "amount to withdraw", "999.00"],
        ...["operation code", "3", "operation code", "4"],
        "--",
        denoCommand(),
        ...denoRunArgs(`${PROJECT_ROOT}/${BANK}`, [
          "client",
          "--bank",
          `127.0.0.1:${port}`,
          "--home",
          alice.home,
          "--quiet",
        ], ACTOR_PERMISSIONS),
      ]);
      const out = r.stdout.replace(/\r/g, "");
      assert.equal(r.code, 0, out);
      assert.match(out, /Enter operation code \(1, 2, 3 or 4\):/);
      assert.match(out, /Enter the amount to deposit:/);
      assert.match(out, /deposited 10\.00, balance 10\.00/);
      assert.match(out, /Enter the amount to withdraw:/);
      assert.match(out, /refused: Insufficient funds: balance 10\.00, withdrawal 999\.00/);
      assert.match(out, /balance 10\.00/);
      assert.doesNotMatch(out, /u need|\(1, 2, or 3\)/);
    } finally {
      await bob.stop("SIGINT");
    }
  },
});
