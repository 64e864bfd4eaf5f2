/**
 * Bob's accounts in `node:sqlite` (WAL, full synchronous commits): one account per customer,
 * integer cents, never overdrawn. Every deposit or withdrawal is recorded under the request id
 * Alice chose, so a retry after a lost reply is applied once and gets the original answer, and a
 * crash at any point loses no committed operation and never half-applies one.
 *
 * Operations are committed in groups (`GroupCommit`): the operations that arrive while the event
 * loop is busy are applied one after another, each inside its own savepoint, and then committed
 * with one fsync. No answer leaves before the commit that holds it returns, so an acknowledged
 * operation is as durable as with one commit each; an operation that throws rolls back its own
 * savepoint and nothing else.
 */

import { AmountError, formatCents, MAX_BALANCE_CENTS, parseAmount } from "./amount.ts";
import { REQUEST_ID } from "./protocol.ts";
import { type Database, GroupCommit, openDatabase, transaction } from "../runtime/mod.ts";

type Statement = ReturnType<Database["prepare"]>;

export type OperationKind = "deposit" | "withdraw";

/** What one operation did; a retry gets the same result with `replayed` set. */
export type OperationResult =
  | {
    status: "applied";
    kind: OperationKind;
    amount: number;
    balance: number;
    replayed: boolean;
  }
  | { status: "refused"; kind: OperationKind; amount: number; reason: string; replayed: boolean };

export interface StatementEntry {
  at: string;
  kind: OperationKind;
  amount: number;
  status: "applied" | "refused";
  balance: number;
  requestId: string;
}

/** A request Bob refuses before it reaches an account (bad amount, bad id, id reuse). */
export class OperationError extends Error {
  override name = "OperationError";
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS accounts (
  customer    TEXT PRIMARY KEY,
  balance     INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0 AND balance <= ${MAX_BALANCE_CENTS}),
  opened_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
  id          INTEGER PRIMARY KEY,
  customer    TEXT NOT NULL REFERENCES accounts (customer),
  request_id  TEXT NOT NULL,
  kind        TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw')),
  amount      INTEGER NOT NULL CHECK (amount > 0),
  status      TEXT NOT NULL CHECK (status IN ('applied', 'refused')),
  balance     INTEGER NOT NULL,
  reason      TEXT,
  at          TEXT NOT NULL,
  UNIQUE (customer, request_id)
);
`;

interface OperationRow {
  kind: OperationKind;
  amount: number;
  status: "applied" | "refused";
  balance: number;
  reason: string | null;
  request_id: string;
  at: string;
}

/** Bob's statements, prepared once when the database is opened (not on every operation). */
interface Statements {
  ensure: Statement;
  balance: Statement;
  seen: Statement;
  update: Statement;
  record: Statement;
  statement: Statement;
  applied: Statement;
}

function prepareStatements(db: Database): Statements {
  return {
    ensure: db.prepare(
      "INSERT OR IGNORE INTO accounts (customer, balance, opened_at) VALUES (?, 0, ?)",
    ),
    balance: db.prepare("SELECT balance FROM accounts WHERE customer = ?"),
    seen: db.prepare(
      "SELECT kind, amount, status, balance, reason, request_id, at FROM operations WHERE customer = ? AND request_id = ?",
    ),
    update: db.prepare("UPDATE accounts SET balance = ? WHERE customer = ?"),
    record: db.prepare(
      `INSERT INTO operations (customer, request_id, kind, amount, status, balance, reason, at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    statement: db.prepare(
      `SELECT kind, amount, status, balance, reason, request_id, at FROM operations
       WHERE customer = ? ORDER BY id DESC LIMIT ?`,
    ),
    applied: db.prepare(
      "SELECT request_id, kind, amount FROM operations WHERE customer = ? AND status = 'applied'",
    ),
  };
}

export class Accounts {
  readonly path: string;
  readonly #db: Database;
  readonly #sql: Statements;
  #closed = false;
  readonly #group: GroupCommit;

  private constructor(path: string, db: Database) {
    this.path = path;
    this.#db = db;
    this.#sql = prepareStatements(db);
    this.#group = new GroupCommit(db);
  }

  /** Opens (creating if needed) the accounts database at `path`. */
  static open(path: string): Accounts {
    const db = openDatabase(path);
    db.exec(SCHEMA);
    return new Accounts(path, db);
  }

  #ensure(customer: string): number {
    this.#sql.ensure.run(customer, new Date().toISOString());
    const row = this.#sql.balance.get(customer) as
      | { balance: number }
      | undefined;
    return row!.balance;
  }

  /** Opens the account if it is new; returns its balance. */
  open(customer: string): number {
    return transaction(this.#db, () => this.#ensure(customer));
  }

  balance(customer: string): number {
    const row = this.#sql.balance.get(customer) as
      | { balance: number }
      | undefined;
    return row?.balance ?? 0;
  }

  /**
   * Applies one deposit or withdrawal. The amount text is parsed here with the same function Alice
   * used; a request id seen before returns the stored result unchanged. The promise settles once
   * the group commit that holds the operation has returned (see the module's comment), never
   * before: the caller may acknowledge it then.
   */
  async apply(
    request: { customer: string; requestId: string; kind: OperationKind; amount: string },
  ): Promise<OperationResult> {
    if (this.#closed) throw new Error(`${this.path} is closed`);
    const { customer, requestId, kind } = request;
    // check: request-id-form tests/bank/accounts_test.ts
    if (!REQUEST_ID.test(requestId)) {
      throw new OperationError("Invalid request id: 8 to 64 letters, digits, '-' or '_'");
    }
    let amount: number;
    try {
      amount = parseAmount(request.amount);
    } catch (err) {
      throw err instanceof AmountError ? new OperationError(err.message) : err;
    }
    return await this.#group.run(() => this.#applyOne(customer, requestId, kind, amount));
  }

  /** How many group commits have run, and how many operations they held (for tests and logs). */
  get commits(): { groups: number; operations: number } {
    const { groups, pieces } = this.#group.stats;
    return { groups, operations: pieces };
  }

  #applyOne(
    customer: string,
    requestId: string,
    kind: OperationKind,
    amount: number,
  ): OperationResult {
    const seen = this.#sql.seen.get(customer, requestId) as OperationRow | undefined;
    if (seen) {
      // check: request-id-reuse tests/bank/accounts_negative_test.ts
      if (seen.kind !== kind || seen.amount !== amount) {
        throw new OperationError(
          `Request id ${requestId} was already used for ${seen.kind} ${formatCents(seen.amount)}`,
        );
      }
      return seen.status === "applied"
        ? { status: "applied", kind, amount, balance: seen.balance, replayed: true }
        : { status: "refused", kind, amount, reason: seen.reason ?? "refused", replayed: true };
    }
    const before = this.#ensure(customer);
    let after = before;
    let reason: string | null = null;
    // check: account-no-overdraft tests/bank/accounts_negative_test.ts
    if (kind === "withdraw" && amount > before) {
      reason = `Insufficient funds: balance ${formatCents(before)}, withdrawal ${
        formatCents(amount)
      }`;
      // check: account-max-balance tests/bank/accounts_negative_test.ts
    } else if (kind === "deposit" && before + amount > MAX_BALANCE_CENTS) {
      reason = `Deposit refused: the balance would exceed ${formatCents(MAX_BALANCE_CENTS)}`;
    } else {
      after = kind === "deposit" ? before + amount : before - amount;
      this.#sql.update.run(after, customer);
    }
    this.#sql.record.run(
      customer,
      requestId,
      kind,
      amount,
      reason === null ? "applied" : "refused",
      after,
      reason,
      new Date().toISOString(),
    );
    return reason === null
      ? { status: "applied", kind, amount, balance: after, replayed: false }
      : { status: "refused", kind, amount, reason, replayed: false };
  }

  /** The most recent operations of one account, newest first. */
  statement(customer: string, limit = 10): StatementEntry[] {
    const rows = this.#sql.statement.all(
      customer,
      Math.max(1, Math.min(limit, 100)),
    ) as unknown as OperationRow[];
    return rows.map((r) => ({
      at: r.at,
      kind: r.kind,
      amount: r.amount,
      status: r.status,
      balance: r.balance,
      requestId: r.request_id,
    }));
  }

  /** Every applied operation's request id, for audits and tests. */
  appliedRequests(customer: string): Map<string, { kind: OperationKind; amount: number }> {
    const rows = this.#sql.applied.all(customer) as unknown as {
      request_id: string;
      kind: OperationKind;
      amount: number;
    }[];
    return new Map(rows.map((r) => [r.request_id, { kind: r.kind, amount: r.amount }]));
  }

  /** Commits what is pending first: an operation already accepted is not dropped by a close. */
  close(): void {
    if (this.#closed) return;
    this.#group.flush();
    this.#closed = true;
    this.#db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
