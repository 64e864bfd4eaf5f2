/**
 * bank-replay, Trudy as a real process: she records Bob's "Hi, I'm Bob" and proof as a client of
 * Bob, then plays Bob to Alice with them. Seed mode: Alice accepts and sends her secret. Secure
 * mode: Alice refuses at STEP 4 (her nonce is not in the recorded proof).
 */

import assert from "node:assert/strict";
import { openSession } from "../../lib/bank/mod.ts";
import { aliceOptions, startBank } from "../_fixtures/bank.ts";
import { memoryLog, runActor, TestPki } from "../_fixtures/helpers.ts";
import { printedVerdict, startTrudy } from "../_fixtures/trudy.ts";

Deno.test("trudy bank-replay succeeds against seed mode: Alice takes Trudy for Bob and sends her secret", async () => {
  await using pki = await TestPki.start();
  await using bank = await startBank(pki, { mode: "seed" });
  await using trudy = await startTrudy("bank-replay", ["--bank", `127.0.0.1:${bank.port}`]);
  const { log, lines } = memoryLog("Alice");
  const session = await openSession({
    bank: { hostname: "127.0.0.1", port: trudy.port },
    mode: "seed",
    log,
    customer: "alice",
  });
  session.close();
  assert.ok(lines.some((l) => /STEP 4 Bob's proof: signature over 'Alice, This Is Bob'/.test(l)));
  assert.ok(lines.some((l) => /STEP 5 Alice's secret: sent/.test(l)));
  const r = await trudy.result();
  assert.equal(r.code, 0, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "SUCCEEDED");
  assert.equal(verdict.reason, "replay-accepted");
  assert.match(
    r.stderr,
    /STEP 4 recording: kept Bob's proof, his signature over 'Alice, This Is Bob'/,
  );
  assert.match(r.stderr, /STEP 5 Alice's secret: received/);
  // The recording was a real session with Bob, broken off before step 5.
  assert.match(bank.lines.join("\n"), /STEP 4 Bob's proof: sent my signature/);
});

Deno.test("trudy bank-replay fails against secure mode: Alice refuses the recorded proof at STEP 4", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  await using trudy = await startTrudy("bank-replay", ["--bank", `127.0.0.1:${bank.port}`]);
  const { log } = memoryLog("Alice");
  await assert.rejects(
    openSession(aliceOptions(pki, alice, trudy.port, log)),
    /^HandshakeError: STEP 4 Bob's proof failed: .*Alice's nonce is not in it/,
  );
  const r = await trudy.result();
  assert.equal(r.code, 3, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "replay-refused");
  // Alice's own words, as Trudy received them.
  assert.ok(
    verdict.detail.endsWith(
      ": STEP 4 Bob's proof failed: Bob's signature does not cover this exchange (a replayed or forged proof: Alice's nonce is not in it)",
    ),
    verdict.detail,
  );
  // Trudy first tried the seed protocol, then recorded the secure one.
  assert.match(r.stderr, /does not speak the seed protocol/);
  assert.match(r.stderr, /STEP 3 prove it: Alice sent a fresh nonce/);
});

Deno.test("trudy bank-replay: a bad --protocol is a usage error", async () => {
  const r = await runActor("actors/trudy.ts", ["bank-replay", "--protocol", "tls"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^trudy bank-replay: --protocol must be default or seed, got 'tls'/);
});

Deno.test("trudy bank-replay --protocol default records the default handshake; 'secure' still works, with a warning", async () => {
  await using pki = await TestPki.start();
  await using bank = await startBank(pki);
  for (const protocol of ["default", "secure"]) {
    await using trudy = await startTrudy("bank-replay", [
      "--bank",
      `127.0.0.1:${bank.port}`,
      "--protocol",
      protocol,
    ]);
    const stderr = trudy.process.stderr;
    assert.match(stderr, /recorded Bob's default handshake: now playing Bob/);
    assert.doesNotMatch(stderr, /does not speak the seed protocol/, "no seed attempt first");
    const warning =
      /^trudy bank-replay: --protocol secure is deprecated; use --protocol default\|seed$/m;
    if (protocol === "secure") assert.match(stderr, warning);
    else assert.doesNotMatch(stderr, /deprecated/);
  }
});
