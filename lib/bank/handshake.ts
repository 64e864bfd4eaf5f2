/**
 * The bank's handshake, Alice's side and Bob's, as one state machine whose steps carry the seed's
 * names (`Hello`, `Hi, I'm Bob`, `prove it`, Bob's proof, Alice's secret). Each side reads top to
 * bottom; a failure at any step throws `HandshakeError` naming the step, and the peer is told.
 *
 * Seed mode (`--protocol seed`) is the seed's protocol with its flaws, for teaching attacks:
 * Bob's raw key arrives unauthenticated, his proof is his signature over the fixed sentence
 * "Alice, This Is Bob" (the same in every session, so it can be replayed), Alice's secret is
 * encrypted to whatever key arrived (textbook RSA, as the seed did), and records are AES-256-ECB
 * with no integrity. A man in the middle who substitutes his own key reads and rewrites everything.
 *
 * Secure mode (the default):
 *   2. Bob's key arrives in a certificate that Alice verifies against the pinned root: chain,
 *      validity, serverAuth, and the name she connected to.
 *   3. `prove it` carries Alice's fresh 32-byte nonce.
 *   4. Bob sends his nonce and an ephemeral X25519 share, and signs the whole exchange so far with
 *      the certificate's key: a proof recorded in another session does not cover this nonce.
 *   5. Alice sends her X25519 share, her certificate (clientAuth, from the same CA) and her
 *      signature over the whole exchange. Bob verifies both.
 *   6. Keys per direction come from HKDF over the X25519 secret, salted with the transcript hash;
 *      records are AES-GCM with sequence numbers. Bob's first record (welcome) confirms the keys.
 */

import {
  BANK_HANDSHAKE_TIMEOUT_MS,
  BANK_VERSION,
  type BankMessage,
  type BankMessages,
  type BankMode,
  bankProtocol,
  type BankState,
  type BankStep,
  SEED_SENTENCE,
  SEED_TEXT,
  STEP_MESSAGES,
  stepName,
} from "./protocol.ts";
import { BankSession, SecureRecords, SeedRecords } from "./records.ts";
import {
  type FramedStream,
  FrameError,
  PeerRefusedError,
  receiveExpected,
  type Values,
} from "../wire/mod.ts";
import {
  concatBytes,
  hkdfSha256,
  insecureTextbookRsaDecrypt,
  insecureTextbookRsaEncrypt,
  randomBytes,
  type TextbookRsaKey,
  textbookRsaPrivateKey,
  textbookRsaPublicKey,
  toBytes,
  Transcript,
} from "../crypto/mod.ts";
import { errorMessage, type StepLog } from "../runtime/mod.ts";
import {
  type Certificate,
  certificateLabel,
  commonName,
  type Crl,
  der,
  importSigningKey,
  parseCertificate,
  publicKeyOf,
  RSA_SIGN,
  samePublicKey,
  signRsa,
  verifyCertificate,
  verifyRsa,
} from "../pki/mod.ts";

/** A handshake step failed on this side; the message names the step. */
export class HandshakeError extends Error {
  override name = "HandshakeError";
  readonly step: BankStep;
  /** The connection broke (closed, reset, deadline): worth trying again, unlike a refusal. */
  readonly transport: boolean;

  constructor(step: BankStep, reason: string, options: { transport?: boolean } = {}) {
    super(`${stepName(step)} failed: ${reason}`);
    this.step = step;
    this.transport = options.transport ?? false;
  }
}

const NONCE_BYTES = 32;
const utf8 = new TextEncoder();

/** What the state is after each step; both sides walk the same list. */
const STATE_AFTER: Record<BankStep, BankState> = {
  1: "ExpectHiBob",
  2: "ExpectProveIt",
  3: "ExpectProof",
  4: "ExpectSecret",
  5: "ExpectWelcome",
  6: "Banking",
};
const STATE_BEFORE: Record<BankStep, BankState> = {
  1: "ExpectHello",
  2: "ExpectHiBob",
  3: "ExpectProveIt",
  4: "ExpectProof",
  5: "ExpectSecret",
  6: "ExpectWelcome",
};
/** Who sends each handshake step. */
const SENDER: Record<BankStep, "alice" | "bob"> = {
  1: "alice",
  2: "bob",
  3: "alice",
  4: "bob",
  5: "alice",
  6: "bob",
};

type Role = "alice" | "bob";

/**
 * The state machine both sides share: it knows whose turn each step is, which message type each
 * mode uses for it, and keeps the transcript (every handshake message as sent on the wire).
 */
export class HandshakeMachine {
  readonly mode: BankMode;
  readonly role: Role;
  readonly stream: FramedStream;
  /** Every handshake message as sent or received on the wire, hashed as it goes. */
  readonly transcript: Transcript = new Transcript();
  #state: BankState = "ExpectHello";
  readonly #timeoutMs: number;

  constructor(stream: FramedStream, mode: BankMode, role: Role, timeoutMs: number) {
    this.stream = stream;
    this.mode = mode;
    this.role = role;
    this.#timeoutMs = timeoutMs;
  }

  get state(): BankState {
    return this.#state;
  }

  #enter(step: BankStep, direction: "send" | "receive"): void {
    const mine = SENDER[step] === this.role;
    if (this.#state !== STATE_BEFORE[step] || mine !== (direction === "send")) {
      throw new HandshakeError(step, `not allowed in state ${this.#state}`);
    }
  }

  /** Sends this step's message (the type must be the one this mode uses for the step). */
  async send<N extends keyof BankMessages & string>(
    step: Exclude<BankStep, 6>,
    type: N,
    values: Values<BankMessages[N]["fields"]>,
  ): Promise<Uint8Array> {
    this.#enter(step, "send");
    if (STEP_MESSAGES[this.mode][step] !== type) {
      throw new HandshakeError(step, `${type} is not this mode's message`);
    }
    const bytes = bankProtocol.encode(type, values);
    this.transcript.add(bytes);
    await this.stream.writeFrame(bytes).catch((err) => {
      throw new HandshakeError(step, `cannot send: ${errorMessage(err)}`, { transport: true });
    });
    this.#state = STATE_AFTER[step];
    return bytes;
  }

  /** Receives this step's message; anything else fails the step with the reason. */
  async receive<N extends keyof BankMessages & string>(
    step: Exclude<BankStep, 6>,
    type: N,
  ): Promise<BankMessage<N>> {
    this.#enter(step, "receive");
    if (STEP_MESSAGES[this.mode][step] !== type) {
      throw new HandshakeError(step, `${type} is not this mode's message`);
    }
    const label = bankProtocol.label(type);
    let received;
    try {
      received = await receiveExpected(this.stream, bankProtocol, [type], {
        timeoutMs: this.#timeoutMs,
        onClosed: () =>
          new HandshakeError(step, `connection closed before ${label}`, { transport: true }),
        onMalformed: (err) => new HandshakeError(step, errorMessage(err)),
        onUnexpected: (got) =>
          new HandshakeError(
            step,
            `expected ${label}, got ${bankProtocol.label(got as keyof BankMessages & string)}${
              got.startsWith("seed") !== type.startsWith("seed")
                ? ` (the peer speaks the ${this.mode === "seed" ? "secure" : "seed"} protocol)`
                : ""
            }`,
          ),
      });
    } catch (err) {
      if (err instanceof HandshakeError || err instanceof PeerRefusedError) throw err;
      // The read itself failed: a broken connection or a deadline, worth retrying, unless the
      // peer sent an oversized frame.
      const oversized = err instanceof FrameError && /exceeds/.test(err.message);
      throw new HandshakeError(step, errorMessage(err), { transport: !oversized });
    }
    const { msg, bytes: frame } = received;
    this.transcript.add(frame);
    this.#state = STATE_AFTER[step];
    return msg;
  }

  /** SHA-256 over the transcript so far plus `extra`, each part length-prefixed. */
  hash(...extra: Uint8Array[]): Uint8Array {
    return this.transcript.digest(...extra);
  }

  /** Tells the peer why, then closes; never throws. */
  async abort(reason: string): Promise<void> {
    this.#state = "Closed";
    await this.stream.writeFrame(bankProtocol.encode("error", { reason })).catch(() => {});
    this.stream.close();
  }

  /** The next state after the welcome record. */
  finish(): void {
    this.#state = "Banking";
  }
}

// ------------------------------------------------------------------ X25519 (WebCrypto)

interface KeyShare {
  privateKey: CryptoKey;
  publicRaw: Uint8Array;
}

async function newKeyShare(): Promise<KeyShare> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ]) as CryptoKeyPair;
  return {
    privateKey: pair.privateKey,
    publicRaw: new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)),
  };
}

async function sharedSecret(mine: KeyShare, peerRaw: Uint8Array): Promise<Uint8Array | null> {
  if (peerRaw.length !== 32) return null;
  try {
    const peer = await crypto.subtle.importKey(
      "raw",
      toBytes(peerRaw),
      { name: "X25519" },
      false,
      [],
    );
    const bits = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: peer }, mine.privateKey, 256),
    );
    // A low-order share gives an all-zero secret: refuse it (RFC 7748, section 6.1).
    return bits.some((b) => b !== 0) ? bits : null;
  } catch {
    return null;
  }
}

function signedData(context: string, hash: Uint8Array): Uint8Array {
  return concatBytes(utf8.encode(`${BANK_VERSION} ${context}\0`), hash);
}

async function sessionKeys(
  secret: Uint8Array,
  salt: Uint8Array,
): Promise<{ aliceToBob: Uint8Array; bobToAlice: Uint8Array }> {
  return {
    aliceToBob: await hkdfSha256(secret, salt, `${BANK_VERSION} alice to bob`),
    bobToAlice: await hkdfSha256(secret, salt, `${BANK_VERSION} bob to alice`),
  };
}

// ------------------------------------------------------------------ Bob's keys

/** Bob's key and certificate as his server loads them. */
export interface BobIdentity {
  /** Secure mode's certificate (serverAuth, from the CA); seed mode sends only the raw key. */
  cert?: Certificate;
  signingKey: CryptoKey;
  /** SubjectPublicKeyInfo DER: what seed mode sends in `Hi, I'm Bob`. */
  publicKey: Uint8Array;
  /** For seed mode's textbook-RSA decryption of Alice's secret (insecure, seed mode only). */
  decryptKey: TextbookRsaKey;
  /** Seed mode's proof: one signature over the fixed sentence, made once. */
  seedProof: Uint8Array;
}

/** Loads Bob's key (PKCS#8 PEM) and, for secure mode, checks it matches his certificate. */
export async function loadBobIdentity(keyPem: string, cert?: Certificate): Promise<BobIdentity> {
  const publicKey = await publicKeyOf(keyPem);
  if (cert && !samePublicKey(cert, publicKey)) {
    throw new Error(`The key does not belong to certificate ${certificateLabel(cert)}`);
  }
  const signingKey = await importSigningKey(keyPem);
  return {
    ...(cert ? { cert } : {}),
    signingKey,
    publicKey,
    decryptKey: textbookRsaPrivateKey(keyPem),
    seedProof: await signRsa(signingKey, utf8.encode(SEED_SENTENCE)),
  };
}

// ------------------------------------------------------------------ Alice

export interface AliceOptions {
  mode: BankMode;
  log: StepLog;
  timeoutMs?: number;
  /** Secure: the root Bob's certificate must chain to. */
  root?: Certificate;
  /** Secure: the name or address Bob's certificate must carry (the host Alice connected to). */
  expectedHost?: string;
  /** Secure: Alice's certificate (clientAuth) and key (PKCS#8 PEM). */
  cert?: Certificate;
  keyPem?: string;
  /** Seed: the account name Alice claims (nothing proves it). */
  customer?: string;
}

/**
 * Alice's side: runs the handshake over `stream` and returns the session (after Bob's welcome in
 * secure mode). On failure Bob is told the step and reason, and the error is thrown.
 */
export async function aliceHandshake(
  stream: FramedStream,
  options: AliceOptions,
): Promise<{ session: BankSession; machine: HandshakeMachine }> {
  const machine = new HandshakeMachine(
    stream,
    options.mode,
    "alice",
    options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
  );
  try {
    const session = options.mode === "seed"
      ? await aliceSeed(machine, options)
      : await aliceSecure(machine, options);
    return { session, machine };
  } catch (err) {
    if (err instanceof HandshakeError) await machine.abort(err.message);
    else stream.close();
    throw err;
  }
}

async function aliceSeed(machine: HandshakeMachine, options: AliceOptions): Promise<BankSession> {
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

async function aliceSecure(
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
  } catch (err) {
    throw new HandshakeError(2, errorMessage(err));
  }
  log.step(
    2,
    `Hi, I'm Bob: certificate ${certificateLabel(bob)} verified (root, validity, serverAuth${
      options.expectedHost !== undefined ? `, name ${options.expectedHost}` : ""
    })`,
  );

  const nonceA = randomBytes(NONCE_BYTES);
  await machine.send(3, "proveIt", { text: SEED_TEXT.proveIt, nonce: nonceA });
  log.step(3, "prove it: sent with Alice's fresh nonce");

  const beforeProof = machine.transcript.snapshot();
  const proof = await machine.receive(4, "proof");
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
  if (!valid) {
    throw new HandshakeError(
      4,
      "Bob's signature does not cover this exchange (a replayed or forged proof: Alice's nonce is not in it)",
    );
  }
  const share = await newKeyShare();
  const dh = await sharedSecret(share, proof.share);
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
    welcome = await session.receive(["welcome"], {
      timeoutMs: options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
    });
  } catch (err) {
    if (err instanceof PeerRefusedError) throw err;
    throw new HandshakeError(5, `no welcome from Bob: ${errorMessage(err)}`);
  }
  if (welcome.customer !== me) {
    throw new HandshakeError(5, `Bob opened account '${welcome.customer}', not '${me}'`);
  }
  machine.finish();
  log.step(6, `banking: AES-GCM records with sequence numbers, account ${welcome.customer}`);
  return session;
}

// ------------------------------------------------------------------ Bob

export interface BobOptions {
  mode: BankMode;
  log: StepLog;
  identity: BobIdentity;
  timeoutMs?: number;
  /** Secure: the root customers' certificates chain to. */
  root?: Certificate;
  /** Secure: a verified CRL; a revoked customer is refused. */
  crl?: Crl;
  remote?: string;
}

const SEED_CUSTOMER = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Bob's side: runs the handshake and returns the session, whose `customer` is the authenticated
 * certificate subject (secure) or the claimed name (seed). The caller sends the welcome.
 */
export async function bobHandshake(
  stream: FramedStream,
  options: BobOptions,
): Promise<{ session: BankSession; machine: HandshakeMachine }> {
  const machine = new HandshakeMachine(
    stream,
    options.mode,
    "bob",
    options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
  );
  try {
    const session = options.mode === "seed"
      ? await bobSeed(machine, options)
      : await bobSecure(machine, options);
    return { session, machine };
  } catch (err) {
    if (err instanceof HandshakeError) await machine.abort(err.message);
    else stream.close();
    throw err;
  }
}

async function bobSeed(machine: HandshakeMachine, options: BobOptions): Promise<BankSession> {
  const { log, identity } = options;
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
  let block: Uint8Array;
  try {
    block = insecureTextbookRsaDecrypt(identity.decryptKey, secretMsg.secret);
  } catch {
    throw new HandshakeError(5, "the secret does not decrypt with Bob's key");
  }
  if (block.length < 32 || block.subarray(0, block.length - 32).some((b) => b !== 0)) {
    throw new HandshakeError(5, "the decrypted secret is not 32 bytes");
  }
  log.step(5, "Alice's secret: decrypted with my private key");
  machine.finish();
  return new BankSession(
    machine.stream,
    new SeedRecords(block.slice(block.length - 32)),
    `seed/${hello.customer}`,
  );
}

async function bobSecure(machine: HandshakeMachine, options: BobOptions): Promise<BankSession> {
  const { log, identity, root } = options;
  if (!identity.cert || !root) throw new TypeError("Secure mode needs Bob's certificate and root");
  const from = options.remote ?? "Alice";

  const hello = await machine.receive(1, "hello");
  if (hello.version !== BANK_VERSION) {
    throw new HandshakeError(1, `version '${hello.version}' is not ${BANK_VERSION}`);
  }
  log.step(1, `Hello from ${from} (${hello.version})`);

  await machine.send(2, "hiBob", { greeting: SEED_TEXT.hiBob, certificate: der(identity.cert) });
  log.step(2, `Hi, I'm Bob: sent certificate ${certificateLabel(identity.cert)}`);

  const proveIt = await machine.receive(3, "proveIt");
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
  try {
    alice = parseCertificate(secret.certificate, "Alice's certificate");
    await verifyCertificate(alice, {
      root,
      purpose: "clientAuth",
      ...(options.crl ? { crl: options.crl } : {}),
    });
  } catch (err) {
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
  if (!valid) {
    throw new HandshakeError(5, `the signature of ${customer} does not cover this exchange`);
  }
  const dh = await sharedSecret(share, secret.share);
  if (!dh) throw new HandshakeError(5, "Alice's X25519 share is invalid");
  log.step(
    5,
    `Alice's secret: certificate ${customer} verified, her signature covers the exchange`,
  );

  const keys = await sessionKeys(dh, machine.hash());
  const records = await SecureRecords.create(keys.bobToAlice, keys.aliceToBob);
  machine.finish();
  return new BankSession(machine.stream, records, customer);
}
