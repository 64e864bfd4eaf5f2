/**
 * cross-service, all real processes: Trudy plays Bob with Blackboard's key and certificate (valid,
 * from the lab's CA, serverAuth, SAN 127.0.0.1: taken from the Blackboard host), and Alice, the
 * bank client, connects to her. Seed mode: Alice accepts and banks with Trudy. Default: Alice
 * checks that Bob's certificate names `bank`, whatever address she dialled, and refuses at STEP 2.
 */

import assert from "node:assert/strict";
import { runActor, TestPki } from "../_fixtures/helpers.ts";
import { printedVerdict, startTrudy } from "../_fixtures/trudy.ts";

const ALICE = "1155000001";

/** Blackboard's certificate and key as Trudy took them, and the lab's root. */
async function stolen(pki: TestPki): Promise<string[]> {
  const bb = await pki.serverCert("blackboard", ["127.0.0.1"]);
  return ["--cert", bb.certPath, "--key", bb.keyPath, "--ca-cert", pki.rootPath];
}

Deno.test("trudy cross-service succeeds against seed mode: Alice takes Blackboard's key as Bob's and banks with Trudy", async () => {
  await using pki = await TestPki.start();
  await using trudy = await startTrudy("cross-service", [
    "--protocol",
    "seed",
    ...await stolen(pki),
  ]);
  const alice = await runActor("actors/bank.ts", [
    "client",
    "--protocol",
    "seed",
    "--bank",
    `127.0.0.1:${trudy.port}`,
    "--customer",
    "alice",
    "deposit",
    "10.00",
  ]);
  assert.equal(alice.code, 0, alice.stderr);
  assert.match(alice.stderr, /STEP 5 Alice's secret: sent/);
  const r = await trudy.result();
  assert.equal(r.code, 0, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "SUCCEEDED");
  assert.equal(verdict.reason, "cross-service-accepted");
  assert.match(r.stderr, /Trudy read Alice's Deposit : 1 10\.00/);
});

Deno.test("trudy cross-service fails against the default: Alice refuses Blackboard's certificate at STEP 2 (it does not name bank)", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using trudy = await startTrudy("cross-service", [
    "--protocol",
    "default",
    "--ca",
    pki.caAddr,
    ...await stolen(pki),
  ]);
  // Alice dials an address, 127.0.0.1, which the stolen certificate carries: the name decides.
  const r = await runActor("actors/bank.ts", [
    "client",
    "--bank",
    `127.0.0.1:${trudy.port}`,
    "--home",
    alice.home,
    "deposit",
    "10.00",
  ]);
  assert.notEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /STEP 2 Hi, I'm Bob failed/);
  assert.doesNotMatch(r.stderr, /STEP 3/);
  const t = await trudy.result();
  assert.equal(t.code, 3, t.stderr);
  const verdict = printedVerdict(t.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "wrong-service-refused");
  assert.doesNotMatch(t.stderr, /Trudy read/);
});

Deno.test("trudy cross-service: --help, and a bad --protocol is a usage error", async () => {
  const help = await runActor("actors/trudy.ts", ["cross-service", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--protocol MODE/);
  assert.match(help.stdout, /--cert FILE/);
  const top = await runActor("actors/trudy.ts", ["--help"]);
  assert.match(top.stdout, /^ {2}cross-service /m);
  const bad = await runActor("actors/trudy.ts", ["cross-service", "--protocol", "tls"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^trudy cross-service: --protocol must be default or seed, got 'tls'/);
});
