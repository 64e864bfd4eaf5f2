/**
 * What verification remembers (lib/pki/cache.ts): a certificate or CRL seen again is not parsed or
 * its signature checked again, but only a signature that verified is remembered, under the exact
 * bytes and the root, and every check that depends on the time still runs each time.
 */

import assert from "node:assert/strict";
import {
  BoundedCache,
  CertificateError,
  createCrl,
  createRoot,
  der,
  exportPrivateKeyPem,
  forgetVerifications,
  importSigningKey,
  issueCertificate,
  parseCertificate,
  parseCrl,
  RSA_SIGN,
  verifyCertificate,
  verifyCrl,
} from "../../lib/pki/mod.ts";
import { withVerifyHook } from "../_fixtures/helpers.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const ca = await createRoot({ keys: await testKeyPair() });
const other = await createRoot({ keys: await testKeyPair() });
const keys = await testKeyPair();
const leaf = await issueCertificate({
  publicKey: new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
  profile: { kind: "student", sid: "1155000501" },
  issuer: ca.cert,
  issuerKey: ca.keys.privateKey,
});

/** Runs `f` and counts the RSA signature checks it makes through WebCrypto. */
async function countVerifies(f: () => Promise<unknown>): Promise<number> {
  let calls = 0;
  await withVerifyHook(() => void calls++, f);
  return calls;
}

Deno.test("verification cache: a certificate's signature is checked once, then remembered; another root or other bytes are checked anew", async () => {
  forgetVerifications();
  const bytes = der(leaf);
  const options = { root: ca.cert, purpose: "clientAuth" as const };
  const first = await countVerifies(() => verifyCertificate(parseCertificate(bytes), options));
  assert.ok(first >= 1, `first verification: ${first} signature checks`);
  assert.equal(parseCertificate(bytes), parseCertificate(bytes), "parsed once");
  assert.equal(await countVerifies(() => verifyCertificate(parseCertificate(bytes), options)), 0);
  // The same certificate against another root: checked, and refused.
  await assert.rejects(
    () => verifyCertificate(parseCertificate(bytes), { ...options, root: other.cert }),
    CertificateError,
  );
  // One byte of the signature changed: other bytes, checked, refused, and refused again.
  const forged = bytes.slice();
  forged[forged.length - 1]! ^= 1;
  for (let i = 0; i < 2; i++) {
    const checks = await countVerifies(() =>
      assert.rejects(
        () => verifyCertificate(parseCertificate(forged), options),
        /signature does not match the root/,
      )
    );
    assert.ok(checks >= 1, "a failure is never remembered");
  }
});

Deno.test("verification cache: a remembered signature does not make an expired certificate or CRL valid", async () => {
  forgetVerifications();
  const options = { root: ca.cert, purpose: "clientAuth" as const };
  await verifyCertificate(leaf, options);
  const later = new Date(leaf.notAfter.getTime() + 1000);
  await assert.rejects(() => verifyCertificate(leaf, { ...options, now: later }), /expired on/);
  const crl = parseCrl(
    der(
      await createCrl({
        issuer: ca.cert,
        issuerKey: ca.keys.privateKey,
        entries: [],
        crlNumber: 1,
      }),
    ),
  );
  await verifyCrl(crl, ca.cert);
  assert.equal(await countVerifies(() => verifyCrl(crl, ca.cert)), 0);
  await assert.rejects(
    () => verifyCrl(crl, ca.cert, new Date(crl.nextUpdate!.getTime() + 1000)),
    /CRL has expired/,
  );
  await assert.rejects(() => verifyCrl(crl, other.cert), CertificateError);
});

Deno.test("BoundedCache keeps at most its size, dropping the entry least recently used", () => {
  const cache = new BoundedCache<number>(3);
  for (const [k, v] of [["a", 1], ["b", 2], ["c", 3]] as const) cache.set(k, v);
  assert.equal(cache.get("a"), 1); // now the newest
  cache.set("d", 4);
  assert.equal(cache.size, 3);
  assert.equal(cache.get("b"), undefined, "b was the oldest");
  assert.deepEqual([cache.get("a"), cache.get("c"), cache.get("d")], [1, 3, 4]);
});

Deno.test("a signing key is imported once: the same PEM gives the same key, also to calls at once, and it signs; a key that cannot be imported is refused, each time", async () => {
  const pem = await exportPrivateKeyPem(keys.privateKey);
  const other = await exportPrivateKeyPem((await testKeyPair()).privateKey);
  const [a, b] = await Promise.all([importSigningKey(other), importSigningKey(other)]);
  assert.equal(a, b, "two imports at once share one");
  const first = await importSigningKey(pem);
  assert.equal(await importSigningKey(pem), first);
  assert.equal(await importSigningKey(pem.replace(/\n/g, "\r\n")), first, "the same DER");
  const data = new TextEncoder().encode("step 5");
  const signature = await crypto.subtle.sign(RSA_SIGN, first, data);
  assert.ok(await crypto.subtle.verify(RSA_SIGN, keys.publicKey, signature, data));
  assert.notEqual(await importSigningKey(other), first);
  // Valid PEM, not a key: refused, the second time as the first.
  const junk = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
  for (let i = 0; i < 2; i++) await assert.rejects(importSigningKey(junk));
});
