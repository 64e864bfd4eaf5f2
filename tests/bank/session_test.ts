/**
 * The bank's handshake and records over real sockets: both modes, every hostile case of the issue,
 * and the two seed flaws the attacker will use (key substitution, proof replay) shown to work in
 * seed mode and to fail, naming the step, in secure mode.
 */

import assert from "node:assert/strict";
import {
  Accounts,
  AmountError,
  BankClient,
  bankOps,
  bankProtocol,
  HandshakeError,
  loadBobIdentity,
  newRequestId,
  openSession,
  SEED_SENTENCE,
  SeedRecords,
  serveBank,
} from "../../lib/bank/mod.ts";
import { FramedStream, PeerRefusedError } from "../../lib/wire/mod.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";
import { createRoot, exportPrivateKeyPem, issueCertificate } from "../../lib/pki/mod.ts";
import {
  makeTrudyBankKeys,
  recordBobProof,
  startBankMitm,
  startFakeBob,
} from "../../lib/trudy/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { waitFor } from "../../lib/runtime/mod.ts";
import { aliceOptions, bobIdentity, startBank } from "../_fixtures/bank.ts";
import { memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const DAY_MS = 86_400_000;

/** Waits until `check` holds (for effects on the server side). */
async function eventually(check: () => boolean, what: string, ms = 5000): Promise<void> {
  await waitFor(check, { what, timeoutMs: ms });
}

/** A server identity signed by `issuerKey` with the given profile and dates. */
async function bobWith(
  issuer: Parameters<typeof issueCertificate>[0]["issuer"],
  issuerKey: CryptoKey,
  options: { ips?: string[]; dnsNames?: string[]; now?: Date; validityDays?: number } = {},
) {
  const keys = await testKeyPair();
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const cert = await issueCertificate({
    publicKey: spki,
    profile: {
      kind: "server",
      commonName: "bank",
      dnsNames: options.dnsNames ?? ["bank"],
      ipAddresses: options.ips ?? ["127.0.0.1"],
    },
    issuer,
    issuerKey,
    ...(options.now ? { now: options.now } : {}),
    ...(options.validityDays ? { validityDays: options.validityDays } : {}),
  });
  return await loadBobIdentity(await exportPrivateKeyPem(keys.privateKey), cert);
}

Deno.test("secure mode: a scripted session deposits, withdraws, checks the balance and exits", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  const { log, lines } = memoryLog("Alice");
  const client = await BankClient.connect(aliceOptions(pki, alice, bank.port, log));
  const d = await client.deposit("10.50");
  assert.ok(d.ok && d.balance === 1050 && d.amount === 1050 && !d.replayed);
  const w = await client.withdraw("3");
  assert.ok(w.ok && w.balance === 750);
  assert.equal(await client.balance(), 750);
  const st = await client.statement();
  assert.equal(st.length, 2);
  assert.match(st[0]!, /\twithdraw\t3\.00\tapplied\t7\.50$/);
  await client.exit();
  // Every step logged by its seed name, on both sides.
  for (
    const step of [
      "STEP 1 Hello",
      "STEP 2 Hi, I'm Bob",
      "STEP 3 prove it",
      "STEP 4 Bob's proof",
      "STEP 5 Alice's secret",
      "STEP 6 banking",
    ]
  ) {
    assert.ok(lines.some((l) => l.includes(step)), `Alice logs ${step}`);
    assert.ok(bank.lines.some((l) => l.includes(step)), `Bob logs ${step}`);
  }
  assert.equal(bank.accounts.balance("1155000001"), 750);
  await eventually(() => bank.lines.some((l) => l.includes("Exit : 4")), "Bob's exit line");
});

Deno.test("seed mode: the same scripted session works, on a separate seed account", async () => {
  await using pki = await TestPki.start();
  await using bank = await startBank(pki, { mode: "seed" });
  const { log, lines } = memoryLog("Alice");
  const client = await BankClient.connect({
    bank: { hostname: "127.0.0.1", port: bank.port },
    mode: "seed",
    log,
    customer: "alice",
  });
  assert.ok((await client.deposit("10.50")).ok);
  const w = await client.withdraw("3");
  assert.ok(w.ok && w.balance === 750);
  assert.equal(await client.balance(), 750);
  await client.exit();
  assert.equal(bank.accounts.balance("seed/alice"), 750);
  assert.ok(lines.some((l) => l.includes(`STEP 4 Bob's proof: signature over '${SEED_SENTENCE}'`)));
});

Deno.test("seed mode encrypts deterministically: the same operation gives the same bytes", () => {
  const records = new SeedRecords(randomBytes(32));
  const op = bankOps.encode("deposit", { requestId: "same-request", amount: "10.00" });
  assert.deepEqual(records.encrypt(op), records.encrypt(op));
});

Deno.test("secure mode refuses a bank certificate from another CA, expired, or for another name", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  const other = await createRoot({
    bits: 2048,
    keys: await testKeyPair(),
    name: "CN=Trudy Root CA",
  });
  const caKey = await pki.rootKey();
  const cases = [
    {
      what: "another CA",
      identity: await bobWith(other.cert, other.keys.privateKey),
      reason: /not issued by the pinned root/,
    },
    {
      what: "expired",
      identity: await bobWith(pki.root, caKey, {
        now: new Date(Date.now() - 40 * DAY_MS),
        validityDays: 30,
      }),
      reason: /expired on/,
    },
    {
      // Alice checks the service's name in the SAN, `bank`, not the address she dialled (which
      // this certificate carries) nor the CN. (Before, she checked the address: a certificate for
      // bank at 127.0.0.2 was refused, and any lab server's for 127.0.0.1 accepted.)
      what: "another name",
      identity: await bobWith(pki.root, caKey, { dnsNames: ["blackboard"] }),
      reason: /not issued for bank \(SAN: blackboard, 127\.0\.0\.1\)/,
    },
  ];
  for (const c of cases) {
    await using bank = await startBank(pki, { identity: c.identity });
    const { log } = memoryLog("Alice");
    await assert.rejects(openSession(aliceOptions(pki, alice, bank.port, log)), (err: unknown) => {
      assert.ok(err instanceof HandshakeError, `${c.what}: ${err}`);
      assert.equal(err.step, 2);
      assert.match(err.message, /^STEP 2 Hi, I'm Bob failed: Cannot verify certificate bank: /);
      assert.match(err.message, c.reason);
      return true;
    });
    // Bob is told why, and no account was opened.
    await eventually(
      () => bank.lines.some((l) => l.includes("gave up: STEP 2 Hi, I'm Bob failed")),
      c.what,
    );
    assert.equal(bank.accounts.balance("1155000001"), 0);
  }
  // The name is checked, not the address: Bob's certificate for another address is accepted.
  await using elsewhere = await startBank(pki, {
    identity: await bobWith(pki.root, caKey, { ips: ["127.0.0.2"] }),
  });
  const { log } = memoryLog("Alice");
  const session = await openSession(aliceOptions(pki, alice, elsewhere.port, log));
  session.close();
});

Deno.test("secure mode refuses a customer certificate from another CA at STEP 5", async () => {
  await using pki = await TestPki.start();
  await using rogue = await TestPki.start();
  const mallory = await rogue.student("1155000001");
  await using bank = await startBank(pki);
  const { log } = memoryLog("Alice");
  // Mallory trusts the real root (so Bob's certificate checks out) but her own is from another CA.
  await assert.rejects(
    openSession({ ...aliceOptions(pki, mallory, bank.port, log), root: pki.root }),
    (err: unknown) => {
      assert.ok(err instanceof PeerRefusedError);
      assert.match(
        err.message,
        /^Bob refused: STEP 5 Alice's secret failed: Cannot verify certificate 1155000001: signature does not match the root/,
      );
      return true;
    },
  );
});

Deno.test("secure mode refuses a revoked customer at STEP 5 when Bob has the CRL", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  const bob = await pki.student("1155000002");
  pki.ca.revoke({ sid: "1155000001" });
  await using bank = await startBank(pki, { crl: await pki.ca.crl() });
  const { log } = memoryLog("Alice");
  await assert.rejects(
    openSession(aliceOptions(pki, alice, bank.port, log)),
    /Bob refused: STEP 5 Alice's secret failed: Cannot verify certificate 1155000001: it has been revoked/,
  );
  const other = await openSession(aliceOptions(pki, bob, bank.port, log));
  assert.equal(other.customer, "1155000002");
  other.close();
});

Deno.test("Bob fails closed: once his CRL is past nextUpdate and no fresh one comes, customers are refused at STEP 5", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  const carol = await pki.student("1155000002");
  // Real CRLs from the CA, valid 3 s each; `caDown` makes the CA unreachable.
  const VALID_MS = 3000;
  let caDown = false;
  await using bank = await startBank(pki, {
    crlSource: {
      source: "the test CA",
      fetch: () => caDown ? Promise.reject(new Error("Cannot reach the CA")) : pki.ca.crl(VALID_MS),
    },
  });
  const { log } = memoryLog("Alice");
  const open = (who: typeof alice) => openSession(aliceOptions(pki, who, bank.port, log));

  (await open(alice)).close();
  const fetched = Date.now();
  caDown = true;
  // The CA is down but the CRL Bob holds is still valid: he uses it and says so.
  (await open(alice)).close();
  assert.match(
    bank.lines.join("\n"),
    /WARNING cannot refresh the CRL \(Cannot reach the CA\): using CRL #\d+/,
  );

  // Past its nextUpdate: Bob cannot know who was revoked since, so he refuses everyone.
  await new Promise((r) => setTimeout(r, Math.max(0, fetched + VALID_MS + 200 - Date.now())));
  await assert.rejects(open(alice), (err: unknown) => {
    assert.ok(err instanceof PeerRefusedError);
    assert.equal(
      err.message,
      "Bob refused: STEP 2 Hi, I'm Bob failed: Bob cannot check revocation right now: try again later",
    );
    return true;
  });
  assert.match(
    bank.lines.join("\n"),
    /ERROR Cannot check revocation: Cannot reach the CA, and no valid CRL is held/,
  );
  assert.equal(bank.accounts.balance("1155000001"), 0);

  // The CA is back: a fresh CRL, customers are served again, and a revocation applies at once.
  caDown = false;
  (await open(alice)).close();
  pki.ca.revoke({ sid: carol.sid });
  await assert.rejects(
    open(carol),
    /Bob refused: STEP 5 Alice's secret failed: Cannot verify certificate 1155000002: it has been revoked/,
  );
  (await open(alice)).close();
});

Deno.test("proof replay: seed mode accepts Bob's recorded proof, secure mode refuses it at STEP 4", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  for (const mode of ["seed", "secure"] as const) {
    await using bank = await startBank(pki, { mode });
    // Trudy records one genuine "Hi, I'm Bob" and proof (lib/trudy/bank_replay.ts).
    const { log: trudyLog } = memoryLog("Trudy");
    const recorded = await recordBobProof({
      bank: { hostname: "127.0.0.1", port: bank.port },
      log: trudyLog,
    });
    assert.equal(recorded.mode, mode);
    assert.equal(bankProtocol.decode(recorded.proof).type, mode === "seed" ? "seedProof" : "proof");
    // Later, Trudy plays Bob with the recorded "Hi, I'm Bob" and proof.
    await using fake = startFakeBob({ recorded, log: trudyLog });
    const { log, lines } = memoryLog("Alice");
    let outcome: unknown = "accepted";
    try {
      const session = await openSession(
        mode === "seed"
          ? { bank: { hostname: "127.0.0.1", port: fake.port }, mode, log, customer: "alice" }
          : aliceOptions(pki, alice, fake.port, log),
      );
      session.close();
    } catch (err) {
      outcome = err;
    }
    const { fromAlice, succeeded } = await fake.nextVerdict();
    if (mode === "seed") {
      assert.equal(outcome, "accepted");
      assert.equal(succeeded, true);
      assert.ok(lines.some((l) => l.includes("STEP 4 Bob's proof: signature over")));
      assert.equal(bankProtocol.decode(fromAlice.at(-1)!).type, "seedSecret");
    } else {
      assert.equal(succeeded, false);
      assert.ok(outcome instanceof HandshakeError, String(outcome));
      assert.equal(outcome.step, 4);
      assert.match(outcome.message, /^STEP 4 Bob's proof failed: .*replayed or forged proof/);
      // Alice told the impersonator why, and sent no secret.
      const last = bankProtocol.decode(fromAlice.at(-1)!);
      assert.equal(last.type, "error");
      assert.ok(!fromAlice.some((f) => bankProtocol.decode(f).type === "secret"));
    }
  }
});

Deno.test("key substitution: seed mode lets Trudy read and change a deposit, secure mode stops her at STEP 2", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  // Trudy's key and her own CA's certificate for Bob's name (lib/trudy/bank_mitm.ts).
  const keys = await makeTrudyBankKeys();
  const { log: trudyLog, lines: trudyLines } = memoryLog("Trudy");

  // Seed mode.
  {
    await using bank = await startBank(pki, { mode: "seed" });
    await using relay = await startBankMitm({
      bank: { hostname: "127.0.0.1", port: bank.port },
      log: trudyLog,
      keys,
      amount: "900.00",
    });
    const { log } = memoryLog("Alice");
    const client = await BankClient.connect({
      bank: { hostname: "127.0.0.1", port: relay.port },
      mode: "seed",
      log,
      customer: "alice",
    });
    const d = await client.deposit("10.00");
    await client.exit();
    assert.ok(d.ok && d.amount === 1000 && d.balance === 1000, "Alice sees nothing wrong");
    assert.equal(bank.accounts.balance("seed/alice"), 90000, "Bob applied Trudy's amount");
    assert.ok(
      trudyLines.some((l) => /read Alice → Bob: deposit 10\.00/.test(l)),
      "Trudy read the operation",
    );
    assert.equal((await relay.nextVerdict()).succeeded, true);
  }

  // Secure mode: Trudy's certificate (her own CA) for the same name is refused at STEP 2.
  {
    await using bank = await startBank(pki);
    await using relay = await startBankMitm({
      bank: { hostname: "127.0.0.1", port: bank.port },
      log: trudyLog,
      keys,
    });
    const { log } = memoryLog("Alice");
    await assert.rejects(
      openSession(aliceOptions(pki, alice, relay.port, log)),
      /^HandshakeError: STEP 2 Hi, I'm Bob failed: Cannot verify certificate bank: it is not issued by the pinned root/,
    );
    assert.equal((await relay.nextVerdict()).succeeded, false);
    // With Bob's genuine certificate but Trudy's own X25519 share, the proof fails.
    await using relay2 = startRelay({
      upstream: { hostname: "127.0.0.1", port: bank.port },
      log: trudyLog,
      onFrame: async (_direction, frame) => {
        const msg = bankProtocol.decode(frame);
        if (msg.type === "proof") {
          const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, [
            "deriveBits",
          ]) as CryptoKeyPair;
          const share = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
          return bankProtocol.encode("proof", { ...msg, share });
        }
        return frame;
      },
    });
    await assert.rejects(
      openSession(aliceOptions(pki, alice, relay2.port, log)),
      /STEP 4 Bob's proof failed/,
    );
    assert.equal(bank.accounts.balance("1155000001"), 0);
  }
});

Deno.test("records: a replayed, reordered or tampered record is refused and closes the session", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  const { log } = memoryLog("Alice");
  const deposit = (amount: string) =>
    bankOps.encode("deposit", { requestId: newRequestId(), amount });

  // Replay.
  {
    const s = await openSession(aliceOptions(pki, alice, bank.port, log));
    const rec = await s.seal(deposit("5"));
    await s.writeRaw(rec);
    assert.equal((await s.receive(["applied"])).balance, 500);
    await s.writeRaw(rec);
    await assert.rejects(
      s.receive(["applied"]),
      /STEP 6 banking: replayed record refused \(sequence 0 was already received, 1 expected\)/,
    );
    s.close();
  }
  // Reordering.
  {
    const s = await openSession(aliceOptions(pki, alice, bank.port, log));
    await s.seal(deposit("1"));
    const second = await s.seal(deposit("2"));
    await s.writeRaw(second);
    await assert.rejects(
      s.receive(["applied"]),
      /reordered record refused \(sequence 1 arrived, 0 expected\)/,
    );
    s.close();
  }
  // Tampering: one bit of the ciphertext, or a record sealed as sequence 1 but sent as 0.
  for (const tamper of ["ciphertext", "sequence"] as const) {
    const s = await openSession(aliceOptions(pki, alice, bank.port, log));
    if (tamper === "sequence") await s.seal(deposit("1"));
    const rec = bankProtocol.decode(await s.seal(deposit("100")));
    if (rec.type !== "record") throw new Error("expected a record");
    if (tamper === "ciphertext") rec.data[rec.data.length - 20]! ^= 0x01;
    await s.writeRaw(bankProtocol.encode("record", { seq: 0, data: rec.data }));
    await assert.rejects(
      s.receive(["applied"]),
      /tampered record refused \(sequence 0 fails authentication\)/,
    );
    s.close();
  }
  assert.equal(bank.accounts.balance("1155000001"), 500);
  assert.ok(bank.lines.some((l) => /tampered record refused.*closing/.test(l)));
});

Deno.test("records: hostile amounts are refused by Bob too, and nothing is applied", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  const { log } = memoryLog("Alice");
  const client = await BankClient.connect(aliceOptions(pki, alice, bank.port, log));
  // Alice's own check: nothing is sent.
  for (const amount of ["-5", "0", "1e9", "12.345", "abc", ""]) {
    await assert.rejects(client.deposit(amount), AmountError);
  }
  // Sent anyway, raw: Bob parses with the same function and refuses.
  const s = client.session!;
  for (const amount of ["-5", "0", "1e9", "12.345", "abc", ""]) {
    await s.send("deposit", { requestId: newRequestId(), amount });
    const reply = await s.receive(["refused"]);
    assert.match(reply.reason, /^Invalid amount/, amount);
  }
  // Overdraft.
  assert.ok((await client.deposit("20")).ok);
  const over = await client.withdraw("20.01");
  assert.ok(!over.ok);
  assert.match(over.ok ? "" : over.reason, /Insufficient funds: balance 20\.00, withdrawal 20\.01/);
  assert.equal(await client.balance(), 2000);
  // Unknown operation code: refused, and the session goes on.
  await s.writeRaw(await s.seal(Uint8Array.of(0x09)));
  assert.match((await s.receive(["refused"])).reason, /Unknown operation: .*0x09/);
  await s.writeRaw(await s.seal(bankOps.encode("bye", {})));
  assert.match((await s.receive(["refused"])).reason, /bye is not a request/);
  assert.equal(await client.balance(), 2000);
  await client.exit();
  assert.equal(
    bank.accounts.statement("1155000001").filter((e) => e.status === "applied").length,
    1,
  );
});

Deno.test("a client that disconnects before reading the reply: applied once, visible on reconnect", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  const { log } = memoryLog("Alice");
  const requestId = newRequestId();
  {
    const s = await openSession(aliceOptions(pki, alice, bank.port, log));
    await s.send("deposit", { requestId, amount: "42.00" });
    s.close();
  }
  await eventually(() => bank.accounts.balance("1155000001") === 4200, "the deposit");
  const client = await BankClient.connect(aliceOptions(pki, alice, bank.port, log));
  assert.equal(await client.balance(), 4200);
  const retry = await client.deposit("42.00", requestId);
  assert.ok(retry.ok && retry.replayed && retry.balance === 4200);
  assert.equal(await client.balance(), 4200);
  await client.exit();
});

Deno.test("oversized and truncated frames, a wrong protocol, and a silent client are refused", async () => {
  await using pki = await TestPki.start();
  await using bank = await startBank(pki, { handshakeTimeoutMs: 300 });
  const connect = async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: bank.port });
    return { conn, stream: new FramedStream(conn, { readTimeoutMs: 3000 }) };
  };
  // Oversized: a header announcing 1 MB is refused before any byte is buffered.
  {
    const { conn, stream } = await connect();
    await conn.write(Uint8Array.of(0x00, 0x10, 0x00, 0x00));
    const reply = bankProtocol.decode((await stream.readFrame())!);
    assert.equal(reply.type, "error");
    assert.match(
      reply.type === "error" ? reply.reason : "",
      /^STEP 1 Hello failed: Frame of 1048576 bytes exceeds the limit of 16384 bytes/,
    );
    stream.close();
  }
  // Truncated: 100 bytes announced, 3 sent, then the connection ends.
  {
    const { conn } = await connect();
    await conn.write(Uint8Array.of(0, 0, 0, 100, 1, 2, 3));
    conn.closeWrite();
    await eventually(
      () =>
        bank.lines.some((l) =>
          /STEP 1 Hello failed: Connection closed in the middle of a frame/.test(l)
        ),
      "truncation",
    );
    conn.close();
  }
  // Garbage that is not a bank message.
  {
    const { stream } = await connect();
    await stream.writeFrame(Uint8Array.of(0x99, 1, 2));
    const reply = bankProtocol.decode((await stream.readFrame())!);
    assert.match(
      reply.type === "error" ? reply.reason : "",
      /STEP 1 Hello failed: Unknown Bank message type 0x99/,
    );
    stream.close();
  }
  // Silent: Bob closes after his deadline.
  {
    const { stream } = await connect();
    const started = Date.now();
    const frame = await stream.readFrame();
    // Bob's deadline closes his side of the stream before he could say why: the connection just
    // ends, with no frame (the reason is in Bob's log, asserted below).
    assert.equal(frame, null);
    assert.ok(Date.now() - started < 2500);
    stream.close();
    await eventually(
      () => bank.lines.some((l) => /STEP 1 Hello failed: No read progress within 300 ms/.test(l)),
      "deadline",
    );
  }
});

Deno.test("a silent customer after the handshake is dropped at the idle deadline", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki, { idleTimeoutMs: 300 });
  const { log } = memoryLog("Alice");
  const s = await openSession(aliceOptions(pki, alice, bank.port, log));
  const frame = await s.stream.readFrame({ timeoutMs: 3000 });
  assert.equal(frame, null);
  await eventually(
    () => bank.lines.some((l) => /idle: No read progress within 300 ms/.test(l)),
    "the idle deadline",
  );
  s.close();
});

Deno.test("a client of the other protocol is refused at STEP 1 with the reason", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki, { mode: "seed" });
  const { log } = memoryLog("Alice");
  await assert.rejects(
    openSession(aliceOptions(pki, alice, bank.port, log)),
    /Bob refused: STEP 1 Hello failed: expected STEP 1 Hello \(seed\), got STEP 1 Hello \(the peer speaks the secure protocol\)/,
  );
});

/** The seed handshake by hand up to STEP 5, with `secret` as the encrypted secret; Bob's answer. */
async function seedSecretAnswer(port: number, secret: Uint8Array) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const stream = new FramedStream(conn, { readTimeoutMs: 5000 });
  try {
    const next = async () => bankProtocol.decode((await stream.readFrame())!);
    await stream.writeFrame(
      bankProtocol.encode("seedHello", { greeting: "Hello", customer: "alice" }),
    );
    const hi = await next();
    await stream.writeFrame(bankProtocol.encode("seedProveIt", { text: "prove it" }));
    assert.equal((await next()).type, "seedProof");
    await stream.writeFrame(bankProtocol.encode("seedSecret", { text: "here", secret }));
    return { hi, answer: await next() };
  } finally {
    stream.close();
  }
}

Deno.test("seed mode keeps its flaws, not this one: an empty, short, long or zero 'encrypted secret' is refused at STEP 5", async () => {
  await using pki = await TestPki.start();
  await using bank = await startBank(pki, { mode: "seed" });
  for (
    const [what, secret, reason] of [
      ["empty", new Uint8Array(0), /must be 256 bytes \(Bob's modulus\), got 0/],
      ["one byte", Uint8Array.of(1), /must be 256 bytes \(Bob's modulus\), got 1/],
      ["255 bytes", new Uint8Array(255).fill(1), /must be 256 bytes \(Bob's modulus\), got 255/],
      ["257 bytes", new Uint8Array(257).fill(1), /must be 256 bytes \(Bob's modulus\), got 257/],
      // Raw RSA of 0 is 0: a secret of 32 zero bytes that anyone can compute.
      ["zero", new Uint8Array(256), /the decrypted secret is zero/],
    ] as const
  ) {
    const { answer } = await seedSecretAnswer(bank.port, secret);
    assert.equal(answer.type, "error", what);
    assert.match(answer.type === "error" ? answer.reason : "", /^STEP 5 Alice's secret failed: /);
    assert.match(answer.type === "error" ? answer.reason : "", reason, what);
  }
  assert.equal(bank.accounts.balance("seed/alice"), 0);
  // A genuine seed client still banks.
  const client = await BankClient.connect({
    bank: { hostname: "127.0.0.1", port: bank.port },
    mode: "seed",
    log: memoryLog("Alice").log,
    customer: "alice",
  });
  assert.ok((await client.deposit("1")).ok);
  await client.exit();
});

Deno.test("seed mode never runs with Bob's certified key: serveBank refuses it", async () => {
  await using pki = await TestPki.start();
  await assert.rejects(
    startBank(pki, { mode: "seed", identity: await bobIdentity(pki) }),
    /Seed mode runs with a throwaway key \(seedBobIdentity\), not Bob's certified one/,
  );
});

Deno.test("secure Bob always checks revocation: serveBank refuses to run without a revocation checker", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  using accounts = Accounts.open(`${dir.path}/accounts.db`);
  const identity = await bobIdentity(pki);
  assert.throws(
    () =>
      serveBank({
        mode: "secure",
        accounts,
        identity,
        log: memoryLog("Bob").log,
        root: pki.root,
        port: 0,
      }),
    /Secure mode needs a revocation checker: Bob always checks revocation/,
  );
});

/**
 * A relay that replaces Bob's first reply after the handshake (the first record he sends after
 * Alice's first record) with a cleartext `error`, as someone on the path would.
 */
function forgeFirstReply(port: number, reason: string) {
  let aliceSpoke = false;
  let forged = 0;
  const relay = startRelay({
    upstream: { hostname: "127.0.0.1", port },
    log: memoryLog("relay").log,
    onFrame: (direction, frame) => {
      const type = bankProtocol.decode(frame).type;
      const isRecord = type === "record" || type === "seedRecord";
      if (direction === "toServer" && isRecord) aliceSpoke = true;
      if (direction === "toClient" && isRecord && aliceSpoke && forged === 0) {
        forged++;
        return bankProtocol.encode("error", { reason });
      }
      return frame;
    },
  });
  return { relay, forged: () => forged };
}

Deno.test("after the handshake a cleartext error is a broken connection: Alice retries with the same request id and Bob applies it once (seed mode believes it)", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  const FORGED = "Insufficient funds: balance 0.00, withdrawal 5.00";
  for (const mode of ["secure", "seed"] as const) {
    await using bank = await startBank(pki, { mode });
    const customer = mode === "seed" ? "seed/alice" : alice.sid;
    await bank.accounts.apply({
      customer,
      requestId: newRequestId(),
      kind: "deposit",
      amount: "10.00",
    });
    const { relay, forged } = forgeFirstReply(bank.port, FORGED);
    await using _relay = relay;
    const { log, lines } = memoryLog("Alice");
    const client = await BankClient.connect(
      mode === "seed"
        ? { bank: { hostname: "127.0.0.1", port: relay.port }, mode, log, customer: "alice" }
        : aliceOptions(pki, alice, relay.port, log),
    );
    try {
      if (mode === "secure") {
        const requestId = newRequestId();
        const out = await client.withdraw("5.00", requestId);
        assert.equal(forged(), 1);
        // Alice did not believe the forged refusal: she resent the same request on a new
        // connection, and Bob answered it from his ledger (applied once).
        assert.ok(out.ok, JSON.stringify(out));
        assert.equal(out.requestId, requestId);
        assert.equal(out.replayed, true);
        assert.equal(out.balance, 500);
        assert.equal(client.reconnects, 1);
        assert.ok(
          lines.some((l) =>
            /connection lost during withdraw 5\.00 \(.*CleartextFrameError|connection broken: a cleartext error arrived after the handshake/
              .test(l)
          ),
          lines.join("\n"),
        );
        // Alice told Bob why, inside the session.
        await eventually(
          () =>
            bank.lines.some((l) =>
              /ended the session: .*connection broken: a cleartext error/.test(l)
            ),
          "Bob's line about Alice's authenticated refusal",
        );
      } else {
        // Seed mode keeps the seed's behaviour: the forged words are taken as Bob's.
        await assert.rejects(client.withdraw("5.00"), (err: unknown) => {
          assert.ok(err instanceof PeerRefusedError, String(err));
          assert.equal(err.reason, FORGED);
          return true;
        });
        assert.equal(client.reconnects, 0);
      }
      // Either way Bob applied the withdrawal exactly once.
      assert.equal(bank.accounts.balance(customer), 500);
      assert.equal(
        bank.accounts.statement(customer).filter((e) => e.kind === "withdraw").length,
        1,
      );
    } finally {
      client.close();
    }
  }
});

Deno.test("a connection that breaks before Bob's welcome (STEP 5) is retried: the request whose reply was lost is applied once", async () => {
  // Found by tests/chaos/kill_test.ts: Bob killed between Alice's secret and his welcome made
  // Alice give up ("no welcome from Bob: Connection reset") instead of reconnecting.
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  await bank.accounts.apply({
    customer: alice.sid,
    requestId: newRequestId(),
    kind: "deposit",
    amount: "10.00",
  });
  // Connection 1 carries the withdrawal and is cut before Bob's answer reaches Alice; connection
  // 2 is cut where Bob's welcome would come (it is the first record Bob sends); 3 passes.
  await using relay = startRelay({
    upstream: { hostname: "127.0.0.1", port: bank.port },
    log: memoryLog("relay").log,
    onFrame: (direction, frame, session, index) => {
      const record = bankProtocol.decode(frame).type === "record";
      const cut = (session.id === 1 && direction === "toClient" && record && index > 2) ||
        (session.id === 2 && direction === "toClient" && record);
      if (!cut) return frame;
      session.close();
      return null;
    },
  });
  const { log, lines } = memoryLog("Alice");
  const client = new BankClient(aliceOptions(pki, alice, relay.port, log, { retryForMs: 20_000 }));
  try {
    const requestId = newRequestId();
    const out = await client.withdraw("5.00", requestId);
    assert.ok(out.ok, JSON.stringify(out));
    assert.equal(out.replayed, true);
    assert.equal(out.balance, 500);
    assert.equal(client.reconnects, 2);
    // Two reconnections (the second after "no welcome from Bob"), told in one line.
    assert.equal(
      lines.filter((l) => /reconnecting to send/.test(l)).length,
      1,
      lines.join("\n"),
    );
  } finally {
    client.close();
  }
  assert.equal(bank.accounts.balance(alice.sid), 500);
  assert.equal(bank.accounts.statement(alice.sid).filter((e) => e.kind === "withdraw").length, 1);
});

Deno.test("Bob stopped (SIGINT) with a session open: he says so inside the session, and Alice resends quietly, in one line", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000003");
  const bank = await startBank(pki);
  const { log, lines } = memoryLog("Alice");
  const client = new BankClient(aliceOptions(pki, alice, bank.port, log, { retryForMs: 1500 }));
  try {
    assert.ok((await client.deposit("1.00")).ok);
    await bank[Symbol.asyncDispose]();
    assert.match(bank.lines.join("\n"), /told the session ends, Bob is stopping/);
    // Bob is gone: the deposit cannot be sent again, and Alice said so once, not per attempt.
    await assert.rejects(client.deposit("2.00"));
    assert.ok(client.reconnects > 1, `${client.reconnects} reconnections`);
    assert.deepEqual(
      lines.filter((l) => /reconnecting to send/.test(l)),
      ["[Alice] WARNING Bob is shutting down: reconnecting to send deposit 2.00 again"],
      lines.join("\n"),
    );
  } finally {
    client.close();
  }
});

Deno.test("after the handshake Bob treats a cleartext frame from Alice as a broken connection and refuses inside a record", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student("1155000001");
  await using bank = await startBank(pki);
  const { log } = memoryLog("Alice");
  const s = await openSession(aliceOptions(pki, alice, bank.port, log));
  await s.writeRaw(bankProtocol.encode("error", { reason: "Alice \u001b[31mgives up" }));
  // Bob's answer is an authenticated refusal (a record), never a cleartext error.
  const frame = await s.stream.readFrame({ timeoutMs: 5000 });
  assert.ok(frame);
  assert.equal(bankProtocol.decode(frame).type, "record");
  const op = bankOps.decode(await s.records.open(frame));
  assert.equal(op.type, "error");
  assert.match(
    op.type === "error" ? op.reason : "",
    /connection broken: a cleartext error arrived after the handshake \('Alice \\u\{1b\}\[31mgives up'\)/,
  );
  s.close();
  // Bob's log shows the peer's text through printable().
  await eventually(
    () =>
      bank.lines.some((l) => /a cleartext error arrived .*\\u\{1b\}\[31mgives up.*closing/.test(l)),
    "Bob's log line",
  );
  assert.ok(!bank.lines.some((l) => l.includes("\u001b")));
});
