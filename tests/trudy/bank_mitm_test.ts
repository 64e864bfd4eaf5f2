/**
 * bank-mitm, Trudy as a real process between Alice and Bob: in seed mode she reads and changes
 * Alice's deposit and Alice sees nothing wrong; in secure mode Alice refuses her certificate at
 * STEP 2 and tells her why.
 */

import assert from "node:assert/strict";
import { BankClient, openSession } from "../../lib/bank/mod.ts";
import { aliceOptions, startBank } from "../_fixtures/bank.ts";
import { memoryLog, runActor, TestPki } from "../_fixtures/helpers.ts";
import { printedVerdict, startTrudy } from "../_fixtures/trudy.ts";

Deno.test("trudy bank-mitm succeeds against seed mode: a deposit of 10.00 becomes 900.00, Alice sees 10.00", async () => {
  await using pki = await TestPki.start();
  await using bank = await startBank(pki, { mode: "seed" });
  await using trudy = await startTrudy("bank-mitm", [
    "--bank",
    `127.0.0.1:${bank.port}`,
    "--amount",
    "900.00",
  ]);
  const { log } = memoryLog("Alice");
  const client = await BankClient.connect({
    bank: { hostname: "127.0.0.1", port: trudy.port },
    mode: "seed",
    log,
    customer: "alice",
  });
  const d = await client.deposit("10.00");
  const balance = await client.balance();
  await client.exit();
  assert.ok(d.ok && d.amount === 1000 && d.balance === 1000, "Alice is shown her own deposit");
  assert.equal(balance, 1000, "Alice is shown the balance she expects");
  assert.equal(bank.accounts.balance("seed/alice"), 90000, "Bob applied Trudy's amount");

  const r = await trudy.result();
  assert.equal(r.code, 0, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "SUCCEEDED");
  assert.equal(verdict.reason, "seed-key-accepted");
  // What she read, what she changed, and that she covered it up.
  assert.match(
    verdict.detail,
    / 3 operations \(Alice → Bob deposit 10\.00, Alice → Bob balance, Alice → Bob exit\);/,
  );
  assert.match(verdict.detail, /a deposit of 10\.00 into 900\.00/);
  assert.match(verdict.detail, /rewrote Bob's reply /);
  for (
    const step of [
      /STEP 2 Hi, I'm Bob: kept Bob's raw key .* and sent Alice Trudy's/,
      /STEP 4 Bob's proof: replaced Bob's signature with Trudy's/,
      /STEP 5 Alice's secret: decrypted with Trudy's private key/,
      /STEP 6 read Alice → Bob: deposit 10\.00 .*changed it to 900\.00/,
      /STEP 6 read Bob → Alice: applied 900\.00, balance 900\.00; rewritten to show 10\.00, balance 10\.00/,
      /STEP 6 read Bob → Alice: balance 900\.00; rewritten to 10\.00/,
    ]
  ) assert.match(r.stderr, step);
});

Deno.test("trudy bank-mitm fails against secure mode: Alice refuses Trudy's certificate at STEP 2", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  await using trudy = await startTrudy("bank-mitm", ["--bank", `127.0.0.1:${bank.port}`]);
  const { log } = memoryLog("Alice");
  await assert.rejects(
    openSession(aliceOptions(pki, alice, trudy.port, log)),
    /^HandshakeError: STEP 2 Hi, I'm Bob failed: Cannot verify certificate bank: it is not issued by the pinned root/,
  );
  const r = await trudy.result();
  assert.equal(r.code, 3, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "key-refused");
  // Alice's own words, as Trudy received them.
  assert.ok(
    verdict.detail.endsWith(
      ": STEP 2 Hi, I'm Bob failed: Cannot verify certificate bank: it is not issued by the pinned root",
    ),
    verdict.detail,
  );
  assert.match(r.stderr, /STEP 2 Hi, I'm Bob: replaced Bob's certificate with Trudy's/);
  assert.equal(bank.accounts.balance("1155000001"), 0);
});

Deno.test("trudy bank-mitm: a protocol mismatch is Bob's refusal before any swap, said as such", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000002");
  // Alice speaks the default protocol; Bob runs the seed's.
  await using bank = await startBank(pki, { mode: "seed" });
  await using trudy = await startTrudy("bank-mitm", ["--bank", `127.0.0.1:${bank.port}`]);
  await assert.rejects(openSession(aliceOptions(pki, alice, trudy.port, memoryLog("Alice").log)));
  const r = await trudy.result();
  assert.equal(r.code, 3, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.reason, "refused-before-swap");
  assert.match(
    verdict.detail,
    /^Bob refused( at STEP \d)? before Trudy changed anything \(she never got to swap her key\), and said why: /,
  );
  assert.doesNotMatch(verdict.detail, /Alice refused Trudy/);
});

Deno.test("trudy bank-mitm: a bad amount is a usage error", async () => {
  const r = await runActor("actors/trudy.ts", ["bank-mitm", "--amount", "1.234"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^trudy bank-mitm: --amount: /);
});
