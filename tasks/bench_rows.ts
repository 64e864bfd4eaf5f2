/**
 * The bench's rows and their peers, for tasks/bench.ts: what a row is, and the rows whose peer
 * takes the most setting up (cfssl's CA, the raw node:sqlite loop, the runtime's crypto ceiling for
 * uploads, the seed-style Python chat for the fan-out), with the helpers they share.
 */

import { DatabaseSync } from "node:sqlite";
import {
  denoCommand,
  ensureDir,
  errorMessage,
  hasTool,
  PROJECT_ROOT as ROOT,
  runCommand,
  RunningProcess,
} from "../lib/runtime/mod.ts";
import { pairOrder, type RowResult, type Target } from "./bench_report.ts";
import { cpuWindow } from "./bench_actors.ts";
import { freePort } from "../lib/net/mod.ts";

export const SID = "1155990000";
export const MiB = 1024 * 1024;
export const ALL = ["tls12", "tls13", "blackboard", "ca", "upload", "bank", "fanout"] as const;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
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

export interface Row {
  id: (typeof ALL)[number];
  label: string;
  peer: string;
  unit: string;
  higherIsBetter: boolean;
  target: Target;
  /** Set up; returns the two sides, or throws (the row is then reported as failed). */
  setup: () => Promise<Sides>;
}

export interface Sides {
  lab: () => Promise<number>;
  /** Undefined when the peer is missing (then `missing` says why). */
  peer?: (() => Promise<number>) | undefined;
  missing?: string;
  /** Extra absolute rows derived from the same runs (the upload's RSS, the chat server's RSS). */
  extras?: () => RowResult[];
  /**
   * Run once, unmeasured, before the first pair: a second of the same work on each side, so that
   * the pairs measure servers that have already run (the lab's JavaScript compiled by V8's
   * optimising tiers, as in a server that has been up for a while), not their first second.
   */
  warmUp?: () => Promise<void>;
  /** A line printed under the table (e.g. what the peer stored). */
  note?: () => string;
  teardown: () => Promise<void>;
}

/** The raw SQLite baseline: one connection, WAL, synchronous=FULL, statements prepared once. */
export function rawSqlite(path: string) {
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
export async function startCfssl(
  dir: string,
): Promise<{ process?: RunningProcess; port: number; missing?: string }> {
  if (!(await hasTool("cfssl", "version"))) {
    return { port: 0, missing: "missing: cfssl not installed (apt-get install golang-cfssl)" };
  }
  if (!(await hasTool("openssl", "version"))) return { port: 0, missing: "missing: openssl" };
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

/** Runs one part of the bench (`tasks/NAME`, e.g. bench:upload) as its own process. */
async function benchPart(name: string, args: string[], timeoutMs: number) {
  return await runCommand(denoCommand(), [
    "run",
    "--quiet",
    "--allow-net=127.0.0.1",
    `--allow-read=${ROOT}`,
    `--allow-write=${ROOT}/data`,
    "--allow-run",
    `${ROOT}/tasks/${name}`,
    ...args,
  ], { timeoutMs });
}

/** The 512 MiB upload (tasks/bench_upload.ts) against WebCrypto's own AES-GCM and HMAC speed. */
export function uploadRow(): Row {
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
        const out = await benchPart("bench_upload.ts", ["--size-mib", "512"], 600_000);
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
export async function cryptoCeiling(which: "seal" | "hmac", totalMiB = 256): Promise<number> {
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
export function fanoutRow(chat: { cert: string; key: string }, rootPath: string): Row {
  const serverRss: number[] = [];
  /** CPU per delivery of each run, µs: [server, clients]. */
  const cpu = { lab: [] as [number, number][], peer: [] as [number, number][] };
  return {
    id: "fanout",
    label: "chat fan-out deliveries/s, 1,000 clients",
    peer: "seed-style Python select() + ssl chat server",
    unit: "deliveries/s",
    higherIsBetter: true,
    target: { kind: "ratio", min: 3 },
    setup: async () => {
      const lab = async () => {
        const out = await benchPart(
          "bench_chat.ts",
          ["--clients", "1000", "--messages", "5", "--json"],
          300_000,
        );
        let summary: {
          medianDeliveriesPerSecond?: number;
          serverPeakRssMiB?: number;
          serverCpuUsPerDelivery?: number;
          clientCpuUsPerDelivery?: number;
        };
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
        cpu.lab.push([
          summary.serverCpuUsPerDelivery ?? NaN,
          summary.clientCpuUsPerDelivery ?? NaN,
        ]);
        return summary.medianDeliveriesPerSecond;
      };
      const python = await hasTool("python3", "--version");
      return {
        lab,
        ...(python
          ? {
            peer: async () => {
              const run = await seedFanout(rootPath, chat, 1000, 5);
              cpu.peer.push([run.serverCpuUs, run.clientCpuUs]);
              return run.perSecond;
            },
          }
          : { missing: "missing: python3 not installed" }),
        // What each delivery costs the server and the clients that read it, over the rounds.
        note: () => {
          const median = (runs: [number, number][], i: 0 | 1) => {
            const values = runs.map((r) => r[i]).filter(Number.isFinite).sort((a, b) => a - b);
            return values.length ? values[values.length >> 1]!.toFixed(1) : "?";
          };
          return `CPU per delivery over the rounds (median of the pairs): the lab's server ${
            median(cpu.lab, 0)
          } µs, its clients ${median(cpu.lab, 1)} µs; the peer's server ${
            median(cpu.peer, 0)
          } µs, its clients ${median(cpu.peer, 1)} µs`;
        },
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
export async function seedFanout(
  rootPath: string,
  chat: { cert: string; key: string },
  n: number,
  rounds: number,
): Promise<{ perSecond: number; serverCpuUs: number; clientCpuUs: number }> {
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
    const used = { server: 0, clients: 0 };
    const frame = (text: string) => {
      const body = new TextEncoder().encode(text);
      const out = new Uint8Array(4 + body.length);
      new DataView(out.buffer).setUint32(0, body.length);
      out.set(body, 4);
      return out;
    };
    for (let r = 0; r < rounds; r++) {
      const msg = frame(`bench ${r} 0`);
      const window = await cpuWindow(server.child.pid);
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
      const cpu = await window();
      used.server += cpu.other;
      used.clients += cpu.self;
      rates.push(delivered / ((last - sent) / 1000));
      await sleep(250);
    }
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    rates.sort((a, b) => a - b);
    const deliveries = (n - 1) * rounds;
    return {
      perSecond: rates[Math.floor(rates.length / 2)]!,
      serverCpuUs: (used.server * 1000) / deliveries,
      clientCpuUs: (used.clients * 1000) / deliveries,
    };
  } finally {
    server.kill("SIGKILL");
    await server.status;
  }
}

/**
 * Runs a row's warm-up and then its pairs into `result`: in each pair the lab and the peer back to
 * back, the side that goes first turned each pair (`pairOrder`). A pair's values are kept only
 * together: when the lab fails after the peer has run, the peer's value of that pair is dropped
 * and the lab's error is thrown (the row fails, with the pairs before it kept). A peer that fails
 * is reported in `result.problem` and left out of the remaining pairs, the lab still measured. A
 * warm-up that fails is reported and the pairs run anyway: they meet the same failure, if any.
 */
export async function measurePairs(
  sides: Sides,
  pairs: number,
  result: RowResult,
  progress: (line: string) => void,
): Promise<void> {
  if (sides.warmUp) {
    progress("  warming up (1 s each side, not measured)…");
    try {
      await sides.warmUp();
    } catch (err) {
      progress(`  warm-up failed (${errorMessage(err)}); measuring anyway`);
    }
  }
  for (let i = 0; i < pairs; i++) {
    let peer = NaN;
    let peerRan = false;
    const runPeer = async () => {
      if (!sides.peer) return;
      try {
        peer = await sides.peer();
        peerRan = true;
      } catch (err) {
        result.problem = `failed: ${errorMessage(err)}`;
        sides.peer = undefined;
      }
    };
    if (pairOrder(i) === "peer first") await runPeer();
    const lab = await sides.lab();
    if (pairOrder(i) === "lab first") await runPeer();
    result.lab.push(lab);
    if (peerRan) result.peerValues.push(peer);
    progress(
      `  pair ${i + 1}/${pairs} (${pairOrder(i)}): lab ${lab.toFixed(1)}, peer ${peer.toFixed(1)}`,
    );
  }
}
