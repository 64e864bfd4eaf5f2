/**
 * The bank's secure handshake checks one at a time, each with input that only that check refuses,
 * asserting the refusal and its reason (so that `deno task mutate` kills the check's mutant):
 * Bob's check of Alice's transcript signature (Trudy as Alice with Alice's public certificate, and
 * Trudy swapping Alice's key share on the path), Alice's check that Bob's proof covers her fresh
 * nonce (a recorded proof replayed), the nonce and version rules, invalid X25519 shares, and the
 * record layer's sequence numbers.
 */

import assert from "node:assert/strict";
import {
  BANK_MAX_FRAME,
  BANK_VERSION,
  bankProtocol,
  type BobIdentity,
  HandshakeError,
  HandshakeMachine,
  newKeyShare,
  NONCE_BYTES,
  openSession,
  RecordError,
  SecureRecords,
  SEED_TEXT,
  signedData,
} from "../../lib/bank/mod.ts";
import { FramedStream, PeerRefusedError } from "../../lib/wire/mod.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";
import { der, exportPrivateKeyPem, importSigningKey, signRsa } from "../../lib/pki/mod.ts";
import { type FrameHandler, serve, startRelay } from "../../lib/net/mod.ts";
import { recordBobProof, startFakeBob } from "../../lib/trudy/mod.ts";
import { aliceOptions, bobIdentity, startBank } from "../_fixtures/bank.ts";
import { memoryLog, TestPki, type TestStudent } from "../_fixtures/helpers.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const ALICE = "1155000601";
const TIMEOUT_MS = 5000;

/**
 * Steps 1–5 by hand against Bob, as `who` would run them: Alice's certificate, a signing key, and
 * the X25519 share to send. Returns Bob's answer to step 5: an `error` reason, or "welcome" when
 * Bob accepted and sent his first record.
 */
async function secretToBob(
  port: number,
  alice: TestStudent,
  options: { signingKeyPem: string; share?: Uint8Array },
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const stream = new FramedStream(conn, { maxFrame: BANK_MAX_FRAME, readTimeoutMs: TIMEOUT_MS });
  const machine = new HandshakeMachine(stream, "secure", "alice", TIMEOUT_MS);
  try {
    await machine.send(1, "hello", { greeting: SEED_TEXT.hello, version: BANK_VERSION });
    await machine.receive(2, "hiBob");
    await machine.send(3, "proveIt", { text: SEED_TEXT.proveIt, nonce: randomBytes(NONCE_BYTES) });
    await machine.receive(4, "proof");
    const share = options.share ?? (await newKeyShare()).publicRaw;
    const certificate = der(alice.cert);
    const signature = await signRsa(
      await importSigningKey(options.signingKeyPem),
      signedData("Alice's secret", machine.hash(share, certificate)),
    );
    await machine.send(5, "secret", { share, certificate, signature });
    const frame = await stream.readFrame();
    assert.ok(frame !== null, "Bob closed without a word");
    const msg = bankProtocol.decode(frame);
    if (msg.type === "error") return msg.reason;
    return msg.type === "record" ? "welcome" : msg.type;
  } finally {
    stream.close();
  }
}

Deno.test("Bob refuses Trudy posing as Alice with Alice's certificate but her own signature (STEP 5)", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bank = await startBank(pki);
  // Alice's certificate is public; her key is not. Trudy signs with a key of her own.
  const trudyKeyPem = await exportPrivateKeyPem((await testKeyPair()).privateKey);
  assert.equal(
    await secretToBob(bank.port, alice, { signingKeyPem: trudyKeyPem }),
    `STEP 5 Alice's secret failed: the signature of ${ALICE} does not cover this exchange`,
  );
  // The control: the same steps with Alice's own key are accepted.
  assert.equal(await secretToBob(bank.port, alice, { signingKeyPem: alice.keyPem }), "welcome");
  assert.equal(bank.accounts.balance(ALICE), 0);
});

Deno.test("Bob refuses Alice's secret when Trudy swaps in her own X25519 share on the path (STEP 5)", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bank = await startBank(pki);
  const trudyShare = (await newKeyShare()).publicRaw;
  await using relay = startRelay({
    upstream: { hostname: "127.0.0.1", port: bank.port },
    log: memoryLog("Trudy").log,
    onFrame: (direction, frame) => {
      const msg = bankProtocol.decode(frame);
      if (direction !== "toServer" || msg.type !== "secret") return frame;
      return bankProtocol.encode("secret", { ...msg, share: trudyShare });
    },
  });
  const { log } = memoryLog("Alice");
  await assert.rejects(openSession(aliceOptions(pki, alice, relay.port, log)), (err: unknown) => {
    assert.ok(err instanceof PeerRefusedError, String(err));
    assert.equal(
      err.reason,
      `STEP 5 Alice's secret failed: the signature of ${ALICE} does not cover this exchange`,
    );
    return true;
  });
  assert.ok(bank.lines.some((l) => /does not cover this exchange/.test(l)));
});

Deno.test("Alice refuses a proof that Trudy recorded for another nonce (a replayed 'prove it' answer, STEP 4)", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bank = await startBank(pki);
  const { log: trudyLog } = memoryLog("Trudy");
  // Trudy asks Bob once with a nonce of her own and keeps his genuine "Hi, I'm Bob" and proof.
  const recorded = await recordBobProof({
    bank: { hostname: "127.0.0.1", port: bank.port },
    log: trudyLog,
  });
  await using fake = startFakeBob({ recorded, log: trudyLog });
  const { log } = memoryLog("Alice");
  await assert.rejects(openSession(aliceOptions(pki, alice, fake.port, log)), (err: unknown) => {
    assert.ok(err instanceof HandshakeError, String(err));
    assert.equal(err.step, 4);
    assert.equal(
      err.message,
      "STEP 4 Bob's proof failed: Bob's signature does not cover this exchange (a replayed or forged proof: Alice's nonce is not in it)",
    );
    return true;
  });
  const { succeeded, fromAlice } = await fake.nextVerdict();
  assert.equal(succeeded, false);
  assert.ok(!fromAlice.some((f) => bankProtocol.decode(f).type === "secret"));
});

/** A relay that rewrites one handshake message type going one way. */
function rewrite(
  type: "hello" | "proveIt" | "proof",
  change: (msg: Record<string, unknown>) => Record<string, unknown>,
): FrameHandler {
  return (_direction, frame) => {
    const msg = bankProtocol.decode(frame);
    if (msg.type !== type) return frame;
    return bankProtocol.encode(type, change({ ...msg }) as never);
  };
}

Deno.test("nonce and version rules: each side refuses a short nonce, Bob refuses another version", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bank = await startBank(pki);
  const cases: [FrameHandler, string][] = [
    [
      rewrite("hello", (m) => ({ ...m, version: "bank/0" })),
      `Bob refused: STEP 1 Hello failed: version 'bank/0' is not ${BANK_VERSION}`,
    ],
    [
      rewrite("proveIt", (m) => ({ ...m, nonce: (m.nonce as Uint8Array).subarray(0, 16) })),
      `Bob refused: STEP 3 prove it failed: Alice's nonce must be ${NONCE_BYTES} bytes`,
    ],
    [
      rewrite("proof", (m) => ({ ...m, nonce: (m.nonce as Uint8Array).subarray(0, 16) })),
      `STEP 4 Bob's proof failed: Bob's nonce must be ${NONCE_BYTES} bytes`,
    ],
  ];
  for (const [onFrame, reason] of cases) {
    await using relay = startRelay({
      upstream: { hostname: "127.0.0.1", port: bank.port },
      log: memoryLog("Trudy").log,
      onFrame,
    });
    const { log } = memoryLog("Alice");
    await assert.rejects(
      openSession(aliceOptions(pki, alice, relay.port, log)),
      (err: unknown) => {
        assert.equal((err as Error).message, reason);
        return true;
      },
    );
  }
});

Deno.test("Bob refuses Alice's all-zero (low-order) X25519 share, signed by Alice (STEP 5)", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bank = await startBank(pki);
  assert.equal(
    await secretToBob(bank.port, alice, { signingKeyPem: alice.keyPem, share: new Uint8Array(32) }),
    "STEP 5 Alice's secret failed: Alice's X25519 share is invalid",
  );
});

/** Bob's side by hand, with Bob's genuine identity and CRL, sending `share` in his proof. */
function fakeBobWithShare(identity: BobIdentity, crl: Uint8Array, share: Uint8Array) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return serve({
    listener,
    log: memoryLog("fake Bob").log,
    graceMs: 0,
    handler: async (conn) => {
      const stream = new FramedStream(conn, { maxFrame: BANK_MAX_FRAME });
      const machine = new HandshakeMachine(stream, "secure", "bob", TIMEOUT_MS);
      try {
        await machine.receive(1, "hello");
        await machine.send(2, "hiBob", {
          greeting: SEED_TEXT.hiBob,
          certificate: der(identity.cert!),
          crl,
        });
        await machine.receive(3, "proveIt");
        const nonce = randomBytes(NONCE_BYTES);
        const signature = await signRsa(
          identity.signingKey,
          signedData("Bob's proof", machine.hash(nonce, share)),
        );
        await machine.send(4, "proof", { nonce, share, signature });
        await stream.readFrame().catch(() => null);
      } finally {
        stream.close();
      }
    },
  });
}

Deno.test("Alice refuses Bob's all-zero (low-order) X25519 share, even signed by Bob (STEP 4)", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bob = fakeBobWithShare(
    await bobIdentity(pki),
    der(await pki.ca.crl()),
    new Uint8Array(32),
  );
  const { log } = memoryLog("Alice");
  await assert.rejects(openSession(aliceOptions(pki, alice, bob.port, log)), (err: unknown) => {
    assert.ok(err instanceof HandshakeError, String(err));
    assert.equal(err.message, "STEP 4 Bob's proof failed: Bob's X25519 share is invalid");
    return true;
  });
});

Deno.test("records: a replayed, a reordered and a non-record frame are refused with the reason", async () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const alice = await SecureRecords.create(k1, k2);
  const bob = await SecureRecords.create(k2, k1);
  const first = await alice.seal(Uint8Array.of(1));
  const second = await alice.seal(Uint8Array.of(2));
  const third = await alice.seal(Uint8Array.of(3));
  await assert.rejects(
    bob.open(second),
    (err: unknown) =>
      err instanceof RecordError &&
      err.message ===
        "STEP 6 banking: reordered record refused (sequence 1 arrived, 0 expected)",
  );
  assert.deepEqual(await bob.open(first), Uint8Array.of(1));
  await assert.rejects(
    bob.open(first),
    (err: unknown) =>
      err instanceof RecordError &&
      err.message ===
        "STEP 6 banking: replayed record refused (sequence 0 was already received, 1 expected)",
  );
  await assert.rejects(
    bob.open(bankProtocol.encode("error", { reason: "x" })),
    (err: unknown) =>
      err instanceof RecordError &&
      err.message === "STEP 6 banking: expected a record, got error",
  );
  assert.deepEqual(await bob.open(second), Uint8Array.of(2));
  assert.deepEqual(await bob.open(third), Uint8Array.of(3));
});
