/**
 * The bank's secure handshake (the default): the seed's named steps, done right.
 *
 *   1. `Hello` names the protocol version.
 *   2. Bob's key arrives in a certificate that Alice verifies against the pinned root: chain,
 *      validity, serverAuth, and the name she connected to.
 *   3. `prove it` carries Alice's fresh 32-byte nonce.
 *   4. Bob sends his nonce and an ephemeral X25519 share, and signs the whole exchange so far with
 *      the certificate's key: a proof recorded in another session does not cover this nonce.
 *   5. Alice sends her X25519 share, her certificate (clientAuth, from the same CA) and her
 *      signature over the whole exchange. Bob verifies both.
 *   6. Keys per direction come from HKDF over the X25519 secret, salted with the transcript hash
 *      (`key_schedule.ts`); records are AES-GCM with sequence numbers. Bob's first record
 *      (welcome) confirms the keys.
 *
 * Alice's side first, then Bob's; each reads top to bottom.
 */

import { BANK_HANDSHAKE_TIMEOUT_MS, BANK_VERSION, SEED_TEXT } from "./protocol.ts";
import {
  type AliceOptions,
  type BobOptions,
  connectionBroke,
  HandshakeError,
  type HandshakeMachine,
} from "./machine.ts";
import { newKeyShare, NONCE_BYTES, sessionKeys, sharedSecret, signedData } from "./key_schedule.ts";
import { BankSession, SecureRecords } from "./records.ts";
import { PeerRefusedError } from "../wire/mod.ts";
import { randomBytes } from "../crypto/mod.ts";
import { errorMessage } from "../runtime/mod.ts";
import {
  type Certificate,
  certificateLabel,
  checkStapledCrl,
  commonName,
  type Crl,
  crlNumber,
  der,
  importSigningKey,
  parseCertificate,
  RevocationUnavailableError,
  signRsa,
  verifyCertificate,
  verifyRsa,
} from "../pki/mod.ts";

// ------------------------------------------------------------------ Alice

/** Alice's side of the secure handshake: returns the session once Bob's welcome confirms the keys. */
export async function aliceSecure(
  machine: HandshakeMachine,
  options: AliceOptions,
): Promise<BankSession> {
  const { log } = options;
  const { root, cert, keyPem } = options;
  if (!root || !cert || !keyPem) {
    throw new TypeError("Secure mode needs the root, Alice's certificate and her key");
  }
  const me = certificateLabel(cert);
  await machine.send(1, "hello", { greeting: SEED_TEXT.hello, version: BANK_VERSION });
  log.step(1, `Hello: sent to Bob (${BANK_VERSION})`);

  const hi = await machine.receive(2, "hiBob");
  let bob: Certificate;
  try {
    bob = parseCertificate(hi.certificate, "Bob's certificate");
    await verifyCertificate(bob, {
      root,
      purpose: "serverAuth",
      ...(options.expectedHost !== undefined ? { expectedHost: options.expectedHost } : {}),
    });
    // Bob's certificate must not be revoked: the CRL he stapled, checked by the checker's rules.
    await checkStapledCrl(bob, hi.crl, {
      root,
      what: "Bob's stapled CRL",
      ...(options.crlMemory ? { memory: options.crlMemory } : {}),
    });
  } catch (err) {
    throw new HandshakeError(2, errorMessage(err));
  }
  log.step(
    2,
    `Hi, I'm Bob: certificate ${certificateLabel(bob)} verified (root, validity, serverAuth${
      options.expectedHost !== undefined ? `, name ${options.expectedHost}` : ""
    }, not revoked by the stapled CRL)`,
  );

  const nonceA = randomBytes(NONCE_BYTES);
  await machine.send(3, "proveIt", { text: SEED_TEXT.proveIt, nonce: nonceA });
  log.step(3, "prove it: sent with Alice's fresh nonce");

  const beforeProof = machine.transcript.snapshot();
  const proof = await machine.receive(4, "proof");
  // check: bank-bob-nonce-length tests/bank/negative_test.ts
  if (proof.nonce.length !== NONCE_BYTES) {
    throw new HandshakeError(4, `Bob's nonce must be ${NONCE_BYTES} bytes`);
  }
  const signedByBob = signedData(
    "Bob's proof",
    beforeProof.digest(proof.nonce, proof.share),
  );
  let valid = false;
  try {
    valid = await verifyRsa(bob, proof.signature, signedByBob);
  } catch {
    valid = false;
  }
  // check: bank-step4-proof-covers-nonce tests/bank/negative_test.ts
  if (!valid) {
    throw new HandshakeError(
      4,
      "Bob's signature does not cover this exchange (a replayed or forged proof: Alice's nonce is not in it)",
    );
  }
  const share = await newKeyShare();
  const dh = await sharedSecret(share, proof.share);
  // check: bank-bob-share-valid tests/bank/negative_test.ts
  if (!dh) throw new HandshakeError(4, "Bob's X25519 share is invalid");
  log.step(4, "Bob's proof: his signature covers both nonces and his X25519 share");

  const aliceCert = der(cert);
  const signedByAlice = signedData(
    "Alice's secret",
    machine.hash(share.publicRaw, aliceCert),
  );
  const signature = await signRsa(await importSigningKey(keyPem), signedByAlice);
  await machine.send(5, "secret", {
    share: share.publicRaw,
    certificate: aliceCert,
    signature,
  });
  log.step(5, `Alice's secret: sent her X25519 share, certificate ${me} and signature`);

  const keys = await sessionKeys(dh, machine.hash());
  const records = await SecureRecords.create(keys.aliceToBob, keys.bobToAlice);
  const session = new BankSession(machine.stream, records, me);
  let welcome;
  try {
    // The welcome ends the handshake: until it arrives, Bob's refusal (STEP 5) is in the clear.
    welcome = await session.receive(["welcome"], {
      timeoutMs: options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
      handshake: true,
    });
  } catch (err) {
    if (err instanceof PeerRefusedError) throw err;
    // A connection that broke here (Bob stopped or crashed after Alice's secret) is worth a
    // reconnection, like a break at any other step; a welcome that fails its checks is not.
    throw new HandshakeError(5, `no welcome from Bob: ${errorMessage(err)}`, {
      transport: connectionBroke(err),
    });
  }
  if (welcome.customer !== me) {
    throw new HandshakeError(5, `Bob opened account '${welcome.customer}', not '${me}'`);
  }
  machine.finish();
  log.step(6, `banking: AES-GCM records with sequence numbers, account ${welcome.customer}`);
  return session;
}

// ------------------------------------------------------------------ Bob

/** Bob's side of the secure handshake: the session's customer is Alice's certificate subject. */
export async function bobSecure(
  machine: HandshakeMachine,
  options: BobOptions,
): Promise<BankSession> {
  const { log, identity, root, revocation } = options;
  if (!identity.cert || !root) throw new TypeError("Secure mode needs Bob's certificate and root");
  if (!revocation) throw new TypeError("Secure mode needs a revocation checker: Bob always checks");
  const from = options.remote ?? "Alice";

  const hello = await machine.receive(1, "hello");
  // check: bank-version tests/bank/negative_test.ts
  if (hello.version !== BANK_VERSION) {
    throw new HandshakeError(1, `version '${hello.version}' is not ${BANK_VERSION}`);
  }
  log.step(1, `Hello from ${from} (${hello.version})`);

  // The CA's current CRL goes with Bob's certificate (stapled); without one Bob serves no one.
  let stapled: Crl;
  try {
    stapled = await revocation.current();
  } catch (err) {
    if (!(err instanceof RevocationUnavailableError)) throw err;
    log.error(err.message);
    throw new HandshakeError(2, "Bob cannot check revocation right now: try again later");
  }
  await machine.send(2, "hiBob", {
    greeting: SEED_TEXT.hiBob,
    certificate: der(identity.cert),
    crl: der(stapled),
  });
  log.step(
    2,
    `Hi, I'm Bob: sent certificate ${certificateLabel(identity.cert)} and the CA's CRL #${
      crlNumber(stapled) ?? "?"
    } (stapled)`,
  );

  const proveIt = await machine.receive(3, "proveIt");
  // check: bank-alice-nonce-length tests/bank/negative_test.ts
  if (proveIt.nonce.length !== NONCE_BYTES) {
    throw new HandshakeError(3, `Alice's nonce must be ${NONCE_BYTES} bytes`);
  }
  log.step(3, "prove it: received with Alice's nonce");

  const nonceB = randomBytes(NONCE_BYTES);
  const share = await newKeyShare();
  const signature = await signRsa(
    identity.signingKey,
    signedData("Bob's proof", machine.hash(nonceB, share.publicRaw)),
  );
  await machine.send(4, "proof", { nonce: nonceB, share: share.publicRaw, signature });
  log.step(4, "Bob's proof: signed both nonces and my X25519 share with my certificate's key");

  const beforeSecret = machine.transcript.snapshot();
  const secret = await machine.receive(5, "secret");
  let alice: Certificate;
  let crl: Crl;
  try {
    alice = parseCertificate(secret.certificate, "Alice's certificate");
    crl = await revocation.current();
    await verifyCertificate(alice, { root, purpose: "clientAuth", crl });
  } catch (err) {
    if (err instanceof RevocationUnavailableError) {
      // Fail closed: no current CRL, no customer. Bob's log says why; Alice hears "try later".
      log.error(err.message);
      throw new HandshakeError(5, "Bob cannot check revocation right now: try again later");
    }
    throw new HandshakeError(5, errorMessage(err));
  }
  const customer = commonName(alice);
  if (customer === undefined) throw new HandshakeError(5, "Alice's certificate has no single CN");
  const signedByAlice = signedData(
    "Alice's secret",
    beforeSecret.digest(secret.share, secret.certificate),
  );
  let valid = false;
  try {
    valid = await verifyRsa(alice, secret.signature, signedByAlice);
  } catch {
    valid = false;
  }
  // check: bank-step5-alice-signature tests/bank/negative_test.ts
  if (!valid) {
    throw new HandshakeError(5, `the signature of ${customer} does not cover this exchange`);
  }
  const dh = await sharedSecret(share, secret.share);
  // check: bank-alice-share-valid tests/bank/negative_test.ts
  if (!dh) throw new HandshakeError(5, "Alice's X25519 share is invalid");
  log.step(
    5,
    `Alice's secret: certificate ${customer} verified, not revoked (CRL #${
      crlNumber(crl) ?? "?"
    }), her signature covers the exchange`,
  );

  const keys = await sessionKeys(dh, machine.hash());
  const records = await SecureRecords.create(keys.bobToAlice, keys.aliceToBob);
  machine.finish();
  return new BankSession(machine.stream, records, customer);
}
