/**
 * crl-rollback (audit finding: CRL rollback): Trudy on the path between Blackboard and the CA
 * records the CA's CRL from before a revocation and answers later fetches with it, then logs in
 * with the revoked cert 2 (she holds its key).
 *
 * - Against the default (real processes: Trudy and Blackboard, the CA of the test PKI): the
 *   checker refuses the older CRL, keeps the newer one, and the revoked certificate stays out.
 * - Against a checker that takes any CRL the root signed (a test double: the product has no such
 *   switch, and the seeds had no CRL at all): the revoked certificate gets in again.
 */

import assert from "node:assert/strict";
import { fetchCrl, loadIdentity } from "../../lib/ca/mod.ts";
import { ROLLBACK_MESSAGE, startCrlRollback } from "../../lib/trudy/mod.ts";
import { waitFor } from "../../lib/runtime/mod.ts";
import { ActorProcess, memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { freePort } from "../../lib/net/mod.ts";
import { startBlackboard } from "../_fixtures/blackboard.ts";
import { printedVerdict, startTrudy } from "../_fixtures/trudy.ts";

const SID = "1155000701";
const PRINTED = `Message from ${SID}: ${ROLLBACK_MESSAGE}`;

function count(text: string, line: string): number {
  return text.split("\n").filter((l) => l === line).length;
}

Deno.test("trudy crl-rollback fails against the default: Blackboard refuses the older CRL, keeps the newer, the revoked cert 2 stays out", async () => {
  await using pki = await TestPki.start();
  const victim = await pki.student(SID);
  const server = await pki.serverCert("blackboard");
  await using dir = await tempDir("lab-crl-rollback-");
  const bbPort = freePort();
  await using trudy = await startTrudy("crl-rollback", [
    "--ca",
    pki.caAddr,
    "--blackboard",
    `127.0.0.1:${bbPort}`,
    "--home",
    victim.home,
    "--interval-ms",
    "200",
    "--wait",
    "60",
  ]);
  // Blackboard fetches its CRLs through Trudy.
  await using bb = new ActorProcess("actors/blackboard.ts", [
    "serve",
    "--port",
    String(bbPort),
    "--ca",
    `127.0.0.1:${trudy.port}`,
    "--cert",
    server.certPath,
    "--key",
    server.keyPath,
    "--ca-cert",
    pki.rootPath,
    "--data-dir",
    dir.path,
    "--crl-refresh",
    "1",
  ]);
  await bb.waitFor(/listening on 127\.0\.0\.1:\d+/);
  // Before the revocation the certificate works, and Trudy records the CRL that let it in.
  await trudy.process.waitFor(/STEP R1 logged in to Blackboard as \d+ with the stolen cert 2/);
  const recorded = /STEP R1 recorded the CA's CRL #(\d+) /.exec(trudy.process.stderr)?.[1];
  assert.ok(recorded, trudy.process.stderr);
  assert.deepEqual(pki.ca.revoke({ sid: SID }).length, 1);
  // The revocation reaches Blackboard; from here on nothing of Trudy's may be accepted.
  await trudy.process.waitFor(/STEP R2 Blackboard now refuses cert 2/);
  const acceptedBefore = count(bb.stdout, PRINTED);
  assert.ok(acceptedBefore >= 1);

  const r = await trudy.result();
  assert.equal(r.code, 3, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "rollback-refused");
  assert.match(
    verdict.detail,
    new RegExp(
      `^Blackboard refused the recorded CRL #${recorded}, older than CRL #\\d+ it holds, and kept the newer one: cert 2 of ${SID} stays refused: Cannot verify certificate ${SID}: it has been revoked \\(the seeds had no CRL at all: `,
    ),
  );
  // Trudy did replay the older CRL, and Blackboard said why it refused it.
  assert.match(
    r.stderr,
    new RegExp(`STEP R3 replaced the CA's CRL #\\d+ with the recorded CRL #${recorded} `),
  );
  assert.match(
    bb.stderr,
    new RegExp(
      `WARNING cannot refresh the CRL \\(CRL #${recorded} from the CA at 127\\.0\\.0\\.1:${trudy.port} is older than CRL #\\d+, already held: refused \\(a rollback\\)\\)`,
    ),
  );
  assert.equal(count(bb.stdout, PRINTED), acceptedBefore, "accepted after the revocation");
});

Deno.test("trudy crl-rollback succeeds where the checker takes any CRL the root signed (test double)", async () => {
  await using pki = await TestPki.start();
  const victim = await pki.student(SID);
  let trudyPort = 0;
  // No rollback rule: whatever CRL arrives, signed by the root and not expired, is the CRL.
  await using bb = await startBlackboard(pki, {
    revocation: {
      current: () => fetchCrl({ hostname: "127.0.0.1", port: trudyPort }, pki.root, 2000),
    },
  });
  const { log, lines, changes } = memoryLog("Trudy");
  await using trudy = startCrlRollback({
    ca: { hostname: "127.0.0.1", port: pki.server.port },
    blackboard: bb.addr,
    identity: await loadIdentity(victim.home),
    log,
    intervalMs: 50,
    waitMs: 30_000,
  });
  trudyPort = trudy.port;
  await waitFor(() => lines.some((l) => /STEP R1 logged in to Blackboard/.test(l)), {
    what: "Trudy's first login",
    changes,
    timeoutMs: 30_000,
  });
  assert.equal(pki.ca.revoke({ sid: SID }).length, 1);
  const verdict = await trudy.nextVerdict();
  assert.equal(verdict.succeeded, true, verdict.detail);
  assert.equal(verdict.reason, "revoked-cert-accepted");
  assert.match(verdict.detail, /the seeds had no CRL at all/);
  const text = lines.join("\n");
  assert.match(text, /STEP R2 Blackboard now refuses cert 2 of \d+: Cannot verify certificate/);
  assert.match(text, /STEP R3 replaced the CA's CRL #\d+ with the recorded CRL #\d+/);
  // Blackboard printed Trudy's message after the revocation had reached it.
  assert.ok(bb.printed.filter((l) => l === PRINTED).length >= 2, bb.printed.join("\n"));
});
