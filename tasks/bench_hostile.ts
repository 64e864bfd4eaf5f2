#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=. --allow-run
/**
 * Hostile load, measured: how long a legitimate client's whole session takes on each server (the
 * CA, Blackboard, Bob, the chat), with no load and while a hostile host on 127.0.0.2
 * (tasks/hostile/flood.py) holds 256 idle connections, floods garbage, or floods handshakes.
 *
 *     deno task bench:hostile [--sessions N] [--json FILE]
 *
 * The servers are the real actors, each in its own process with its default limits; the legitimate
 * client (this process, 127.0.0.1) runs one session after another: an enrolment (CA), steps 3-6 and
 * a message (Blackboard), the handshake, a balance and exit (Bob), a TLS join (chat). It prints the
 * p50 and p99 of each, side by side, and whether every server is still running. Exit status 1 when
 * a p99 reaches 2 s or a server exited. Everything lives in a temporary folder under data/.
 */

import {
  ensureDir,
  errorMessage,
  parseCommand,
  parsePositiveInt,
  percentile,
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
import { ChatClient } from "../lib/chat/mod.ts";
import { type FloodOptions, startFlood } from "./hostile/flood.ts";
import { portOf, startActor } from "./bench_actors.ts";
import {
  bankHandshakeFlights,
  blackboardRequestFlights,
  caEnrolmentFlights,
} from "./hostile/flights.ts";

const USAGE = `Usage: deno task bench:hostile [options]

Measures a legitimate client's session (p50, p99) on the CA, Blackboard, Bob and the chat, with no
load and under a hostile host on 127.0.0.2: 256 held connections, a garbage flood, a handshake
flood. The servers are the real actors, in their own processes, with their default limits.

The attacker stands for another machine: with two CPUs or more (and taskset), the flood runs on
the other CPUs and the servers and the legitimate client share CPU 0, so that what is measured is
the work the flood makes the servers do, not the attacker's own CPU use (--no-pin: no pinning).
The client starts a session every 100 ms at most, as a person would.

Options:
  --sessions N   legitimate sessions per server and load (default 30; each load lasts at least 2 s)
  --no-pin       do not pin the servers, the client and the flood to separate CPUs
  --json FILE    also write the results as JSON
  --only NAME    one server: ca, blackboard, bank or chat`;

const LIMIT_MS = 2000;
/** The legitimate client starts at most one session this often. */
const PACE_MS = 100;
const SID = "1155990000";

type LoadName = "none" | "held" | "garbage" | "handshakes";
const LOADS: readonly { name: LoadName; label: string }[] = [
  { name: "none", label: "no load" },
  { name: "held", label: "256 held connections" },
  { name: "garbage", label: "garbage flood (8 threads)" },
  { name: "handshakes", label: "handshake flood (8 threads)" },
];

interface Target {
  name: string;
  label: string;
  server: RunningProcess;
  port: number;
  /** One legitimate session, start to end. */
  session(i: number): Promise<void>;
  /** This server's handshake flood. */
  handshakeFlood(): Promise<FloodOptions>;
}

interface Row {
  server: string;
  load: LoadName;
  sessions: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
  /** p50 over the same server's p50 with no load. */
  slowdown: number;
  /** Connections the kernel dropped at a full listen queue during this measurement. */
  listenOverflows?: number;
  /** What the flood counted (held connections, answered or refused handshakes). */
  flood?: { held: number; answers: number; refused: number; failed: number };
  serverRunning: boolean;
}

/**
 * The kernel's count of connections dropped because a listen queue was full (TcpExt
 * ListenOverflows): a client whose SYN is dropped retries after 1 s, which is what a garbage
 * flood's p99 shows. Undefined when /proc/net/netstat cannot be read.
 */
async function listenOverflows(): Promise<number | undefined> {
  try {
    // Deno reads /proc only with --allow-all: cat reads it.
    const lines = (await runCommand("cat", ["/proc/net/netstat"])).stdout.split("\n");
    const [names, values] = lines.filter((l) => l.startsWith("TcpExt:")).map((l) => l.split(/\s+/));
    const i = names?.indexOf("ListenOverflows") ?? -1;
    return i > 0 ? Number(values?.[i]) : undefined;
  } catch {
    return undefined;
  }
}

function progress(line: string): void {
  console.error(`bench:hostile: ${line}`);
}

/** The actor's CPUs when pinned. */
function actorPins(pin: Pinning | undefined): { cpus?: string } {
  return pin ? { cpus: pin.servers } : {};
}

/** CPU sets: the servers and the client on `servers`, the flood on `flood` (none: no pinning). */
interface Pinning {
  servers: string;
  flood: string;
}

async function choosePinning(noPin: boolean): Promise<Pinning | undefined> {
  const cpus = navigator.hardwareConcurrency;
  if (noPin || cpus < 2) return undefined;
  try {
    // This process (the legitimate client) too.
    const self = await runCommand("taskset", ["-pc", "0", String(Deno.pid)]);
    if (self.code !== 0) return undefined;
  } catch {
    return undefined; // No taskset.
  }
  return { servers: "0", flood: cpus === 2 ? "1" : `1-${cpus - 1}` };
}

async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "bench:hostile",
    usage: USAGE,
    options: {
      sessions: { type: "string", default: "30" },
      json: { type: "string" },
      only: { type: "string" },
      "no-pin": { type: "boolean", default: false },
    },
  });
  if (!parsed) return 0;
  const pin = await choosePinning(parsed.values["no-pin"]);
  const perLoad = parsePositiveInt(parsed.values.sessions, "sessions", 10_000);
  const only = parsed.values.only;
  await ensureDir(`${ROOT}/data`);
  const dir = await Deno.makeTempDir({ dir: `${ROOT}/data`, prefix: "bench-hostile-" });
  const servers: RunningProcess[] = [];
  try {
    progress(`setting up a CA, certificates and a student in ${dir}…`);
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
    // One key for every CSR: the CA's work per enrolment is the same, the bench's set-up is not.
    const keys = await generateRsaKeyPair(2048);
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    const home = `${dir}/home`;
    await storeKey(home, await exportPrivateKeyPem(keys.privateKey));
    const { code } = ca.createCode(SID);
    await storeCertificate(
      home,
      await ca.enrol({ sid: SID, code, csr: der(await createCsr(keys, SID)) }),
      ca.root,
    );
    const identity = await loadIdentity(home);
    // Enough codes for every CA session (a load lasts at least 2 s, so more than --sessions).
    const enrolments: { sid: string; code: string; csr: Uint8Array }[] = [];
    const codes = LOADS.length * Math.max(perLoad, 200) + 4;
    for (let i = 0; i < codes; i++) {
      const sid = `1155${String(i).padStart(6, "0")}`;
      if (sid === SID) continue;
      enrolments.push({
        sid,
        code: ca.createCode(sid).code,
        csr: der(await createCsr(keys, sid)),
      });
    }
    const rootPem = ca.rootPem;
    const rootPath = ca.rootPath;
    const root = ca.root;
    ca.close();

    progress("starting the CA, Blackboard, Bob and the chat (the real actors)…");
    const caServer = await startActor(
      "ca.ts",
      ["serve", "--port", "0", "--data-dir", `${dir}/ca`],
      dir,
      actorPins(pin),
    );
    servers.push(caServer);
    const caAddr = `127.0.0.1:${portOf(caServer)}`;
    const common = ["--port", "0", "--ca-cert", rootPath, "--ca", caAddr];
    const bbServer = await startActor(
      "blackboard.ts",
      [
        "serve",
        ...common,
        "--data-dir",
        `${dir}/bb`,
      ],
      dir,
      actorPins(pin),
    );
    servers.push(bbServer);
    const bankServer = await startActor(
      "bank.ts",
      [
        "serve",
        ...common,
        "--data-dir",
        `${dir}/bank`,
        "--cert",
        bank.cert,
        "--key",
        bank.key,
      ],
      dir,
      actorPins(pin),
    );
    servers.push(bankServer);
    const chatServer = await startActor(
      "chat.ts",
      ["serve", "--port", "0", "--cert", chat.cert, "--key", chat.key],
      dir,
      actorPins(pin),
    );
    servers.push(chatServer);

    const quiet = new StepLog("client", { quiet: true });
    let nextEnrolment = 0;
    const targets: Target[] = [
      {
        name: "ca",
        label: "CA (enrolment)",
        server: caServer,
        port: portOf(caServer),
        session: async () => {
          const e = enrolments[nextEnrolment++];
          if (!e) throw new Error("out of enrolment codes: lower --sessions");
          await requestCertificate({
            ca: { hostname: "127.0.0.1", port: portOf(caServer) },
            sid: e.sid,
            code: e.code,
            csr: e.csr,
            publicKey,
            root,
            timeoutMs: 10_000,
          });
        },
        handshakeFlood: () => {
          const e = enrolments.at(-1)!;
          return Promise.resolve({ replay: 8, flights: caEnrolmentFlights(e.sid, e.csr) });
        },
      },
      {
        name: "blackboard",
        label: "Blackboard (steps 3-6)",
        server: bbServer,
        port: portOf(bbServer),
        session: async (i) => {
          using session = await openSession({
            blackboard: { hostname: "127.0.0.1", port: portOf(bbServer) },
            identity,
            log: quiet,
            timeoutMs: 10_000,
          });
          await session.secure.send("message", { text: `bench ${i}` });
          await session.secure.receive(["received"]);
        },
        handshakeFlood: async () => ({
          replay: 8,
          flights: await blackboardRequestFlights(SID, new Uint8Array(identity.cert.rawData)),
        }),
      },
      {
        name: "bank",
        label: "Bob (handshake, balance)",
        server: bankServer,
        port: portOf(bankServer),
        session: async () => {
          const client = await BankClient.connect({
            bank: { hostname: "127.0.0.1", port: portOf(bankServer) },
            mode: "secure",
            log: quiet,
            root,
            cert: identity.cert,
            keyPem: identity.keyPem,
            timeoutMs: 10_000,
          });
          try {
            await client.balance();
            await client.exit();
          } finally {
            client.close();
          }
        },
        handshakeFlood: () => Promise.resolve({ replay: 8, flights: bankHandshakeFlights() }),
      },
      {
        name: "chat",
        label: "chat (TLS join)",
        server: chatServer,
        port: portOf(chatServer),
        session: async (i) => {
          const client = await ChatClient.join({
            hostname: "127.0.0.1",
            port: portOf(chatServer),
            caCerts: [rootPem],
            nick: `bench${i}`,
            keepAlive: false,
            timeoutMs: 10_000,
          });
          client.close();
        },
        handshakeFlood: () => Promise.resolve({ tls: 8 }),
      },
    ];
    if (only !== undefined && !targets.some((t) => t.name === only)) {
      throw new Error(`--only must be one of ${targets.map((t) => t.name).join(", ")}`);
    }

    const rows: Row[] = [];
    let sessionNo = 0;
    for (const target of targets) {
      if (only !== undefined && target.name !== only) continue;
      let baseline = NaN;
      for (const load of LOADS) {
        const flood = load.name === "none" ? undefined : await startFlood(target.port, {
          ...(load.name === "held"
            ? { hold: 256 }
            : load.name === "garbage"
            ? { garbage: 8 }
            : await target.handshakeFlood()),
          ...(pin ? { cpus: pin.flood } : {}),
        });
        const took: number[] = [];
        let failed = 0;
        const overflowsBefore = await listenOverflows();
        let counts: Row["flood"];
        try {
          const started = performance.now();
          while (took.length + failed < perLoad || performance.now() - started < 2000) {
            const t0 = performance.now();
            try {
              await target.session(sessionNo++);
              took.push(performance.now() - t0);
            } catch (err) {
              failed++;
              if (failed <= 3) progress(`  ${target.name}, ${load.label}: ${errorMessage(err)}`);
            }
            // A person, not a flood: at most one session every 100 ms.
            const rest = t0 + PACE_MS - performance.now();
            if (rest > 0) await new Promise((r) => setTimeout(r, rest));
          }
        } finally {
          if (flood) {
            const c = await flood.stop();
            counts = { held: c.held, answers: c.answers, refused: c.refused, failed: c.failed };
          }
        }
        took.sort((a, b) => a - b);
        const overflowsAfter = await listenOverflows();
        const p50 = percentile(took, 50);
        if (load.name === "none") baseline = p50;
        const row: Row = {
          server: target.name,
          load: load.name,
          sessions: took.length,
          failed,
          p50Ms: p50,
          p99Ms: percentile(took, 99),
          slowdown: p50 / baseline,
          ...(counts ? { flood: counts } : {}),
          ...(overflowsBefore !== undefined && overflowsAfter !== undefined
            ? { listenOverflows: overflowsAfter - overflowsBefore }
            : {}),
          serverRunning: !target.server.exited,
        };
        rows.push(row);
        progress(
          `  ${target.label}, ${load.label}: p50 ${p50.toFixed(1)} ms, p99 ${
            row.p99Ms.toFixed(1)
          } ms over ${took.length} sessions${failed ? `, ${failed} FAILED` : ""}`,
        );
      }
    }

    const load = Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
    console.log(
      `Hostile load: a legitimate session from 127.0.0.1 while 127.0.0.2 attacks (limit: p99 < ${LIMIT_MS} ms, no server exits)`,
    );
    console.log(
      pin
        ? `Servers and client pinned to CPU ${pin.servers}, the flood to CPU ${pin.flood} (the attacker as another machine).`
        : "Not pinned: the flood competes with the servers for the CPUs.",
    );
    const header = [
      "server",
      "load",
      "p50 ms",
      "p99 ms",
      "x p50",
      "sessions",
      "flood",
      "queue drops",
      "server",
    ];
    const table = rows.map((r) => {
      const target = targets.find((t) => t.name === r.server)!;
      return [
        target.label,
        LOADS.find((l) => l.name === r.load)!.label,
        r.p50Ms.toFixed(1),
        r.p99Ms.toFixed(1),
        r.load === "none" ? "1.00" : r.slowdown.toFixed(2),
        r.failed ? `${r.sessions} (${r.failed} failed)` : String(r.sessions),
        r.flood
          ? r.load === "held"
            ? `${r.flood.held} held`
            : r.load === "handshakes"
            ? `${r.flood.answers} answered, ${r.flood.refused} refused`
            : "-"
          : "-",
        r.listenOverflows === undefined ? "?" : String(r.listenOverflows),
        r.serverRunning ? "running" : "EXITED",
      ];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
    const line = (cells: string[]) =>
      cells.map((c, i) => (i >= 2 && i <= 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join("  ").trimEnd();
    console.log(line(header));
    for (const row of table) console.log(line(row));
    console.log(
      "queue drops: connections the kernel dropped at a full listen queue (TcpExt ListenOverflows, " +
        "all servers); a dropped SYN is sent again after 1 s, which is what a flood's p99 shows.",
    );
    const bad = rows.filter((r) => !(r.p99Ms < LIMIT_MS) || r.failed > 0 || !r.serverRunning);
    console.log(
      bad.length === 0
        ? `All ${rows.length} measurements within the limit; every server still running. Load average ${load}.`
        : `${bad.length} of ${rows.length} measurements over the limit, failed or with a server gone. Load average ${load}.`,
    );
    if (parsed.values.json) {
      const slash = parsed.values.json.lastIndexOf("/");
      if (slash > 0) await ensureDir(parsed.values.json.slice(0, slash));
      await writeFileAtomic(
        parsed.values.json,
        JSON.stringify(
          {
            date: new Date().toISOString(),
            limitMs: LIMIT_MS,
            pinned: pin ?? null,
            loadAverage: Deno.loadavg(),
            rows,
          },
          null,
          2,
        ) + "\n",
      );
    }
    return bad.length === 0 ? 0 : 1;
  } finally {
    for (const server of servers) await server.stop("SIGINT").catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await runMain("bench:hostile", main);
