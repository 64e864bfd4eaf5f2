/**
 * Fixtures for the bank tests: Bob on port 0 over a test PKI, Alice's client options for a test
 * student, Bob as a real process (`bank serve`), and concurrent customers whose acknowledged
 * operations are checked against Bob's database afterwards. (Relaying, rewriting and replaying frames is Trudy's: lib/net/relay.ts, lib/attack_bank_*.ts.)
 */

import assert from "node:assert/strict";
import {
  Accounts,
  BankClient,
  type BankClientOptions,
  type BankMode,
  type BobIdentity,
  formatCents,
  loadBobIdentity,
  newRequestId,
  type OperationOutcome,
  seedBobIdentity,
  serveBank,
} from "../../lib/bank/mod.ts";
import type { StepLog } from "../../lib/runtime/mod.ts";
import { fetchCrl } from "../../lib/ca/mod.ts";
import { type Certificate, type Crl, type CrlFetch, RevocationChecker } from "../../lib/pki/mod.ts";
import type { Server } from "../../lib/net/mod.ts";
import {
  ActorProcess,
  memoryLog,
  type TestPki,
  type TestServerCert,
  type TestStudent,
} from "./helpers.ts";

export interface TestBank extends AsyncDisposable {
  server: Server;
  port: number;
  accounts: Accounts;
  lines: string[];
  dir: string;
}

export interface TestBankOptions {
  mode?: BankMode;
  /** Bob's identity (default: a certificate for bank and 127.0.0.1 from the test PKI). */
  identity?: BobIdentity;
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** A fixed CRL that Bob checks customers against (through the shared checker). */
  crl?: Crl;
  /**
   * Where Bob's revocation checker fetches CRLs from, and how often (default: the test PKI's CA
   * server, at every handshake). Secure Bob always checks revocation.
   */
  crlSource?: { fetch: CrlFetch; source: string; refreshMs?: number };
}

const identities = new WeakMap<TestPki, Promise<BobIdentity>>();

/** Bob's identity from the test PKI, made once per PKI. */
export function bobIdentity(pki: TestPki): Promise<BobIdentity> {
  let p = identities.get(pki);
  if (!p) {
    p = pki.serverCert("bank", ["127.0.0.1"]).then((c) => loadBobIdentity(c.keyPem, c.cert));
    identities.set(pki, p);
  }
  return p;
}

let seedKey: Promise<BobIdentity> | undefined;

/** Seed-mode Bob's throwaway key (never the certified one), made once per test process. */
export function seedIdentity(): Promise<BobIdentity> {
  seedKey ??= seedBobIdentity();
  return seedKey;
}

/** Bob in this process, on port 0, with accounts in a temporary directory. */
export async function startBank(pki: TestPki, options: TestBankOptions = {}): Promise<TestBank> {
  const dir = await Deno.makeTempDir({ prefix: "lab-bank-" });
  const accounts = Accounts.open(`${dir}/accounts.db`);
  const { log, lines } = memoryLog("Bob");
  const fixed = options.crl;
  const ca = { hostname: "127.0.0.1", port: pki.server.port };
  const crlSource = options.crlSource ??
    (fixed ? { fetch: () => Promise.resolve(fixed), source: "the test's CRL" } : {
      fetch: (timeoutMs: number) => fetchCrl(ca, pki.root, timeoutMs),
      source: `the CA at ${pki.caAddr}`,
    });
  const revocation = (options.mode ?? "secure") === "secure" &&
    new RevocationChecker({
      fetch: crlSource.fetch,
      source: crlSource.source,
      root: pki.root,
      log,
      refreshMs: crlSource.refreshMs ?? 0,
      timeoutMs: 2000,
    });
  let server: Server;
  try {
    server = serveBank({
      mode: options.mode ?? "secure",
      accounts,
      identity: options.identity ??
        await ((options.mode ?? "secure") === "seed" ? seedIdentity() : bobIdentity(pki)),
      log,
      root: pki.root,
      port: 0,
      ...(options.handshakeTimeoutMs ? { handshakeTimeoutMs: options.handshakeTimeoutMs } : {}),
      ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      ...(revocation ? { revocation } : {}),
    });
  } catch (err) {
    accounts.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  return {
    server,
    port: server.port,
    accounts,
    lines,
    dir,
    async [Symbol.asyncDispose]() {
      await server.close();
      accounts.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Alice's client options for a test student against a port. */
export function aliceOptions(
  pki: TestPki,
  student: TestStudent,
  port: number,
  log: StepLog,
  extra: Partial<BankClientOptions> = {},
): BankClientOptions {
  return {
    bank: { hostname: "127.0.0.1", port },
    mode: "secure",
    log,
    root: pki.root as Certificate,
    cert: student.cert,
    keyPem: student.keyPem,
    ...extra,
  };
}

/** The bank actor's script. */
export const BANK = "actors/bank.ts";

/**
 * Starts `bank serve` on `port` (0 = any) and returns the process and its port. `ca` is the CA
 * whose CRL Bob checks (default mode: Bob always checks revocation, by default with the CA at
 * 127.0.0.1:9335, so tests give their own CA's address).
 */
export async function startBob(
  server: TestServerCert,
  dataDir: string,
  options: { mode?: "default" | "seed"; port?: number; ca?: string; extra?: string[] } = {},
): Promise<{ bob: ActorProcess; port: number }> {
  const bob = new ActorProcess(BANK, [
    "serve",
    "--port",
    String(options.port ?? 0),
    "--data-dir",
    dataDir,
    "--protocol",
    options.mode ?? "default",
    "--cert",
    server.certPath,
    "--key",
    server.keyPath,
    "--ca-cert",
    server.rootPath,
    ...(options.ca !== undefined ? ["--ca", options.ca] : []),
    ...(options.extra ?? []),
  ]);
  const port = Number((await bob.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  return { bob, port };
}

export interface Ledger {
  /** Applied operations as Alice saw them acknowledged, by request id. */
  applied: Map<string, { customer: string; delta: number }>;
  refused: number;
  /** Answers that came from a retry of a request Bob had already applied. */
  replayed: number;
  reconnects: number;
}

/**
 * `clients` sessions over `students` (several per customer), each doing `ops` random deposits
 * and withdrawals (drawn from `random`, default `Math.random`), or fewer once `stop()` says so;
 * `onProgress` is called after each acknowledged operation.
 */
export async function runCustomers(
  pki: TestPki,
  students: TestStudent[],
  port: number,
  options: {
    clients: number;
    ops: number;
    retryForMs: number;
    onProgress?: (done: number) => void;
    random?: () => number;
    stop?: () => boolean;
  },
): Promise<Ledger> {
  const ledger: Ledger = { applied: new Map(), refused: 0, replayed: 0, reconnects: 0 };
  let done = 0;
  const random = options.random ?? Math.random;
  const one = async (i: number) => {
    const student = students[i % students.length]!;
    const { log } = memoryLog(`Alice ${i}`);
    const client = new BankClient({
      ...aliceOptions(pki, student, port, log),
      retryForMs: options.retryForMs,
    });
    try {
      for (let n = 0; n < options.ops && !options.stop?.(); n++) {
        const deposit = random() < 0.55;
        const cents = 1 + Math.floor(random() * 5000);
        const requestId = newRequestId();
        const outcome: OperationOutcome = await client.operate(
          deposit ? "deposit" : "withdraw",
          formatCents(cents),
          requestId,
        );
        if (outcome.ok) {
          assert.ok(outcome.balance >= 0);
          if (outcome.replayed) ledger.replayed++;
          assert.equal(outcome.amount, cents);
          ledger.applied.set(requestId, {
            customer: student.sid,
            delta: deposit ? cents : -cents,
          });
        } else {
          assert.match(outcome.reason, /Insufficient funds/);
          ledger.refused++;
        }
        options.onProgress?.(++done);
      }
      await client.exit();
    } finally {
      ledger.reconnects += client.reconnects;
      client.close();
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => one(i)));
  return ledger;
}

/** Every acknowledged operation is in the database once, and nothing else was applied. */
export function assertLedger(dbPath: string, students: TestStudent[], ledger: Ledger): void {
  using accounts = Accounts.open(dbPath);
  let total = 0;
  for (const s of students) {
    const inDb = accounts.appliedRequests(s.sid);
    const acked = [...ledger.applied].filter(([, v]) => v.customer === s.sid);
    assert.equal(inDb.size, acked.length, `${s.sid}: applied operations in the database`);
    let sum = 0;
    for (const [id, v] of acked) {
      const row = inDb.get(id);
      assert.ok(row, `${s.sid}: acknowledged request ${id} is in the database`);
      assert.equal(row.kind === "deposit" ? row.amount : -row.amount, v.delta);
      sum += v.delta;
    }
    assert.equal(accounts.balance(s.sid), sum, `${s.sid}: balance = sum of accepted operations`);
    assert.ok(sum >= 0);
    total += acked.length;
  }
  assert.equal(total, ledger.applied.size);
}
