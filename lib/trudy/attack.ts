/**
 * What every attack of Trudy's shares: a verdict, the line that ends each run, and the relay
 * attack plumbing (one verdict per victim connection).
 */

import type { HostPort, StepLog } from "../runtime/mod.ts";
import { type Direction, type FrameHandler, type RelaySession, startRelay } from "../net/mod.ts";

/**
 * Why a verdict came out as it did: a short code that stays the same when the sentence is
 * reworded, for tests, scripts and the lab's notes to match. One per distinct outcome; the attack
 * that gives it says which attack it is about.
 */
export type VerdictReason =
  // any attack on the path
  | "no-victim" // no victim connected before Trudy stopped
  // enrol-impersonation
  | "enrolled-without-code" // the CA signed a CSR for the victim's ID without the victim's code
  | "code-required" // the CA refused: the victim's one-time enrolment code was missing
  // enrol-code-theft
  | "swapped-csr-signed" // the CA signed Trudy's CSR swapped into the victim's request
  | "binding-refused" // the CA refused the swap: the code's binding covers the victim's own CSR
  // bank-mitm
  | "seed-key-accepted" // Alice took Trudy's key as Bob's; Trudy read (and changed) her operations
  | "key-refused" // Alice refused Trudy's key or certificate and said why (or Bob, after the swap)
  | "refused-before-swap" // Alice or Bob refused before Trudy changed anything (e.g. a mismatch)
  | "hung-up-after-certificate" // Alice hung up after Trudy's certificate without saying why
  | "no-secret" // the session ended before Alice sent a secret
  // bank-replay
  | "replay-accepted" // Alice accepted Bob's recorded proof and went on to step 5
  | "replay-refused" // the victim refused the replayed frames (bank-replay, message-replay)
  | "protocol-mismatch" // Alice speaks another protocol than the one Trudy recorded
  | "session-broke-off" // the fake Bob's session with Alice failed before a verdict
  // cross-service (also key-refused, hung-up-after-certificate, protocol-mismatch,
  // session-broke-off, as above)
  | "cross-service-accepted" // Alice took another service's stolen key or certificate as Bob's
  | "wrong-service-refused" // Alice refused it at STEP 2: valid from the CA, but not named `bank`
  // message-replay
  | "copy-accepted" // Blackboard accepted the copy of a step-6 message
  | "nothing-to-replay" // the session ended before a step-6 message passed
  // session-key-sniff, on the path
  | "sniffed-key-forgery-accepted" // the key crossed the wire; the message forged with it was accepted
  | "sniffed-key-forgery-refused" // the key crossed the wire, but the forgery was refused
  | "guessed-key-forgery-accepted" // no key crossed the wire, yet a forgery under a guess passed
  | "mac-refused" // no key crossed the wire; the forgery under a guessed key was refused
  | "no-key-ended-early" // no key crossed the wire and the session ended before the injection
  | "ended-before-key" // the session ended before Trudy saw a session key
  // error-injection
  | "forged-error-believed" // the victim took Trudy's cleartext error after the handshake as the server's refusal
  | "forged-error-not-believed" // the victim treated it as a broken connection (and Alice resent her request)
  | "nothing-to-replace" // the server sent nothing after the handshake: no reply to replace
  // session-key-sniff --pcap
  | "key-in-capture" // the capture holds the session key in the clear
  | "no-key-in-capture" // the capture's Blackboard sessions carry no session key
  | "no-session-in-capture" // the capture holds no Blackboard session
  // crl-rollback
  | "revoked-cert-accepted" // Blackboard took the replayed older CRL; the revoked cert 2 got in
  | "rollback-refused" // Blackboard refused the older CRL, kept the newer; the cert stays refused
  | "revocation-unavailable" // Blackboard refused the older CRL and failed closed
  | "never-revoked" // the certificate was still accepted: no revocation to roll back
  | "no-older-crl" // the first CRL on the path already listed the certificate
  | "no-crl-on-path" // Blackboard fetched no CRL through Trudy
  | "login-failed"; // Trudy's login after the replay failed for another reason

export interface Verdict {
  succeeded: boolean;
  /** Why, as a stable code. */
  reason: VerdictReason;
  /** What Trudy obtained, or why the attack failed, in words. */
  detail: string;
}

export const ATTACK_SUCCEEDED = "ATTACK SUCCEEDED";
export const ATTACK_FAILED = "ATTACK FAILED";

/** `ATTACK SUCCEEDED: …` or `ATTACK FAILED: <why>`. */
export function verdictLine(verdict: Verdict): string {
  return `${verdict.succeeded ? ATTACK_SUCCEEDED : ATTACK_FAILED}: ${verdict.detail}`;
}

/**
 * `[reason: <code>]`: printed on the line after the verdict line, so that a check that matches
 * the verdict line to its end keeps working.
 */
export function reasonLine(verdict: Verdict): string {
  return `[reason: ${verdict.reason}]`;
}

/** Exit status of an attack run: 0 when it succeeded, 3 when the defence held. */
export function verdictStatus(verdict: Verdict): number {
  return verdict.succeeded ? 0 : 3;
}

/** Verdicts in the order victims' connections end, for whoever waits for the next one. */
export class VerdictQueue<V extends Verdict = Verdict> {
  readonly #ready: V[] = [];
  readonly #waiting: Array<(v: V) => void> = [];
  /** Every verdict so far. */
  readonly all: V[] = [];

  push(verdict: V): void {
    this.all.push(verdict);
    const waiter = this.#waiting.shift();
    if (waiter) waiter(verdict);
    else this.#ready.push(verdict);
  }

  /** The next verdict (of the next victim connection to end). */
  next(): Promise<V> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
}

/** A running attack that waits for victims: Trudy's relay or her fake server. */
export interface AttackServer<V extends Verdict = Verdict> extends AsyncDisposable {
  /** The port victims are pointed at. */
  readonly port: number;
  /** The verdict of the next victim connection (one per connection, in order). */
  nextVerdict(): Promise<V>;
  /** Every verdict so far. */
  readonly verdicts: readonly V[];
  close(): Promise<void>;
}

/**
 * Waits for what the server does after Trudy's frame went in: a refusal (the protocol's `error`,
 * which travels in the clear), the end of the connection, or `settleMs` of silence with the
 * connection still open. Resolves once with the first of these.
 */
export class RefusalWatch {
  readonly settleMs: number;
  #settle: ((outcome: WatchOutcome) => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly outcome: Promise<WatchOutcome>;
  #armed = false;
  #result: WatchOutcome | undefined;

  constructor(settleMs: number) {
    this.settleMs = settleMs;
    this.outcome = new Promise((resolve) => (this.#settle = resolve));
  }

  /** The outcome, once there is one. */
  get result(): WatchOutcome | undefined {
    return this.#result;
  }

  /** Whether Trudy's frame went in (the watch started). */
  get armed(): boolean {
    return this.#armed;
  }

  /** Trudy's frame has just gone in: start the clock. */
  arm(): void {
    if (this.#armed) return;
    this.#armed = true;
    this.#timer = setTimeout(() => this.#end({ kind: "silence" }), this.settleMs);
  }

  refused(reason: string): void {
    this.#end({ kind: "refused", reason });
  }

  closed(): void {
    this.#end({ kind: "closed" });
  }

  #end(outcome: WatchOutcome): void {
    clearTimeout(this.#timer);
    const settle = this.#settle;
    this.#settle = undefined;
    this.#result ??= outcome;
    settle?.(outcome);
  }
}

export type WatchOutcome =
  | { kind: "refused"; reason: string }
  | { kind: "closed" }
  | { kind: "silence" };

/** How acceptance was judged, in words, for a verdict. */
export function describeAcceptance(outcome: WatchOutcome, settleMs: number): string {
  return outcome.kind === "silence"
    ? `no refusal came back within ${settleMs} ms and the connection stayed open`
    : "no refusal came back before the session ended normally";
}

/** What an attack does on one relayed connection. */
export interface ConnectionAttack<V extends Verdict = Verdict> {
  onFrame: FrameHandler;
  /** Resolves when the verdict is known before the connection ends (optional). */
  early?: Promise<V>;
  /**
   * One side stopped sending (`toClient`: the server's side ended; `toServer`: the client's). The
   * first call says who ended the connection.
   */
  onEnd?(direction: Direction): void;
  /** The verdict when the connection has ended (unless `early` gave it before). */
  finish(): V;
}

export interface RelayAttackOptions<V extends Verdict = Verdict> {
  /** The real server. */
  upstream: HostPort;
  log: StepLog;
  /** Port to listen on (0 picks one). */
  port?: number;
  /** The address to listen on (default 127.0.0.1). */
  hostname?: string;
  maxFrame?: number;
  /** On close, how long victims' connections get to finish (default 0). */
  graceMs?: number;
  signal?: AbortSignal;
  /** Makes the attack's state for one victim connection. */
  attack: (session: RelaySession, log: StepLog) => ConnectionAttack<V>;
}

/**
 * Trudy on the path: a relay whose every victim connection runs `attack` and ends in a verdict.
 * The client's clean end of stream is passed on as a half-close, so Trudy still sees the server's
 * last word (a refusal) before the connection ends.
 */
export function startRelayAttack<V extends Verdict = Verdict>(
  options: RelayAttackOptions<V>,
): AttackServer<V> {
  const queue = new VerdictQueue<V>();
  const states = new Map<number, { attack: ConnectionAttack<V>; done: boolean }>();
  const report = (state: { done: boolean }, verdict: V) => {
    if (state.done) return;
    state.done = true;
    queue.push(verdict);
  };
  const server = startRelay({
    upstream: options.upstream,
    log: options.log,
    halfClose: true,
    graceMs: options.graceMs ?? 0,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
    ...(options.maxFrame !== undefined ? { maxFrame: options.maxFrame } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onOpen: (session) => {
      const log = options.log.child(`#${session.id}`);
      log.info(
        `a victim connected: relaying to ${options.upstream.hostname}:${options.upstream.port}`,
      );
      const state = { attack: options.attack(session, log), done: false };
      states.set(session.id, state);
      state.attack.early?.then((v) => report(state, v));
    },
    onFrame: (direction, frame, session, index) =>
      states.get(session.id)!.attack.onFrame(direction, frame, session, index),
    onEnd: (direction, session) => states.get(session.id)?.attack.onEnd?.(direction),
    onClose: (session) => {
      const state = states.get(session.id);
      if (!state) return;
      states.delete(session.id);
      report(state, state.attack.finish());
    },
  });
  return attackServer(server, queue);
}

/** The face of a running attack: where victims connect, and its verdicts as they come. */
export function attackServer<V extends Verdict>(
  server: { readonly port: number; close(): Promise<void> },
  queue: VerdictQueue<V>,
): AttackServer<V> {
  const close = () => server.close();
  return {
    port: server.port,
    nextVerdict: () => queue.next(),
    verdicts: queue.all,
    close,
    [Symbol.asyncDispose]: close,
  };
}
