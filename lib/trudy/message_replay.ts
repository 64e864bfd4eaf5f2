/**
 * message-replay: Trudy sends a step-6 message that she saw pass a second time.
 *
 * Seed mode: a message is message | HMAC(session key, message), with no sequence number, so the
 * copy carries a valid HMAC and Blackboard prints it twice. Default mode: each record's MAC covers
 * its sequence number; the copy carries a number already used and Blackboard refuses it
 * ("sequence number …") and closes the session.
 */

import type { AttackServer } from "./attack.ts";
import {
  type BlackboardAttackOptions,
  type BlackboardVerdict,
  seedAcceptance,
  startBlackboardAttack,
} from "./blackboard_path.ts";

export type MessageReplayOptions = BlackboardAttackOptions;

/** Starts Trudy's relay in front of Blackboard: the first step-6 message of each session goes twice. */
export function startMessageReplay(
  options: MessageReplayOptions,
): AttackServer<BlackboardVerdict> {
  const settleMs = options.settleMs ?? 1000;
  return startBlackboardAttack(options, () => {
    let replayed: string | undefined;
    return {
      onFrame(observer, direction, frame, msg) {
        if (direction !== "toServer" || replayed !== undefined || !msg) return frame;
        if (msg.type === "seedMessage") {
          replayed = `message '${msg.message}' | HMAC`;
          observer.log.step(
            6,
            `saw the student's ${replayed} (seed: no sequence number): passed on, then sent again`,
          );
        } else if (msg.type === "record" || msg.type === "sealed") {
          replayed = `record ${msg.seq}`;
          observer.log.step(
            6,
            `saw ${replayed} (${
              msg.type === "sealed" ? "AES-GCM" : "message | HMAC"
            }, sequence numbered): passed on, then sent again`,
          );
        } else {
          return frame;
        }
        // Blackboard answers the original first (sealed: an acknowledgement), then the copy.
        observer.answersBefore = 1;
        observer.watch.arm();
        return [frame, frame];
      },
      verdict(observer, outcome) {
        if (replayed === undefined) {
          return {
            succeeded: false,
            reason: "nothing-to-replay",
            detail: "the session ended before a step-6 message passed: nothing to replay",
          };
        }
        if (outcome.kind === "refused") {
          return {
            succeeded: false,
            reason: "replay-refused",
            detail: `Blackboard refused the copy of ${replayed}: ${outcome.reason}`,
          };
        }
        return {
          succeeded: true,
          reason: "copy-accepted",
          detail: `Blackboard accepted the copy of the student's ${replayed}: ${
            observer.mode === "seed"
              ? seedAcceptance(outcome, settleMs)
              : `${
                outcome.kind === "silence" ? "no refusal within " + settleMs + " ms" : "no refusal"
              }`
          }`,
        };
      },
    };
  });
}
