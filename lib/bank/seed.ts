/**
 * The bank's seed mode (`--protocol seed`): seed 001's protocol with its flaws, kept for teaching
 * attacks. Never the default.
 *
 *   1. `Hello` claims an account name; nothing proves it.
 *   2. `Hi, I'm Bob` carries Bob's raw public key, unauthenticated: whoever is on the path can put
 *      in their own.
 *   3. `prove it` carries no nonce.
 *   4. Bob's proof is his signature over the fixed sentence "Alice, This Is Bob", the same in every
 *      session, so a recorded proof can be replayed.
 *   5. Alice's secret is encrypted to whatever key arrived, with textbook RSA as the seed did.
 *   6. Records are AES-256-ECB under the secret, with no integrity and no sequence number.
 *
 * A man in the middle who substitutes his own key reads and rewrites everything (Trudy's
 * bank-mitm). Alice's side first, then Bob's; each reads top to bottom.
 */

import { SEED_SENTENCE, SEED_TEXT } from "./protocol.ts";
import {
  type AliceOptions,
  type BobIdentity,
  type BobOptions,
  HandshakeError,
  type HandshakeMachine,
  loadBobIdentity,
} from "./machine.ts";
import { BankSession, SeedRecords } from "./records.ts";
import {
  insecureTextbookRsaDecrypt,
  insecureTextbookRsaEncrypt,
  randomBytes,
  type TextbookRsaKey,
  textbookRsaPublicKey,
  toBytes,
} from "../crypto/mod.ts";
import { exportPrivateKeyPem, generateRsaKeyPair, RSA_SIGN } from "../pki/mod.ts";

const utf8 = new TextEncoder();

// ------------------------------------------------------------------ Alice

/** Alice's side of the seed handshake: returns the session with AES-256-ECB records. */
export async function aliceSeed(
  machine: HandshakeMachine,
  options: AliceOptions,
): Promise<BankSession> {
  const { log } = options;
  const customer = options.customer ?? "alice";
  await machine.send(1, "seedHello", { greeting: SEED_TEXT.hello, customer });
  log.step(
    1,
    `Hello: sent to Bob, claiming the account '${customer}' (seed mode: nothing proves it)`,
  );

  const hi = await machine.receive(2, "seedHiBob");
  let verifyKey: CryptoKey;
  let encryptKey: TextbookRsaKey;
  try {
    verifyKey = await crypto.subtle.importKey("spki", toBytes(hi.publicKey), RSA_SIGN, false, [
      "verify",
    ]);
    encryptKey = textbookRsaPublicKey(hi.publicKey);
  } catch {
    throw new HandshakeError(2, "Bob's public key is not an RSA key");
  }
  log.step(
    2,
    `Hi, I'm Bob: received a raw public key (${hi.publicKey.length} bytes), unauthenticated: accepted as Bob's`,
  );

  await machine.send(3, "seedProveIt", { text: SEED_TEXT.proveIt });
  log.step(3, "prove it: sent (no nonce: any earlier proof answers it)");

  const proof = await machine.receive(4, "seedProof");
  if (proof.sentence !== SEED_SENTENCE) {
    throw new HandshakeError(4, `Bob's sentence is '${proof.sentence}', not '${SEED_SENTENCE}'`);
  }
  const ok = await crypto.subtle.verify(
    RSA_SIGN,
    verifyKey,
    toBytes(proof.signature),
    utf8.encode(SEED_SENTENCE),
  );
  if (!ok) throw new HandshakeError(4, "the signature does not verify with the key Bob sent");
  log.step(4, `Bob's proof: signature over '${SEED_SENTENCE}' verifies with the key he sent`);

  // The seed's secret: encrypted to the key that arrived, with textbook RSA (no padding).
  const secret = randomBytes(32);
  const encrypted = insecureTextbookRsaEncrypt(encryptKey, secret);
  await machine.send(5, "seedSecret", { text: SEED_TEXT.secret, secret: encrypted });
  log.step(5, "Alice's secret: sent, encrypted to the key from step 2 (textbook RSA)");
  machine.finish();
  log.step(6, "banking: records are AES-256-ECB under the secret, no integrity, no sequence");
  return new BankSession(machine.stream, new SeedRecords(secret), customer);
}

// ------------------------------------------------------------------ Bob

/** The modulus size of an RSA key, in bytes. */
function modulusBytes(key: TextbookRsaKey): number {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits === undefined) throw new TypeError("Bob's seed key is not an RSA key");
  return bits / 8;
}

/**
 * Bob's identity for seed mode: a throwaway RSA-2048 key made for this run, kept in memory only.
 * Seed mode decrypts textbook RSA with it, so it is never the CA-certified key of the default
 * mode (`serveBank` refuses a seed identity that carries a certificate).
 */
export async function seedBobIdentity(): Promise<BobIdentity> {
  const keys = await generateRsaKeyPair(2048);
  return await loadBobIdentity(await exportPrivateKeyPem(keys.privateKey));
}

const SEED_CUSTOMER = /^[A-Za-z0-9_.-]{1,64}$/;

/** Bob's side of the seed handshake: the session's customer is the claimed name, `seed/<name>`. */
export async function bobSeed(
  machine: HandshakeMachine,
  options: BobOptions,
): Promise<BankSession> {
  const { log, identity } = options;
  if (identity.cert) {
    throw new TypeError("Seed mode never uses Bob's certified key: give it seedBobIdentity()");
  }
  const from = options.remote ?? "Alice";
  const hello = await machine.receive(1, "seedHello");
  if (!SEED_CUSTOMER.test(hello.customer)) {
    throw new HandshakeError(
      1,
      "the account name must be 1 to 64 letters, digits, '.', '_' or '-'",
    );
  }
  log.step(1, `Hello from ${from}, who says she is '${hello.customer}' (seed mode: unchecked)`);

  await machine.send(2, "seedHiBob", { greeting: SEED_TEXT.hiBob, publicKey: identity.publicKey });
  log.step(2, "Hi, I'm Bob: sent my raw public key (no certificate)");

  await machine.receive(3, "seedProveIt");
  log.step(3, "prove it: received (no nonce)");

  await machine.send(4, "seedProof", { sentence: SEED_SENTENCE, signature: identity.seedProof });
  log.step(4, `Bob's proof: sent my signature over '${SEED_SENTENCE}' (the same every session)`);

  const secretMsg = await machine.receive(5, "seedSecret");
  // Seed mode keeps the seed's flaws, but not this one: an empty or short "encrypted secret" is
  // raw RSA of a tiny number (0 for no bytes), which decrypts to a secret anyone can compute.
  const size = modulusBytes(identity.decryptKey);
  // check: seed-secret-length tests/bank/session_test.ts
  if (secretMsg.secret.length !== size) {
    throw new HandshakeError(
      5,
      `the encrypted secret must be ${size} bytes (Bob's modulus), got ${secretMsg.secret.length}`,
    );
  }
  let block: Uint8Array;
  try {
    block = insecureTextbookRsaDecrypt(identity.decryptKey, secretMsg.secret);
  } catch {
    throw new HandshakeError(5, "the secret does not decrypt with Bob's key");
  }
  if (block.length < 32 || block.subarray(0, block.length - 32).some((b) => b !== 0)) {
    throw new HandshakeError(5, "the decrypted secret is not 32 bytes");
  }
  if (block.every((b) => b === 0)) throw new HandshakeError(5, "the decrypted secret is zero");
  log.step(5, "Alice's secret: decrypted with my private key");
  machine.finish();
  return new BankSession(
    machine.stream,
    new SeedRecords(block.slice(block.length - 32)),
    `seed/${hello.customer}`,
  );
}
