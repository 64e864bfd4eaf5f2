#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=data --allow-run=deno,openssl,cfssl,python3,cat --allow-sys=loadavg
/**
 * `deno task bench`: the lab measured side by side with its peers, in one run, and one table.
 *
 *     deno task bench [--pairs 3] [--seconds 3] [--only ID,ID] [--json FILE]
 *
 * Each row runs lab and peer back to back, PAIRS times, the side that goes first turned each pair
 * (so a noisy neighbour hits both, and neither always goes first; the handshake rows warm both
 * sides up first: `measurePairs`, tasks/bench_rows.ts), and prints
 * the median and the spread (min–max) of each, their ratio (above 1: the lab did better) and the
 * target from issue #13. A peer that cannot be run is reported as missing. The servers are the
 * real actors, each in its own process; the peers are OpenSSL's s_server (timed by s_time), cfssl
 * serve with its sqlite certdb, raw node:sqlite, WebCrypto's own throughput and a seed-style
 * Python select()+ssl chat server. The results go to data/bench/latest.json (the previous one
 * becomes data/bench/previous.json and is compared). Scratch files live in data/bench/run-*.
 */

import { DatabaseSync } from "node:sqlite";
import {
  ensureDir,
  hasTool,
  parseCommand,
  parsePositiveInt,
  PROJECT_ROOT as ROOT,
  runCommand,
  runMain,
  RunningProcess,
  startOpenSslRsa,
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
import { describeRsa } from "../lib/crypto/mod.ts";
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
} from "./bench_report.ts";
import { portOf, startActor } from "./bench_actors.ts";
import {
  fanoutRow,
  measurePairs,
  rawSqlite,
  type Row,
  SID,
  type Sides,
  startCfssl,
  uploadRow,
  waitForPort,
} from "./bench_rows.ts";
import { freePort } from "../lib/net/mod.ts";

const USAGE = `Usage: deno task bench [options]

Measures the lab beside its peers in one run (lab and peer back to back, which first in turn),
prints one table with medians, spreads, ratios and targets, and writes data/bench/latest.json.

Options:
  --pairs N      lab/peer pairs per row (default 3)
  --seconds N    how long each timed measurement runs (default 3)
  --only IDS     only these rows, comma-separated: tls12, tls13, blackboard, ca, upload, bank, fanout
  --json FILE    also write the results there`;

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

  // The bench's own clients play the student and Alice: RSA as their actors do it (then no FFI).
  const rsa = startOpenSslRsa();
  console.error(`bench: clients' ${describeRsa(rsa)}`);
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
      // Enough for 500 issuances a second in every pair (about 2.5 times the rate measured).
      const count = pairs * seconds * 500;
      progress(`creating ${count} enrolment codes for the CA row…`);
      for (let i = 0; i < count; i++) {
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
    const haveOpenssl = await hasTool("openssl", "version");

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
        );
        running.push(server);
        const peer = await sServer();
        return {
          warmUp: async () => {
            await sTime(portOf(server), version, 1);
            if (peer) await sTime(peer.port, version, 1);
          },
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
          const sessions = (secs: number) =>
            timed(secs, 1, async () => {
              using _session = await openSession({
                blackboard: { hostname: "127.0.0.1", port: portOf(server) },
                identity,
                log: quiet,
                timeoutMs: 10_000,
              });
            });
          return {
            warmUp: async () => {
              await sessions(1);
              if (peer) await sTime(peer.port, "-tls1_2", 1);
            },
            lab: () => sessions(seconds),
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
        await measurePairs(sides, pairs, result, progress);
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

if (import.meta.main) await runMain("bench", main);
