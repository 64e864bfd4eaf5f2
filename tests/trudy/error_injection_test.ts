/**
 * error-injection, everyone a real process but Blackboard: Trudy on the path replaces the server's
 * first reply after the handshake with a cleartext `error`. The bank: seed-mode Alice believes it
 * (she reports the withdrawal refused though Bob applied it); default Alice treats it as a broken
 * connection and resends the same request, which Bob applies once. Blackboard: the default student
 * is not told "refused" for a message Blackboard printed; seed Blackboard sends nothing to replace.
 */

import assert from "node:assert/strict";
import { Accounts } from "../../lib/bank/mod.ts";
import { openSeedSession } from "../../lib/blackboard/mod.ts";
import { ActorProcess, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { blackboardOnThePath, printedVerdict, startTrudy } from "../_fixtures/trudy.ts";

const BANK = "actors/bank.ts";
const ALICE = "1155000601";

/** Bob as a real process on port 0; his accounts are read after he stops. */
async function startBob(
  pki: TestPki,
  dataDir: string,
  mode: "default" | "seed",
): Promise<{ bob: ActorProcess; addr: string }> {
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  const bob = new ActorProcess(BANK, [
    "serve",
    "--port",
    "0",
    "--data-dir",
    dataDir,
    "--protocol",
    mode,
    ...(mode === "default"
      ? [
        "--cert",
        cert.certPath,
        "--key",
        cert.keyPath,
        "--ca-cert",
        cert.rootPath,
        "--ca",
        pki.caAddr,
      ]
      : []),
  ]);
  const port = (await bob.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]!;
  return { bob, addr: `127.0.0.1:${port}` };
}

/** Bob's stored balance and withdrawals for `customer`, read from his database once he stopped. */
function stored(dataDir: string, customer: string): { balance: number; withdrawals: number } {
  using accounts = Accounts.open(`${dataDir}/accounts.db`);
  return {
    balance: accounts.balance(customer),
    withdrawals:
      accounts.statement(customer).filter((e) => e.kind === "withdraw" && e.status === "applied")
        .length,
  };
}

for (const mode of ["seed", "default"] as const) {
  Deno.test(
    `trudy error-injection ${
      mode === "seed"
        ? "succeeds against seed mode: Alice believes the forged refusal though Bob applied her withdrawal"
        : "fails against the default: Alice resends the same request and Bob applies it once"
    }`,
    async () => {
      await using pki = await TestPki.start();
      await using dir = await tempDir();
      const alice = await pki.student(ALICE);
      const dataDir = `${dir.path}/bob`;
      const { bob, addr } = await startBob(pki, dataDir, mode);
      const who = mode === "seed" ? ["--protocol", "seed", "--customer", "alice"] : [
        "--home",
        alice.home,
      ];
      try {
        // 10.00 in the account, straight to Bob.
        const funded = await runActor(BANK, ["client", "--bank", addr, ...who, "deposit", "10.00"]);
        assert.equal(funded.code, 0, funded.stderr);

        await using trudy = await startTrudy("error-injection", ["--bank", addr]);
        const r = await runActor(BANK, [
          "client",
          "--bank",
          `127.0.0.1:${trudy.port}`,
          ...who,
          "withdraw",
          "5.00",
        ]);
        const t = await trudy.result();
        const verdict = printedVerdict(t.stdout);
        assert.match(t.stderr, /in its place a cleartext error: 'Insufficient funds'/);
        if (mode === "seed") {
          // Alice took Trudy's words for Bob's.
          assert.equal(r.code, 1, r.stderr);
          assert.match(r.stderr, /^bank: Insufficient funds$/m);
          assert.equal(r.stdout, "");
          assert.equal(t.code, 0, t.stderr);
          assert.equal(verdict.outcome, "SUCCEEDED");
          assert.equal(verdict.reason, "forged-error-believed");
        } else {
          // Alice did not believe it: same request again on a new connection, applied once.
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, "withdrew 5.00, balance 5.00 (retried: applied once)\n");
          assert.match(
            r.stderr,
            /connection lost during withdraw 5\.00 \(STEP 6 banking: connection broken: a cleartext error arrived after the handshake \('Insufficient funds'\)/,
          );
          assert.equal(t.code, 3, t.stderr);
          assert.equal(verdict.outcome, "FAILED");
          assert.equal(verdict.reason, "forged-error-not-believed");
          assert.match(t.stderr, /answered Trudy's error inside the authenticated session/);
          assert.match(bob.stderr, /ended the session: STEP 6 banking: connection broken/);
          assert.match(bob.stderr, /applied \(retry: original result\)/);
        }
      } finally {
        assert.equal((await bob.stop("SIGINT")).code, 0, bob.stderr);
      }
      // Either way Bob applied the withdrawal exactly once.
      assert.deepEqual(stored(dataDir, mode === "seed" ? "seed/alice" : ALICE), {
        balance: 500,
        withdrawals: 1,
      });
    },
  );
}

Deno.test("trudy error-injection fails against the default Blackboard: the student is not told 'refused' for a message Blackboard printed", async () => {
  const SID = "1155000602";
  await using rig = await blackboardOnThePath("error-injection", SID, "default");
  const { bb, trudy } = rig;
  const r = await runActor("actors/student.ts", [
    "send",
    "--sid",
    SID,
    "--home",
    rig.session.identity.home,
    "--blackboard",
    `${rig.session.blackboard.hostname}:${rig.session.blackboard.port}`,
    "--message",
    "my report is attached",
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr,
    /^student: Connection broken: a cleartext error arrived after the handshake \('Message refused: HMAC does not match'\); only authenticated records count, so it is not believed$/m,
  );
  assert.equal(r.stdout, "");
  const t = await trudy.result();
  assert.equal(t.code, 3, t.stderr);
  const verdict = printedVerdict(t.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "forged-error-not-believed");
  assert.deepEqual(bb.printed, [`Message from ${SID}: my report is attached`]);
  assert.ok(
    bb.lines.some((l) => /ended the session: Connection broken: a cleartext error/.test(l)),
  );
});

Deno.test("trudy error-injection against seed Blackboard: nothing comes back after the handshake, nothing to replace", async () => {
  const SID = "1155000603";
  await using rig = await blackboardOnThePath("error-injection", SID, "seed");
  const { bb, trudy } = rig;
  const session = await openSeedSession(rig.session);
  await session.send("seed message");
  session.close();
  const t = await trudy.result();
  assert.equal(t.code, 3, t.stderr);
  const verdict = printedVerdict(t.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "nothing-to-replace");
  assert.deepEqual(bb.printed, [`Message from ${SID}: seed message`]);
});

Deno.test("trudy error-injection: exactly one of --bank and --blackboard", async () => {
  for (const args of [[], ["--bank", "127.0.0.1:1", "--blackboard", "127.0.0.1:2"]]) {
    const r = await runActor("actors/trudy.ts", ["error-injection", ...args]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^trudy error-injection: give exactly one of --bank and --blackboard/);
  }
  const help = await runActor("actors/trudy.ts", ["error-injection", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task trudy error-injection/);
});
