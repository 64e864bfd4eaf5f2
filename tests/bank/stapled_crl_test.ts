/**
 * Audit finding 7 for the bank: Bob staples the CA's current CRL to "Hi, I'm Bob" (STEP 2), and
 * Alice checks his certificate against it with the one revocation checker's rules, so a revoked
 * bank certificate is refused by its customers too.
 */

import assert from "node:assert/strict";
import { openSession } from "../../lib/bank/mod.ts";
import { der } from "../../lib/pki/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { bankProtocol } from "../../lib/bank/mod.ts";
import { HandshakeError } from "../../lib/bank/mod.ts";
import { aliceOptions, bobIdentity, startBank } from "../_fixtures/bank.ts";
import { memoryLog, runActor, TestPki } from "../_fixtures/helpers.ts";

const ALICE = "1155000001";

Deno.test("Alice checks Bob's stapled CRL: a revoked bank certificate is refused at STEP 2", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  const bob = await bobIdentity(pki);
  await using bank = await startBank(pki);
  const { log, lines } = memoryLog("Alice");
  // Before the revocation: the staple is checked and Alice banks.
  (await openSession(aliceOptions(pki, alice, bank.port, log))).close();
  assert.match(lines.join("\n"), /STEP 2 .*not revoked by the stapled CRL/);

  pki.ca.revoke({ serial: bob.cert!.serialNumber.toLowerCase() });
  // Bob's next CRL lists his own certificate: a Bob that kept serving with it is refused.
  await using revoked = await startBank(pki, { crl: await pki.ca.crl() });
  await assert.rejects(
    openSession(aliceOptions(pki, alice, revoked.port, log)),
    (err: unknown) =>
      err instanceof HandshakeError && err.step === 2 &&
      /certificate bank: it has been revoked \(Bob's stapled CRL, CRL #\d+\)/.test(err.message),
  );
});

Deno.test("a staple stripped on the path is refused: Alice never banks without Bob's CRL", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bank = await startBank(pki);
  const { log } = memoryLog("Alice");
  // Someone on the path drops the CRL from "Hi, I'm Bob" (to hide a revocation).
  await using relay = startRelay({
    upstream: { hostname: "127.0.0.1", port: bank.port },
    log: memoryLog("path").log,
    onFrame: (direction, frame) => {
      if (direction !== "toClient") return frame;
      const msg = bankProtocol.decode(frame);
      if (msg.type !== "hiBob") return frame;
      return bankProtocol.encode("hiBob", { ...msg, crl: new Uint8Array(0) });
    },
  });
  await assert.rejects(
    openSession(aliceOptions(pki, alice, relay.port, log)),
    (err: unknown) =>
      err instanceof HandshakeError && err.step === 2 && /no stapled CRL/.test(err.message),
  );
  // A CRL from another CA in its place is refused too.
  await using other = await TestPki.start();
  const foreign = der(await other.ca.crl());
  await using relay2 = startRelay({
    upstream: { hostname: "127.0.0.1", port: bank.port },
    log: memoryLog("path").log,
    onFrame: (direction, frame) => {
      if (direction !== "toClient") return frame;
      const msg = bankProtocol.decode(frame);
      if (msg.type !== "hiBob") return frame;
      return bankProtocol.encode("hiBob", { ...msg, crl: foreign });
    },
  });
  await assert.rejects(
    openSession(aliceOptions(pki, alice, relay2.port, log)),
    (err: unknown) =>
      err instanceof HandshakeError && err.step === 2 &&
      /Bob's stapled CRL is refused/.test(err.message),
  );
});

Deno.test("Alice (the actor) keeps the newest CRL in her home: a Bob stapling an older one, from before his revocation, is refused in a later run", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  const bob = await bobIdentity(pki);
  // Both current; #8 lists Bob's certificate (his key was stolen, say).
  const before = await pki.signCrl(7);
  const after = await pki.signCrl(8, { revoked: [bob.cert!] });
  const client = async (port: number) =>
    await runActor("actors/bank.ts", [
      "client",
      "--bank",
      `127.0.0.1:${port}`,
      "--home",
      alice.home,
      "--quiet",
    ], { stdin: "3\n4\n" });
  {
    await using revoked = await startBank(pki, { crl: after });
    const r = await client(revoked.port);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /it has been revoked \(Bob's stapled CRL, CRL #8\)/);
  }
  await using rolledBack = await startBank(pki, { crl: before });
  const r = await client(rolledBack.port);
  assert.notEqual(r.code, 0);
  assert.match(
    r.stderr,
    /Bob's stapled CRL is refused: CRL #7 from the server's staple is older than CRL #8, already held: refused \(a rollback\) \(the newest CRL this client has seen is kept in .*newest-crl\.der/,
  );
  assert.equal(r.stdout, "", "no operation answered");
});
