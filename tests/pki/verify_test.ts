/**
 * The verification rules of lib/pki, one by one, on certificates built here with @peculiar/x509 and
 * the lab's own helpers (createRoot, issueCertificate, createCrl): signature by the pinned root,
 * validity, CA:TRUE refused on an end-entity certificate, unknown critical extensions, key usage and
 * extended key usage, names, revocation, CRLs, and the RSA key rules.
 */

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import {
  type Certificate,
  CertificateError,
  checkStudentCsr,
  createCrl,
  createCsr,
  createRoot,
  generateRsaKeyPair,
  issueCertificate,
  OID,
  RSA_SIGN,
  verifyCertificate,
  verifyCrl,
  type VerifyOptions,
  x509,
} from "../../lib/pki/mod.ts";
import { testKeyPair } from "../_fixtures/keys.ts";
import { leafCertificate, studentProfile } from "../_fixtures/leaf.ts";

const DAY_MS = 86_400_000;
const SID = "1155000401";

// One root and one leaf key for the whole file (2048 bits keeps it quick).
const ca = await createRoot({ keys: await testKeyPair() });
const leafKeys = await testKeyPair();
const leafSpki = new Uint8Array(await crypto.subtle.exportKey("spki", leafKeys.publicKey));

/** The CA's student profile, as `issueCertificate` writes it. */
async function studentExtensions(): Promise<x509.Extension[]> {
  return [
    ...studentProfile(),
    await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
  ];
}

interface LeafOptions {
  extensions?: x509.Extension[];
  notBefore?: Date;
  notAfter?: Date;
  /** SubjectPublicKeyInfo DER (default the shared leaf key). */
  publicKey?: Uint8Array;
  issuer?: string | x509.Name;
  signingKey?: CryptoKey;
  subject?: string;
}

/** A leaf built directly with @peculiar/x509, signed by the root unless told otherwise. */
async function leaf(options: LeafOptions = {}): Promise<Certificate> {
  return await leafCertificate({
    ...options,
    ca,
    subject: options.subject ?? `CN=${SID}`,
    publicKey: options.publicKey ?? leafSpki,
    extensions: options.extensions ?? await studentExtensions(),
  });
}

const asStudent: VerifyOptions = {
  root: ca.cert,
  purpose: "clientAuth",
  expectedCommonName: SID,
  keyEncipherment: true,
};

async function refused(
  cert: Certificate,
  reason: RegExp,
  options: Partial<VerifyOptions> = {},
): Promise<void> {
  await assert.rejects(verifyCertificate(cert, { ...asStudent, ...options }), (err: unknown) => {
    assert.ok(err instanceof CertificateError, String(err));
    assert.match(err.message, /^Cannot verify certificate .*: /);
    assert.match(err.message, reason);
    return true;
  });
}

Deno.test("verify: the CA's own profiles verify (student as clientAuth, server as serverAuth by name)", async () => {
  const student = await issueCertificate({
    publicKey: leafSpki,
    profile: { kind: "student", sid: SID },
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
  });
  await verifyCertificate(student, asStudent);
  await verifyCertificate(await leaf(), asStudent);
  const server = await issueCertificate({
    publicKey: leafSpki,
    profile: { kind: "server", commonName: "bank", dnsNames: ["bank"], ipAddresses: ["127.0.0.1"] },
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
  });
  await verifyCertificate(server, { root: ca.cert, purpose: "serverAuth", expectedHost: "bank" });
  await verifyCertificate(server, {
    root: ca.cert,
    purpose: "serverAuth",
    expectedHost: "127.0.0.1",
  });
});

Deno.test("verify: the signature must be the pinned root's", async () => {
  // Same issuer name, another key (a rogue CA that copied the root's name).
  const rogue = await createRoot({ keys: await testKeyPair() });
  assert.equal(rogue.cert.subject, ca.cert.subject);
  await refused(
    await leaf({ signingKey: rogue.keys.privateKey }),
    /signature does not match the root$/,
  );
  // Another issuer name altogether.
  await refused(
    await leaf({ issuer: "CN=Trudy Root CA", signingKey: rogue.keys.privateKey }),
    /it is not issued by the pinned root$/,
  );
  // One bit of the signature flipped.
  const good = new Uint8Array((await leaf()).rawData);
  good[good.length - 1]! ^= 0x01;
  await refused(new x509.X509Certificate(good), /signature does not match the root$/);
});

Deno.test("verify: validity: not before, not after, and the root's own period", async () => {
  const now = Date.now();
  await refused(
    await leaf({ notBefore: new Date(now + DAY_MS), notAfter: new Date(now + 2 * DAY_MS) }),
    /not valid before \d{4}-/,
  );
  await refused(
    await leaf({ notBefore: new Date(now - 3 * DAY_MS), notAfter: new Date(now - DAY_MS) }),
    /expired on \d{4}-/,
  );
  // A leaf that is valid now, checked at a time when the root has expired.
  await refused(await leaf(), /the root is outside its validity period$/, {
    now: new Date(ca.cert.notAfter.getTime() + DAY_MS),
  });
});

Deno.test("verify: CA:TRUE is refused on an end-entity certificate (the root itself included)", async () => {
  const [, ...rest] = await studentExtensions();
  await refused(
    await leaf({
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true), ...rest],
    }),
    /it is a CA certificate, not an end-entity certificate$/,
  );
  await refused(ca.cert, /it is a CA certificate/, { expectedCommonName: "CUHK Root CA" });
});

Deno.test("verify: an unknown critical extension is refused; unknown and non-critical is ignored", async () => {
  const unknown = "1.3.6.1.4.1.99999.1";
  const asn1Null = Uint8Array.of(0x05, 0x00);
  await refused(
    await leaf({
      extensions: [...await studentExtensions(), new x509.Extension(unknown, true, asn1Null)],
    }),
    new RegExp(`unknown critical extension ${unknown.replaceAll(".", "\\.")}$`),
  );
  await verifyCertificate(
    await leaf({
      extensions: [...await studentExtensions(), new x509.Extension(unknown, false, asn1Null)],
    }),
    asStudent,
  );
});

Deno.test("verify: key usage and extended key usage", async () => {
  const [bc, , eku, ski, aki] = await studentExtensions();
  const ku = (flags: number) => new x509.KeyUsagesExtension(flags, true);
  const F = x509.KeyUsageFlags;
  await refused(await leaf({ extensions: [bc!, eku!, ski!, aki!] }), /no key usage extension$/);
  await refused(
    await leaf({ extensions: [bc!, ku(F.keyEncipherment), eku!, ski!, aki!] }),
    /key usage does not allow digitalSignature$/,
  );
  const signOnly = await leaf({ extensions: [bc!, ku(F.digitalSignature), eku!, ski!, aki!] });
  await refused(signOnly, /key usage does not allow keyEncipherment$/);
  // Blackboard needs keyEncipherment (RSA-OAEP to cert 2); Bob does not.
  await verifyCertificate(signOnly, { ...asStudent, keyEncipherment: false });

  const ku2 = ku(F.digitalSignature | F.keyEncipherment);
  const serverEku = new x509.ExtendedKeyUsageExtension([OID.serverAuth], false);
  await refused(
    await leaf({ extensions: [bc!, ku2, serverEku, ski!, aki!] }),
    /extended key usage does not allow clientAuth$/,
  );
  await refused(
    await leaf({ extensions: [bc!, ku2, ski!, aki!] }),
    /extended key usage does not allow clientAuth$/,
  );
  await refused(await leaf(), /extended key usage does not allow serverAuth$/, {
    purpose: "serverAuth",
  });
});

Deno.test("verify: the expected CN and the expected host name", async () => {
  await refused(await leaf(), /its CN is '1155000401', not '1155000402'$/, {
    expectedCommonName: "1155000402",
  });
  const server = await issueCertificate({
    publicKey: leafSpki,
    profile: { kind: "server", commonName: "chat", dnsNames: ["chat"], ipAddresses: [] },
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
  });
  await assert.rejects(
    verifyCertificate(server, { root: ca.cert, purpose: "serverAuth", expectedHost: "bank" }),
    /it is not issued for bank \(SAN: chat\)$/,
  );
});

Deno.test("verify: a serial listed in the root's CRL is refused", async () => {
  const cert = await leaf();
  const other = await leaf();
  const crl = await createCrl({
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
    entries: [{ serialNumber: cert.serialNumber, revocationDate: new Date() }],
    crlNumber: 7,
  });
  await verifyCrl(crl, ca.cert);
  await refused(cert, /it has been revoked$/, { crl });
  await verifyCertificate(other, { ...asStudent, crl });
});

Deno.test("verifyCrl: the root's signature, and the CRL's own period", async () => {
  const rogue = await createRoot({ keys: await testKeyPair() });
  const forged = await createCrl({
    issuer: rogue.cert,
    issuerKey: rogue.keys.privateKey,
    entries: [],
    crlNumber: 99,
  });
  await assert.rejects(verifyCrl(forged, ca.cert), /CRL's signature does not match the root/);
  const crl = await createCrl({
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
    entries: [],
    crlNumber: 1,
    validityMs: 60_000,
  });
  await verifyCrl(crl, ca.cert);
  await assert.rejects(
    verifyCrl(crl, ca.cert, new Date(Date.now() + 120_000)),
    /CRL has expired \(next update was due\)/,
  );
  await assert.rejects(
    verifyCrl(crl, ca.cert, new Date(Date.now() - 60_000)),
    /CRL is not valid yet/,
  );
});

Deno.test("the CA's CSR check: RSA of 2048 bits or more, exponent 65537", async () => {
  const e3 = await crypto.subtle.generateKey(
    { ...RSA_SIGN, modulusLength: 2048, publicExponent: Uint8Array.of(3) },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  await assert.rejects(
    checkStudentCsr(await createCsr(e3, SID)),
    /CSR's RSA public exponent must be 65537/,
  );
  await assert.rejects(
    checkStudentCsr(await createCsr(await generateRsaKeyPair(1024), SID)),
    /CSR's RSA key has 1024 bits, at least 2048 are required/,
  );
  const ok = await checkStudentCsr(await createCsr(leafKeys, SID));
  assert.equal(ok.sid, SID);
});

Deno.test("verify: a leaf whose key is not RSA, has exponent 3, 1024 bits or over 4096 is refused", async () => {
  // The CA checks the key of every CSR (above), but a certificate the root signed for a weak key
  // by any other path (an older CA, issueCertificate called directly) must not pass either.
  const spki = (key: { export(o: { type: "spki"; format: "der" }): Uint8Array }) =>
    new Uint8Array(key.export({ type: "spki", format: "der" }));
  const e3 = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 });
  await refused(
    await leaf({ publicKey: spki(e3.publicKey) }),
    /its RSA public exponent must be 65537$/,
  );
  const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
  await refused(
    await leaf({ publicKey: spki(small.publicKey) }),
    /its RSA key has 1024 bits, at least 2048 are required$/,
  );
  const large = generateKeyPairSync("rsa", { modulusLength: 4160 });
  await refused(
    await leaf({ publicKey: spki(large.publicKey) }),
    /its RSA key has 4160 bits: RSA keys above 4096 bits are not supported/,
  );
  const ed = generateKeyPairSync("ed25519");
  await refused(
    await leaf({ publicKey: spki(ed.publicKey) }),
    /its key must be RSA, got algorithm 1\.3\.101\.112$/,
  );
  // The same profile with a 2048-bit, e = 65537 key verifies (the refusals are about the key).
  await verifyCertificate(await leaf(), asStudent);
});
