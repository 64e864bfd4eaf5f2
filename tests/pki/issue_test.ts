/**
 * The student certificate encoded directly as DER (lib/pki/issue.ts) against @peculiar/x509's own
 * generator given the same inputs: byte for byte the same certificate (RSA PKCS#1 v1.5 signatures
 * are deterministic), for many serials, keys, IDs and dates, a root of 2048 or 3072 bits, and a
 * validity cut at the root's end. OpenSSL reads the result as the same certificate.
 */

import assert from "node:assert/strict";
import {
  createRoot,
  der,
  generateRsaKeyPair,
  issueCertificate,
  OID,
  randomSerial,
  RSA_SIGN,
  x509,
} from "../../lib/pki/mod.ts";
import { toBytes } from "../../lib/crypto/mod.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

async function generatorCertificate(o: {
  serialNumber: string;
  sid: string;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  issuer: x509.X509Certificate;
  issuerKey: CryptoKey;
}): Promise<Uint8Array> {
  const publicKey = new x509.PublicKey(toBytes(o.spki));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: o.serialNumber,
    subject: `CN=${o.sid}`,
    issuer: o.issuer.subjectName,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    signingAlgorithm: RSA_SIGN,
    publicKey,
    signingKey: o.issuerKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([OID.clientAuth], false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(o.issuer.publicKey),
    ],
  });
  return der(cert);
}

Deno.test("student certificates: the direct DER encoding is the generator's certificate, byte for byte", async () => {
  for (const bits of [2048, 3072]) {
    // RSA-2048 keys from the tests' pool; the 3072-bit ones made here.
    const root = await createRoot(bits === 2048 ? { keys: await testKeyPair() } : { bits });
    for (let i = 0; i < 6; i++) {
      const keys = i % 3 === 2 ? await generateRsaKeyPair(3072) : await testKeyPair();
      const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
      const sid = String(1155000000 + Math.floor(Math.random() * 999999)).padStart(10, "0");
      // Now, a date in the GeneralizedTime years (from 2050), and a validity past the root's end.
      const now = [new Date(), new Date("2051-03-04T05:06:07.891Z"), new Date()][i % 3]!;
      const validityDays = i % 3 === 2 ? 365 * 40 : 365;
      const serialNumber = randomSerial();
      const direct = await issueCertificate({
        publicKey: spki,
        profile: { kind: "student", sid },
        issuer: root.cert,
        issuerKey: root.keys.privateKey,
        now,
        validityDays,
        serialNumber,
      });
      const expected = await generatorCertificate({
        serialNumber,
        sid,
        notBefore: direct.notBefore,
        notAfter: direct.notAfter,
        spki,
        issuer: root.cert,
        issuerKey: root.keys.privateKey,
      });
      assert.deepEqual(der(direct), expected, `root ${bits} bits, case ${i}`);
      assert.equal(direct.notBefore.getTime(), Math.floor((now.getTime() - 60_000) / 1000) * 1000);
      if (validityDays > 365) assert.equal(direct.notAfter.getTime(), root.cert.notAfter.getTime());
    }
  }
});

Deno.test("student certificates: OpenSSL reads the direct encoding and verifies it with the root", async () => {
  const root = await createRoot({ keys: await testKeyPair() });
  const keys = await testKeyPair();
  const cert = await issueCertificate({
    publicKey: new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
    profile: { kind: "student", sid: "1155000777" },
    issuer: root.cert,
    issuerKey: root.keys.privateKey,
  });
  const dir = await Deno.makeTempDir({ prefix: "lab-issue-" });
  try {
    await Deno.writeTextFile(`${dir}/root.pem`, root.cert.toString("pem"));
    await Deno.writeTextFile(`${dir}/leaf.pem`, cert.toString("pem"));
    const out = await new Deno.Command("openssl", {
      args: ["verify", "-purpose", "sslclient", "-CAfile", `${dir}/root.pem`, `${dir}/leaf.pem`],
    }).output();
    assert.equal(new TextDecoder().decode(out.stdout).trim(), `${dir}/leaf.pem: OK`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("student certificates: serials with a high bit, leading zeros or an odd length encode as the generator does; an empty or zero serial is refused", async () => {
  const root = await createRoot({ keys: await testKeyPair() });
  const keys = await testKeyPair();
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const base = {
    publicKey: spki,
    profile: { kind: "student" as const, sid: "1155000888" },
    issuer: root.cert,
    issuerKey: root.keys.privateKey,
  };
  for (const serialNumber of ["ff01", "00ff", "0080", "abc", "7f", "01"]) {
    const direct = await issueCertificate({ ...base, serialNumber });
    const expected = await generatorCertificate({
      serialNumber,
      sid: base.profile.sid,
      notBefore: direct.notBefore,
      notAfter: direct.notAfter,
      spki,
      issuer: root.cert,
      issuerKey: root.keys.privateKey,
    });
    assert.deepEqual(der(direct), expected, `serial ${serialNumber}`);
  }
  for (const serialNumber of ["", "00", "0000", "xyz"]) {
    await assert.rejects(
      () => issueCertificate({ ...base, serialNumber }),
      /A serial number must be positive hex/,
      `serial '${serialNumber}'`,
    );
  }
});
