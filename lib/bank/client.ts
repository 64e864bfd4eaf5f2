/**
 * Alice, the bank's customer (system 2): connects, runs the handshake, and sends banking
 * operations. Amounts are parsed before anything is sent; every deposit and withdrawal carries a
 * request id, and when the connection is lost before the reply Alice reconnects and sends the same
 * request again, which Bob applies once.
 */

import { parseAmount } from "./amount.ts";
import { aliceHandshake } from "./handshake.ts";
import { connectionBroke, HandshakeError } from "./machine.ts";
import {
  BANK_HANDSHAKE_TIMEOUT_MS,
  BANK_MAX_FRAME,
  type BankMode,
  BOB_SHUTTING_DOWN,
} from "./protocol.ts";
import { type BankSession, CleartextFrameError, RecordError } from "./records.ts";
import { errorMessage, type HostPort, type StepLog } from "../runtime/mod.ts";
import { FramedStream, FrameError, PeerRefusedError } from "../wire/mod.ts";
import { randomBytes, toHex } from "../crypto/mod.ts";
import type { Certificate, CrlMemory } from "../pki/mod.ts";

/**
 * The bank's service name: Bob's certificate carries it (CN and SAN), and Alice checks it whatever
 * address she dials, so no other lab server's certificate (Blackboard's, the chat's) passes as Bob's.
 */
export const BANK_NAME = "bank";

export interface BankClientOptions {
  bank: HostPort;
  mode: BankMode;
  log: StepLog;
  /** Secure: the root Bob's certificate must chain to, Alice's certificate and key. */
  root?: Certificate;
  cert?: Certificate;
  keyPem?: string;
  /** Secure: the newest CRL Alice has seen (her home's, `crlMemoryOf`). */
  crlMemory?: CrlMemory;
  /** Secure: the name Bob's certificate must carry (default `bank`, whatever address is dialled). */
  expectedHost?: string;
  /** Seed: the account name claimed. */
  customer?: string;
  /** Deadline for each reply. */
  timeoutMs?: number;
  /** How long to keep reconnecting to resend a request whose reply was lost (default 5 s). */
  retryForMs?: number;
}

export type DepositOrWithdraw = "deposit" | "withdraw";

/** The answer to a deposit or withdrawal. */
export type OperationOutcome =
  | {
    ok: true;
    kind: DepositOrWithdraw;
    requestId: string;
    amount: number;
    balance: number;
    replayed: boolean;
  }
  | { ok: false; kind: DepositOrWithdraw; requestId: string; reason: string };

/** A fresh request id: 128 random bits. */
export function newRequestId(): string {
  return toHex(randomBytes(16));
}

/**
 * Whether an error means the connection broke (worth reconnecting), not a refusal. After the
 * handshake, a cleartext frame (`CleartextFrameError`: someone on the path may have put in an
 * `error` of their own) or a record that fails its checks (`RecordError`) means Bob's reply was
 * lost: the request goes again with the same id, and Bob applies it once.
 */
export function isConnectionLoss(err: unknown): boolean {
  if (err instanceof HandshakeError) return err.transport;
  if (err instanceof CleartextFrameError || err instanceof RecordError) return true;
  return connectionBroke(err) || err instanceof Deno.errors.ConnectionRefused;
}

/** Opens a connection to Bob and runs Alice's side of the handshake. */
export async function openSession(options: BankClientOptions): Promise<BankSession> {
  const conn = await Deno.connect({ hostname: options.bank.hostname, port: options.bank.port });
  const stream = new FramedStream(conn, {
    maxFrame: BANK_MAX_FRAME,
    readTimeoutMs: options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
  });
  const { session } = await aliceHandshake(stream, {
    mode: options.mode,
    log: options.log,
    expectedHost: options.expectedHost ?? BANK_NAME,
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.root ? { root: options.root } : {}),
    ...(options.cert ? { cert: options.cert } : {}),
    ...(options.keyPem ? { keyPem: options.keyPem } : {}),
    ...(options.crlMemory ? { crlMemory: options.crlMemory } : {}),
    ...(options.customer ? { customer: options.customer } : {}),
  }).catch((err) => {
    if (err instanceof PeerRefusedError) {
      throw new PeerRefusedError(err.reason, { context: "Bob refused" });
    }
    throw err;
  });
  return session;
}

/** Alice's banking client: one session at a time, reopened when a request's reply is lost. */
export class BankClient {
  readonly options: BankClientOptions;
  #session: BankSession | undefined;
  #closed = false;
  /** How many times a lost connection was reopened. */
  reconnects = 0;

  constructor(options: BankClientOptions) {
    this.options = options;
  }

  /** Connects now (otherwise the first request does). */
  static async connect(options: BankClientOptions): Promise<BankClient> {
    const client = new BankClient(options);
    await client.ensureSession();
    return client;
  }

  /** The current session, opening one if needed. */
  async ensureSession(): Promise<BankSession> {
    if (this.#closed) throw new Error("The bank client is closed");
    this.#session ??= await openSession(this.options);
    return this.#session;
  }

  get session(): BankSession | undefined {
    return this.#session;
  }

  async #request<T>(what: string, exchange: (s: BankSession) => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.options.retryForMs ?? 5000);
    let delay = 50;
    // Whether the request may have reached Bob: from then on only an authenticated answer counts.
    let sent = false;
    // One line for a run of retries, not one per attempt.
    let told = false;
    for (;;) {
      let inHandshake = true;
      try {
        const session = await this.ensureSession();
        inHandshake = false;
        sent = true;
        return await exchange(session);
      } catch (err) {
        // The session is over: say why inside it when it can still carry an authenticated record
        // (the default mode's answer to a cleartext frame or a bad record), then close.
        if (err instanceof CleartextFrameError || err instanceof RecordError) {
          await this.#session?.refuse(err.message);
        }
        this.#session?.close();
        this.#session = undefined;
        // A refusal during a new handshake travels before any key exists, so anyone on the path
        // can forge one: once the request may have been applied it is not its outcome, only a
        // broken connection to retry (the same request id is applied once).
        let unauthenticated = false;
        // check: bank-retry-unauthenticated-refusal tests/bank/forged_refusal_test.ts
        if (sent && inHandshake && err instanceof PeerRefusedError) unauthenticated = true;
        // Bob's goodbye when he stops (inside the session): the request was not applied; resend.
        const bobStopping = !inHandshake && err instanceof PeerRefusedError &&
          err.message === BOB_SHUTTING_DOWN;
        if (!(isConnectionLoss(err) || unauthenticated || bobStopping)) throw err;
        if (Date.now() + delay > deadline) {
          if (!sent) throw err;
          throw new Error(
            `the outcome of ${what} is unknown: the connection broke after it was sent and no ` +
              `authenticated answer came (${errorMessage(err)}); the same request may be sent ` +
              "again: Bob applies it once",
          );
        }
        if (!told) {
          told = true;
          this.options.log.warn(
            bobStopping
              ? `${BOB_SHUTTING_DOWN}: reconnecting to send ${what} again`
              : `connection lost during ${what} (${
                errorMessage(err)
              }): reconnecting to send it again`,
          );
        }
        this.reconnects++;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 500);
      }
    }
  }

  /**
   * Deposits or withdraws `amount` (text like `10.50`, checked here before anything is sent).
   * The same `requestId` may be given again to retry an operation: Bob applies it once.
   */
  async operate(
    kind: DepositOrWithdraw,
    amount: string,
    requestId = newRequestId(),
  ): Promise<OperationOutcome> {
    parseAmount(amount);
    const reply = await this.#request(`${kind} ${amount}`, async (s) => {
      await s.send(kind, { requestId, amount });
      return await s.receive(["applied", "refused"], this.#timeout());
    });
    if (reply.requestId !== requestId) {
      throw new FrameError(`Bob answered request ${reply.requestId}, not ${requestId}`);
    }
    if (reply.type === "refused") return { ok: false, kind, requestId, reason: reply.reason };
    return {
      ok: true,
      kind,
      requestId,
      amount: reply.amount,
      balance: reply.balance,
      replayed: reply.replayed === 1,
    };
  }

  async deposit(amount: string, requestId?: string): Promise<OperationOutcome> {
    return await this.operate("deposit", amount, requestId);
  }

  async withdraw(amount: string, requestId?: string): Promise<OperationOutcome> {
    return await this.operate("withdraw", amount, requestId);
  }

  /** The balance in cents. */
  async balance(): Promise<number> {
    const reply = await this.#request("balance", async (s) => {
      await s.send("balance", {});
      return await s.receive(["balanceIs"], this.#timeout());
    });
    return reply.balance;
  }

  /** The most recent operations, newest first, one tab-separated line each. */
  async statement(limit = 10): Promise<string[]> {
    const reply = await this.#request("statement", async (s) => {
      await s.send("statement", { limit });
      return await s.receive(["statementIs"], this.#timeout());
    });
    return reply.entries === "" ? [] : reply.entries.split("\n");
  }

  /** The seed's `Exit : 4`: says goodbye and closes. */
  async exit(): Promise<void> {
    const s = this.#session;
    if (s) {
      try {
        await s.send("exit", {});
        await s.receive(["bye"], this.#timeout());
      } finally {
        this.close();
      }
    } else {
      this.close();
    }
  }

  #timeout(): { timeoutMs?: number } {
    return this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {};
  }

  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
