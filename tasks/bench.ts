#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=data --allow-run=deno,openssl,cfssl,python3,cat --allow-sys=loadavg
/**
 * `deno task bench`: the lab measured side by side with its peers, in one run, and one table.
 *
 *     deno task bench [--pairs 3] [--seconds 3] [--only ID,ID] [--json FILE]
 *
 * Each row runs lab then peer, PAIRS times in turn (so a noisy neighbour hits both), and prints
 * the median and the spread (min–max) of each, their ratio (above 1: the lab did better) and the
 * target from issue #13. A peer that cannot be run is reported as missing. The servers are the
 * real actors, each in its own process; the peers are OpenSSL's s_server (timed by s_time), cfssl
 * serve with its sqlite certdb, raw node:sqlite, WebCrypto's own throughput and a seed-style
 * Python select()+ssl chat server. The results go to data/bench/latest.json (the previous one
 * becomes data/bench/previous.json and is compared). Scratch files live in data/bench/run-*.
 */

import { DatabaseSync } from "node:sqlite";
import {
  denoCommand,
  ensureDir,
  parseCommand,
  parsePositiveInt,
  PROJECT_ROOT as ROOT,
  runCommand,
  runMain,
  RunningProcess,
  StepLog,
  writeFileAtomic,
  writeSecretFile,
} from "../lib/runtime/mod.ts";
import {
  CertificateAuthority,
  loadIdentity,
  requestCertificate,
  storeCertificate,
  storeKey,
} from "../lib/ca/mod.ts";
import {
  certificatePem,
  createCsr,
  der,
  exportPrivateKeyPem,
  generateRsaKeyPair,
} from "../lib/pki/mod.ts";
import { openSession } from "../lib/blackboard/mod.ts";
import { BankClient } from "../lib/bank/mod.ts";
import {
  type BenchRun,
  compareRuns,
  formatHeading,
  formatTable,
  parseLoadavg,
  parseRun,
  parseSTime,
  type RowResult,
  type Target,
} from "./bench_report.ts";
import { portOf, startActor } from "./bench_actors.ts";
import { freePort } from "../lib/net/mod.ts";

const USAGE = `Usage: deno task bench [options]

Measures the lab beside its peers in one run (lab and peer alternating), prints one table with
medians, spreads, ratios and targets, and writes data/bench/latest.json.

Options:
  --pairs N      lab/peer pairs per row (default 3)
  --seconds N    how long each timed measurement runs (default 3)
  --only IDS     only these rows, comma-separated: tls12, tls13, blackboard, ca, upload, bank, fanout
  --json FILE    also write the results there`;

const SID = "1155990000";
const MiB = 1024 * 1024;
const ALL = ["tls12", "tls13", "blackboard", "ca", "upload", "bank", "fanout"] as const;

function progress(text: string): void {
  console.error(`bench: ${text}`);
}

async function loadavg(): Promise<number[]> {
  try {
    return parseLoadavg((await runCommand("cat", ["/proc/loadavg"])).stdout);
  } catch {
    return Deno.loadavg();
  }
}

/** Whether `command` runs (the task may run only the commands it names, not `sh`). */
async function hasCommand(command: string, versionArg: string): Promise<boolean> {
  try {
    return (await runCommand(command, [versionArg], { timeoutMs: 10_000 })).code === 0;
  } catch {
    return false;
  }
}

async function machine(): Promise<BenchRun["machine"]> {
  // Deno reads /proc only with --allow-all: cat reads it.
  const cpuinfo = (await runCommand("cat", ["/proc/cpuinfo"]).catch(() => undefined))?.stdout ?? "";
  const meminfo = (await runCommand("cat", ["/proc/meminfo"]).catch(() => undefined))?.stdout ?? "";
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    memMiB: Math.round(Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0) / 1024),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (performance.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port}`);
      await sleep(100);
    }
  }
}

/** Handshakes per second that `openssl s_time -new` gets from 127.0.0.1:port. */
async function sTime(port: number, version: "-tls1_2" | "-tls1_3", seconds: number) {
  const out = await runCommand("openssl", [
    "s_time",
    "-connect",
    `127.0.0.1:${port}`,
    "-new",
    version,
    "-time",
    String(seconds),
  ], { timeoutMs: (seconds + 30) * 1000 });
  const rate = parseSTime(out.stdout);
  if (!Number.isFinite(rate)) throw new Error(`s_time printed no rate: ${out.stdout.slice(-300)}`);
  return rate;
}

/** Runs `fn` over and over for `seconds` with `clients` at once; completions per second. */
async function timed(
  seconds: number,
  clients: number,
  fn: (client: number, i: number) => Promise<void>,
): Promise<number> {
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  let done = 0;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    let i = 0;
    while (performance.now() < end) {
      await fn(c, i++);
      done++;
    }
  }));
  return done / ((performance.now() - start) / 1000);
}

interface Row {
  id: (typeof ALL)[number];
  label: string;
  peer: string;
  unit: string;
  higherIsBetter: boolean;
  target: Target;
  /** Set up; returns the two sides, or throws (the row is then reported as failed). */
  setup: () => Promise<Sides>;
}

interface Sides {
  lab: () => Promise<number>;
  /** Undefined when the peer is missing (then `missing` says why). */
  peer?: (() => Promise<number>) | undefined;
  missing?: string;
  /** Extra absolute rows derived from the same runs (the upload's RSS, the chat server's RSS). */
  extras?: () => RowResult[];
  /** A line printed under the table (e.g. what the peer stored). */
  note?: () => string;
  teardown: () => Promise<void>;
}

async function stopAll(procs: (RunningProcess | undefined)[]): Promise<void> {
  for (const p of procs) {
    if (!p || p.exited) continue;
    p.kill("SIGINT");
    const t = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.status;
    clearTimeout(t);
  }
}

async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "bench",
    usage: USAGE,
    options: {
      pairs: { type: "string", default: "3" },
      seconds: { type: "string", default: "3" },
      only: { type: "string" },
      json: { type: "string" },
    },
  });
  if (!parsed) return 0;
  const pairs = parsePositiveInt(parsed.values.pairs, "pairs", 100);
  const seconds = parsePositiveInt(parsed.values.seconds, "seconds", 600);
  const only = parsed.values.only?.split(",").map((s) => s.trim());
  const wanted = (id: string) => !only || only.includes(id);

  const loadStart = await loadavg();
  const benchDir = `${ROOT}/data/bench`;
  await ensureDir(benchDir);
  const dir = await Deno.makeTempDir({ dir: benchDir, prefix: "run-" });
  const quiet = new StepLog("bench", { quiet: true });
  const running: RunningProcess[] = [];
  // Ctrl-C: stop the servers and peers this run started, remove its scratch folder, then exit.
  const interrupted = () => {
    for (const p of running) p.kill("SIGKILL");
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  const results: RowResult[] = [];
  try {
    progress(`setting up a CA, server certificates and a student in ${dir}…`);
    const ca = await CertificateAuthority.open(`${dir}/ca`);
    const serverCert = async (name: string, to: string) => {
      const issued = await ca.issueServer({ name, ipAddresses: ["127.0.0.1"] });
      await ensureDir(to);
      await writeSecretFile(`${to}/${name}.key`, issued.keyPem);
      await writeFileAtomic(`${to}/${name}.cer`, certificatePem(issued.cert));
      return { cert: `${to}/${name}.cer`, key: `${to}/${name}.key` };
    };
    await serverCert("blackboard", `${dir}/bb`);
    const bank = await serverCert("bank", `${dir}/bank`);
    const chat = await serverCert("chat", `${dir}/chat`);
    const keys = await generateRsaKeyPair(2048);
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    const home = `${dir}/home`;
    await storeKey(home, await exportPrivateKeyPem(keys.privateKey));
    await storeCertificate(
      home,
      await ca.enrol({
        sid: SID,
        code: ca.createCode(SID).code,
        csr: der(await createCsr(keys, SID)),
      }),
      ca.root,
    );
    const identity = await loadIdentity(home);
    // Enrolment codes for the CA row: each issuance over the network spends one.
    const enrolments: { sid: string; code: string; csr: Uint8Array }[] = [];
    if (wanted("ca")) {
      progress("creating enrolment codes for the CA row…");
      for (let i = 0; i < 1500; i++) {
        const sid = `1156${String(i).padStart(6, "0")}`;
        enrolments.push({
          sid,
          code: ca.createCode(sid).code,
          csr: der(await createCsr(keys, sid)),
        });
      }
    }
    const csrPem = (await createCsr(keys, SID)).toString("pem");
    const root = ca.root;
    const rootPath = ca.rootPath;
    ca.close();

    let caServer: RunningProcess | undefined;
    const caAddress = async () => {
      if (!caServer) {
        caServer = await startActor(
          "ca.ts",
          ["serve", "--port", "0", "--data-dir", `${dir}/ca`],
          dir,
        );
        running.push(caServer);
      }
      return { hostname: "127.0.0.1", port: portOf(caServer) };
    };
    const haveOpenssl = await hasCommand("openssl", "version");

    /** openssl s_server -www on the chat's certificate and key (RSA-2048), for s_time. */
    const sServer = async () => {
      if (!haveOpenssl) return undefined;
      const port = freePort();
      const p = new RunningProcess("openssl", [
        "s_server",
        "-quiet",
        "-www",
        "-accept",
        `127.0.0.1:${port}`,
        "-cert",
        chat.cert,
        "-key",
        chat.key,
      ], { name: "openssl s_server" });
      running.push(p);
      await waitForPort(port);
      return { p, port };
    };

    const tlsRow = (id: "tls12" | "tls13", version: "-tls1_2" | "-tls1_3", min: number): Row => ({
      id,
      label: `chat TLS ${id === "tls12" ? "1.2" : "1.3"} handshakes/s (s_time -new)`,
      peer: "openssl s_server, same cert/key",
      unit: "handshakes/s",
      higherIsBetter: true,
      target: { kind: "ratio", min },
      setup: async () => {
        const server = await startActor(
          "chat.ts",
          ["serve", "--port", "0", "--cert", chat.cert, "--key", chat.key, "--quiet"],
          dir,
          { extra: ["--allow-ffi"] },
        );
        running.push(server);
        const peer = await sServer();
        return {
          lab: () => sTime(portOf(server), version, seconds),
          ...(peer
            ? { peer: () => sTime(peer.port, version, seconds) }
            : { missing: "missing: openssl not installed" }),
          teardown: () => stopAll([server, peer?.p]),
        };
      },
    });

    const rows: Row[] = [
      tlsRow("tls12", "-tls1_2", 0.7),
      tlsRow("tls13", "-tls1_3", 1.0),
      {
        id: "blackboard",
        label: "Blackboard sessions/s, steps 3–5, 1 client",
        peer: "s_server TLS 1.2 full handshakes, RSA-2048",
        unit: "sessions/s",
        higherIsBetter: true,
        target: { kind: "ratio", min: 0.5 },
        setup: async () => {
          const caAddr = await caAddress();
          const server = await startActor("blackboard.ts", [
            "serve",
            "--port",
            "0",
            "--ca-cert",
            rootPath,
            "--ca",
            `127.0.0.1:${caAddr.port}`,
            "--data-dir",
            `${dir}/bb`,
            // The bench measures the work of a session, not the per-address limiter (20/s).
            "--handshake-rate",
            "1000000",
            "--handshake-burst",
            "1000000",
          ], dir);
          running.push(server);
          const peer = await sServer();
          return {
            lab: () =>
              timed(seconds, 1, async () => {
                using _session = await openSession({
                  blackboard: { hostname: "127.0.0.1", port: portOf(server) },
                  identity,
                  log: quiet,
                  timeoutMs: 10_000,
                });
              }),
            ...(peer
              ? { peer: () => sTime(peer.port, "-tls1_2", seconds) }
              : { missing: "missing: openssl not installed" }),
            teardown: () => stopAll([server, peer?.p]),
          };
        },
      },
      {
        id: "ca",
        label: "CA issuances/s over the network, ledger included, 4 clients",
        peer: "cfssl serve, RSA-3072 CA, sqlite certdb",
        unit: "issuances/s",
        higherIsBetter: true,
        target: { kind: "ratio", min: 1.0 },
        setup: async () => {
          const caAddr = await caAddress();
          let next = 0;
          const cfssl = await startCfssl(`${dir}/cfssl`);
          if (cfssl.process) running.push(cfssl.process);
          const sign = async () => {
            const res = await fetch(`http://127.0.0.1:${cfssl.port}/api/v1/cfssl/sign`, {
              method: "POST",
              body: JSON.stringify({ certificate_request: csrPem }),
            });
            const body = await res.json() as { success?: boolean; errors?: unknown };
            if (!body.success) throw new Error(`cfssl sign failed: ${JSON.stringify(body.errors)}`);
          };
          return {
            lab: () =>
              timed(seconds, 4, async () => {
                const e = enrolments[next++];
                if (!e) throw new Error("out of enrolment codes");
                await requestCertificate({
                  ca: caAddr,
                  sid: e.sid,
                  code: e.code,
                  csr: e.csr,
                  publicKey,
                  root,
                  timeoutMs: 10_000,
                });
              }),
            ...(cfssl.process
              ? { peer: () => timed(seconds, 4, sign) }
              : { missing: cfssl.missing ?? "missing" }),
            note: () => {
              if (!cfssl.process) return "";
              const db = new DatabaseSync(`${dir}/cfssl/certs.db`);
              const row = db.prepare("SELECT count(*) AS n FROM certificates").get() as {
                n: number;
              };
              db.close();
              return `cfssl's certdb holds ${row.n} certificates; the lab's CA used ${next} codes`;
            },
            teardown: () => stopAll([cfssl.process]),
          };
        },
      },
      uploadRow(),
      {
        id: "bank",
        label: "bank durable ops/s, 8 clients",
        peer: "raw node:sqlite, WAL + synchronous=FULL, UPDATE+INSERT",
        unit: "ops/s",
        higherIsBetter: true,
        target: { kind: "ratio", min: 0.8 },
        setup: async () => {
          const caAddr = await caAddress();
          const server = await startActor("bank.ts", [
            "serve",
            "--port",
            "0",
            "--ca-cert",
            rootPath,
            "--ca",
            `127.0.0.1:${caAddr.port}`,
            "--data-dir",
            `${dir}/bank`,
            "--cert",
            bank.cert,
            "--key",
            bank.key,
          ], dir);
          running.push(server);
          const clients: BankClient[] = [];
          for (let i = 0; i < 8; i++) {
            clients.push(
              await BankClient.connect({
                bank: { hostname: "127.0.0.1", port: portOf(server) },
                mode: "secure",
                log: quiet,
                root,
                cert: identity.cert,
                keyPem: identity.keyPem,
                timeoutMs: 10_000,
              }),
            );
          }
          const raw = rawSqlite(`${dir}/raw-bank.db`);
          return {
            lab: () =>
              timed(seconds, 8, async (c) => {
                await clients[c]!.operate("deposit", "1.00");
              }),
            peer: () => Promise.resolve(raw.run(seconds)),
            teardown: async () => {
              for (const c of clients) c.close();
              raw.close();
              await stopAll([server]);
            },
          };
        },
      },
      fanoutRow(chat, rootPath),
    ];

    for (const row of rows) {
      if (!wanted(row.id)) continue;
      const result: RowResult = {
        id: row.id,
        label: row.label,
        peer: row.peer,
        unit: row.unit,
        higherIsBetter: row.higherIsBetter,
        target: row.target,
        lab: [],
        peerValues: [],
      };
      results.push(result);
      let sides: Sides | undefined;
      try {
        progress(`${row.label}: setting up…`);
        sides = await row.setup();
        if (sides.missing) result.problem = sides.missing;
        for (let i = 0; i < pairs; i++) {
          const lab = await sides.lab();
          result.lab.push(lab);
          let peer = NaN;
          if (sides.peer) {
            try {
              peer = await sides.peer();
              result.peerValues.push(peer);
            } catch (err) {
              result.problem = `failed: ${err instanceof Error ? err.message : String(err)}`;
              sides.peer = undefined;
            }
          }
          progress(`  pair ${i + 1}/${pairs}: lab ${lab.toFixed(1)}, peer ${peer.toFixed(1)}`);
        }
        if (sides.extras) results.push(...sides.extras());
        if (sides.note) result.note = sides.note();
      } catch (err) {
        result.problem = `failed: ${err instanceof Error ? err.message : String(err)}`;
        progress(`${row.label}: ${result.problem}`);
      } finally {
        await sides?.teardown().catch(() => {});
      }
    }
  } finally {
    await stopAll(running);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", interrupted);
  }

  const run: BenchRun = {
    date: new Date().toISOString(),
    machine: await machine(),
    pairs,
    loadStart,
    loadEnd: await loadavg(),
    rows: results,
  };
  console.log(formatHeading(run));
  console.log(formatTable(results));
  for (const r of results) if (r.problem) console.log(`${r.id}: ${r.problem}`);
  for (const r of results) if (r.note) console.log(`${r.id}: ${r.note}`);
  const latest = `${benchDir}/latest.json`;
  const previous = parseRun(await Deno.readTextFile(latest).catch(() => ""));
  if (previous) {
    console.log(`\nCompared with the previous run (${previous.date}):`);
    const lines = compareRuns(previous, run);
    for (const line of lines) console.log(`  ${line}`);
    if (lines.length === 0) console.log("  (no row measured in both)");
    await writeFileAtomic(`${benchDir}/previous.json`, JSON.stringify(previous, null, 2) + "\n");
  }
  const json = JSON.stringify(run, null, 2) + "\n";
  await writeFileAtomic(latest, json);
  if (parsed.values.json) await writeFileAtomic(parsed.values.json, json);
  console.log(`\nWritten to data/bench/latest.json`);
  return 0;
}

/** The raw SQLite baseline: one connection, WAL, synchronous=FULL, statements prepared once. */
function rawSqlite(path: string) {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec(
    `CREATE TABLE IF NOT EXISTS accounts (customer TEXT PRIMARY KEY, balance INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS operations (id INTEGER PRIMARY KEY, customer TEXT NOT NULL,
      request_id TEXT NOT NULL, kind TEXT NOT NULL, amount INTEGER NOT NULL, status TEXT NOT NULL,
      balance INTEGER NOT NULL, reason TEXT, at TEXT NOT NULL, UNIQUE (customer, request_id));
    INSERT OR IGNORE INTO accounts VALUES ('${SID}', 0);`,
  );
  const update = db.prepare("UPDATE accounts SET balance = balance + ? WHERE customer = ?");
  const insert = db.prepare(
    `INSERT INTO operations (customer, request_id, kind, amount, status, balance, reason, at)
     VALUES (?, ?, 'deposit', ?, 'applied', 0, NULL, ?)`,
  );
  let n = 0;
  return {
    run(seconds: number): number {
      const start = performance.now();
      const end = start + seconds * 1000;
      let ops = 0;
      while (performance.now() < end) {
        db.exec("BEGIN IMMEDIATE");
        update.run(100, SID);
        insert.run(SID, `raw-${n++}`, 100, new Date().toISOString());
        db.exec("COMMIT");
        ops++;
      }
      return ops / ((performance.now() - start) / 1000);
    },
    close: () => db.close(),
  };
}

/** cfssl serve with an RSA-3072 CA (made by openssl) and a sqlite certdb; or why it is missing. */
async function startCfssl(
  dir: string,
): Promise<{ process?: RunningProcess; port: number; missing?: string }> {
  if (!(await hasCommand("cfssl", "version"))) {
    return { port: 0, missing: "missing: cfssl not installed (apt-get install golang-cfssl)" };
  }
  if (!(await hasCommand("openssl", "version"))) return { port: 0, missing: "missing: openssl" };
  await ensureDir(dir);
  const made = await runCommand("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:3072",
    "-nodes",
    "-keyout",
    `${dir}/ca-key.pem`,
    "-out",
    `${dir}/ca.pem`,
    "-days",
    "30",
    "-subj",
    "/CN=cfssl bench CA",
  ]);
  if (made.code !== 0) return { port: 0, missing: `failed: openssl req: ${made.stderr}` };
  // cfssl's certdb schema for sqlite (certdb/sqlite/migrations), created here.
  const db = new DatabaseSync(`${dir}/certs.db`);
  db.exec(`CREATE TABLE certificates (
    serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob,
    status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
    PRIMARY KEY(serial_number, authority_key_identifier));
  CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
    body blob NOT NULL, expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier),
    FOREIGN KEY(serial_number, authority_key_identifier)
      REFERENCES certificates(serial_number, authority_key_identifier));`);
  db.close();
  await Deno.writeTextFile(
    `${dir}/db.json`,
    JSON.stringify({ driver: "sqlite3", data_source: `${dir}/certs.db` }),
  );
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      signing: {
        default: { expiry: "8760h", usages: ["signing", "key encipherment", "client auth"] },
      },
    }),
  );
  const port = freePort();
  const p = new RunningProcess("cfssl", [
    "serve",
    "-address",
    "127.0.0.1",
    "-port",
    String(port),
    "-ca",
    `${dir}/ca.pem`,
    "-ca-key",
    `${dir}/ca-key.pem`,
    "-config",
    `${dir}/config.json`,
    "-db-config",
    `${dir}/db.json`,
  ], { name: "cfssl serve" });
  await waitForPort(port);
  return { process: p, port };
}

/** The 512 MiB upload (tasks/bench_upload.ts) against WebCrypto's own AES-GCM and HMAC speed. */
function uploadRow(): Row {
  const rss: { student: number[]; blackboard: number[] } = { student: [], blackboard: [] };
  return {
    id: "upload",
    label: "upload MiB/s, 512 MiB, default mode (start-up included)",
    peer: "WebCrypto: slower of AES-256-GCM seal, HMAC-SHA256, 256 KiB chunks",
    unit: "MiB/s",
    higherIsBetter: true,
    target: { kind: "ratio", min: 0.5 },
    setup: () => {
      const lab = async () => {
        const out = await runCommand(denoCommand(), [
          "run",
          "--quiet",
          "--allow-net=127.0.0.1",
          `--allow-read=${ROOT}`,
          `--allow-write=${ROOT}/data`,
          "--allow-run",
          `${ROOT}/tasks/bench_upload.ts`,
          "--size-mib",
          "512",
        ], { timeoutMs: 600_000 });
        const rate = /\((\d+(?:\.\d+)?) MiB\/s/.exec(out.stdout);
        const mem = /student (\d+) MiB, Blackboard (\d+) MiB/.exec(out.stdout);
        if (!rate || !mem) throw new Error(`bench_upload: ${out.stderr.slice(-300)}`);
        rss.student.push(Number(mem[1]));
        rss.blackboard.push(Number(mem[2]));
        return Number(rate[1]);
      };
      const peer = async () => Math.min(await cryptoCeiling("seal"), await cryptoCeiling("hmac"));
      return Promise.resolve({
        lab,
        peer,
        extras: () =>
          (["student", "blackboard"] as const).map((side): RowResult => ({
            id: `upload-rss-${side}`,
            label: `upload peak RSS, ${side === "student" ? "student" : "Blackboard"} (VmHWM)`,
            peer: "(absolute)",
            unit: "MiB",
            higherIsBetter: false,
            target: { kind: "max", value: 64, unit: "MiB" },
            lab: rss[side],
            peerValues: [],
          })),
        teardown: () => Promise.resolve(),
      });
    },
  };
}

/** MiB/s of WebCrypto sealing (AES-256-GCM) or MACing (HMAC-SHA256) 256 KiB chunks, one at a time. */
async function cryptoCeiling(which: "seal" | "hmac", totalMiB = 256): Promise<number> {
  const chunk = new Uint8Array(256 * 1024);
  crypto.getRandomValues(chunk.subarray(0, 65536));
  const chunks = (totalMiB * MiB) / chunk.length;
  const aes = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
    "encrypt",
  ]);
  const mac = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const iv = new Uint8Array(12);
  const start = performance.now();
  for (let i = 0; i < chunks; i++) {
    if (which === "seal") {
      new DataView(iv.buffer).setUint32(8, i);
      await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aes, chunk);
    } else {
      await crypto.subtle.sign("HMAC", mac, chunk);
    }
  }
  return totalMiB / ((performance.now() - start) / 1000);
}

/** Chat fan-out: 1,000 clients, against a seed-style Python select()+ssl server. */
function fanoutRow(chat: { cert: string; key: string }, rootPath: string): Row {
  const serverRss: number[] = [];
  return {
    id: "fanout",
    label: "chat fan-out deliveries/s, 1,000 clients",
    peer: "seed-style Python select() + ssl chat server",
    unit: "deliveries/s",
    higherIsBetter: true,
    target: { kind: "ratio", min: 3 },
    setup: async () => {
      const lab = async () => {
        const out = await runCommand(denoCommand(), [
          "run",
          "--quiet",
          "--allow-net=127.0.0.1",
          `--allow-read=${ROOT}`,
          `--allow-write=${ROOT}/data`,
          "--allow-run",
          `${ROOT}/tasks/bench_chat.ts`,
          "--clients",
          "1000",
          "--messages",
          "5",
          "--json",
        ], { timeoutMs: 300_000 });
        let summary: { medianDeliveriesPerSecond?: number; serverPeakRssMiB?: number };
        try {
          summary = JSON.parse(out.stdout);
        } catch {
          throw new Error(
            `bench_chat printed no JSON: ${out.stderr.trim().split("\n").slice(-2).join(" / ")}`,
          );
        }
        if (typeof summary.medianDeliveriesPerSecond !== "number") {
          throw new Error(`bench_chat: ${out.stderr.slice(-300)}`);
        }
        if (typeof summary.serverPeakRssMiB === "number") serverRss.push(summary.serverPeakRssMiB);
        return summary.medianDeliveriesPerSecond;
      };
      const python = await hasCommand("python3", "--version");
      return {
        lab,
        ...(python
          ? { peer: () => seedFanout(rootPath, chat, 1000, 5) }
          : { missing: "missing: python3 not installed" }),
        extras: () => [{
          id: "fanout-rss",
          label: "chat server peak RSS, 1,000 clients (VmHWM)",
          peer: "(absolute)",
          unit: "MiB",
          higherIsBetter: false,
          target: { kind: "max", value: 150, unit: "MiB" },
          lab: serverRss,
          peerValues: [],
        }],
        teardown: () => Promise.resolve(),
      };
    },
  };
}

/**
 * The seed-style peer (tasks/bench/seed_chat.py: select() and ssl, TLS 1.2, each message
 * re-sent to every other client): N TLS clients, one sends `rounds` messages; deliveries/s as
 * bench_chat.ts counts them (the others reached over the time to reach the last one, median).
 */
async function seedFanout(
  rootPath: string,
  chat: { cert: string; key: string },
  n: number,
  rounds: number,
): Promise<number> {
  const port = freePort();
  const server = new RunningProcess("python3", [
    `${ROOT}/tasks/bench/seed_chat.py`,
    String(port),
    chat.cert,
    chat.key,
  ], { name: "seed_chat.py" });
  try {
    await server.waitFor(/listening/, 30_000);
    const conns: Deno.TlsConn[] = [];
    // The seed's client trusted the server's own certificate; rustls takes no leaf as an anchor,
    // so these trust the lab's root, which issued it.
    const caCerts = [await Deno.readTextFile(rootPath)];
    let next = 0;
    await Promise.all(Array.from({ length: 50 }, async () => {
      while (next < n) {
        const i = next++;
        const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
        const conn = await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts });
        await conn.handshake();
        conns[i] = conn;
      }
    }));
    await sleep(500);
    const rates: number[] = [];
    const frame = (text: string) => {
      const body = new TextEncoder().encode(text);
      const out = new Uint8Array(4 + body.length);
      new DataView(out.buffer).setUint32(0, body.length);
      out.set(body, 4);
      return out;
    };
    for (let r = 0; r < rounds; r++) {
      const msg = frame(`bench ${r} 0`);
      const sent = performance.now();
      let last = sent;
      let delivered = 0;
      const reads = conns.slice(1).map(async (c) => {
        const buf = new Uint8Array(4 + msg.length);
        let got = 0;
        while (got < msg.length) {
          const k = await c.read(buf.subarray(got, msg.length));
          if (k === null) return;
          got += k;
        }
        delivered++;
        last = performance.now();
      });
      await conns[0]!.write(msg);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise((res) => (timer = setTimeout(res, 30_000)));
      await Promise.race([Promise.all(reads), timeout]);
      clearTimeout(timer);
      if (delivered < n - 1) throw new Error(`round ${r}: ${delivered} of ${n - 1} delivered`);
      rates.push(delivered / ((last - sent) / 1000));
      await sleep(250);
    }
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    rates.sort((a, b) => a - b);
    return rates[Math.floor(rates.length / 2)]!;
  } finally {
    server.kill("SIGKILL");
    await server.status;
  }
}

if (import.meta.main) await runMain("bench", main);
