/**
 * The CA over real sockets: hostile enrolments are refused with a clear error, nothing is recorded,
 * and the CA goes on serving the next client.
 */

import assert from "node:assert/strict";
import {
  caProtocol,
  CertificateAuthority,
  codeKey,
  enrolmentBinding,
  fetchCrl,
  requestCertificate,
  serialOf,
  serveCa,
} from "../../lib/ca/mod.ts";
import { encodeFrame, PeerRefusedError } from "../../lib/wire/mod.ts";
import {
  createCsr,
  crlNumber,
  der,
  generateRsaKeyPair,
  parseCertificate,
  RSA_SIGN,
  verifyCertificate,
  x509,
} from "../../lib/pki/mod.ts";
import { memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const SID = "1155000001";

/** Sends raw bytes to the CA and returns the decoded reply (or null when it just closed). */
async function rawExchange(port: number, bytes: Uint8Array, closeWrite = false) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes);
    if (closeWrite) await conn.closeWrite();
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
    let off = 0;
    for (const c of chunks) {
      all.set(c, off);
      off += c.length;
    }
    if (all.length === 0) return null;
    return caProtocol.decode(all.subarray(4));
  } finally {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

async function spkiOf(keys: CryptoKeyPair): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
}

/** Enrols `sid` over the network with a fresh code; the proof that the CA still serves. */
async function enrolOk(pki: TestPki, sid: string, keys?: CryptoKeyPair) {
  const k = keys ?? await testKeyPair();
  const csr = await createCsr(k, sid);
  const { code } = pki.ca.createCode(sid);
  return await requestCertificate({
    ca: { hostname: "127.0.0.1", port: pki.server.port },
    sid,
    code,
    csr: der(csr),
    publicKey: await spkiOf(k),
    root: pki.root,
  });
}

/** What the student sends for `code`: its binding to this ID and CSR ("" binds nothing). */
async function bind(code: string, sid: string, csr: Uint8Array): Promise<Uint8Array> {
  return code === "" ? new Uint8Array(0) : await enrolmentBinding(await codeKey(code), sid, csr);
}

async function refused(pki: TestPki, sid: string, csr: Uint8Array, code: string, why: RegExp) {
  const before = pki.ca.ledger().length;
  const reply = await rawExchange(
    pki.server.port,
    encodeFrame(caProtocol.encode("csr", { sid, binding: await bind(code, sid, csr), csr })),
  );
  assert.ok(reply, "the CA answers with a refusal");
  assert.equal(reply.type, "error");
  assert.match((reply as { reason: string }).reason, why);
  assert.equal(pki.ca.ledger().length, before, "nothing recorded");
}

Deno.test("CA refuses hostile CSRs and codes, records nothing, and serves the next client", async (t) => {
  await using pki = await TestPki.start();
  const keys = await testKeyPair();
  const goodCsr = der(await createCsr(keys, SID));

  await t.step("IDs of 9 or 11 digits, or with letters", async () => {
    for (const sid of ["115500000", "11550000011", "115500000a"]) {
      const csr = der(await createCsr(keys, sid));
      const { code } = pki.ca.createCode(SID);
      await refused(pki, sid, csr, code, /Student ID must be exactly 10 digits/);
    }
  });

  await t.step("a CSR with two CNs", async () => {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: [{ "2.5.4.3": [SID] }, { "2.5.4.3": ["1155000002"] }],
      keys,
      signingAlgorithm: RSA_SIGN,
    });
    await refused(pki, SID, der(csr), pki.ca.createCode(SID).code, /exactly one CN, it names 2/);
  });

  await t.step("an RSA key under 2048 bits", async () => {
    const small = await generateRsaKeyPair(1024);
    const csr = der(await createCsr(small, SID));
    await refused(pki, SID, csr, pki.ca.createCode(SID).code, /1024 bits, at least 2048/);
  });

  await t.step("a CSR whose signature does not match its key", async () => {
    const csr = goodCsr.slice();
    csr[csr.length - 1]! ^= 0x01;
    await refused(pki, SID, csr, pki.ca.createCode(SID).code, /signature does not match its key/);
    // Also: a CSR re-signed by another key with this one's public key inside.
    const other = await testKeyPair();
    const forged = await x509.Pkcs10CertificateRequestGenerator.create({
      name: `CN=${SID}`,
      keys: { publicKey: keys.publicKey, privateKey: other.privateKey },
      signingAlgorithm: RSA_SIGN,
    });
    await refused(pki, SID, der(forged), pki.ca.createCode(SID).code, /no proof of possession/);
  });

  await t.step("a CSR that is not a CSR, and a CN that differs from the requested ID", async () => {
    await refused(pki, SID, Uint8Array.of(1, 2, 3), pki.ca.createCode(SID).code, /Cannot read CSR/);
    const other = der(await createCsr(keys, "1155000002"));
    await refused(
      pki,
      SID,
      other,
      pki.ca.createCode(SID).code,
      /CN 1155000002 does not match the requested ID/,
    );
  });

  await t.step("a wrong, a used and an expired enrolment code", async () => {
    await refused(
      pki,
      SID,
      goodCsr,
      "00000000-00000000-00000000-00000000",
      /not valid for 1155000001/,
    );
    const forOther = pki.ca.createCode("1155000009").code;
    await refused(pki, SID, goodCsr, forOther, /not valid for 1155000001/);
    const expired = pki.ca.createCode(SID, 1000, Date.now() - 10_000).code;
    await refused(pki, SID, goodCsr, expired, /expired/);
    const once = pki.ca.createCode(SID).code;
    const cert = await requestCertificate({
      ca: { hostname: "127.0.0.1", port: pki.server.port },
      sid: SID,
      code: once,
      csr: goodCsr,
      publicKey: await spkiOf(keys),
      root: pki.root,
    });
    assert.equal(cert.subject, `CN=${SID}`);
    // The same request again gets the same certificate; a CSR for another key is a second use.
    const again = await requestCertificate({
      ca: { hostname: "127.0.0.1", port: pki.server.port },
      sid: SID,
      code: once,
      csr: goodCsr,
      publicKey: await spkiOf(keys),
      root: pki.root,
    });
    assert.equal(again.serialNumber, cert.serialNumber);
    const otherKeys = await testKeyPair();
    await refused(pki, SID, der(await createCsr(otherKeys, SID)), once, /already been used/);
  });

  await t.step(
    "a CSR asking for CA:TRUE gets CA:FALSE and only the profile's extensions",
    async () => {
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: `CN=${SID}`,
        keys,
        signingAlgorithm: RSA_SIGN,
        extensions: [
          new x509.BasicConstraintsExtension(true, 5, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
          new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "evil.example" }]),
        ],
      });
      const { code } = pki.ca.createCode(SID);
      const reply = await rawExchange(
        pki.server.port,
        encodeFrame(
          caProtocol.encode("csr", {
            sid: SID,
            binding: await bind(code, SID, der(csr)),
            csr: der(csr),
          }),
        ),
      );
      assert.equal(reply?.type, "certificate");
      const cert = parseCertificate((reply as { certificate: Uint8Array }).certificate);
      assert.equal(cert.getExtension(x509.BasicConstraintsExtension)?.ca, false);
      assert.equal(
        cert.getExtension(x509.KeyUsagesExtension)?.usages,
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      );
      assert.equal(cert.getExtension(x509.SubjectAlternativeNameExtension), null);
      await verifyCertificate(cert, {
        root: pki.root,
        purpose: "clientAuth",
        expectedCommonName: SID,
      });
    },
  );

  await t.step(
    "a frame longer than the maximum, a truncated frame, and bytes that are not a message",
    async () => {
      const before = pki.ca.ledger().length;
      const header = new Uint8Array(4);
      new DataView(header.buffer).setUint32(0, 1 << 20);
      const big = await rawExchange(pki.server.port, header);
      assert.match((big as { reason: string }).reason, /exceeds the limit of 16384 bytes/);

      const truncated = encodeFrame(
        caProtocol.encode("csr", { sid: SID, binding: new Uint8Array(32), csr: goodCsr }),
      )
        .subarray(0, 50);
      const cut = await rawExchange(pki.server.port, truncated, true);
      assert.match((cut as { reason: string }).reason, /truncated/);

      const junk = await rawExchange(pki.server.port, encodeFrame(Uint8Array.of(0x55, 1, 2)));
      assert.match((junk as { reason: string }).reason, /Unknown CUHK message type 0x55/);

      const wrongType = await rawExchange(
        pki.server.port,
        encodeFrame(caProtocol.encode("crl", { crl: new Uint8Array() })),
      );
      assert.match((wrongType as { reason: string }).reason, /Expected csr or crlRequest, got crl/);
      assert.equal(pki.ca.ledger().length, before);
    },
  );

  await t.step("the CA still serves the next client", async () => {
    const cert = await enrolOk(pki, "1155000003");
    assert.equal(cert.subject, "CN=1155000003");
  });
});

Deno.test("a client that connects and sends nothing is dropped at the deadline; others are served meanwhile", async () => {
  await using dir = await tempDir();
  const ca = await CertificateAuthority.open(`${dir.path}/ca`, {
    rootKeys: await testKeyPair(),
  });
  const { log, lines } = memoryLog("CUHK");
  const server = serveCa({ ca, log, port: 0, readTimeoutMs: 400 });
  try {
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    // While the silent client holds its connection, another enrols.
    const keys = await testKeyPair();
    const { code } = ca.createCode(SID);
    const cert = await requestCertificate({
      ca: { hostname: "127.0.0.1", port: server.port },
      sid: SID,
      code,
      csr: der(await createCsr(keys, SID)),
      publicKey: await spkiOf(keys),
      root: ca.root,
    });
    assert.equal(cert.subject, `CN=${SID}`);
    const started = Date.now();
    const n = await silent.read(new Uint8Array(16));
    assert.equal(n, null, "the CA closes the silent connection");
    assert.ok(Date.now() - started < 5000);
    assert.ok(
      lines.some((l) => /dropped .*No read progress within 400 ms/.test(l)),
      lines.join("\n"),
    );
    silent.close();
  } finally {
    await server.close();
    ca.close();
  }
});

Deno.test("the same code used by two clients at once yields exactly one certificate", async () => {
  await using pki = await TestPki.start();
  const { code } = pki.ca.createCode(SID);
  const attempts = await Promise.allSettled([0, 1, 2].map(async () => {
    const keys = await testKeyPair();
    return await requestCertificate({
      ca: { hostname: "127.0.0.1", port: pki.server.port },
      sid: SID,
      code,
      csr: der(await createCsr(keys, SID)),
      publicKey: await spkiOf(keys),
      root: pki.root,
    });
  }));
  assert.equal(attempts.filter((a) => a.status === "fulfilled").length, 1);
  for (const a of attempts) {
    if (a.status === "rejected") {
      assert.ok(a.reason instanceof PeerRefusedError);
      assert.match(a.reason.message, /already been used/);
    }
  }
  assert.equal(pki.ca.ledger().length, 1);
});

Deno.test("50 students enrolling at once get distinct, valid certificates, each once in the ledger", async () => {
  // All 50 come from 127.0.0.1: more than the default per-address cap lets in at once.
  await using pki = await TestPki.start({ maxPerAddress: 64 });
  const sids = Array.from({ length: 50 }, (_, i) => `11550${String(i).padStart(5, "0")}`);
  // Keys are prepared ahead: RSA key generation is the slow part, not what is tested here.
  const keys = await Promise.all(sids.map(() => testKeyPair()));
  const certs = await Promise.all(sids.map((sid, i) => enrolOk(pki, sid, keys[i])));
  const serials = new Set(certs.map(serialOf));
  assert.equal(serials.size, 50);
  for (const [i, cert] of certs.entries()) {
    await verifyCertificate(cert, {
      root: pki.root,
      purpose: "clientAuth",
      expectedCommonName: sids[i]!,
    });
    assert.ok(BigInt("0x" + serialOf(cert)) >= 2n ** 64n, "serials carry at least 64 random bits");
  }
  const ledger = pki.ca.ledger();
  assert.equal(ledger.length, 50);
  assert.deepEqual(new Set(ledger.map((r) => r.serial)), serials);
  assert.deepEqual(ledger.map((r) => r.sid).sort(), sids);
});

Deno.test("a restarted CA keeps its root and its ledger; a half-present root is refused", async () => {
  await using dir = await tempDir();
  const first = await CertificateAuthority.open(`${dir.path}/ca`, {
    rootKeys: await testKeyPair(),
  });
  const rootPem = first.rootPem;
  const keys = await testKeyPair();
  const { code } = first.createCode(SID);
  const cert = await first.enrol({ sid: SID, code, csr: der(await createCsr(keys, SID)) });
  first.close();
  assert.equal((await Deno.stat(`${dir.path}/ca/cuhk.key`)).mode! & 0o777, 0o600);

  const { log, lines } = memoryLog("CUHK");
  const second = await CertificateAuthority.open(`${dir.path}/ca`, { log });
  assert.equal(second.rootPem, rootPem);
  assert.match(lines.join("\n"), /STEP 0 reusing root/);
  assert.deepEqual(second.ledger().map((r) => r.serial), [serialOf(cert)]);
  await verifyCertificate(cert, { root: second.root, purpose: "clientAuth" });
  second.close();

  await Deno.remove(`${dir.path}/ca/cuhk.cer`);
  await assert.rejects(
    CertificateAuthority.open(`${dir.path}/ca`),
    /Found .*cuhk.key but not .*cuhk.cer: refusing to make a new root/,
  );
});

Deno.test("revocation: the CA's served CRL lists a revoked certificate and verification refuses it", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  const ca = { hostname: "127.0.0.1", port: pki.server.port };
  const crl0 = await fetchCrl(ca, pki.root);
  await verifyCertificate(student.cert, { root: pki.root, purpose: "clientAuth", crl: crl0 });
  assert.deepEqual(pki.ca.revoke({ sid: SID }), [serialOf(student.cert)]);
  const crl1 = await fetchCrl(ca, pki.root);
  await assert.rejects(
    verifyCertificate(student.cert, { root: pki.root, purpose: "clientAuth", crl: crl1 }),
    /Cannot verify certificate 1155000001: it has been revoked/,
  );
  assert.deepEqual(pki.ca.revoke({ sid: SID }), [], "revoking twice changes nothing");
});

Deno.test("CRLs asked for at once share one signing: the CRL number the CA serves never goes back", async () => {
  // Found by tests/chaos/kill_test.ts: two CRL requests right after a start each signed one
  // (numbers n and n+1); when n's signature finished last, the CA cached it and went on serving
  // CRL n after it had served n+1.
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  const burst = () => Promise.all(Array.from({ length: 8 }, () => pki.ca.crl()));
  const first = await burst();
  assert.equal(new Set(first.map((c) => crlNumber(c))).size, 1, "one signing for the burst");
  pki.ca.revoke({ sid: SID });
  const second = await burst();
  const numbers = new Set(second.map((c) => crlNumber(c)));
  assert.deepEqual([...numbers], [crlNumber(first[0]!)! + 1]);
  assert.ok(second.every((c) => c.entries.length === 1));
  assert.equal(second[0]!.entries[0]!.serialNumber.toLowerCase(), serialOf(student.cert));
  assert.equal(crlNumber(await pki.ca.crl()), crlNumber(second[0]!));
});
