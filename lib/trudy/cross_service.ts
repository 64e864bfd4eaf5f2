/**
 * cross-service: Trudy holds another lab service's key and certificate (Blackboard's, taken from
 * the Blackboard host) and plays Bob with them; Alice is pointed at Trudy's port.
 *
 * Every lab server certificate comes from the same CA, carries serverAuth and may name the same
 * address (127.0.0.1): what tells them apart is the service's name. Trudy runs Bob's own handshake
 * (lib/bank) with the stolen identity, so whatever Alice accepts, Trudy really is Bob to her.
 *
 * Seed mode (`--protocol seed`): Bob's key arrives raw and unauthenticated; Alice takes
 * Blackboard's key as Bob's, Trudy proves it with the stolen key, reads Alice's secret and then
 * every operation, and answers them as Bob would (she keeps the deposits).
 *
 * Default: the certificate is the CA's, valid, for serverAuth and 127.0.0.1, but it names the
 * service `blackboard`, not `bank`. Alice checks the name, whatever address she dialled, refuses
 * at STEP 2 and tells Trudy why.
 *
 * Bob checks revocation before he takes Alice's secret (STEP 5); Trudy holds no CRL of the lab's
 * CA unless she is given a checker, so a default Alice who got that far (she took the stolen
 * certificate as Bob's and sent her signed secret) counts as accepted, and the verdict says that
 * Trudy could not finish Bob's handshake.
 */

import { type AttackServer, attackServer, type Verdict, VerdictQueue } from "./attack.ts";
import {
  BANK_HANDSHAKE_TIMEOUT_MS,
  BANK_MAX_FRAME,
  BANK_NAME,
  type BankMode,
  bankOps,
  type BankSession,
  bobHandshake,
  formatCents,
  HandshakeError,
  loadBobIdentity,
  parseAmount,
  UnknownOperationError,
} from "../bank/mod.ts";
import { errorMessage, printable, type StepLog } from "../runtime/mod.ts";
import { PeerRefusedError } from "../wire/mod.ts";
import { serveFramed } from "../net/mod.ts";
import {
  type Certificate,
  certificateLabel,
  type Revocation,
  RevocationUnavailableError,
  verifyCertificate,
} from "../pki/mod.ts";

export interface CrossServiceOptions {
  /** The stolen certificate (another service's, from the lab's CA) and its key (PKCS#8 PEM). */
  cert: Certificate;
  keyPem: string;
  /** The lab's root: Trudy's Bob checks Alice's certificate against it (default protocol). */
  root: Certificate;
  mode: BankMode;
  log: StepLog;
  /**
   * Default protocol: the revocation checker Trudy's Bob uses at STEP 5 (default: none she could
   * use, she holds no CRL of the lab's CA).
   */
  revocation?: Revocation;
  /** The name Alice expects in Bob's certificate (default `bank`): to explain her refusal. */
  bankName?: string;
  /** Port for Alice to connect to (0 picks one). */
  port?: number;
  hostname?: string;
  timeoutMs?: number;
  graceMs?: number;
  signal?: AbortSignal;
}

/** Why the stolen certificate fails as Bob's, as Trudy sees it: `name` when only its name does. */
async function whyRefused(
  cert: Certificate,
  root: Certificate,
  bankName: string,
): Promise<"name" | "other"> {
  try {
    await verifyCertificate(cert, { root, purpose: "serverAuth" });
  } catch {
    return "other";
  }
  try {
    await verifyCertificate(cert, { root, purpose: "serverAuth", expectedHost: bankName });
    return "other";
  } catch {
    return "name";
  }
}

/**
 * Trudy's Bob with a stolen identity: one verdict per Alice connection, given when that session
 * ends.
 */
export async function startCrossService(options: CrossServiceOptions): Promise<AttackServer> {
  const { cert, root, mode, log } = options;
  const bankName = options.bankName ?? BANK_NAME;
  // Seed mode: Bob's key goes raw (a seed Bob never carries a certificate); default: with it.
  const identity = await loadBobIdentity(options.keyPem, mode === "seed" ? undefined : cert);
  const revocation: Revocation = options.revocation ?? {
    current: () =>
      Promise.reject(
        new RevocationUnavailableError("Trudy's Bob holds no CRL of the lab's CA"),
      ),
  };
  const label = certificateLabel(cert);
  const stolen = mode === "seed" ? `${label}'s key` : `${label}'s certificate and key`;
  const timeoutMs = options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS;
  const queue = new VerdictQueue();
  const server = serveFramed({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    log,
    graceMs: options.graceMs ?? 0,
    ...(options.signal ? { signal: options.signal } : {}),
    stream: { maxFrame: BANK_MAX_FRAME, readTimeoutMs: timeoutMs },
    handler: async (stream, { remote, log }) => {
      log.info(`Alice connected from ${remote}: Trudy answers as Bob with ${stolen}`);
      let verdict: Verdict;
      try {
        const { session } = await bobHandshake(stream, {
          mode,
          log,
          identity,
          remote,
          root,
          revocation,
          timeoutMs,
        });
        const read = await bankAsBob(session, log, timeoutMs);
        verdict = {
          succeeded: true,
          reason: "cross-service-accepted",
          detail: `Alice took ${stolen} as Bob's${
            mode === "seed" ? " (seed: Bob's key is not authenticated)" : ""
          }; Trudy read her secret and ${read.length} operation(s)${
            read.length > 0 ? `: ${read.join(", ")}` : ""
          }`,
        };
      } catch (err) {
        verdict = await refusalVerdict(err);
      }
      queue.push(verdict);
    },
  });

  async function refusalVerdict(err: unknown): Promise<Verdict> {
    if (err instanceof PeerRefusedError) {
      const words = printable(err.reason);
      // Alice's refusal names the step it failed at (`STEP 2 …`, as lib/bank words it).
      if (/^STEP 2\b/.test(err.reason)) {
        const why = await whyRefused(cert, root, bankName);
        if (why === "name") {
          return {
            succeeded: false,
            reason: "wrong-service-refused",
            detail:
              `Alice refused ${stolen} at STEP 2: valid, from the lab's CA, for serverAuth, but it names ${label}, not ${bankName}; she said: ${words}`,
          };
        }
      }
      return {
        succeeded: false,
        reason: "key-refused",
        detail: `Alice refused ${stolen} and said why: ${words}`,
      };
    }
    if (err instanceof HandshakeError && err.step === 1) {
      return {
        succeeded: false,
        reason: "protocol-mismatch",
        detail: `Alice's Hello is not the ${
          mode === "seed" ? "seed" : "default"
        } protocol's that Trudy's Bob speaks: ${err.message}`,
      };
    }
    if (
      err instanceof HandshakeError && err.step === 5 && /cannot check revocation/.test(err.message)
    ) {
      return {
        succeeded: true,
        reason: "cross-service-accepted",
        detail:
          `Alice took ${stolen} as Bob's and sent her signed secret at STEP 5; Trudy's Bob holds no CRL of the lab's CA to finish the handshake, so no operation followed`,
      };
    }
    if (err instanceof HandshakeError && err.step === 3 && err.transport) {
      return {
        succeeded: false,
        reason: "hung-up-after-certificate",
        detail: `Alice hung up after ${stolen} without saying why`,
      };
    }
    return {
      succeeded: false,
      reason: "session-broke-off",
      detail: `Alice's session with Trudy's Bob broke off: ${errorMessage(err)}`,
    };
  }

  return attackServer(server, queue);
}

/**
 * Trudy banks as Bob would, until Alice leaves: she answers each operation (deposits "applied" to
 * an account only she holds) and returns what she read, in words.
 */
async function bankAsBob(
  session: BankSession,
  log: StepLog,
  timeoutMs: number,
): Promise<string[]> {
  const read: string[] = [];
  let balance = 0;
  if (session.mode === "secure") {
    await session.send("welcome", { customer: session.customer, balance });
  }
  log.step(6, `Alice banks with Trudy as account ${printable(session.customer)}`);
  for (;;) {
    let op;
    try {
      op = await session.next({ timeoutMs });
    } catch (err) {
      if (err instanceof UnknownOperationError) continue;
      log.info(`Alice's session ended: ${errorMessage(err)}`);
      return read;
    }
    if (op === null) return read;
    switch (op.type) {
      case "deposit":
      case "withdraw": {
        let cents: number;
        try {
          cents = parseAmount(op.amount);
        } catch (err) {
          await session.send("refused", { requestId: op.requestId, reason: errorMessage(err) });
          break;
        }
        read.push(`${op.type} ${formatCents(cents)}`);
        log.step(6, `Trudy read Alice's ${bankOps.label(op.type)} ${formatCents(cents)}`);
        if (op.type === "withdraw" && cents > balance) {
          await session.send("refused", { requestId: op.requestId, reason: "Insufficient funds" });
          break;
        }
        balance += op.type === "deposit" ? cents : -cents;
        await session.send("applied", {
          requestId: op.requestId,
          kind: op.type,
          amount: cents,
          balance,
          replayed: 0,
        });
        break;
      }
      case "balance":
        read.push("balance");
        await session.send("balanceIs", { balance });
        break;
      case "statement":
        read.push("statement");
        await session.send("statementIs", { entries: "" });
        break;
      case "exit":
        await session.send("bye", {});
        return read;
      default:
        await session.send("refused", { requestId: "", reason: `${op.type} is not a request` });
    }
  }
}
