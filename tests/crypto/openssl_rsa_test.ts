/**
 * RSA through the system's OpenSSL (lib/crypto/openssl_rsa.ts), as the actors use it: loaded at
 * start with `--allow-ffi`, which is then revoked. The probe (tests/_fixtures/openssl_rsa_probe.ts)
 * runs in a child with that permission; its signatures must be WebCrypto's, byte for byte, and
 * every altered signature, message, certificate, CRL and CSR must be refused by OpenSSL itself
 * (the counts show it was OpenSSL, not the WebCrypto fallback).
 */

import assert from "node:assert/strict";
import { describeRsa, loadOpenSslRsa } from "../../lib/crypto/mod.ts";
import { runProbe } from "../_fixtures/helpers.ts";

Deno.test("OpenSSL signs as WebCrypto does, refuses what was altered, and FFI is gone after loading", async () => {
  // deno-lint-ignore no-explicit-any
  const probe: any = await runProbe("openssl_rsa_probe.ts", ["--allow-read", "--allow-ffi"]);
  assert.equal(probe.outcome.loaded, true, `OpenSSL not loaded: ${probe.outcome.reason}`);
  assert.match(probe.outcome.version, /^OpenSSL 3\./);
  // The permission is revoked once the library is bound: nothing else can be opened.
  assert.notEqual(probe.ffiAfter, "granted");
  assert.equal(probe.dlopenAfter, "NotCapable");
  assert.deepEqual(probe.signatures, {
    "rsa2048 imported": true,
    "rsa3072 imported": true,
    "rsa3072 generated": true,
  });
  assert.equal(probe.signed, 3, "each of the three signatures was OpenSSL's");
  assert.deepEqual(probe.verify, {
    valid: true,
    alteredData: false,
    alteredSignature: false,
    shortSignature: false,
    emptySignature: false,
    otherKey: false,
  });
  assert.deepEqual(probe.objects, {
    cert: "accepted",
    certAltered: "Cannot verify certificate 1155000001: signature does not match the root",
    crl: "accepted",
    crlAltered: "CRL's signature does not match the root",
    csr: "accepted",
    csrAltered: "CSR's signature does not match its key (no proof of possession)",
    // Signed with SHA-384: not OpenSSL's here (it checks SHA-256 only), the library's, and valid.
    sha384Cert: "accepted",
  });
  assert.equal(probe.checkedByObjects, 6, "the six SHA-256 objects were checked by OpenSSL");
});

Deno.test("without --allow-ffi nothing is loaded, and the outcome says why", () => {
  if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") return; // run with -A
  const outcome = loadOpenSslRsa();
  assert.deepEqual(outcome, { loaded: false, reason: "no --allow-ffi" });
  assert.equal(
    describeRsa(outcome),
    "RSA signatures by WebCrypto (OpenSSL not loaded: no --allow-ffi)",
  );
});
