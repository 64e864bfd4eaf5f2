/**
 * RSA-2048 key pairs for tests, from a fixed pool (tests/_fixtures/rsa2048_keys.pem: 64 keys made
 * once by OpenSSL), handed out in turn. A suite run made about 580 RSA-2048 key pairs at about
 * 155 ms of CPU each (WebCrypto, this machine): a quarter of `deno task test:fast`'s CPU time. The
 * certificates, CSRs, signatures and handshakes over these keys are all made afresh in each test;
 * only the primes are reused. The actors make their own keys, as always, and the tests that run
 * them exercise that.
 *
 * Consecutive calls give distinct keys (64 in a row); a test that needs more than that, or a key
 * no other test used, makes its own with `generateRsaKeyPair`.
 */

import { importKeyPair } from "../../lib/pki/mod.ts";
import { PROJECT_ROOT } from "../../lib/runtime/mod.ts";

const POOL_FILE = `${PROJECT_ROOT}/tests/_fixtures/rsa2048_keys.pem`;

let pool: string[] | undefined;
let next = 0;

/** The pool's keys, one PEM block each. */
function pemKeys(): string[] {
  if (pool) return pool;
  const text = Deno.readTextFileSync(POOL_FILE);
  pool = text.match(/-----BEGIN PRIVATE KEY-----[^-]+-----END PRIVATE KEY-----/g) ?? [];
  if (pool.length < 2) {
    throw new Error(`${POOL_FILE}: expected a pool of keys, found ${pool.length}`);
  }
  return pool;
}

/** How many distinct keys the pool holds. */
export function testKeyPoolSize(): number {
  return pemKeys().length;
}

/**
 * The next RSA-2048 key pair of the pool (RSASSA-PKCS1-v1_5, SHA-256, extractable, sign/verify:
 * what `generateRsaKeyPair(2048)` returns).
 */
export async function testKeyPair(): Promise<CryptoKeyPair> {
  const keys = pemKeys();
  return await importKeyPair(keys[next++ % keys.length]!);
}
