/**
 * Bob, the bank server (system 2): the handshake, then banking operations against the accounts,
 * for many customers and many sessions of one customer at once. A failed handshake or a bad record
 * gets a one-line refusal naming the step and closes that session; everyone else goes on.
 */

import { type Accounts, OperationError, type StatementEntry } from "./accounts.ts";
import { formatCents } from "./amount.ts";
import { bobHandshake } from "./handshake.ts";
import { type BobIdentity, HandshakeError } from "./machine.ts";
import {
  BANK_HANDSHAKE_TIMEOUT_MS,
  BANK_IDLE_TIMEOUT_MS,
  BANK_MAX_FRAME,
  BANK_PORT,
  type BankMode,
  bankOps,
  bankProtocol,
  BOB_SHUTTING_DOWN,
  stepName,
} from "./protocol.ts";
import {
  type BankSession,
  CleartextFrameError,
  RecordError,
  UnknownOperationError,
} from "./records.ts";
import { DeadlineError, FrameError, PeerRefusedError } from "../wire/mod.ts";
import { printable, type StepLog, unlessAborted } from "../runtime/mod.ts";
import type { Certificate, Revocation } from "../pki/mod.ts";
import { HandshakeGate, type HandshakeLimit, serveFramed, type Server } from "../net/mod.ts";

export interface BankServerOptions {
  mode: BankMode;
  accounts: Accounts;
  identity: BobIdentity;
  log: StepLog;
  /** Secure: the root customers' certificates chain to. */
  root?: Certificate;
  /**
   * Secure (required there): the shared revocation checker (lib/pki), asked at each handshake; it
   * refreshes the CRL and fails closed once the CRL it holds is past its nextUpdate.
   */
  revocation?: Revocation;
  hostname?: string;
  port?: number;
  signal?: AbortSignal;
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxConnections?: number;
  /** Connections one address may hold at once (default 16). */
  maxPerAddress?: number;
  /**
   * Handshakes one address may start per second, and in a burst (default 20 a second, bursts of
   * 40): each costs Bob an RSA signature before anyone is authenticated.
   */
  handshakeLimit?: Partial<HandshakeLimit>;
}

/** One statement entry per line, tab-separated: time, kind, amount, status, balance. */
export function encodeStatement(entries: StatementEntry[]): string {
  return entries.map((e) =>
    [e.at, e.kind, formatCents(e.amount), e.status, formatCents(e.balance)].join("\t")
  ).join("\n");
}

export function serveBank(options: BankServerOptions): Server {
  const { accounts, mode } = options;
  // check: seed-throwaway-key tests/bank/session_test.ts
  if (mode === "seed" && options.identity.cert) {
    // Seed mode decrypts textbook RSA: never with the CA-certified key.
    throw new TypeError(
      "Seed mode runs with a throwaway key (seedBobIdentity), not Bob's certified one",
    );
  }
  // check: bob-revocation-required tests/bank/session_test.ts
  if (mode === "secure" && !options.revocation) {
    throw new TypeError("Secure mode needs a revocation checker: Bob always checks revocation");
  }
  const idleMs = options.idleTimeoutMs ?? BANK_IDLE_TIMEOUT_MS;
  // Per address, before Bob reads a byte; a flood's refusals are summarised, not logged one by one.
  const gate = new HandshakeGate(options.handshakeLimit, options.log);
  const server = serveFramed({
    hostname: options.hostname,
    port: options.port ?? BANK_PORT,
    log: options.log,
    signal: options.signal,
    maxConnections: options.maxConnections,
    maxPerAddress: options.maxPerAddress,
    stream: {
      maxFrame: BANK_MAX_FRAME,
      readTimeoutMs: options.handshakeTimeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
    },
    handler: async (stream, { remote, log, stopping }, conn) => {
      const host = (conn.remoteAddr as Deno.NetAddr).hostname ?? remote;
      const admitted = await gate.admit(
        host,
        remote,
        (reason) => stream.writeFrame(bankProtocol.encode("error", { reason })),
      );
      if (!admitted) return;
      let session: BankSession;
      try {
        ({ session } = await bobHandshake(stream, {
          mode,
          log,
          identity: options.identity,
          remote,
          ...(options.root ? { root: options.root } : {}),
          ...(options.revocation ? { revocation: options.revocation } : {}),
          ...(options.handshakeTimeoutMs ? { timeoutMs: options.handshakeTimeoutMs } : {}),
        }));
      } catch (err) {
        // Both may carry the peer's text: printable() before the log.
        if (err instanceof HandshakeError) {
          return log.warn(`refused ${remote}: ${printable(err.message)}`);
        }
        if (err instanceof PeerRefusedError) {
          return log.warn(`${remote} gave up: ${printable(err.message)}`);
        }
        throw err;
      }
      const customer = session.customer;
      if (mode === "secure") {
        await session.send("welcome", { customer, balance: accounts.open(customer) });
      }
      log.info(`${stepName(6)}: session open for account ${customer}`);
      await serveOperations(session, accounts, log, idleMs, stopping);
    },
  });
  server.finished.then(() => gate.flush(), () => gate.flush());
  return server;
}

async function serveOperations(
  session: BankSession,
  accounts: Accounts,
  log: StepLog,
  idleMs: number,
  stopping: AbortSignal,
): Promise<void> {
  const customer = session.customer;
  // Bob stopping (SIGINT): each session ends between two operations, with Alice told why inside
  // it; an operation already read is applied and answered first.
  for (;;) {
    let op;
    try {
      const next = await unlessAborted(session.next({ timeoutMs: idleMs }), stopping);
      if (next === "aborted") {
        log.info(`${customer}: told the session ends, Bob is stopping`);
        await session.refuse(BOB_SHUTTING_DOWN);
        return;
      }
      op = next;
    } catch (err) {
      if (err instanceof UnknownOperationError) {
        log.warn(`${customer}: ${err.message}`);
        await session.send("refused", {
          requestId: "",
          reason: `Unknown operation: ${err.message}`,
        });
        continue;
      }
      // A bad record, or (default mode) a cleartext frame after the handshake: the session is
      // over; the refusal goes inside a record in the default mode (`refuse`).
      if (err instanceof RecordError || err instanceof CleartextFrameError) {
        log.warn(`${customer}: ${err.message}: closing`);
        await session.refuse(err.message);
        return;
      }
      if (err instanceof DeadlineError) {
        log.warn(`${customer}: idle: ${err.message}`);
        return;
      }
      if (err instanceof FrameError) {
        log.warn(`${customer}: ${err.message}: closing`);
        await session.refuse(err.message);
        return;
      }
      if (err instanceof PeerRefusedError) {
        return log.warn(`${customer} gave up: ${printable(err.message)}`);
      }
      throw err;
    }
    if (op === null) return log.info(`${customer}: disconnected`);
    switch (op.type) {
      case "error":
        // Alice ended the session, inside a record (she saw a cleartext frame or a bad record).
        log.warn(`${customer} ended the session: ${printable(op.reason)}`);
        return;
      case "deposit":
      case "withdraw": {
        let result;
        try {
          result = await accounts.apply({
            customer,
            requestId: op.requestId,
            kind: op.type,
            amount: op.amount,
          });
        } catch (err) {
          if (!(err instanceof OperationError)) throw err;
          log.warn(`${customer}: ${op.type} refused: ${err.message}`);
          await session.send("refused", { requestId: op.requestId, reason: err.message });
          break;
        }
        const again = result.replayed ? " (retry: original result)" : "";
        if (result.status === "refused") {
          log.info(
            `${customer}: ${bankOps.label(op.type)} ${
              formatCents(result.amount)
            } refused${again}: ${result.reason}`,
          );
          await session.send("refused", { requestId: op.requestId, reason: result.reason });
        } else {
          log.info(
            `${customer}: ${bankOps.label(op.type)} ${
              formatCents(result.amount)
            } applied${again}, balance ${formatCents(result.balance)}`,
          );
          await session.send("applied", {
            requestId: op.requestId,
            kind: result.kind,
            amount: result.amount,
            balance: result.balance,
            replayed: result.replayed ? 1 : 0,
          });
        }
        break;
      }
      case "balance":
        await session.send("balanceIs", { balance: accounts.balance(customer) });
        break;
      case "statement":
        await session.send("statementIs", {
          entries: encodeStatement(accounts.statement(customer, op.limit)),
        });
        break;
      case "exit":
        await session.send("bye", {});
        log.info(`${customer}: ${bankOps.label("exit")}`);
        return;
      default:
        log.warn(`${customer}: ${op.type} is not a request`);
        await session.send("refused", {
          requestId: "",
          reason: `Unknown operation: ${op.type} is not a request`,
        });
    }
  }
}
