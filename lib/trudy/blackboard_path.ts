/**
 * What Trudy's attacks on Blackboard (session-key-sniff, message-replay) share: on each relayed
 * connection she reads the handshake as it passes, notes what the seeds put on the wire (the
 * session key echoed at STEP 5) and watches for Blackboard's refusal after her own frame went in.
 */

import {
  type AttackServer,
  type ConnectionAttack,
  describeAcceptance,
  RefusalWatch,
  startRelayAttack,
  type Verdict,
  type WatchOutcome,
} from "./attack.ts";
import { blackboardProtocol, SESSION_MAX_FRAME, sessionProtocol } from "../blackboard/mod.ts";
import { type HostPort, printable, type StepLog } from "../runtime/mod.ts";
import { sha256, toHex } from "../crypto/mod.ts";
import type { Direction, FrameResult, RelaySession } from "../net/mod.ts";

/** Default wait for a refusal after Trudy's frame went in. */
export const SETTLE_MS = 1000;

/** A verdict on Blackboard, with what Trudy sniffed (the seeds' session key, if it was on the wire). */
export interface BlackboardVerdict extends Verdict {
  /** The session key read from STEP 5 (seed mode only). */
  sessionKey?: Uint8Array;
  /** The outer message types seen, in order, as `toServer seedRequest`. */
  seen: string[];
}

/** What Trudy knows about one connection so far. */
export class BlackboardObserver {
  readonly log: StepLog;
  readonly watch: RefusalWatch;
  readonly seen: string[] = [];
  mode: "seed" | "default" | undefined;
  sid: string | undefined;
  encrypt = false;
  sessionKey: Uint8Array | undefined;

  constructor(log: StepLog, settleMs: number) {
    this.log = log;
    this.watch = new RefusalWatch(settleMs);
  }

  /**
   * Reads one frame as it passes and logs what it is; returns the decoded message (or undefined
   * for a frame that is not a Blackboard message).
   */
  async observe(direction: Direction, frame: Uint8Array) {
    let msg;
    try {
      msg = blackboardProtocol.decode(frame);
    } catch {
      return undefined;
    }
    this.seen.push(`${direction} ${msg.type}`);
    const { log } = this;
    switch (msg.type) {
      case "seedRequest":
      case "request":
        this.mode = msg.type === "seedRequest" ? "seed" : "default";
        this.sid = /SID:(\d+)/.exec(msg.request)?.[1];
        if (msg.type === "request") this.encrypt = msg.records !== "hmac";
        log.step(3, `saw "${msg.request}" with cert 2 (${this.mode} protocol): passed on`);
        break;
      case "seedSessionKey":
        log.step(4, "saw the session key, RSA-OAEP to the student's key: Trudy cannot read it");
        break;
      case "sessionKey":
        log.step(
          4,
          "saw Blackboard's ephemeral X25519 share and stapled CRL, signed over the student's share: no session key on the wire, and no long-term key Trudy could steal later opens it",
        );
        break;
      case "seedKeyEcho":
        this.sessionKey = msg.sessionKey;
        log.step(
          5,
          `the student sent the decrypted session key back IN THE CLEAR: ${
            toHex(msg.sessionKey)
          } (SHA-256 ${await keyFingerprint(msg.sessionKey)}…)`,
        );
        break;
      case "confirm":
        log.step(
          5,
          "saw the student's signature and key confirmation: a MAC over the exchange, no key on the wire",
        );
        break;
      case "error":
        if (direction === "toClient") {
          log.info(`Blackboard refused, in the clear: ${msg.reason}`);
          this.watch.refused(msg.reason);
        }
        break;
      case "record": {
        // After the handshake Blackboard refuses inside a record. An HMAC-only record carries its
        // message in the clear, so Trudy reads the refusal (an AES-GCM one she cannot read).
        if (direction !== "toClient") break;
        let inner;
        try {
          inner = sessionProtocol.decode(msg.payload);
        } catch {
          break;
        }
        if (inner.type === "error") {
          log.info(
            `Blackboard refused, in an HMAC record Trudy can read: ${printable(inner.reason)}`,
          );
          this.watch.refused(inner.reason);
        }
        break;
      }
      default:
        break;
    }
    return msg;
  }

  /** The verdict's common part. */
  extras(): { seen: string[]; sessionKey?: Uint8Array } {
    return { seen: this.seen, ...(this.sessionKey ? { sessionKey: this.sessionKey } : {}) };
  }
}

/** The first 8 bytes of SHA-256(key), in hex: names a key without showing it. */
export async function keyFingerprint(key: Uint8Array): Promise<string> {
  return toHex((await sha256(key)).subarray(0, 8));
}

export interface BlackboardAttackOptions {
  blackboard: HostPort;
  log: StepLog;
  port?: number;
  /** How long to wait for a refusal after Trudy's frame went in (default 1 s). */
  settleMs?: number;
  graceMs?: number;
  signal?: AbortSignal;
}

/** One connection of a Blackboard attack: what to do with frames, and the verdict. */
export interface BlackboardTactic {
  onFrame(
    observer: BlackboardObserver,
    direction: Direction,
    frame: Uint8Array,
    msg: Awaited<ReturnType<BlackboardObserver["observe"]>>,
    session: RelaySession,
  ): Promise<FrameResult> | FrameResult;
  verdict(observer: BlackboardObserver, outcome: WatchOutcome): Verdict;
}

/** Trudy's relay in front of Blackboard running `tactic` on every student connection. */
export function startBlackboardAttack(
  options: BlackboardAttackOptions,
  tactic: () => BlackboardTactic,
): AttackServer<BlackboardVerdict> {
  const settleMs = options.settleMs ?? SETTLE_MS;
  return startRelayAttack({
    upstream: options.blackboard,
    log: options.log,
    maxFrame: SESSION_MAX_FRAME,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    attack: (_session, log): ConnectionAttack<BlackboardVerdict> => {
      const observer = new BlackboardObserver(log, settleMs);
      const t = tactic();
      const verdict = (outcome: WatchOutcome): BlackboardVerdict => ({
        ...t.verdict(observer, outcome),
        ...observer.extras(),
      });
      return {
        onFrame: async (direction, frame, session) =>
          await t.onFrame(
            observer,
            direction,
            frame,
            await observer.observe(direction, frame),
            session,
          ),
        early: observer.watch.outcome.then(verdict),
        finish: () => {
          observer.watch.closed();
          return verdict(observer.watch.result ?? { kind: "closed" });
        },
      };
    },
  });
}

/** How acceptance was judged, for a seed verdict (seed Blackboard acknowledges nothing). */
export function seedAcceptance(outcome: WatchOutcome, settleMs: number): string {
  return `${
    describeAcceptance(outcome, settleMs)
  } (seed Blackboard sends no acknowledgement, so Trudy judges acceptance from the absence of a refusal)`;
}
