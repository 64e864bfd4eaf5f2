/**
 * Steps 3–5 under attack: every certificate Blackboard must refuse, key confirmations that fail,
 * key shares swapped on the path or malformed, a revoked or stale Blackboard as the student sees it
 * through its stapled CRL, hostile framing and stalled clients. Each refusal is one clear line, and
 * nothing is stored.
 */

import assert from "node:assert/strict";
import {
  blackboardProtocol,
  openSession,
  receiveHandshake,
  requestLine,
  sendHandshake,
  SESSION_MAX_FRAME,
  STEP4_MAX_FRAME,
} from "../../lib/blackboard/mod.ts";
import { FramedStream, PeerRefusedError } from "../../lib/wire/mod.ts";
import { newKeyShare, randomBytes } from "../../lib/crypto/mod.ts";
import { NEWEST_CRL_FILE, serialOf, type StudentIdentity } from "../../lib/ca/mod.ts";
import {
  CertificateError,
  type Crl,
  exportPrivateKeyPem,
  issueCertificate,
} from "../../lib/pki/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { exists, waitFor } from "../../lib/runtime/mod.ts";
import { memoryLog, TestPki } from "../_fixtures/helpers.ts";
import { SubjectAlternativeNameExtension } from "@peculiar/x509";
import {
  identity,
  listFiles,
  startBlackboard,
  type TestBlackboard,
} from "../_fixtures/blackboard.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const SID = "1155000201";
const OTHER = "1155000202";

async function assertRefused(
  bb: TestBlackboard,
  id: StudentIdentity,
  pattern: RegExp,
  options: { blackboardName?: string } = {},
): Promise<void> {
  const { log } = memoryLog("student");
  await assert.rejects(
    openSession({ blackboard: bb.addr, identity: id, log, ...options }),
    (err: Error) => {
      assert.match(err.message, pattern);
      return true;
    },
  );
  assert.deepEqual(bb.printed, []);
  assert.deepEqual(await listFiles(bb.dataDir), []);
}

Deno.test("blackboard refuses a certificate from another CA", async () => {
  await using pki = await TestPki.start();
  await using other = await TestPki.start();
  const stranger = await other.student(SID);
  await using bb = await startBlackboard(pki);
  // Every test CA is named like the real root (ROOT_NAME), so the issuer name matches: what
  // refuses the stranger is the signature, not the name.
  assert.equal(other.root.subject, pki.root.subject);
  await assertRefused(
    bb,
    await identity(stranger.home),
    new RegExp(`Cannot verify certificate ${SID}: signature does not match the root$`),
  );
  assert.match(
    bb.lines.join("\n"),
    new RegExp(`WARNING refused SID ${SID} \\(.*\\): Cannot verify certificate`),
  );
});

Deno.test("blackboard refuses an expired certificate", async () => {
  await using pki = await TestPki.start();
  const rootKey = await pki.rootKey();
  const keys = await testKeyPair();
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const cert = await issueCertificate({
    publicKey: spki,
    profile: { kind: "student", sid: SID },
    issuer: pki.root,
    issuerKey: rootKey,
    validityDays: 1,
    now: new Date(Date.now() - 3 * 86_400_000),
  });
  await using bb = await startBlackboard(pki);
  const id: StudentIdentity = {
    sid: SID,
    cert,
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    root: pki.root,
    home: pki.dir,
  };
  await assertRefused(bb, id, new RegExp(`Cannot verify certificate ${SID}: expired on `));
});

Deno.test("blackboard refuses a revoked certificate within the CRL refresh interval", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki, { refreshMs: 300 });
  const id = await identity(student.home);
  const { log } = memoryLog("student");
  {
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    await session.send("before revocation");
  }
  assert.equal(pki.ca.revoke({ sid: SID }).length, 1);
  const revokedAt = Date.now();
  bb.printed.length = 0;
  // Blackboard may use the CRL it holds for its refresh interval (300 ms); the first session after
  // that makes it fetch the new CRL and is refused. The wait ends at that refusal.
  const refusal = await waitFor(async () => {
    const started = Date.now();
    try {
      using _session = await openSession({ blackboard: bb.addr, identity: id, log });
    } catch (err) {
      return { err };
    }
    assert.ok(started - revokedAt < 300, `accepted ${started - revokedAt} ms after the revocation`);
    return undefined;
  }, { what: "Blackboard to refuse the revoked certificate" });
  assert.match(
    String(refusal.err),
    new RegExp(`Cannot verify certificate ${SID}: it has been revoked`),
  );
  assert.deepEqual(bb.printed, []);
});

Deno.test("blackboard refuses a certificate whose CN is not the ID in the request", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const id = { ...(await identity(student.home)), sid: OTHER };
  await assertRefused(
    bb,
    id,
    new RegExp(`Cannot verify certificate ${SID}: its CN is '${SID}', not '${OTHER}'`),
  );
});

Deno.test("blackboard refuses a server certificate presented as a student's", async () => {
  await using pki = await TestPki.start();
  // A server certificate (serverAuth only) whose CN even looks like an ID.
  const { cert, keyPem } = await pki.ca.issueServer({ name: SID });
  await using bb = await startBlackboard(pki);
  const id: StudentIdentity = { sid: SID, cert, keyPem, root: pki.root, home: pki.dir };
  await assertRefused(
    bb,
    id,
    new RegExp(`Cannot verify certificate ${SID}: extended key usage does not allow clientAuth`),
  );
});

Deno.test("blackboard refuses a valid certificate presented without its private key", async () => {
  await using pki = await TestPki.start();
  const victim = await pki.student(SID);
  const thief = await pki.student(OTHER);
  await using bb = await startBlackboard(pki);

  // With the real client: the thief's step-5 signature is made with the wrong key. (The seeds'
  // design stopped her earlier: she could not decrypt the RSA-wrapped session key. The X25519
  // exchange gives her a session key, so cert 2's key must sign the exchange.)
  const stolen = { ...(await identity(victim.home)), keyPem: thief.keyPem };
  const { log } = memoryLog("thief");
  await assert.rejects(
    openSession({ blackboard: bb.addr, identity: stolen, log }),
    (err: Error) => {
      assert.ok(err instanceof PeerRefusedError, err.message);
      assert.equal(
        err.message,
        "Key confirmation failed: the student does not hold the private key of cert 2",
      );
      return true;
    },
  );

  // By hand: the thief guesses a signature and a key confirmation, and Blackboard refuses them.
  const conn = await Deno.connect(bb.addr);
  const stream = new FramedStream(conn, { maxFrame: SESSION_MAX_FRAME });
  try {
    await sendHandshake(stream, "request", {
      request: requestLine(SID),
      certificate: new Uint8Array(victim.cert.rawData),
      nonce: randomBytes(32),
      share: (await newKeyShare()).publicRaw,
      records: "aes-gcm",
    });
    await receiveHandshake(stream, ["sessionKey"], 5000, STEP4_MAX_FRAME);
    await sendHandshake(stream, "confirm", { signature: randomBytes(256), mac: randomBytes(32) });
    await assert.rejects(
      receiveHandshake(stream, ["ready"], 5000),
      (err: Error) => {
        assert.ok(err instanceof PeerRefusedError);
        assert.equal(
          err.message,
          "Key confirmation failed: the student does not hold the private key of cert 2",
        );
        return true;
      },
    );
  } finally {
    stream.close();
  }
  assert.deepEqual(bb.printed, []);
  assert.deepEqual(await listFiles(bb.dataDir), []);
});

Deno.test("blackboard refuses a wrong key confirmation (one bit flipped on the wire)", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  // Frame 1 is the confirmation; flip the last bit of its MAC.
  await using relay = startRelay({
    upstream: bb.addr,
    log: memoryLog("relay").log,
    onFrame: (direction, f, _session, i) => {
      if (direction !== "toServer" || i !== 1) return f;
      const g = f.slice();
      g[g.length - 1]! ^= 0x01;
      return g;
    },
  });
  const { log } = memoryLog("student");
  await assert.rejects(
    openSession({ blackboard: relay.addr, identity: await identity(student.home), log }),
    /Key confirmation failed/,
  );
  assert.deepEqual(bb.printed, []);
});

Deno.test("the student refuses a Blackboard with the wrong certificate name", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  await assertRefused(bb, await identity(student.home), /its CN is 'blackboard', not 'elsewhere'/, {
    blackboardName: "elsewhere",
  });
});

Deno.test("blackboard refuses an oversized frame before buffering it", async () => {
  await using pki = await TestPki.start();
  await using bb = await startBlackboard(pki);
  const conn = await Deno.connect(bb.addr);
  const stream = new FramedStream(conn);
  try {
    await conn.write(Uint8Array.of(0x7f, 0xff, 0xff, 0xff, 0x01, 0x02));
    const reply = await stream.readFrame({ timeoutMs: 5000 });
    assert.ok(reply);
    const msg = blackboardProtocol.decode(reply);
    assert.equal(msg.type, "error");
    assert.equal(
      msg.type === "error" && msg.reason,
      "Frame of 2147483647 bytes exceeds the limit of 16384 bytes",
    );
    assert.equal(await stream.readFrame({ timeoutMs: 5000 }), null);
  } finally {
    stream.close();
  }
  assert.deepEqual(await listFiles(bb.dataDir), []);
});

Deno.test("a client that stops mid-handshake is dropped at the deadline; others are served", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki, { handshakeTimeoutMs: 800 });
  // Half a request, then silence.
  const stalled = await Deno.connect(bb.addr);
  const request = blackboardProtocol.encode("request", {
    request: requestLine(SID),
    certificate: new Uint8Array(student.cert.rawData),
    nonce: randomBytes(32),
    share: randomBytes(32),
    records: "aes-gcm",
  });
  const framed = new Uint8Array(4 + request.length);
  new DataView(framed.buffer).setUint32(0, request.length);
  framed.set(request, 4);
  await stalled.write(framed.subarray(0, 100));
  const started = Date.now();
  // Meanwhile another student is served normally.
  const { log } = memoryLog("student");
  {
    using session = await openSession({
      blackboard: bb.addr,
      identity: await identity(student.home),
      log,
    });
    await session.send("not blocked");
  }
  assert.deepEqual(bb.printed, [`Message from ${SID}: not blocked`]);
  // The stalled connection is closed by Blackboard after its deadline.
  const buf = new Uint8Array(16);
  const n = await stalled.read(buf).catch(() => null);
  assert.equal(n, null);
  assert.ok(Date.now() - started >= 700, "closed before the deadline");
  stalled.close();
  assert.match(bb.lines.join("\n"), /WARNING dropped .*No read progress within 800 ms/);
});

Deno.test("blackboard refuses when the CA is unreachable and it holds no valid CRL", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  // A port where nothing listens.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (l.addr as Deno.NetAddr).port;
  l.close();
  await using bb = await startBlackboard(pki, { ca: { hostname: "127.0.0.1", port: deadPort } });
  await assertRefused(
    bb,
    await identity(student.home),
    /Blackboard cannot check revocation right now: try again later/,
  );
  assert.match(bb.lines.join("\n"), /ERROR Cannot check revocation: Cannot reach the CA/);

  // With a CRL fetched earlier and still valid, a CA outage does not stop Blackboard.
  await using bb2 = await startBlackboard(pki, { refreshMs: 1 });
  const { log } = memoryLog("student");
  const id = await identity(student.home);
  {
    using s = await openSession({ blackboard: bb2.addr, identity: id, log });
    await s.send("CA up");
  }
  await pki.server.close();
  {
    using s = await openSession({ blackboard: bb2.addr, identity: id, log });
    await s.send("CA down");
  }
  assert.deepEqual(bb2.printed, [`Message from ${SID}: CA up`, `Message from ${SID}: CA down`]);
  assert.match(
    bb2.lines.join("\n"),
    /WARNING cannot refresh the CRL .*: using CRL #\d+, valid until/,
  );
});

Deno.test("the student refuses a step 4 whose signature does not cover the X25519 shares (swapped on the path)", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const trudy = await newKeyShare();
  for (const direction of ["toClient", "toServer"] as const) {
    // Trudy puts her own X25519 share in Blackboard's step 4, or in the student's step 3, and
    // leaves everything else (Blackboard's signature included) as it was.
    let swapped = false;
    await using relay = startRelay({
      upstream: bb.addr,
      log: memoryLog("relay").log,
      onFrame: (dir, f, _session, i) => {
        if (dir !== direction || i !== 0) return f;
        const msg = blackboardProtocol.decode(f);
        if (msg.type !== "sessionKey" && msg.type !== "request") return f;
        assert.equal(msg.share.length, 32);
        swapped = true;
        return msg.type === "sessionKey"
          ? blackboardProtocol.encode("sessionKey", { ...msg, share: trudy.publicRaw })
          : blackboardProtocol.encode("request", { ...msg, share: trudy.publicRaw });
      },
    });
    const { log } = memoryLog("student");
    await assert.rejects(
      openSession({ blackboard: relay.addr, identity: await identity(student.home), log }),
      (err: Error) => {
        assert.ok(err instanceof CertificateError, `${direction}: ${err.message}`);
        assert.equal(
          err.message,
          "Blackboard's step-4 signature does not verify: not the real Blackboard, or the exchange was altered",
        );
        return true;
      },
    );
    assert.ok(swapped, direction);
  }
  assert.deepEqual(bb.printed, []);
});

Deno.test("blackboard refuses an X25519 share that is not a public key (low order, wrong length)", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  // All zeros is a point of low order: its shared secret is all zeros (RFC 7748, section 6.1).
  for (const share of [new Uint8Array(32), randomBytes(31)]) {
    const conn = await Deno.connect(bb.addr);
    const stream = new FramedStream(conn, { maxFrame: SESSION_MAX_FRAME });
    try {
      await sendHandshake(stream, "request", {
        request: requestLine(SID),
        certificate: new Uint8Array(student.cert.rawData),
        nonce: randomBytes(32),
        share,
        records: "aes-gcm",
      });
      await assert.rejects(
        receiveHandshake(stream, ["sessionKey"], 5000, STEP4_MAX_FRAME),
        (err: Error) => {
          assert.ok(err instanceof PeerRefusedError, err.message);
          assert.equal(
            err.message,
            "Malformed request: the X25519 share is not a valid public key",
          );
          return true;
        },
      );
    } finally {
      stream.close();
    }
  }
  assert.deepEqual(bb.printed, []);
});

Deno.test("the student refuses a Blackboard whose certificate is revoked (its own stapled CRL lists it)", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const id = await identity(student.home);
  const { log, lines } = memoryLog("student");
  {
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    await session.send("before");
  }
  assert.match(lines.join("\n"), /not revoked \(stapled CRL #\d+\)/);
  // The CA revokes Blackboard's certificate (its key was stolen, say): Blackboard's checker
  // fetches the new CRL (refresh 0 in the fixture) and staples it, and the student refuses.
  assert.deepEqual(pki.ca.revoke({ serial: serialOf(bb.cert) }), [serialOf(bb.cert)]);
  await assert.rejects(
    openSession({ blackboard: bb.addr, identity: id, log }),
    (err: Error) => {
      assert.ok(err instanceof CertificateError, err.message);
      assert.match(
        err.message,
        /^Cannot verify certificate blackboard: it has been revoked \(Blackboard's stapled CRL, CRL #\d+\)$/,
      );
      return true;
    },
  );
  assert.deepEqual(bb.printed, [`Message from ${SID}: before`]);
});

Deno.test("the student refuses a stale stapled CRL, and a CRL the root did not sign", async () => {
  await using pki = await TestPki.start();
  await using other = await TestPki.start();
  const student = await pki.student(SID);
  const id = await identity(student.home);
  // A CRL from three hours ago, valid for one hour: past its nextUpdate. A Blackboard that staples
  // it (a stolen key with a CRL from before its revocation, or a stuck checker) is refused.
  const stale = await pki.signCrl(1, {
    now: new Date(Date.now() - 3 * 3_600_000),
    validityMs: 3_600_000,
  });
  const cases: Array<[Crl, RegExp]> = [
    [stale, /^Blackboard's stapled CRL is refused: CRL has expired \(next update was due\)$/],
    [
      await other.ca.crl(),
      /^Blackboard's stapled CRL is refused: CRL('s signature does not match the root| is not issued by the pinned root)$/,
    ],
  ];
  for (const [crl, refusal] of cases) {
    await using bb = await startBlackboard(pki, {
      revocation: { current: () => Promise.resolve(crl) },
    });
    const { log } = memoryLog("student");
    await assert.rejects(openSession({ blackboard: bb.addr, identity: id, log }), (err: Error) => {
      assert.ok(err instanceof CertificateError, err.message);
      assert.match(err.message, refusal);
      return true;
    });
    assert.deepEqual(bb.printed, []);
  }
});

Deno.test("the student refuses a stapled CRL older than the newest it has seen (Blackboard's key stolen, its CRL from before the revocation replayed), across runs", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  const id = await identity(student.home);
  // Both CRLs are current (within their nextUpdate); #8 lists Blackboard's certificate.
  await using bb = await startBlackboard(pki, { revocation: { current: () => pki.ca.crl() } });
  const before = await pki.signCrl(7);
  const after = await pki.signCrl(8, { revoked: [bb.cert] });
  const stapling = async (crl: Crl) =>
    await startBlackboard(pki, { revocation: { current: () => Promise.resolve(crl) } });
  const { log } = memoryLog("student");
  {
    await using revoked = await stapling(after);
    await assert.rejects(
      openSession({ blackboard: revoked.addr, identity: id, log }),
      /it has been revoked \(Blackboard's stapled CRL, CRL #8\)/,
    );
  }
  // The student kept #8 in its home: a later run (a fresh identity, the same home) refuses #7.
  assert.ok(await exists(`${student.home}/${NEWEST_CRL_FILE}`));
  await using rolledBack = await stapling(before);
  await assert.rejects(
    openSession({ blackboard: rolledBack.addr, identity: await identity(student.home), log }),
    (err: Error) => {
      assert.ok(err instanceof CertificateError, err.message);
      assert.match(
        err.message,
        /^Blackboard's stapled CRL is refused: CRL #7 from the server's staple is older than CRL #8, already held: refused \(a rollback\) \(the newest CRL this client has seen is kept in .*\/newest-crl\.der; remove it only if the CA was rebuilt\)$/,
      );
      return true;
    },
  );
  assert.deepEqual(rolledBack.printed, []);
  // A student that has seen no newer CRL (another home) still takes #7: the memory is what refuses.
  const other = await pki.student("1155000999");
  {
    using session = await openSession({
      blackboard: rolledBack.addr,
      identity: await identity(other.home),
      log,
    });
    await session.send("fine");
  }
  assert.deepEqual(rolledBack.printed, ["Message from 1155000999: fine"]);
});

Deno.test("the student checks the name blackboard, not the address it dialled: a certificate for another address only (10.77.9.9) is accepted at 127.0.0.1; the bank's certificate (same root, SAN 127.0.0.1) is refused", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  const id = await identity(student.home);
  // As 'ca issue --server blackboard --ip 10.77.9.9' makes it: SAN blackboard, 10.77.9.9.
  const elsewhere = await pki.serverCert("blackboard", ["10.77.9.9"]);
  const san = elsewhere.cert.getExtension(SubjectAlternativeNameExtension);
  assert.deepEqual(san?.names.items.map((n) => n.value), ["blackboard", "10.77.9.9"]);
  await using bb = await startBlackboard(pki, { serverCert: elsewhere });
  const { log } = memoryLog("student");
  {
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    await session.send("dialled by another address");
  }
  assert.deepEqual(bb.printed, [`Message from ${SID}: dialled by another address`]);

  const bank = await pki.serverCert("bank", ["127.0.0.1"]);
  await using impostor = await startBlackboard(pki, { serverCert: bank });
  await assertRefused(impostor, id, /its CN is 'bank', not 'blackboard'/);
});
