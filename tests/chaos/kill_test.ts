/**
 * Chaos: each server (the CA, Blackboard, Bob) runs as a real process and is killed with SIGKILL
 * 20 times at a random moment in the middle of a burst of work, then restarted on the same data
 * directory and port while its clients retry. Afterwards nothing is lost and nothing is there
 * twice.
 *
 * The kill moments come from a seeded PRNG; the seed is in each test's name, and
 * `CHAOS_SEED=N deno test … tests/chaos/` replays a run's kill schedule (the work itself races
 * with it, so a replay is as close as timing allows).
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  CertificateAuthority,
  fetchCrl,
  LEDGER_FILE,
  loadIdentity,
  requestCertificate,
  serialOf,
} from "../../lib/ca/mod.ts";
import { openSession, type UploadReceipt } from "../../lib/blackboard/mod.ts";
import {
  CertificateError,
  certificatePem,
  createCsr,
  type Crl,
  crlNumber,
  der,
} from "../../lib/pki/mod.ts";
import { Changes, errorMessage, type HostPort, waitFor } from "../../lib/runtime/mod.ts";
import { PeerRefusedError } from "../../lib/wire/mod.ts";
import { ActorProcess, memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { fileSha256, listFiles, writeTestFile } from "../_fixtures/blackboard.ts";
import { assertLedger, type Ledger, runCustomers, startBob } from "../_fixtures/bank.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const KILLS = 20;
const SEED = chaosSeed();
const SIDS = ["1155070001", "1155070002", "1155070003", "1155070004"];
const MiB = 1024 * 1024;
const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;

function chaosSeed(): number {
  const given = Deno.env.get("CHAOS_SEED");
  if (given === undefined) return crypto.getRandomValues(new Uint32Array(1))[0]!;
  if (!/^\d{1,10}$/.test(given) || Number(given) > 0xffff_ffff) {
    throw new Error(`CHAOS_SEED must be a whole number from 0 to 4294967295, got '${given}'`);
  }
  return Number(given);
}

/** mulberry32: a small seeded PRNG, numbers in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Two independent streams for one test: the kill moments, and the work (sizes, amounts…). */
function streams(salt: number): { kills: () => number; work: () => number } {
  return { kills: prng(SEED ^ salt), work: prng((SEED ^ salt) + 0x9e3779b9) };
}

/** `PRAGMA integrity_check` of a SQLite file (the server stopped): "ok" or its complaints. */
function integrityCheck(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as Record<string, unknown>[];
    return rows.map((r) => String(Object.values(r)[0])).join("; ");
  } finally {
    db.close();
  }
}

/** Waits for a server process's listening line; returns it and its port (kills it on failure). */
async function listening(proc: ActorProcess): Promise<{ proc: ActorProcess; port: number }> {
  try {
    return { proc, port: Number((await proc.waitFor(LISTENING))[1]) };
  } catch (err) {
    await proc.stop("SIGKILL");
    throw err;
  }
}

/**
 * A server that is killed with SIGKILL and restarted on the same port (and data directory) over
 * and over. Clients that lose their connection wait for the next start (`restartedSince`), which
 * the generation counter tells apart from the start they last saw.
 */
class KilledServer implements AsyncDisposable {
  readonly #start: (port: number) => Promise<{ proc: ActorProcess; port: number }>;
  readonly #changes = new Changes();
  #proc: ActorProcess | undefined;
  port = 0;
  /** How many times the server started. */
  generation = 0;
  up = false;
  kills = 0;
  /** The kills are over: clients finish what they are doing. */
  finished = false;
  /** The first failure of the chaos or of a client: everyone stops. */
  failure: unknown;
  /** The random delays before each kill, in ms. */
  readonly delays: number[] = [];

  constructor(start: (port: number) => Promise<{ proc: ActorProcess; port: number }>) {
    this.#start = start;
  }

  get proc(): ActorProcess {
    assert.ok(this.#proc, "the server was started");
    return this.#proc;
  }

  get address(): HostPort {
    return { hostname: "127.0.0.1", port: this.port };
  }

  /** Whether clients should stop starting new work. */
  get stopping(): boolean {
    return this.finished || this.failure !== undefined;
  }

  async start(): Promise<void> {
    const { proc, port } = await this.#start(this.port);
    this.#proc = proc;
    this.port = port;
    this.generation++;
    this.up = true;
    this.#changes.notify();
  }

  fail(err: unknown): void {
    this.failure ??= err;
    this.#changes.notify();
  }

  /**
   * Waits until the server started again after `generation` (the start a client used when its
   * connection broke with `cause`); after the last kill, the running server will do.
   */
  async restartedSince(generation: number, cause: unknown): Promise<void> {
    await waitFor(() => {
      if (this.failure !== undefined) throw this.failure;
      return this.up && (this.generation > generation || this.finished);
    }, {
      what: `the server to restart after: ${errorMessage(cause)}`,
      timeoutMs: 60_000,
      changes: this.#changes,
    });
  }

  /**
   * KILLS times: waits until the server's log shows `busy` (work in flight on this run), waits a
   * random delay of up to `maxDelayMs`, kills it with SIGKILL and starts it again. `afterKill` runs
   * once the process is gone, `afterStart` once the new one listens.
   */
  async chaos(
    random: () => number,
    busy: RegExp,
    maxDelayMs: number,
    hooks: { afterKill?: () => void; afterStart?: () => Promise<void> } = {},
  ): Promise<void> {
    const failed = new Promise<never>((_, reject) => {
      const check = () => {
        if (this.failure !== undefined) reject(this.failure);
        else if (!this.finished) this.#changes.next(60_000).then(check);
      };
      check();
    });
    failed.catch(() => {});
    try {
      for (let i = 0; i < KILLS; i++) {
        await Promise.race([this.proc.waitFor(busy, 60_000), failed]);
        const delay = Math.floor(random() * maxDelayMs);
        this.delays.push(delay);
        await new Promise((r) => setTimeout(r, delay));
        this.up = false;
        this.#changes.notify();
        const status = await this.proc.stop("SIGKILL");
        assert.equal(status.signal, "SIGKILL", `the server exited by itself: ${this.proc.tail()}`);
        this.kills++;
        hooks.afterKill?.();
        await this.start();
        await hooks.afterStart?.();
      }
    } catch (err) {
      this.fail(err);
      throw err;
    } finally {
      this.finished = true;
      this.#changes.notify();
    }
  }

  /** Runs the clients and the chaos together; throws the first failure of either. */
  async run(clients: Promise<unknown>, chaos: Promise<void>): Promise<void> {
    await Promise.allSettled([clients.catch((err) => this.fail(err)), chaos]);
    if (this.failure !== undefined) throw this.failure;
  }

  /** Stops the last run cleanly (SIGINT) and checks that it exited 0. */
  async stop(): Promise<void> {
    const status = await this.proc.stop("SIGINT");
    assert.equal(status.code, 0, this.proc.stderr.slice(-2000));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#proc?.stop("SIGKILL");
  }
}

/**
 * Whether a client's attempt failed because the server went away (a refused or reset connection,
 * a frame cut short, end of stream…), to be retried; not a refusal, a certificate that does not
 * verify, a failed assertion or a programming error, which end the test.
 */
function isCut(err: unknown): boolean {
  return !(err instanceof PeerRefusedError || err instanceof CertificateError ||
    err instanceof assert.AssertionError || err instanceof TypeError ||
    err instanceof RangeError || err instanceof ReferenceError);
}

function summary(server: KilledServer): string {
  const sorted = [...server.delays].sort((a, b) => a - b);
  return `seed ${SEED}: ${server.kills} kills, delays ${sorted[0]}-${sorted.at(-1)} ms`;
}

Deno.test(`CA killed ${KILLS} times during enrolment bursts: no serial twice, every certificate received in the ledger, CRL numbers never go back (seed ${SEED})`, async () => {
  const random = streams(0xca);
  await using dir = await tempDir("lab-chaos-ca-");
  const data = `${dir.path}/ca`;
  // The root once (RSA-2048 to keep the test quick); every 'ca serve' reuses it.
  (await CertificateAuthority.open(data, { rootKeys: await testKeyPair() }))
    .close();
  // The operator makes codes and revokes while the CA serves, as 'ca code' and 'ca revoke' do:
  // the directory's lock is the server's, the ledger is SQLite's to share.
  using operator = await CertificateAuthority.open(data, { create: false });
  const root = operator.root;
  const students = await Promise.all(SIDS.map(async (sid) => {
    const keys = await testKeyPair();
    const csr = der(await createCsr(keys, sid));
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    return { sid, csr, publicKey };
  }));
  await using ca = new KilledServer((port) =>
    listening(
      new ActorProcess("actors/ca.ts", ["serve", "--port", String(port), "--data-dir", data]),
    )
  );
  await ca.start();

  const received: { sid: string; serial: string; pem: string }[] = [];
  let cuts = 0;
  const revoked = new Set<string>();
  /** CRL numbers one client saw, in order. */
  const seen: number[] = [];
  /** The CRL numbers seen when each kill happened, and the first one after the restart. */
  const restarts: { before: number; after: number }[] = [];
  let before = 0;

  /** Retries `fn` until the CA answers; a refusal is thrown. */
  const untilAnswered = async <T>(fn: () => Promise<T>) => {
    for (let attempt = 0;; attempt++) {
      const generation = ca.generation;
      try {
        return await fn();
      } catch (err) {
        if (!isCut(err) || attempt > KILLS + 5) throw err;
        cuts++;
        await ca.restartedSince(generation, err);
      }
    }
  };
  const fetchNumber = async () => {
    const crl: Crl = await untilAnswered(() => fetchCrl(ca.address, root, 20_000));
    return {
      number: crlNumber(crl)!,
      serials: new Set(crl.entries.map((e) => e.serialNumber.toLowerCase())),
    };
  };

  const enrol = async (worker: number) => {
    for (let n = 0; !ca.stopping; n++) {
      const student = students[Math.floor(random.work() * students.length)]!;
      const { code } = operator.createCode(student.sid);
      // A reply that died with the CA is asked for again with the same request: the CA sends the
      // certificate the code was spent on (a refusal here fails the test).
      const cert = await untilAnswered(() =>
        requestCertificate({
          ca: ca.address,
          sid: student.sid,
          code,
          csr: student.csr,
          publicKey: student.publicKey,
          root,
          timeoutMs: 20_000,
        })
      );
      received.push({ sid: student.sid, serial: serialOf(cert), pem: certificatePem(cert) });
      if (worker !== 0) continue;
      // One client watches the CRL in order, and now and then the operator revokes: the next
      // CRL lists it, whichever run of the CA signs it.
      let victim: string | undefined;
      if (n % 3 === 2 && received.length > 0) {
        victim = received[Math.floor(random.work() * received.length)]!.serial;
        if (!revoked.has(victim)) {
          assert.deepEqual(operator.revoke({ serial: victim }), [victim]);
          revoked.add(victim);
        }
      }
      const crl = await fetchNumber();
      seen.push(crl.number);
      if (victim) assert.ok(crl.serials.has(victim), `CRL ${crl.number} lacks ${victim}`);
    }
  };

  await ca.run(
    Promise.all([0, 1, 2, 3].map(enrol)),
    ca.chaos(random.kills, /received CSR/, 300, {
      afterKill: () => {
        before = Math.max(0, ...seen, ...restarts.map((r) => r.after));
      },
      afterStart: async () => {
        restarts.push({ before, after: (await fetchNumber()).number });
      },
    }),
  );
  // The last CA lists every revocation.
  const last = await fetchNumber();
  assert.deepEqual([...last.serials].sort(), [...revoked].sort(), "the final CRL's entries");
  await ca.stop();
  operator.close();

  console.log(
    `CA, ${summary(ca)}: ${received.length} certificates received, ${cuts} cut requests ` +
      `retried, ${revoked.size} revoked, ` +
      `CRL numbers ${seen[0]}..${last.number}`,
  );
  assert.equal(ca.kills, KILLS);
  assert.equal(integrityCheck(`${data}/${LEDGER_FILE}`), "ok");
  // CRL numbers: never backwards for a client, and each restart signs above all it had before.
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i]! >= seen[i - 1]!, `CRL number went back from ${seen[i - 1]} to ${seen[i]}`);
  }
  for (const r of restarts) {
    assert.ok(r.after > r.before, `after a restart CRL number ${r.after}, before ${r.before}`);
  }
  assert.ok(last.number >= seen.at(-1)!);

  const db = new DatabaseSync(`${data}/${LEDGER_FILE}`, { readOnly: true });
  try {
    const certs = db.prepare("SELECT serial, sid, kind, pem FROM certificates").all() as {
      serial: string;
      sid: string | null;
      kind: string;
      pem: string;
    }[];
    const codes = db.prepare("SELECT sid, used_at, serial FROM enrolment_codes").all() as {
      sid: string;
      used_at: number | null;
      serial: string | null;
    }[];
    const ledger = new Map(certs.map((c) => [c.serial, c]));
    assert.equal(ledger.size, certs.length, "a serial twice in the ledger");
    // No serial reached two enrolments, and each one a client holds is in the ledger, as sent.
    assert.equal(new Set(received.map((r) => r.serial)).size, received.length, "serial twice");
    for (const r of received) {
      const row = ledger.get(r.serial);
      assert.ok(row, `certificate ${r.serial} received by ${r.sid} is not in the ledger`);
      assert.equal(row.sid, r.sid);
      assert.equal(row.pem.trim(), r.pem.trim());
    }
    // Every code was spent exactly once, on one certificate of the ledger, and every student holds
    // it: a reply lost with the CA was asked for again and came back the same.
    assert.equal(codes.length, received.length, "codes made = certificates received");
    const spent = codes.filter((c) => c.used_at !== null && c.serial !== null);
    assert.equal(spent.length, codes.length, "a code left unspent though its enrolment ended");
    assert.equal(new Set(spent.map((c) => c.serial)).size, spent.length, "two codes, one serial");
    for (const c of spent) {
      assert.equal(ledger.get(c.serial!)?.sid, c.sid, `code's certificate ${c.serial}`);
    }
    const studentCerts = certs.filter((c) => c.kind === "student");
    assert.equal(studentCerts.length, received.length, "certificates in the ledger");
  } finally {
    db.close();
  }
});

const NAMES = ["report.pdf", "lab2.tar.gz", "notes"];

Deno.test(`Blackboard killed ${KILLS} times during upload bursts: every report whole, there once, no partial left (seed ${SEED})`, async () => {
  const random = streams(0xbb);
  await using pki = await TestPki.start();
  await using dir = await tempDir("lab-chaos-bb-");
  const students = await Promise.all(SIDS.map((sid) => pki.student(sid)));
  const cert = await pki.serverCert("blackboard");
  const data = `${dir.path}/blackboard`;
  await using bb = new KilledServer((port) =>
    listening(
      new ActorProcess("actors/blackboard.ts", [
        "serve",
        "--port",
        String(port),
        "--data-dir",
        data,
        "--ca-cert",
        cert.rootPath,
        "--cert",
        cert.certPath,
        "--key",
        cert.keyPath,
        "--ca",
        pki.caAddr,
      ]),
    )
  );
  await bb.start();

  const receipts: { sid: string; stored: string; size: number; sha256: string }[] = [];
  let resumed = 0;
  let cuts = 0;
  const upload = async (sid: string, home: string) => {
    const identity = await loadIdentity(home);
    const { log } = memoryLog(`student ${sid}`);
    // Where the student keeps its upload IDs between attempts (the same upload resumes).
    const stateDir = `${dir.path}/state/${sid}`;
    for (let n = 0; !bb.stopping; n++) {
      const folder = `${dir.path}/files/${sid}/${n}`;
      await Deno.mkdir(folder, { recursive: true });
      const path = `${folder}/${NAMES[Math.floor(random.work() * NAMES.length)]}`;
      const size = MiB + Math.floor(random.work() * 3 * MiB);
      await writeTestFile(path, size);
      const sha256 = await fileSha256(path);
      let receipt: UploadReceipt | undefined;
      for (let attempt = 0; !receipt; attempt++) {
        const generation = bb.generation;
        try {
          using session = await openSession({
            blackboard: bb.address,
            identity,
            log,
            timeoutMs: 20_000,
          });
          receipt = await session.upload(path, { stateDir });
        } catch (err) {
          if (!isCut(err) || attempt > KILLS + 5) throw err;
          cuts++;
          await bb.restartedSince(generation, err);
        }
      }
      assert.equal(receipt.sha256, sha256);
      if (receipt.resumedFrom > 0) resumed++;
      receipts.push({ sid, stored: receipt.stored, size, sha256 });
      await Deno.remove(folder, { recursive: true });
    }
  };

  await bb.run(
    Promise.all(students.map((s) => upload(s.sid, s.home))),
    bb.chaos(random.kills, /starts uploading|resumes/, 400),
  );
  await bb.stop();

  console.log(
    `Blackboard, ${summary(bb)}: ${receipts.length} reports with a receipt, ${cuts} cut ` +
      `attempts retried, ${resumed} resumed from a partial`,
  );
  assert.equal(bb.kills, KILLS);
  // Exactly the reports that got a receipt, each once, each byte for byte the file sent.
  const stored = receipts.map((r) => r.stored);
  assert.equal(new Set(stored).size, stored.length, "two receipts name one report");
  const onDisk = (await listFiles(`${data}/reports`)).map((f) => `reports/${f}`);
  assert.deepEqual(onDisk.sort(), stored.sort(), "reports on disk = reports with a receipt");
  for (const r of receipts) {
    const path = `${data}/${r.stored}`;
    assert.equal((await Deno.stat(path)).size, r.size, r.stored);
    assert.equal(await fileSha256(path), r.sha256, `${r.stored} is not the file sent`);
  }
  // Every upload finished: no partial is left.
  assert.deepEqual(await listFiles(`${data}/partial`), []);
});

Deno.test(`Bob killed ${KILLS} times during deposits and withdrawals: each acknowledged operation applied once, money conserved (seed ${SEED})`, async () => {
  const random = streams(0xb0b);
  await using pki = await TestPki.start();
  await using dir = await tempDir("lab-chaos-bank-");
  const students = await Promise.all(SIDS.map((sid) => pki.student(sid)));
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  await using bob = new KilledServer(async (port) => {
    const { bob, port: listens } = await startBob(cert, dir.path, { port, ca: pki.caAddr });
    return { proc: bob, port: listens };
  });
  await bob.start();

  let ledger: Ledger | undefined;
  await bob.run(
    // Two customers' sessions per account; each lost reply is resent with its request id.
    runCustomers(pki, students, bob.port, {
      clients: 8,
      ops: 1_000_000,
      retryForMs: 30_000,
      random: random.work,
      stop: () => bob.stopping,
    }).then((l) => (ledger = l)),
    bob.chaos(random.kills, /\b(applied|refused)\b/, 300),
  );
  await bob.stop();
  assert.ok(ledger);

  console.log(
    `Bob, ${summary(bob)}: ${ledger.applied.size} operations applied, ${ledger.refused} refused, ` +
      `${ledger.reconnects} reconnects, ${ledger.replayed} retries answered from the journal`,
  );
  assert.equal(bob.kills, KILLS);
  const path = `${dir.path}/accounts.db`;
  assert.equal(integrityCheck(path), "ok");
  // Every acknowledged operation is in the journal once, nothing else was applied, and each
  // balance is the sum of its applied operations.
  assertLedger(path, students, ledger);
  // Replayed in order, the journal never takes an account below zero and agrees with each
  // balance it recorded: no money made or lost between operations either.
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const ops = db.prepare(
      "SELECT customer, kind, amount, status, balance FROM operations ORDER BY id",
    ).all() as {
      customer: string;
      kind: string;
      amount: number;
      status: string;
      balance: number;
    }[];
    const running = new Map<string, number>();
    for (const op of ops) {
      let balance = running.get(op.customer) ?? 0;
      if (op.status === "applied") balance += op.kind === "deposit" ? op.amount : -op.amount;
      assert.ok(balance >= 0, `${op.customer} below zero`);
      assert.equal(op.balance, balance, `${op.customer}: recorded balance`);
      running.set(op.customer, balance);
    }
    const accounts = db.prepare("SELECT customer, balance FROM accounts").all() as {
      customer: string;
      balance: number;
    }[];
    for (const a of accounts) assert.equal(a.balance, running.get(a.customer) ?? 0, a.customer);
  } finally {
    db.close();
  }
});
