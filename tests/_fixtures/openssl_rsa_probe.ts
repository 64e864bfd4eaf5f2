/**
 * Run with `--allow-ffi --allow-read`: loads OpenSSL for RSA as an actor does at start
 * (`startOpenSslRsa`), then signs and verifies with it, and prints JSON for
 * tests/crypto/openssl_rsa_test.ts: each result beside WebCrypto's, and how many signatures
 * OpenSSL made and checked (so that a pass cannot come from the WebCrypto fallback).
 */

import { openSslRsaCounts, toBytes } from "../../lib/crypto/mod.ts";
import { startOpenSslRsa } from "../../lib/runtime/mod.ts";
import {
  checkStudentCsr,
  createCrl,
  createCsr,
  createRoot,
  der,
  exportPrivateKeyPem,
  generateRsaKeyPair,
  importSigningKey,
  issueCertificate,
  parseCertificate,
  parseCrl,
  parseCsr,
  RSA_SIGN,
  signRsa,
  verifyCertificate,
  verifyCrl,
  verifyRsa,
  x509,
} from "../../lib/pki/mod.ts";
import { testKeyPair } from "./keys.ts";

const outcome = startOpenSslRsa();
const ffiAfter = Deno.permissions.querySync({ name: "ffi" }).state;
let dlopenAfter = "opened";
try {
  Deno.dlopen("libc.so.6", {});
} catch (err) {
  dlopenAfter = err instanceof Error ? err.name : String(err);
}

const equal = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);
const flip = (bytes: Uint8Array, at: number) => {
  const copy = new Uint8Array(bytes);
  copy[at]! ^= 0x01;
  return copy;
};
/** "accepted", or the reason it was refused. */
const outcomeOf = async (check: () => Promise<unknown>) => {
  try {
    await check();
    return "accepted";
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
};
const data = new TextEncoder().encode("STEP 5: the student's signature over the transcript");

const student = await testKeyPair();
const root3072 = await generateRsaKeyPair(3072);
const { cert: root } = await createRoot({ keys: root3072 });
const rootPem = await exportPrivateKeyPem(root3072.privateKey);

// Signatures: OpenSSL's bytes and WebCrypto's, for an imported key and an extractable one.
const signatures: Record<string, boolean> = {};
const pems: [string, string][] = [
  ["rsa2048", await exportPrivateKeyPem(student.privateKey)],
  ["rsa3072", rootPem],
];
for (const [name, pem] of pems) {
  const key = await importSigningKey(pem);
  const web = new Uint8Array(await crypto.subtle.sign(RSA_SIGN, key, toBytes(data)));
  signatures[`${name} imported`] = equal(await signRsa(key, data), web);
}
signatures["rsa3072 generated"] = equal(
  await signRsa(root3072.privateKey, data),
  new Uint8Array(await crypto.subtle.sign(RSA_SIGN, root3072.privateKey, toBytes(data))),
);
const signed = openSslRsaCounts.signed;

// verifyRsa with the root's certificate.
const sig = await signRsa(root3072.privateKey, data);
const verify = {
  valid: await verifyRsa(root, sig, data),
  alteredData: await verifyRsa(root, sig, flip(data, 3)),
  alteredSignature: await verifyRsa(root, flip(sig, 100), data),
  shortSignature: await verifyRsa(root, sig.subarray(0, 200), data),
  emptySignature: await verifyRsa(root, new Uint8Array(0), data),
  otherKey: await verifyRsa(root, await signRsa(student.privateKey, data), data),
};

// Certificates, CRLs and CSRs (signedBy): as issued, and with one byte of what was signed altered.
const spki = new Uint8Array(await crypto.subtle.exportKey("spki", student.publicKey));
const cert = await issueCertificate({
  publicKey: spki,
  profile: { kind: "student", sid: "1155000001" },
  issuer: root,
  issuerKey: root3072.privateKey,
});
const certDer = der(cert);
const verifyOptions = { root, purpose: "clientAuth" as const, expectedCommonName: "1155000001" };
// The serial's last byte (after the version, [0] 02 01 02): still a well-formed certificate,
// no longer what the root signed.
const serialAt = certDer.indexOf(0x02, 13) + 1;
const serialEnd = serialAt + 1 + certDer[serialAt]!;
const crl = await createCrl({
  issuer: root,
  issuerKey: root3072.privateKey,
  entries: [],
  crlNumber: 7,
});
const crlDer = der(crl);
// The last digit of thisUpdate's seconds (UTCTime YYMMDDHHMMSSZ): one second off, still a time.
const thisUpdateSecond = crlDer.indexOf(0x17) + 2 + 11;
const csr = await createCsr(student, "1155000001");
const csrDer = der(csr);
// The last digit of the CN: another 10-digit ID, not the one the key signed.
const cnLastDigit = new TextDecoder("latin1").decode(csrDer).indexOf("1155000001") + 9;
// A certificate that the root signed with SHA-384: OpenSSL here checks SHA-256 only, so the
// library checks it (and must accept it).
const sha384Key = await crypto.subtle.importKey(
  "pkcs8",
  await crypto.subtle.exportKey("pkcs8", root3072.privateKey),
  { name: "RSASSA-PKCS1-v1_5", hash: "SHA-384" },
  false,
  ["sign"],
);
const sha384Cert = await x509.X509CertificateGenerator.create({
  serialNumber: "0a1b2c3d4e5f6071",
  subject: "CN=1155000001",
  issuer: root.subject,
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 86_400_000),
  signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-384" },
  publicKey: student.publicKey,
  signingKey: sha384Key,
  extensions: [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(["1.3.6.1.5.5.7.3.2"], false),
  ],
});
const checkedBefore = openSslRsaCounts.checked;
const objects = {
  cert: await outcomeOf(() => verifyCertificate(parseCertificate(certDer), verifyOptions)),
  certAltered: await outcomeOf(() =>
    verifyCertificate(parseCertificate(flip(certDer, serialEnd - 1)), verifyOptions)
  ),
  crl: await outcomeOf(() => verifyCrl(parseCrl(crlDer), root)),
  crlAltered: await outcomeOf(() => verifyCrl(parseCrl(flip(crlDer, thisUpdateSecond)), root)),
  csr: await outcomeOf(() => checkStudentCsr(parseCsr(csrDer))),
  csrAltered: await outcomeOf(() => checkStudentCsr(parseCsr(flip(csrDer, cnLastDigit)))),
  sha384Cert: await outcomeOf(() => verifyCertificate(sha384Cert, verifyOptions)),
};

console.log(JSON.stringify({
  outcome,
  ffiAfter,
  dlopenAfter,
  signatures,
  signed,
  verify,
  objects,
  checkedByObjects: openSslRsaCounts.checked - checkedBefore,
}));
