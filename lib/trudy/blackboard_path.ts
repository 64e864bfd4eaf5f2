/**
 * What Trudy's attacks on Blackboard (session-key-sniff, message-replay) share: on each relayed
 * connection she reads the handshake as it passes, notes what the seeds put on the wire (the
 * session key echoed at STEP 5) and watches for Blackboard's refusal after her own frame went in.
 *
 * A refusal in the clear (seed mode) or in an HMAC-only record she reads. An AES-GCM record she
 * cannot open, so against the default she judges by what Blackboard does: a Blackboard that
 * refuses sends its error sealed and closes the session. Blackboard ending the connection first
 * (before the student did) right after her frame, before the student's next message went
 * through, or with a sealed record she cannot open as its last word, counts as refused, and the
 * verdict says that this is how she judged it.
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

/**
 * The ciphertext of Blackboard's sealed acknowledgement of a message ("received", no fields): its
 * one-byte message and AES-GCM's 16-byte tag.
 */
export const SEALED_ACK_BYTES = sessionProtocol.encode("received", {}).length + 16;

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
  /** Who stopped sending first: the server's side (`toClient`) or the client's (`toServer`). */
  endedFirst: Direction | undefined;
  /** Whether a frame of the student's own went to Blackboard after Trudy's (once armed). */
  studentSpokeAfter = false;
  /** Whether Blackboard's last frame (once armed) was a sealed record Trudy cannot open. */
  lastWordSealed = false;
  /** The ciphertext lengths of the sealed records Blackboard sent once armed, in order. */
  readonly sealedAfter: number[] = [];
  /**
   * How many of those answer the student's own records before Blackboard answers Trudy's frame
   * (message-replay: the original goes in before her copy, so its acknowledgement comes first).
   */
  answersBefore = 0;

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
    if (this.watch.armed) {
      if (direction === "toServer") this.studentSpokeAfter = true;
      else {
        this.lastWordSealed = msg.type === "sealed";
        if (msg.type === "sealed") this.sealedAfter.push(msg.ciphertext.length);
      }
    }
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

  /**
   * One side stopped sending. Blackboard ending the session first, after Trudy's frame went in
   * and before the student's next message went through (or right after a sealed record Trudy
   * cannot open), is its refusal: the default Blackboard refuses in a sealed record and closes.
   *
   * The student may be seen to stop first: it closes as soon as it reads that sealed record, and
   * on a loaded machine Trudy's relay can read the student's end before Blackboard's, though
   * Blackboard closed first. So Trudy also reads the length of Blackboard's answer to her frame, as
   * anyone on the path can: AES-GCM hides the content, not the size. An acknowledgement
   * ("received", no fields) is `SEALED_ACK_BYTES` long; a longer answer carries a reason, an error,
   * and Blackboard ending its side after it is its refusal, whoever was seen to stop first.
   */
  ended(direction: Direction): void {
    const first = this.endedFirst === undefined;
    if (first) this.endedFirst = direction;
    if (direction !== "toClient" || !this.watch.armed || this.watch.result !== undefined) return;
    const sealed = this.lastWordSealed
      ? ", its last word a sealed record Trudy cannot open (AES-GCM hides the reason)"
      : "";
    const answer = this.sealedAfter[this.answersBefore];
    if (first && !this.studentSpokeAfter) {
      const why =
        `Blackboard closed the session right after Trudy's frame, before the student's next message went through${sealed}`;
      this.log.info(`judged refused: ${why}`);
      this.watch.refused(why);
    } else if (first && this.lastWordSealed) {
      const why =
        "Blackboard sent a sealed record Trudy cannot open (AES-GCM hides the reason), then closed the session before the student did";
      this.log.info(`judged refused: ${why}`);
      this.watch.refused(why);
    } else if (answer !== undefined && answer > SEALED_ACK_BYTES) {
      const why =
        `Blackboard answered Trudy's frame with a sealed record of ${answer} bytes, longer than an acknowledgement's ${SEALED_ACK_BYTES} (AES-GCM hides the reason, not the size: an error), and closed the session`;
      this.log.info(`judged refused: ${why}`);
      this.watch.refused(why);
    }
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
  /** The address to listen on (default 127.0.0.1). */
  hostname?: string;
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
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
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
        onEnd: (direction) => observer.ended(direction),
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
