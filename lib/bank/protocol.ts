/**
 * The bank's protocol on TCP 6001 (system 2, seed 001): the seed's named handshake, its states,
 * and every message on the wire, declared once.
 *
 * The seed's exchange, kept in both modes:
 *
 *     STEP 1  Alice → Bob   Hello
 *     STEP 2  Bob → Alice   Hi, I'm Bob        + Bob's key (seed) or certificate (secure)
 *     STEP 3  Alice → Bob   prove it           + Alice's nonce (secure)
 *     STEP 4  Bob → Alice   Bob's proof        signature over a fixed sentence (seed) or over the
 *                                              whole exchange with both nonces and his X25519 share
 *     STEP 5  Alice → Bob   Alice's secret     secret encrypted to Bob's key (seed), or her X25519
 *                                              share, certificate and signature (secure)
 *     STEP 6  both          banking records    AES-256-ECB, no integrity (seed), or AES-GCM with
 *                                              sequence numbers (secure)
 *
 * Seed-mode messages have codes of their own (0x41…), so a capture and the dissector tell the
 * modes apart. Inside records travel the banking operations of `bankOps`, the seed's menu.
 */

import { defineProtocol, type Message } from "../wire/mod.ts";

export const BANK_PORT = 6001;
/** Handshake messages carry a certificate (~1 KiB); records carry one small operation. */
export const BANK_MAX_FRAME = 16 * 1024;
/** Deadline for each handshake read. */
export const BANK_HANDSHAKE_TIMEOUT_MS = 10_000;
/** How long Bob waits for Alice's next operation before he closes the session. */
export const BANK_IDLE_TIMEOUT_MS = 120_000;
/** Secure mode's protocol version, bound into every signature and key. */
export const BANK_VERSION = "bank/1";
/** Bob's last word to an open session when he stops (inside the session: authenticated). */
export const BOB_SHUTTING_DOWN = "Bob is shutting down";
/** What the seed's Bob signs as his proof, every time: the flaw that makes it replayable. */
export const SEED_SENTENCE = "Alice, This Is Bob";

export type BankMode = "secure" | "seed";

/** The seed's steps, by number, as logs and errors name them. */
export const BANK_STEPS = {
  1: "Hello",
  2: "Hi, I'm Bob",
  3: "prove it",
  4: "Bob's proof",
  5: "Alice's secret",
  6: "banking",
} as const;
export type BankStep = keyof typeof BANK_STEPS;

/** `STEP 4 Bob's proof`. */
export function stepName(step: BankStep): string {
  return `STEP ${step} ${BANK_STEPS[step]}`;
}

/**
 * The handshake's states, named for what each side waits for. Both modes walk the same states; only
 * the messages' contents differ.
 */
export type BankState =
  | "ExpectHello"
  | "ExpectHiBob"
  | "ExpectProveIt"
  | "ExpectProof"
  | "ExpectSecret"
  | "ExpectWelcome"
  | "Banking"
  | "Closed";

export const bankProtocol = defineProtocol("Bank", {
  // ---- secure mode (default)
  hello: { code: 0x01, label: "STEP 1 Hello", fields: { greeting: "text", version: "text" } },
  hiBob: {
    code: 0x02,
    label: "STEP 2 Hi, I'm Bob",
    // Bob's certificate, and the CA's current CRL stapled so that Alice checks it is not revoked.
    fields: { greeting: "text", certificate: "bytes", crl: "bytes" },
  },
  proveIt: { code: 0x03, label: "STEP 3 prove it", fields: { text: "text", nonce: "bytes" } },
  proof: {
    code: 0x04,
    label: "STEP 4 Bob's proof",
    fields: { nonce: "bytes", share: "bytes", signature: "bytes" },
  },
  secret: {
    code: 0x05,
    label: "STEP 5 Alice's secret",
    fields: { share: "bytes", certificate: "bytes", signature: "bytes" },
  },
  record: { code: 0x06, label: "STEP 6 record (AES-GCM)", fields: { seq: "uint", data: "bytes" } },
  // ---- seed mode (--protocol seed): the seed's exchange, flaws included
  seedHello: {
    code: 0x41,
    label: "STEP 1 Hello (seed)",
    fields: { greeting: "text", customer: "text" },
  },
  seedHiBob: {
    code: 0x42,
    label: "STEP 2 Hi, I'm Bob (seed)",
    fields: { greeting: "text", publicKey: "bytes" },
  },
  seedProveIt: { code: 0x43, label: "STEP 3 prove it (seed)", fields: { text: "text" } },
  seedProof: {
    code: 0x44,
    label: "STEP 4 Bob's proof (seed)",
    fields: { sentence: "text", signature: "bytes" },
  },
  seedSecret: {
    code: 0x45,
    label: "STEP 5 Alice's secret (seed)",
    fields: { text: "text", secret: "bytes" },
  },
  seedRecord: { code: 0x46, label: "STEP 6 record (seed, AES-256-ECB)", fields: { data: "bytes" } },
  // ---- both
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});

export type BankMessages = typeof bankProtocol.messages;
export type BankMessage<N extends keyof BankMessages = keyof BankMessages> = Message<
  BankMessages,
  N
>;

/** The message type each step uses in each mode. */
export const STEP_MESSAGES = {
  secure: { 1: "hello", 2: "hiBob", 3: "proveIt", 4: "proof", 5: "secret", 6: "record" },
  seed: {
    1: "seedHello",
    2: "seedHiBob",
    3: "seedProveIt",
    4: "seedProof",
    5: "seedSecret",
    6: "seedRecord",
  },
} as const satisfies Record<BankMode, Record<BankStep, keyof BankMessages>>;

/**
 * The banking operations, the seed's menu (`Deposit : 1   Withdraw : 2   Check Balance : 3
 * Exit : 4`), carried inside records. Amounts travel as the text Alice typed and are parsed by
 * Bob with the same function Alice used; results carry integer cents.
 */
export const bankOps = defineProtocol("Bank operation", {
  deposit: { code: 0x01, label: "Deposit : 1", fields: { requestId: "text", amount: "text" } },
  withdraw: { code: 0x02, label: "Withdraw : 2", fields: { requestId: "text", amount: "text" } },
  balance: { code: 0x03, label: "Check Balance : 3", fields: {} },
  exit: { code: 0x04, label: "Exit : 4", fields: {} },
  statement: { code: 0x05, label: "statement", fields: { limit: "uint" } },
  welcome: { code: 0x20, label: "welcome", fields: { customer: "text", balance: "uint" } },
  applied: {
    code: 0x21,
    label: "applied",
    fields: { requestId: "text", kind: "text", amount: "uint", balance: "uint", replayed: "uint" },
  },
  balanceIs: { code: 0x23, label: "balance", fields: { balance: "uint" } },
  bye: { code: 0x24, label: "bye", fields: {} },
  statementIs: { code: 0x25, label: "statement entries", fields: { entries: "text" } },
  refused: { code: 0x3f, label: "refused", fields: { requestId: "text", reason: "text" } },
  /**
   * The default mode's refusal once the handshake is over: the session ends, and why, inside an
   * authenticated record (either side). A cleartext `error` is then never believed.
   */
  error: { code: 0x7f, label: "error (authenticated)", fields: { reason: "text" } },
});

export type BankOps = typeof bankOps.messages;
export type BankOp<N extends keyof BankOps = keyof BankOps> = Message<BankOps, N>;

/** A request id: what makes a retried operation apply once. */
export const REQUEST_ID = /^[A-Za-z0-9_-]{8,64}$/;

/** Greetings and sentences of the seed, sent as text. */
export const SEED_TEXT = {
  hello: "Hello",
  hiBob: "Hi, I'm Bob",
  proveIt: "prove it",
  secret: "ok bob, here is a secret",
} as const;
