/**
 * error-injection: on the path, Trudy replaces the server's first reply after the handshake (Bob's
 * answer to Alice's first operation, Blackboard's confirmation of a student's message) with a
 * cleartext `error` frame of her own: "Insufficient funds" to Alice, "Message refused" to a
 * student. She cannot read or forge the records, but anyone can write a cleartext frame.
 *
 * Seed mode (the bank): Alice takes the words as Bob's. She reports her withdrawal refused and
 * ends the session, although Bob applied it (his reply is the one Trudy dropped); a retry with a
 * new request id then withdraws twice.
 *
 * Default: after the handshake only authenticated records count. The victim treats the cleartext
 * frame as a broken connection and says so inside the session (an authenticated `error` record);
 * Alice then resends the same request, with the same request id, on a new connection, and Bob
 * applies it once. Trudy relays that retry untouched: she injects once per victim.
 *
 * How Trudy judges, from what she sees: a victim that believes the refusal ends the session at
 * once; one that does not answers inside the authenticated channel first (a record), and Alice
 * comes back on a new connection. Seed Blackboard acknowledges nothing after the handshake, so
 * there is no reply to replace there.
 */

import {
  type AttackServer,
  type ConnectionAttack,
  startRelayAttack,
  type Verdict,
  VerdictQueue,
} from "./attack.ts";
import { BANK_MAX_FRAME, bankProtocol } from "../bank/mod.ts";
import { blackboardProtocol, SESSION_MAX_FRAME } from "../blackboard/mod.ts";
import { type HostPort, printable, type StepLog } from "../runtime/mod.ts";
import type { RelaySession } from "../net/mod.ts";

/** Which system Trudy stands in front of. */
export type InjectionTarget = "bank" | "blackboard";

/** What Trudy's `error` says by default, per system. */
export const FORGED_REFUSALS: Record<InjectionTarget, string> = {
  bank: "Insufficient funds",
  blackboard: "Message refused: HMAC does not match",
};

/** Default wait, after the victim answered inside the session, for Alice to come back. */
export const RETRY_WAIT_MS = 3000;

export interface ErrorInjectionOptions {
  /** The real server. */
  upstream: HostPort;
  target: InjectionTarget;
  log: StepLog;
  /** The forged refusal (default `FORGED_REFUSALS[target]`). */
  reason?: string;
  /** Bank: how long to wait for Alice to come back after she left (default 3 s). */
  retryWaitMs?: number;
  port?: number;
  /** The address to listen on (default 127.0.0.1). */
  hostname?: string;
  graceMs?: number;
  signal?: AbortSignal;
}

const SERVER_NAME: Record<InjectionTarget, string> = { bank: "Bob", blackboard: "Blackboard" };
const VICTIM_NAME: Record<InjectionTarget, string> = { bank: "Alice", blackboard: "the student" };

/** The message type of a frame of the target's protocol, or undefined when it does not decode. */
function typeOf(target: InjectionTarget, frame: Uint8Array): string | undefined {
  try {
    return (target === "bank" ? bankProtocol : blackboardProtocol).decode(frame).type;
  } catch {
    return undefined;
  }
}

/** Step-6 traffic: the records of either mode (and the seeds' Blackboard message). */
const STEP6 = new Set(["record", "seedRecord", "sealed", "seedMessage"]);
/** What only the default mode sends after the handshake: authenticated records. */
const AUTHENTICATED = new Set(["record", "sealed"]);

/**
 * Starts Trudy's relay in front of Bob or Blackboard. One verdict per injection (the victim's
 * connection, and for the bank the retry it led to), or `nothing-to-replace` for a connection
 * that ended before the server said anything after the handshake.
 */
export function startErrorInjection(options: ErrorInjectionOptions): AttackServer {
  const { target } = options;
  const reason = options.reason ?? FORGED_REFUSALS[target];
  const server = SERVER_NAME[target];
  const victim = VICTIM_NAME[target];
  const retryWaitMs = options.retryWaitMs ?? RETRY_WAIT_MS;
  const forged = target === "bank"
    ? bankProtocol.encode("error", { reason })
    : blackboardProtocol.encode("error", { reason });
  const queue = new VerdictQueue<Verdict>();

  /** The injection under way (from Trudy's frame to the verdict), at most one at a time. */
  let current:
    | {
      id: number;
      /** The victim answered inside the authenticated channel after Trudy's frame. */
      answered: boolean;
      /** The victim's injected connection has ended. */
      ended: boolean;
      /** Connections opened since Trudy's frame went in (the victim's retry), and still open. */
      followers: number;
      open: number;
      timer: ReturnType<typeof setTimeout> | undefined;
    }
    | undefined;

  const conclude = (verdict: Verdict) => {
    if (current?.timer !== undefined) clearTimeout(current.timer);
    current = undefined;
    queue.push(verdict);
  };

  const notBelieved = (came: string): Verdict => ({
    succeeded: false,
    reason: "forged-error-not-believed",
    detail: `${victim} did not take Trudy's cleartext '${reason}' as ${server}'s refusal: ${
      target === "bank" ? "she" : "it"
    } treated it as a broken connection and said so inside the authenticated session${came}`,
  });

  /** The injected connection ended, or a retry did: is the verdict known now? */
  const settle = () => {
    const c = current;
    if (!c || !c.ended) return;
    if (!c.answered) {
      conclude({
        succeeded: true,
        reason: "forged-error-believed",
        detail:
          `${victim} took Trudy's cleartext '${reason}' as ${server}'s refusal and ended the session at once, although ${server} had answered (his reply, which Trudy dropped, was a record she cannot read)${
            target === "bank"
              ? ": the operation was applied, and a retry with a new request id applies it again"
              : ": the message was accepted"
          }`,
      });
    } else if (target === "blackboard") {
      conclude(notBelieved(""));
    } else if (c.followers > 0 && c.open === 0) {
      conclude(
        notBelieved(
          ", then came back on a new connection and resent her request (a retry with the same request id, which Bob applies once)",
        ),
      );
    } else if (c.followers === 0 && c.timer === undefined) {
      // Wait for Alice to come back with her request.
      c.timer = setTimeout(() => {
        if (current === c && c.followers === 0) {
          conclude(notBelieved(`; she did not come back within ${retryWaitMs} ms`));
        }
      }, retryWaitMs);
    }
  };

  const attack = (session: RelaySession, log: StepLog): ConnectionAttack => {
    let victimSpoke = false;
    let injectedHere = false;
    // Opened after Trudy's frame went in: the victim coming back (relayed untouched).
    const follower = current;
    if (follower) {
      follower.followers++;
      follower.open++;
      if (follower.timer !== undefined) clearTimeout(follower.timer);
      follower.timer = undefined;
      log.info(`a connection after the forged error (${victim} coming back?): relayed untouched`);
    }
    return {
      onFrame(direction, frame) {
        const type = typeOf(target, frame);
        if (type === undefined || !STEP6.has(type)) return frame;
        if (direction === "toServer") {
          if (injectedHere && current && AUTHENTICATED.has(type) && !current.answered) {
            current.answered = true;
            log.step(
              6,
              `${victim} answered Trudy's error inside the authenticated session (${type}): ${
                target === "bank" ? "she" : "it"
              } did not believe it (passed on to ${server})`,
            );
          }
          victimSpoke = true;
          return frame;
        }
        if (follower || current !== undefined || !victimSpoke) return frame;
        current = {
          id: session.id,
          answered: false,
          ended: false,
          followers: 0,
          open: 0,
          timer: undefined,
        };
        injectedHere = true;
        log.step(
          6,
          `${server}'s first reply after the handshake (${type}, which Trudy cannot read) dropped; in its place a cleartext error: '${
            printable(reason)
          }'`,
        );
        return forged;
      },
      finish(): Verdict {
        if (injectedHere && current?.id === session.id) {
          current.ended = true;
          settle();
        } else if (follower) {
          follower.open--;
          if (current === follower) settle();
        } else if (current === undefined) {
          conclude({
            succeeded: false,
            reason: "nothing-to-replace",
            detail:
              `${server} sent nothing after the handshake before the session ended (the seeds' Blackboard acknowledges nothing): no reply to replace`,
          });
        }
        // The attack's verdicts are the queue's above, one per injection; not one per connection.
        return { succeeded: false, reason: "nothing-to-replace", detail: "" };
      },
    };
  };

  const relay = startRelayAttack({
    upstream: options.upstream,
    log: options.log,
    maxFrame: target === "bank" ? BANK_MAX_FRAME : SESSION_MAX_FRAME,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
    ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    attack,
  });
  return {
    port: relay.port,
    nextVerdict: () => queue.next(),
    verdicts: queue.all,
    close: () => relay.close(),
    [Symbol.asyncDispose]: () => relay.close(),
  };
}
