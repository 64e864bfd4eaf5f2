/**
 * Blackboard's checks one at a time, each with input that only that check refuses, asserting the
 * refusal and its reason (so that `deno task mutate` kills the check's mutant): cert 2 signed by
 * the real root but with CA:TRUE, an unknown critical extension or a notBefore in the future; the
 * student's
 * check of Blackboard's step-4 signature (Trudy on the path alters what it covers), step 3's
 * request line, nonce and record kind, and step 6's message size, upload ID and upload order.
 */

import assert from "node:assert/strict";
import {
  blackboardProtocol,
  openSeedSession,
  openSession,
  receiveHandshake,
  requestLine,
  sendHandshake,
  SESSION_MAX_FRAME,
  type StudentSession,
} from "../../lib/blackboard/mod.ts";
import { FramedStream, PeerRefusedError } from "../../lib/wire/mod.ts";
import { newKeyShare, randomBytes } from "../../lib/crypto/mod.ts";
import {
  CertificateError,
  exportPrivateKeyPem,
  OID,
  randomSerial,
  RSA_SIGN,
  x509,
} from "../../lib/pki/mod.ts";
import type { StudentIdentity } from "../../lib/ca/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { type HostPort, waitFor } from "../../lib/runtime/mod.ts";
import { memoryLog, TestPki, type TestStudent } from "../_fixtures/helpers.ts";
import { identity, listFiles, startBlackboard } from "../_fixtures/blackboard.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const SID = "1155000501";

Deno.test("the student refuses Blackboard's step 4 when Trudy alters what its signature covers", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const id = await identity(student.home);
  // Trudy on the path changes one field of Blackboard's step-4 message: its nonce (which only the
  // signature protects), or the signature itself. The certificate in it stays genuine.
  for (const field of ["nonce", "signature"] as const) {
    const { log: trudyLog } = memoryLog("Trudy");
    await using relay = startRelay({
      upstream: bb.addr,
      log: trudyLog,
      onFrame: (direction, frame) => {
        if (direction !== "toClient") return frame;
        const msg = blackboardProtocol.decode(frame);
        if (msg.type !== "sessionKey") return frame;
        const altered = msg[field].slice();
        altered[altered.length - 1]! ^= 0x01;
        return blackboardProtocol.encode("sessionKey", { ...msg, [field]: altered });
      },
    });
    const { log, lines } = memoryLog("student");
    await assert.rejects(
      openSession({ blackboard: relay.addr, identity: id, log }),
      (err: unknown) => {
        assert.ok(err instanceof CertificateError, `${field}: not a CertificateError: ${err}`);
        assert.equal(
          err.message,
          "Blackboard's step-4 signature does not verify: not the real Blackboard, or the exchange was altered",
        );
        return true;
      },
    );
    assert.ok(!lines.some((l) => /STEP 5/.test(l)), `${field}: the student went on to step 5`);
  }
  assert.deepEqual(bb.printed, []);
});

/** Step 3 by hand: Blackboard's answer to a request with these values. */
async function step3(
  bb: { addr: HostPort },
  student: TestStudent,
  values: { request?: string; nonce?: Uint8Array; records?: string },
): Promise<unknown> {
  const conn = await Deno.connect(bb.addr);
  const stream = new FramedStream(conn, { maxFrame: SESSION_MAX_FRAME });
  try {
    await sendHandshake(stream, "request", {
      request: values.request ?? requestLine(student.sid),
      certificate: new Uint8Array(student.cert.rawData),
      nonce: values.nonce ?? randomBytes(32),
      share: (await newKeyShare()).publicRaw,
      records: values.records ?? "aes-gcm",
    });
    return (await receiveHandshake(stream, ["sessionKey"], 5000)).msg.type;
  } catch (err) {
    return err;
  } finally {
    stream.close();
  }
}

function assertRefusal(outcome: unknown, reason: string): void {
  assert.ok(outcome instanceof PeerRefusedError, `not refused: ${String(outcome)}`);
  assert.equal(outcome.reason, reason);
}

Deno.test("blackboard refuses at step 3 a malformed request line, a short nonce, an unknown record kind", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  // The control: the same request, well formed, gets step 4.
  assert.equal(await step3(bb, student, {}), "sessionKey");
  assertRefusal(
    await step3(bb, student, { request: `SID:${SID.slice(1)} requests to upload report !` }),
    "Malformed request: expected 'SID:<10 digits> requests to upload report !'",
  );
  assertRefusal(
    await step3(bb, student, { nonce: randomBytes(16) }),
    "The nonce must be 32 bytes",
  );
  assertRefusal(
    await step3(bb, student, { records: "rot13" }),
    "Malformed request: records must be aes-gcm or hmac",
  );
  assert.deepEqual(bb.printed, []);
});

/** A session whose step-6 refusal reason is returned (the session is then over). */
async function refusalIn(session: StudentSession, send: () => Promise<void>): Promise<string> {
  await send();
  const err = await session.secure.receive(["received", "uploadOffset"], { timeoutMs: 5000 })
    .then((m) => new Error(`accepted: ${m.type}`), (e) => e);
  assert.ok(err instanceof PeerRefusedError, `not refused: ${err}`);
  return err.reason;
}

Deno.test("blackboard refuses at step 6 a message over the size limit, a bad upload ID, an upload out of order", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const id = await identity(student.home);
  const { log } = memoryLog("student");
  const open = () => openSession({ blackboard: bb.addr, identity: id, log });
  const uploadId = "0123456789abcdef0123456789abcdef";
  {
    // Sent raw: the student's own client refuses to send it.
    using s = await open();
    assert.equal(
      await refusalIn(s, () => s.secure.send("message", { text: "x".repeat(4097) })),
      "Message too long: at most 4096 bytes",
    );
  }
  {
    using s = await open();
    assert.equal(
      await refusalIn(
        s,
        () =>
          s.secure.send("uploadBegin", { uploadId: "../../../../tmp/x", name: "r.pdf", size: 1 }),
      ),
      "Invalid upload ID: 32 hex digits expected",
    );
  }
  {
    using s = await open();
    assert.equal(
      await refusalIn(s, () => s.secure.send("chunk", { offset: 0, data: new Uint8Array(1) })),
      "Chunk without an upload in progress",
    );
  }
  {
    // A second upload in the same session: Blackboard's session refuses it before the store does.
    using s = await open();
    await s.secure.send("uploadBegin", { uploadId, name: "r.pdf", size: 1 });
    assert.equal((await s.secure.receive(["uploadOffset"])).offset, 0);
    assert.equal(
      await refusalIn(
        s,
        () => s.secure.send("uploadBegin", { uploadId, name: "r.pdf", size: 1 }),
      ),
      "An upload is already in progress in this session",
    );
  }
  assert.deepEqual(bb.printed, []);
  assert.ok(!(await listFiles(bb.dataDir)).some((f) => f.startsWith("reports/")));
});

/** A cert 2 for SID signed by the test PKI's own root key, with the changes asked for. */
async function rootSigned(
  pki: TestPki,
  change: { ca?: boolean; extra?: x509.Extension; notBefore?: Date },
): Promise<StudentIdentity> {
  const rootKey = await pki.rootKey();
  const keys = await testKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${SID}`,
    issuer: pki.root.subjectName,
    notBefore: change.notBefore ?? new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: RSA_SIGN,
    publicKey: keys.publicKey,
    signingKey: rootKey,
    extensions: [
      new x509.BasicConstraintsExtension(change.ca ?? false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([OID.clientAuth], false),
      ...(change.extra ? [change.extra] : []),
    ],
  });
  return {
    sid: SID,
    cert,
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    root: pki.root,
    home: pki.dir,
  };
}

Deno.test("blackboard refuses a cert 2 from the real root with CA:TRUE, an unknown critical extension, or not yet valid", async () => {
  await using pki = await TestPki.start();
  await using bb = await startBlackboard(pki);
  const { log } = memoryLog("student");
  const notBefore = new Date(Date.now() + 3_600_000);
  const cases: [StudentIdentity, string][] = [
    [await rootSigned(pki, {}), ""],
    [
      await rootSigned(pki, { ca: true }),
      "it is a CA certificate, not an end-entity certificate",
    ],
    [
      await rootSigned(pki, {
        extra: new x509.Extension("1.3.6.1.4.1.99999.7", true, Uint8Array.of(0x05, 0x00)),
      }),
      "unknown critical extension 1.3.6.1.4.1.99999.7",
    ],
    [
      await rootSigned(pki, { notBefore }),
      `not valid before ${notBefore.toISOString().replace(/\.\d{3}Z$/, ".000Z")}`,
    ],
  ];
  for (const [id, reason] of cases) {
    const outcome = await openSession({ blackboard: bb.addr, identity: id, log }).then(
      (s) => {
        s.close();
        return "accepted";
      },
      (err) => err,
    );
    if (reason === "") {
      // The control: the same profile, nothing changed, is accepted.
      assert.equal(outcome, "accepted");
      continue;
    }
    assertRefusal(outcome, `Cannot verify certificate ${SID}: ${reason}`);
  }
  assert.deepEqual(bb.printed, []);
});

Deno.test("seed mode still checks what it can: an altered key echo (STEP 5) and an altered message | HMAC (STEP 6) are refused", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki, { protocol: "seed" });
  const id = await identity(student.home);
  // Trudy on the path flips one bit: of the key the student sends back, or of a message.
  const flip = (what: "seedKeyEcho" | "seedMessage") => (direction: string, frame: Uint8Array) => {
    if (direction !== "toServer") return frame;
    const msg = blackboardProtocol.decode(frame);
    if (msg.type === "seedKeyEcho" && what === "seedKeyEcho") {
      const sessionKey = msg.sessionKey.slice();
      sessionKey[0]! ^= 0x01;
      return blackboardProtocol.encode("seedKeyEcho", { sessionKey });
    }
    if (msg.type === "seedMessage" && what === "seedMessage") {
      return blackboardProtocol.encode("seedMessage", { ...msg, message: "pay Trudy" });
    }
    return frame;
  };
  const { log } = memoryLog("student");
  {
    await using relay = startRelay({
      upstream: bb.addr,
      log: memoryLog("Trudy").log,
      onFrame: flip("seedKeyEcho"),
    });
    await assert.rejects(openSeedSession({ blackboard: relay.addr, identity: id, log }), (err) => {
      assertRefusal(
        err,
        "Session key check failed: the key sent back is not the session key",
      );
      return true;
    });
  }
  {
    await using relay = startRelay({
      upstream: bb.addr,
      log: memoryLog("Trudy").log,
      halfClose: true,
      onFrame: flip("seedMessage"),
    });
    using session = await openSeedSession({ blackboard: relay.addr, identity: id, log });
    await session.send("pay Alice");
    await waitFor(
      () =>
        bb.lines.some((l) => /refused SID \d+ .*: HMAC does not match: message refused/.test(l)),
      { what: "Blackboard to refuse the altered message", timeoutMs: 5000 },
    );
  }
  assert.deepEqual(bb.printed, []);
});
