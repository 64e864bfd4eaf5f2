/**
 * The bank's handshake machinery, shared by both modes and both sides: the state machine whose
 * steps carry the seed's names (`Hello`, `Hi, I'm Bob`, `prove it`, Bob's proof, Alice's secret),
 * which knows whose turn each step is and which message each mode uses for it, and keeps the
 * transcript of every handshake message as it crossed the wire; and what each side is given (Bob's
 * identity, each side's options). A failure at any step throws `HandshakeError` naming the step.
 *
 * The modes read top to bottom in their own files: `seed.ts` (the seed's protocol, flaws included)
 * and `secure.ts` (the default); `handshake.ts` runs one or the other.
 */

import {
  type BankMessage,
  type BankMessages,
  type BankMode,
  bankProtocol,
  type BankState,
  type BankStep,
  SEED_SENTENCE,
  STEP_MESSAGES,
  stepName,
} from "./protocol.ts";
import {
  DeadlineError,
  type FramedStream,
  FrameError,
  PeerRefusedError,
  receiveExpected,
  type Values,
} from "../wire/mod.ts";
import { type TextbookRsaKey, textbookRsaPrivateKey, Transcript } from "../crypto/mod.ts";
import { errorMessage, type StepLog } from "../runtime/mod.ts";
import {
  type Certificate,
  certificateLabel,
  type CrlMemory,
  importSigningKey,
  publicKeyOf,
  type Revocation,
  samePublicKey,
  signRsa,
} from "../pki/mod.ts";

/**
 * Whether a read or write failed because the connection broke: closed or cut in the middle of a
 * frame, reset, or silent past its deadline (worth reconnecting), as opposed to a peer that said
 * something wrong.
 */
export function connectionBroke(err: unknown): boolean {
  if (err instanceof DeadlineError) return true;
  if (err instanceof FrameError) return err.kind === "closed" || err.kind === "truncated";
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.NotConnected ||
    err instanceof Deno.errors.UnexpectedEof;
}

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

/** Who runs this side of the handshake. */
export type Role = "alice" | "bob";

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
      const oversized = err instanceof FrameError && err.kind === "oversized";
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

// ------------------------------------------------------------------ what each side is given

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

export interface AliceOptions {
  mode: BankMode;
  log: StepLog;
  timeoutMs?: number;
  /** Secure: the root Bob's certificate must chain to. */
  root?: Certificate;
  /**
   * Secure: the name Bob's certificate must carry (the service's, `bank`; the client sets it),
   * checked in its SAN whatever address Alice connected to.
   */
  expectedHost: string;
  /** Secure: Alice's certificate (clientAuth) and key (PKCS#8 PEM). */
  cert?: Certificate;
  keyPem?: string;
  /** Secure: the newest CRL Alice has seen (her home's, `crlMemoryOf`); Bob's staple is not older. */
  crlMemory?: CrlMemory;
  /** Seed: the account name Alice claims (nothing proves it). */
  customer?: string;
}

export interface BobOptions {
  mode: BankMode;
  log: StepLog;
  identity: BobIdentity;
  timeoutMs?: number;
  /** Secure: the root customers' certificates chain to. */
  root?: Certificate;
  /**
   * Secure (required): the shared revocation checker (lib/pki); a revoked customer is refused,
   * and so is everyone when it holds no current CRL (fail closed).
   */
  revocation?: Revocation;
  remote?: string;
}
