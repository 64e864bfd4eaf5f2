/**
 * Fixtures for the bank tests: Bob on port 0 over a test PKI and Alice's client options for a test
 * student. (Relaying, rewriting and replaying frames is Trudy's: lib/net/relay.ts, lib/attack_bank_*.ts.)
 */

import {
  Accounts,
  type BankClientOptions,
  type BankMode,
  type BobIdentity,
  loadBobIdentity,
  seedBobIdentity,
  serveBank,
} from "../../lib/bank/mod.ts";
import type { StepLog } from "../../lib/runtime/mod.ts";
import { fetchCrl } from "../../lib/ca/mod.ts";
import { type Certificate, type Crl, type CrlFetch, RevocationChecker } from "../../lib/pki/mod.ts";
import type { Server } from "../../lib/net/mod.ts";
import { memoryLog, type TestPki, type TestStudent } from "./helpers.ts";

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
