import assert from "node:assert/strict";
import {
  BANK_STEPS,
  bankOps,
  bankProtocol,
  HandshakeError,
  HandshakeMachine,
  SecureRecords,
  STEP_MESSAGES,
  stepName,
} from "../../lib/bank/mod.ts";
import { randomBytes, Transcript, transcriptHash } from "../../lib/crypto/mod.ts";
import { FramedStream, FrameError } from "../../lib/wire/mod.ts";

const samples = {
  hello: { greeting: "Hello", version: "bank/1" },
  hiBob: { greeting: "Hi, I'm Bob", certificate: randomBytes(40), crl: randomBytes(30) },
  proveIt: { text: "prove it", nonce: randomBytes(32) },
  proof: { nonce: randomBytes(32), share: randomBytes(32), signature: randomBytes(256) },
  secret: { share: randomBytes(32), certificate: randomBytes(50), signature: randomBytes(256) },
  record: { seq: 7, data: randomBytes(30) },
  seedHello: { greeting: "Hello", customer: "alice" },
  seedHiBob: { greeting: "Hi, I'm Bob", publicKey: randomBytes(294) },
  seedProveIt: { text: "prove it" },
  seedProof: { sentence: "Alice, This Is Bob", signature: randomBytes(256) },
  seedSecret: { text: "ok bob, here is a secret", secret: randomBytes(256) },
  seedRecord: { data: randomBytes(32) },
  error: { reason: "STEP 2 Hi, I'm Bob failed: no" },
} as const;

Deno.test("every bank message round-trips, and every strict prefix or extension is refused", () => {
  for (const [type, values] of Object.entries(samples)) {
    const bytes = bankProtocol.encode(type as keyof typeof samples, values as never);
    assert.deepEqual(bankProtocol.decode(bytes), { type, ...values });
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(
        () => bankProtocol.decode(bytes.subarray(0, n)),
        FrameError,
        `${type} prefix ${n}`,
      );
    }
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    assert.throws(() => bankProtocol.decode(longer), /trailing bytes/);
  }
});

Deno.test("each handshake step has a message per mode, labelled with the seed's step name", () => {
  for (const mode of ["secure", "seed"] as const) {
    for (const [n, type] of Object.entries(STEP_MESSAGES[mode])) {
      const step = Number(n) as keyof typeof BANK_STEPS;
      assert.ok(bankProtocol.label(type).startsWith(`STEP ${step} `), type);
      if (step < 6) assert.ok(bankProtocol.label(type).startsWith(stepName(step)), type);
    }
  }
  // The modes never share a code, so a capture tells them apart.
  const secure = new Set<number>(
    Object.values(STEP_MESSAGES.secure).map((t) => bankProtocol.messages[t].code),
  );
  for (const t of Object.values(STEP_MESSAGES.seed)) {
    assert.ok(!secure.has(bankProtocol.messages[t].code));
  }
  assert.equal(bankOps.label("deposit"), "Deposit : 1");
  assert.equal(bankOps.label("exit"), "Exit : 4");
});

Deno.test("secure records: one direction's key cannot open the other's records", async () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const alice = await SecureRecords.create(k1, k2);
  const bob = await SecureRecords.create(k2, k1);
  const rec = await alice.seal(new TextEncoder().encode("deposit"));
  assert.equal(new TextDecoder().decode(await bob.open(rec)), "deposit");
  // Reflected back at Alice (her own record, sequence 0): refused.
  await assert.rejects(alice.open(rec), /tampered record refused/);
  // Same plaintext twice: different ciphertexts (unlike the seed's ECB).
  const a = bankProtocol.decode(await alice.seal(Uint8Array.of(1)));
  const b = bankProtocol.decode(await alice.seal(Uint8Array.of(1)));
  assert.notDeepEqual(a, b);
});

Deno.test("the handshake machine keeps the seed's order and each mode's messages", async () => {
  const written: Uint8Array[] = [];
  const wire = {
    read: () => Promise.resolve(null),
    write: (p: Uint8Array) => {
      written.push(p.slice());
      return Promise.resolve(p.length);
    },
    close() {},
  };
  const m = new HandshakeMachine(new FramedStream(wire), "secure", "alice", 1000);
  assert.equal(m.state, "ExpectHello");
  await assert.rejects(
    m.send(3, "proveIt", { text: "prove it", nonce: randomBytes(32) }),
    /^HandshakeError: STEP 3 prove it failed: not allowed in state ExpectHello/,
  );
  await assert.rejects(
    m.send(1, "seedHello", { greeting: "Hello", customer: "alice" }),
    /STEP 1 Hello failed: seedHello is not this mode's message/,
  );
  await assert.rejects(m.receive(1, "hello"), /STEP 1 Hello failed: not allowed/);
  await m.send(1, "hello", { greeting: "Hello", version: "bank/1" });
  assert.equal(m.state, "ExpectHiBob");
  assert.equal(written.length, 1);
  await assert.rejects(m.receive(2, "hiBob"), (err: unknown) => {
    assert.ok(err instanceof HandshakeError && err.transport && err.step === 2);
    assert.match(err.message, /connection closed before STEP 2 Hi, I'm Bob/);
    return true;
  });
});

Deno.test("the handshake transcript hashes each message length-prefixed, as on the wire", async () => {
  const a = new TextEncoder().encode("hello");
  const b = randomBytes(70_000);
  // Computed independently: SHA-256(u32(len a) | a | u32(len b) | b), lengths big-endian.
  const framed = new Uint8Array(8 + a.length + b.length);
  const view = new DataView(framed.buffer);
  view.setUint32(0, a.length);
  framed.set(a, 4);
  view.setUint32(4 + a.length, b.length);
  framed.set(b, 8 + a.length);
  const expected = new Uint8Array(await crypto.subtle.digest("SHA-256", framed));
  assert.deepEqual(transcriptHash([a, b]), expected);
  const t = new Transcript();
  t.add(a);
  const before = t.snapshot();
  assert.deepEqual(t.digest(b), expected, "digest(extra) hashes extra without adding it");
  assert.equal(t.length, 1);
  t.add(b);
  assert.deepEqual(t.digest(), expected);
  assert.deepEqual(before.digest(b), expected, "a snapshot is unaffected by later messages");
  assert.equal(before.length, 1);
});
