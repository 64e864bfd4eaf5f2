/**
 * The tests' fixed pool of RSA-2048 keys (tests/_fixtures/keys.ts) gives what
 * generateRsaKeyPair(2048) gives: a matching, extractable pair that signs and verifies, made by
 * OpenSSL; and consecutive calls never repeat a key within the pool's size.
 */

import assert from "node:assert/strict";
import { createCsr, exportPrivateKeyPem, importSigningKey, RSA_SIGN } from "../../lib/pki/mod.ts";
import { runCommand } from "../../lib/runtime/mod.ts";
import { testKeyPair, testKeyPoolSize } from "../_fixtures/keys.ts";
import { tempDir } from "../_fixtures/helpers.ts";
import { toHex } from "../../lib/crypto/mod.ts";

Deno.test("test key pool: distinct RSA-2048 pairs in turn, each half of the other, usable as generated keys", async () => {
  const size = testKeyPoolSize();
  assert.ok(size >= 64, `pool of ${size}`);
  const seen = new Set<string>();
  for (let i = 0; i < size; i++) {
    const { privateKey, publicKey } = await testKeyPair();
    assert.equal((privateKey.algorithm as RsaHashedKeyAlgorithm).modulusLength, 2048);
    assert.ok(privateKey.extractable && publicKey.extractable);
    const spki = toHex(new Uint8Array(await crypto.subtle.exportKey("spki", publicKey)));
    assert.ok(!seen.has(spki), `key ${i} repeats within ${size} calls`);
    seen.add(spki);
  }
  // One pair in full: the public half verifies what the private half signs, and not other data.
  const keys = await testKeyPair();
  const data = new TextEncoder().encode("pool");
  const sig = await crypto.subtle.sign(RSA_SIGN, keys.privateKey, data);
  assert.ok(await crypto.subtle.verify(RSA_SIGN, keys.publicKey, sig, data));
  assert.ok(!await crypto.subtle.verify(RSA_SIGN, keys.publicKey, sig, new Uint8Array(4)));
  // Stored and loaded as the actors store keys; a CSR over it that OpenSSL verifies.
  const pem = await exportPrivateKeyPem(keys.privateKey);
  await importSigningKey(pem);
  await using dir = await tempDir();
  const csr = await createCsr(keys, "1155000001");
  await Deno.writeTextFile(`${dir.path}/req.csr`, csr.toString("pem"));
  const r = await runCommand("openssl", ["req", "-in", `${dir.path}/req.csr`, "-verify", "-noout"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /verify OK|Certificate request self-signature verify OK/);
});
