/**
 * lib/pki's checks that tests/pki/verify_test.ts does not reach one at a time: the CA's CSR rules
 * (one CN, a 10-digit CN, an RSA key, the CSR's own signature) and a CRL from a CA of another
 * name. Each drives input that only that check refuses and asserts its reason, so that
 * `deno task mutate` kills the check's mutant.
 */

import assert from "node:assert/strict";
import {
  CertificateError,
  checkStudentCsr,
  createCrl,
  createCsr,
  createRoot,
  CsrError,
  der,
  parseCsr,
  RSA_SIGN,
  verifyCrl,
  x509,
} from "../../lib/pki/mod.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const SID = "1155000801";
const keys = await testKeyPair();

async function csrRefused(csr: x509.Pkcs10CertificateRequest, message: string): Promise<void> {
  await assert.rejects(checkStudentCsr(csr), (err: unknown) => {
    assert.ok(err instanceof CsrError, `not a CsrError: ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("CSR: a CN of 9 digits is refused, though the CSR is otherwise valid", async () => {
  const short = SID.slice(1);
  await csrRefused(
    await createCsr(keys, short),
    `CSR's CN must be a 10-digit student ID, got '${short}'`,
  );
  await csrRefused(
    await createCsr(keys, `${SID}0`),
    `CSR's CN must be a 10-digit student ID, got '${SID}0'`,
  );
  assert.equal((await checkStudentCsr(await createCsr(keys, SID))).sid, SID);
});

Deno.test("CSR: two CNs are refused, even two valid IDs", async () => {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ "2.5.4.3": [SID] }, { "2.5.4.3": ["1155000802"] }],
    keys,
    signingAlgorithm: RSA_SIGN,
  });
  await csrRefused(csr, "CSR must name exactly one CN, it names 2");
});

Deno.test("CSR: an ECDSA key is refused: the lab's certificates carry RSA keys", async () => {
  const ec = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${SID}`,
    keys: ec,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  await csrRefused(csr, "CSR's key must be RSA, got algorithm 1.2.840.10045.2.1");
});

Deno.test("CSR: an altered CSR (no proof of possession) is refused", async () => {
  const bytes = der(await createCsr(keys, SID));
  bytes[bytes.length - 1]! ^= 0x01;
  await csrRefused(
    parseCsr(bytes),
    "CSR's signature does not match its key (no proof of possession)",
  );
});

Deno.test("CRL: a CRL from a CA of another name is refused by name, before its signature", async () => {
  const root = await createRoot({ keys: await testKeyPair() });
  const other = await createRoot({
    bits: 2048,
    keys: await testKeyPair(),
    name: "CN=Trudy Root CA",
  });
  const crl = await createCrl({
    issuer: other.cert,
    issuerKey: other.keys.privateKey,
    entries: [],
    crlNumber: 1,
  });
  await assert.rejects(verifyCrl(crl, root.cert), (err: unknown) => {
    assert.ok(err instanceof CertificateError);
    assert.equal(err.message, "CRL is not issued by the pinned root");
    return true;
  });
});
