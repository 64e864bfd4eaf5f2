/**
 * The CUHK certificate authority's state: its root (step 0), the ledger of every certificate it
 * issued, one-time enrolment codes, revocations and the CRL. Everything durable lives in the data
 * directory: `cuhk.cer`, `cuhk.key` (0600) and `ledger.db` (SQLite).
 */

import { createHash } from "node:crypto";
import { constantTimeEqual, fromHex, randomBytes, toHex } from "../crypto/mod.ts";
import { codeKey, enrolmentBinding } from "./protocol.ts";
import {
  assertPrivateFile,
  type Database,
  ensureDir,
  exists,
  GroupCommit,
  openDatabase,
  prepared,
  type StepLog,
  transaction,
  writeFileAtomic,
  writeSecretFile,
} from "../runtime/mod.ts";
import {
  type Certificate,
  certificatePem,
  checkStudentCsr,
  createCrl,
  createRoot,
  type Crl,
  CsrError,
  der,
  exportPrivateKeyPem,
  generateRsaKeyPair,
  importSigningKey,
  issueCertificate,
  parseCertificate,
  parseCsr,
  publicKeyOf,
  samePublicKey,
} from "../pki/mod.ts";

export const ROOT_CERT_FILE = "cuhk.cer";
export const ROOT_KEY_FILE = "cuhk.key";
export const LEDGER_FILE = "ledger.db";
export const DEFAULT_CODE_TTL_MS = 7 * 86_400_000;
export const DEFAULT_CRL_VALIDITY_MS = 3_600_000;

/**
 * Which rule refused an enrolment, for code and tests (the message is for people): the ID's form,
 * the CSR, the CN against the ID, and the code's binding, expiry and single use. A code used twice
 * is refused by the ledger check before signing (`code-used`) or, when two requests raced past it,
 * by the one UPDATE that consumes the code (`code-used-meanwhile`).
 */
export type EnrolmentRefusal =
  | "bad-id"
  | "bad-csr"
  | "cn-mismatch"
  | "code-invalid"
  | "code-expired"
  | "code-used"
  | "code-used-meanwhile";

/** An enrolment the CA refuses; the message is safe to send to the client. */
export class EnrolmentError extends Error {
  override name = "EnrolmentError";
  readonly reason: EnrolmentRefusal;

  constructor(message: string, reason: EnrolmentRefusal) {
    super(message);
    this.reason = reason;
  }
}

export interface LedgerEntry {
  serial: string;
  subject: string;
  sid: string | null;
  kind: "student" | "server";
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  status: "valid" | "revoked";
  revokedAt: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS certificates (
  serial      TEXT PRIMARY KEY,
  subject     TEXT NOT NULL,
  sid         TEXT,
  kind        TEXT NOT NULL CHECK (kind IN ('student', 'server')),
  not_before  TEXT NOT NULL,
  not_after   TEXT NOT NULL,
  issued_at   TEXT NOT NULL,
  status      TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
  revoked_at  TEXT,
  pem         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_sid ON certificates (sid);
CREATE TABLE IF NOT EXISTS enrolment_codes (
  hash        TEXT PRIMARY KEY,
  sid         TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER,
  serial      TEXT REFERENCES certificates (serial)
);
CREATE TABLE IF NOT EXISTS counters (
  name        TEXT PRIMARY KEY,
  value       INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('crl_number', 0), ('revocations', 0);
`;

/** Serials are kept as lower-case hex. */
export function serialOf(cert: Certificate): string {
  return cert.serialNumber.toLowerCase();
}

/** The ledger keeps a code's key (SHA-256 of its text), never the code. */
function hashCode(code: string): string {
  return createHash("sha256").update(code, "utf8").digest("hex");
}

/** A one-time code: 128 bits from the CSPRNG, in four groups of eight hex digits. */
function newCode(): string {
  return toHex(randomBytes(16)).match(/.{8}/g)!.join("-");
}

export interface OpenOptions {
  log?: StepLog;
  /** Root key size when a root is created (default 3072). */
  rootBits?: number;
  /** The key pair (extractable) of a root created here; default: a fresh one of `rootBits`. */
  rootKeys?: CryptoKeyPair;
  /**
   * Whether a directory with no CA gets a new root (default true). The operator's commands other
   * than `serve` and `init` pass false, so a mistyped `--data-dir` never makes a second CA.
   */
  create?: boolean;
}

export interface EnrolRequest {
  sid: string;
  /** The wire's proof of the code: `enrolmentBinding(codeKey(code), sid, csr)`. */
  binding?: Uint8Array;
  /** The code itself, for the operator's own local enrolments (tests, bench): bound here. */
  code?: string;
  /** DER or PEM PKCS#10. */
  csr: Uint8Array | string;
  /** The seeds' behaviour: no code needed. */
  openEnrolment?: boolean;
  now?: Date;
  /**
   * Told when the code was used already for this same key, so that the certificate returned is
   * the one issued then (nothing signed now).
   */
  onAgain?: (serial: string) => void;
}

export interface ServerIssue {
  name: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  validityDays?: number;
  /** The server's key pair (extractable); default: a fresh RSA-2048 one. */
  keys?: CryptoKeyPair;
}

export class CertificateAuthority {
  readonly dataDir: string;
  readonly root: Certificate;
  readonly rootPem: string;
  readonly #key: CryptoKey;
  readonly #db: Database;
  readonly #group: GroupCommit;
  #crl: { crl: Crl; revocations: number; expiresAt: number } | undefined;
  #signing: Promise<Crl> | undefined;
  #closed = false;

  private constructor(dataDir: string, root: Certificate, key: CryptoKey, db: Database) {
    this.dataDir = dataDir;
    this.root = root;
    this.rootPem = certificatePem(root);
    this.#key = key;
    this.#db = db;
    this.#group = new GroupCommit(db);
  }

  /**
   * Opens the CA in `dataDir`. Step 0: the root is created the first time and reused after; a
   * directory holding only one of `cuhk.cer` and `cuhk.key` is refused, never silently replaced.
   */
  static async open(dataDir: string, options: OpenOptions = {}): Promise<CertificateAuthority> {
    const certPath = `${dataDir}/${ROOT_CERT_FILE}`;
    const keyPath = `${dataDir}/${ROOT_KEY_FILE}`;
    const [hasCert, hasKey] = await Promise.all([exists(certPath), exists(keyPath)]);
    // check: no-ca-no-root tests/ca/negative_test.ts
    if (!hasCert && !hasKey && options.create === false) {
      throw new Error(
        `No CA in ${dataDir} (no ${ROOT_CERT_FILE}): give the CA's --data-dir, or create one ` +
          "with 'deno task ca init' or 'deno task ca serve'",
      );
    }
    await ensureDir(dataDir, 0o700);
    let root: Certificate;
    let key: CryptoKey;
    if (hasCert && hasKey) {
      await assertPrivateFile(keyPath);
      const keyPem = await Deno.readTextFile(keyPath);
      root = parseCertificate(await Deno.readTextFile(certPath), `root certificate ${certPath}`);
      // check: root-key-matches-cert tests/ca/negative_test.ts
      if (!samePublicKey(root, await publicKeyOf(keyPem))) {
        throw new Error(`${keyPath} is not the key of ${certPath}: refusing to start`);
      }
      key = await importSigningKey(keyPem);
      options.log?.step(
        0,
        `reusing root ${root.subject} (serial ${root.serialNumber}) from ${dataDir}`,
      );
      // check: half-root-refused tests/ca/negative_test.ts
    } else if (hasCert || hasKey) {
      const [have, missing] = hasCert ? [certPath, keyPath] : [keyPath, certPath];
      throw new Error(
        `Found ${have} but not ${missing}: refusing to make a new root over part of an old one`,
      );
    } else {
      const created = await createRoot({
        bits: options.rootBits ?? 3072,
        ...(options.rootKeys ? { keys: options.rootKeys } : {}),
      });
      root = created.cert;
      // Key first: a crash between the two writes leaves a refusal on restart, never a lost key.
      await writeSecretFile(keyPath, await exportPrivateKeyPem(created.keys.privateKey));
      await writeFileAtomic(certPath, certificatePem(root));
      // From here on the key is used as stored: not extractable.
      key = await importSigningKey(await Deno.readTextFile(keyPath));
      options.log?.step(0, `created root key pair and self-signed ${root.subject} in ${dataDir}`);
    }
    const db = openDatabase(`${dataDir}/${LEDGER_FILE}`);
    db.exec(SCHEMA);
    return new CertificateAuthority(dataDir, root, key, db);
  }

  get rootPath(): string {
    return `${this.dataDir}/${ROOT_CERT_FILE}`;
  }

  /** Issues a one-time enrolment code for `sid`; only its hash is stored. */
  createCode(
    sid: string,
    ttlMs = DEFAULT_CODE_TTL_MS,
    now = Date.now(),
  ): { code: string; expiresAt: Date } {
    const code = newCode();
    prepared(
      this.#db,
      "INSERT INTO enrolment_codes (hash, sid, created_at, expires_at) VALUES (?, ?, ?, ?)",
    ).run(hashCode(code), sid, now, now + ttlMs);
    return { code, expiresAt: new Date(now + ttlMs) };
  }

  /**
   * Finds the code whose key made `binding` over this ID and CSR, and checks that it is unused and
   * unexpired; returns its ledger key. Every code issued for the ID is tried, each MAC compared in
   * constant time, so the request never names the code.
   */
  async #checkBinding(
    sid: string,
    binding: Uint8Array,
    csr: Uint8Array,
    now: number,
  ): Promise<{ hash: string; usedFor?: string }> {
    const rows = prepared(
      this.#db,
      "SELECT hash, expires_at, used_at, serial FROM enrolment_codes WHERE sid = ?",
    ).all(sid) as {
      hash: string;
      expires_at: number;
      used_at: number | null;
      serial: string | null;
    }[];
    for (const row of rows) {
      const expected = await enrolmentBinding(fromHex(row.hash), sid, csr);
      // check: enrol-code-binding tests/ca/negative_test.ts
      if (!constantTimeEqual(expected, binding)) continue;
      // Used already: only the same student's same key may have its certificate again (below).
      if (row.used_at !== null) return { hash: row.hash, usedFor: row.serial ?? "" };
      // check: enrol-code-expiry tests/ca/negative_test.ts
      if (row.expires_at <= now) {
        throw new EnrolmentError("Enrolment code has expired", "code-expired");
      }
      return { hash: row.hash };
    }
    // No code of this ID binds this CSR: a wrong code, or a CSR swapped on the way.
    throw new EnrolmentError(`Enrolment code is not valid for ${sid}`, "code-invalid");
  }

  /**
   * Step 2: checks the CSR and the code, issues cert 2, and records it (consuming the code) in one
   * transaction before returning it. A refusal records nothing and consumes nothing.
   */
  async enrol(request: EnrolRequest): Promise<Certificate> {
    const now = request.now ?? new Date();
    // check: enrol-id-ten-digits tests/ca/negative_test.ts
    if (!/^\d{10}$/.test(request.sid)) {
      throw new EnrolmentError(
        `Student ID must be exactly 10 digits, got '${request.sid}'`,
        "bad-id",
      );
    }
    let csr;
    try {
      csr = parseCsr(request.csr);
    } catch (err) {
      if (err instanceof CsrError) throw new EnrolmentError(err.message, "bad-csr");
      throw err;
    }
    // The bytes the binding covers: the CSR as it came.
    const csrBytes = request.csr instanceof Uint8Array ? request.csr : der(csr);
    let code: { hash: string; usedFor?: string } | undefined;
    // check: enrol-code-required tests/ca/negative_test.ts
    if (!request.openEnrolment) {
      const binding = request.binding ??
        (request.code === undefined
          ? new Uint8Array(0)
          : await enrolmentBinding(await codeKey(request.code), request.sid, csrBytes));
      code = await this.#checkBinding(request.sid, binding, csrBytes, now.getTime());
    }
    let checked;
    try {
      checked = await checkStudentCsr(csr);
    } catch (err) {
      if (err instanceof CsrError) throw new EnrolmentError(err.message, "bad-csr");
      throw err;
    }
    // check: enrol-cn-matches-id tests/ca/negative_test.ts
    if (checked.sid !== request.sid) {
      throw new EnrolmentError(
        `CSR's CN ${checked.sid} does not match the requested ID ${request.sid}`,
        "cn-mismatch",
      );
    }
    if (code?.usedFor !== undefined) {
      const again = this.#again(code.usedFor, checked.publicKey, now);
      request.onAgain?.(code.usedFor);
      return again;
    }
    const codeHash = code?.hash;
    const cert = await issueCertificate({
      publicKey: checked.publicKey,
      profile: { kind: "student", sid: checked.sid },
      issuer: this.root,
      issuerKey: this.#key,
      now,
    });
    try {
      // In a group commit with the other enrolments of the moment: one fsync for all of them.
      await this.#group.run(() => {
        this.#record(cert, "student", checked.sid, now);
        if (codeHash === undefined) return;
        const used = prepared(
          this.#db,
          `UPDATE enrolment_codes SET used_at = ?, serial = ?
           WHERE hash = ? AND sid = ? AND used_at IS NULL AND expires_at > ?`,
        ).run(now.getTime(), serialOf(cert), codeHash, request.sid, now.getTime());
        // Another connection used the same code while this one was signing: undo the record.
        // check: enrol-code-claim tests/ca/negative_test.ts
        if (Number(used.changes) !== 1) {
          throw new EnrolmentError("Enrolment code has already been used", "code-used-meanwhile");
        }
      });
    } catch (err) {
      // A retry that raced its own first attempt (both were signing at once): when the code went
      // to this same key, this request gets that certificate, like any later retry.
      if (!(err instanceof EnrolmentError) || err.reason !== "code-used-meanwhile") throw err;
      const row = prepared(this.#db, "SELECT serial FROM enrolment_codes WHERE hash = ?").get(
        codeHash!,
      ) as { serial: string | null } | undefined;
      let again: Certificate;
      try {
        again = this.#again(row?.serial ?? "", checked.publicKey, now);
      } catch {
        throw err;
      }
      request.onAgain?.(row!.serial!);
      return again;
    }
    return cert;
  }

  /**
   * A request whose code was used already. The same student asking again with the same key (a
   * retry after a lost reply, or a copy of the request replayed by someone on the path) gets the
   * certificate the code was used for, unchanged: it is public, and nothing new is signed, so a
   * replayed request can no longer spend the student's enrolment. Any other key is a second use
   * of the code and is refused, as is a certificate revoked or expired since.
   */
  #again(serial: string, publicKey: Uint8Array, now: Date): Certificate {
    const row = prepared(this.#db, "SELECT pem, status FROM certificates WHERE serial = ?").get(
      serial,
    ) as { pem: string; status: string } | undefined;
    const cert = row ? parseCertificate(row.pem, `certificate ${serial}`) : undefined;
    const same = cert !== undefined && row!.status === "valid" && now <= cert.notAfter &&
      samePublicKey(cert, publicKey);
    // check: enrol-code-single-use tests/ca/negative_test.ts
    if (!same) throw new EnrolmentError("Enrolment code has already been used", "code-used");
    return cert;
  }

  /** The operator issues a server key and certificate (serverAuth, SAN). */
  async issueServer(request: ServerIssue): Promise<{ cert: Certificate; keyPem: string }> {
    const keys = request.keys ?? await generateRsaKeyPair(2048);
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    const dnsNames = [...new Set([request.name, ...(request.dnsNames ?? [])])];
    const cert = await issueCertificate({
      publicKey: spki,
      profile: {
        kind: "server",
        commonName: request.name,
        dnsNames,
        ipAddresses: request.ipAddresses ?? [],
      },
      issuer: this.root,
      issuerKey: this.#key,
      validityDays: request.validityDays ?? 365,
    });
    transaction(this.#db, () => this.#record(cert, "server", null, new Date()));
    return { cert, keyPem: await exportPrivateKeyPem(keys.privateKey) };
  }

  #record(cert: Certificate, kind: "student" | "server", sid: string | null, now: Date): void {
    prepared(
      this.#db,
      `INSERT INTO certificates (serial, subject, sid, kind, not_before, not_after, issued_at, pem)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      serialOf(cert),
      cert.subject,
      sid,
      kind,
      cert.notBefore.toISOString(),
      cert.notAfter.toISOString(),
      now.toISOString(),
      certificatePem(cert),
    );
  }

  /** Revokes by serial or by student ID; returns the serials newly revoked. */
  revoke(by: { serial: string } | { sid: string }, now = new Date()): string[] {
    return transaction(this.#db, () => {
      const rows = ("serial" in by
        ? prepared(
          this.#db,
          "SELECT serial FROM certificates WHERE serial = ? AND status = 'valid'",
        )
          .all(
            by.serial.toLowerCase(),
          )
        : prepared(this.#db, "SELECT serial FROM certificates WHERE sid = ? AND status = 'valid'")
          .all(by.sid)) as {
          serial: string;
        }[];
      const update = prepared(
        this.#db,
        "UPDATE certificates SET status = 'revoked', revoked_at = ? WHERE serial = ?",
      );
      for (const r of rows) {
        update.run(now.toISOString(), r.serial);
      }
      if (rows.length > 0) {
        prepared(this.#db, "UPDATE counters SET value = value + ? WHERE name = 'revocations'").run(
          rows.length,
        );
      }
      return rows.map((r) => r.serial);
    });
  }

  /** Whether a serial is in the ledger at all. */
  hasSerial(serial: string): boolean {
    return prepared(this.#db, "SELECT 1 FROM certificates WHERE serial = ?").get(
      serial.toLowerCase(),
    ) !== undefined;
  }

  /**
   * The current CRL, re-signed when a revocation happened (in any process) or it nears expiry.
   * One signing at a time: requests that come meanwhile wait for it and get its CRL, so the CRL
   * numbers this CA hands out only ever go up (two signings at once could finish in the wrong
   * order and leave the older CRL cached and served after the newer one).
   */
  async crl(validityMs = DEFAULT_CRL_VALIDITY_MS, now = new Date()): Promise<Crl> {
    while (this.#signing) await this.#signing.catch(() => {});
    const revocations = this.#counter("revocations");
    const cached = this.#crl;
    if (
      cached && cached.revocations === revocations &&
      cached.expiresAt - now.getTime() > validityMs / 2
    ) {
      return cached.crl;
    }
    const signing = this.#signCrl(validityMs, now, revocations);
    this.#signing = signing;
    try {
      return await signing;
    } finally {
      this.#signing = undefined;
    }
  }

  async #signCrl(validityMs: number, now: Date, revocations: number): Promise<Crl> {
    const entries = (prepared(
      this.#db,
      "SELECT serial, revoked_at FROM certificates WHERE status = 'revoked' ORDER BY revoked_at",
    ).all() as { serial: string; revoked_at: string }[]).map((r) => ({
      serialNumber: r.serial,
      revocationDate: new Date(r.revoked_at),
    }));
    const number = transaction(this.#db, () => {
      prepared(this.#db, "UPDATE counters SET value = value + 1 WHERE name = 'crl_number'").run();
      return this.#counter("crl_number");
    });
    const crl = await createCrl({
      issuer: this.root,
      issuerKey: this.#key,
      entries,
      crlNumber: number,
      now,
      validityMs,
    });
    this.#crl = { crl, revocations, expiresAt: now.getTime() + validityMs };
    return crl;
  }

  #counter(name: string): number {
    const row = prepared(this.#db, "SELECT value FROM counters WHERE name = ?").get(name) as {
      value: number;
    };
    return Number(row.value);
  }

  /** Every certificate issued, oldest first. */
  ledger(): LedgerEntry[] {
    return (prepared(
      this.#db,
      `SELECT serial, subject, sid, kind, not_before AS notBefore, not_after AS notAfter,
              issued_at AS issuedAt, status, revoked_at AS revokedAt
       FROM certificates ORDER BY issued_at, rowid`,
    ).all() as unknown as LedgerEntry[]).map((r) => ({ ...r }));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#group.flush();
    this.#db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
