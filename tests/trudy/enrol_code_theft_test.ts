/**
 * enrol-code-theft (audit finding 1): Trudy on the path between a student and the CA swaps her own
 * CSR into the student's request. The seeds' open enrolment signs it; the default CA, whose code
 * never crosses the wire and whose binding covers the student's own CSR, refuses it.
 */

import assert from "node:assert/strict";
import { runActor, TestPki } from "../_fixtures/helpers.ts";
import { printedVerdict, startTrudy } from "../_fixtures/trudy.ts";

const VICTIM = "1155000777";

async function enrolThroughTrudy(pki: TestPki, code: string) {
  await using trudy = await startTrudy("enrol-code-theft", ["--ca", pki.caAddr]);
  const student = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    VICTIM,
    ...(code === "" ? ["--no-code"] : ["--code", code]),
    "--ca",
    `127.0.0.1:${trudy.port}`,
    "--ca-cert",
    pki.rootPath,
    "--home",
    `${pki.dir}/students/${VICTIM}`,
  ]);
  const result = await trudy.result();
  return { student, trudy: result, verdict: printedVerdict(result.stdout) };
}

Deno.test("enrol-code-theft succeeds against open enrolment: the CA signs Trudy's swapped CSR", async () => {
  await using pki = await TestPki.start({ openEnrolment: true });
  const { student, trudy, verdict } = await enrolThroughTrudy(pki, "");
  assert.equal(trudy.code, 0, trudy.stderr);
  assert.equal(verdict.outcome, "SUCCEEDED");
  assert.equal(verdict.reason, "swapped-csr-signed");
  // The CA's ledger holds one certificate for the victim: Trudy's.
  assert.deepEqual(pki.ca.ledger().map((r) => r.sid), [VICTIM]);
  // The victim sees that cert 2 does not carry its key, and stores nothing.
  assert.equal(student.code, 1, student.stderr);
  assert.match(student.stderr, /does not carry the key of this CSR/);
});

Deno.test("enrol-code-theft fails against the default CA at STEP 2; the victim's code stays unused", async () => {
  await using pki = await TestPki.start();
  const { code } = pki.ca.createCode(VICTIM);
  const { student, trudy, verdict } = await enrolThroughTrudy(pki, code);
  assert.equal(trudy.code, 3, trudy.stderr);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "binding-refused");
  assert.match(
    verdict.detail,
    /at STEP 2: Enrolment refused: Enrolment code is not valid for 1155000777/,
  );
  // Trudy saw a binding, never the code.
  assert.match(trudy.stderr, /a 32-byte binding, but no enrolment code/);
  assert.ok(!trudy.stderr.includes(code), "the code appears in Trudy's log");
  assert.equal(pki.ca.ledger().length, 0, "nothing issued");
  assert.equal(student.code, 1);
  // The victim, on a path without Trudy, enrols with the same code.
  const again = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    VICTIM,
    "--code",
    code,
    "--ca",
    pki.caAddr,
    "--ca-cert",
    pki.rootPath,
    "--home",
    `${pki.dir}/students/${VICTIM}-again`,
  ]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout + again.stderr, /SID: 1155000777 sign finished\./);
});
