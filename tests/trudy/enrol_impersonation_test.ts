import assert from "node:assert/strict";
import { enrolImpersonation } from "../../lib/trudy/mod.ts";
import { verifyCertificate } from "../../lib/pki/mod.ts";
import { memoryLog, runActor, TestPki } from "../_fixtures/helpers.ts";
import { printedVerdict } from "../_fixtures/trudy.ts";

const VICTIM = "1155000777";

Deno.test("enrol-impersonation succeeds against the seeds' open enrolment", async () => {
  await using pki = await TestPki.start({ openEnrolment: true });
  const { log, lines } = memoryLog("Trudy");
  const verdict = await enrolImpersonation({
    ca: { hostname: "127.0.0.1", port: pki.server.port },
    root: pki.root,
    victim: VICTIM,
    log,
  });
  assert.equal(verdict.succeeded, true, verdict.detail);
  assert.equal(verdict.reason, "enrolled-without-code");
  // What Trudy holds is a certificate any verifier accepts for the victim.
  await verifyCertificate(verdict.cert!, {
    root: pki.root,
    purpose: "clientAuth",
    expectedCommonName: VICTIM,
  });
  assert.deepEqual(pki.ca.ledger().map((r) => r.sid), [VICTIM]);
  assert.match(
    lines.join("\n"),
    /STEP 1 Trudy made her own RSA key pair[\s\S]*STEP 2 the CA signed cert 2/,
  );
});

Deno.test("enrol-impersonation fails against the default CA: no code, no certificate", async () => {
  await using pki = await TestPki.start();
  // The victim has a code, but Trudy does not know it.
  pki.ca.createCode(VICTIM);
  const r = await runActor("actors/trudy.ts", [
    "enrol-impersonation",
    "--victim",
    VICTIM,
    "--ca",
    pki.caAddr,
    "--ca-cert",
    pki.rootPath,
  ]);
  assert.equal(r.code, 3, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "code-required");
  // The victim's ID, then the CA's own words.
  assert.ok(
    verdict.detail.endsWith(
      ` ${VICTIM}: Enrolment refused: Enrolment code is not valid for ${VICTIM}`,
    ),
    verdict.detail,
  );
  assert.match(r.stderr, /STEP 2 the CA refused/);
  assert.equal(pki.ca.ledger().length, 0, "nothing issued");
});
