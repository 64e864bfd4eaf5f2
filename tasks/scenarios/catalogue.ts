/**
 * The capture scenarios behind `deno task capture` and `deno task demo`: each starts the real
 * actors (as processes, on free loopback ports, in a private work directory), runs one system end
 * to end, and, when capture is on, records it with dumpcap, embeds the TLS key log, checks the TLS
 * record sequences against pcap/expected, checks that pcap/lab.lua names every lab message, and
 * can draw the capture as a ladder diagram.
 *
 *     enrol        the CA and a student: STEP 1 CSR, STEP 2 cert 2
 *     upload       enrol, then the student talks to Blackboard and uploads a report (steps 3-6)
 *     bank         Alice enrols and banks with Bob (secure mode): STEP 1 Hello … STEP 6 records
 *     chat-tls13   three chat clients over TLS 1.3
 *     chat-tls12   a chat client over TLS 1.2 (the seed's sequence), and a client offering only
 *                  AES128-SHA (the seed's cipher), refused
 *     seed         systems 1 and 2 in seed mode, flaws included, for teaching: the session key
 *                  echoed in the clear, Bob's unauthenticated key, ECB records
 *     attack-…     one per attack of Trudy's (actors/trudy.ts), each run against seed mode and
 *                  then against the default, Trudy on the path on a free port: both legs (victim ↔
 *                  Trudy, Trudy ↔ server) captured, her verdicts and the victims' outcomes asserted
 */

import { errorMessage, PROJECT_ROOT, StepLog } from "../../lib/runtime/mod.ts";
import { Accounts, bankProtocol } from "../../lib/bank/mod.ts";
import { blackboardProtocol, sessionProtocol } from "../../lib/blackboard/mod.ts";
import { caProtocol } from "../../lib/ca/mod.ts";
import {
  type ActorMap,
  Capture,
  checkCapture,
  type DiagramFiles,
  freePorts,
  hasTool,
  labCoverage,
  type Ladder,
  loadExpectation,
  readLabMessages,
  wiresharkTcpPorts,
  writeDiagram,
} from "../../lib/wireshark/mod.ts";
import { FORGED_MESSAGE, sniffCapture, verdictLine, verdictStatus } from "../../lib/trudy/mod.ts";

export const SCENARIO_NAMES = [
  "enrol",
  "upload",
  "bank",
  "chat-tls13",
  "chat-tls12",
  "seed",
  "attack-enrol-impersonation",
  "attack-bank-mitm",
  "attack-bank-replay",
  "attack-session-key-sniff",
  "attack-message-replay",
] as const;
export type ScenarioName = typeof SCENARIO_NAMES[number];
/** What `attacks` runs: Trudy's five attacks, each against seed mode and the default. */
export const ATTACK_SCENARIOS: readonly ScenarioName[] = [
  "attack-enrol-impersonation",
  "attack-bank-mitm",
  "attack-bank-replay",
  "attack-session-key-sniff",
  "attack-message-replay",
];
/** What `all` runs (enrol is the first half of upload). */
export const ALL_SCENARIOS: readonly ScenarioName[] = [
  "upload",
  "bank",
  "chat-tls13",
  "chat-tls12",
  ...ATTACK_SCENARIOS,
];

export type Sink = (line: string) => void;

/** How long a one-shot actor command may take. */
const COMMAND_TIMEOUT_MS = 120_000;
/** How long a server gets to say it is listening. */
const START_TIMEOUT_MS = 60_000;

export class ScenarioError extends Error {
  override name = "ScenarioError";
}

/**
 * The Deno binary to start actors with: this one when the permissions allow running it, else
 * `deno` from the PATH (a task scoped with `--allow-run=deno` grants only that name).
 */
export function denoCommand(): string {
  const exec = Deno.execPath();
  try {
    if (Deno.permissions.querySync({ name: "run", command: exec }).state === "granted") return exec;
  } catch {
    // Permission queries unavailable: fall back to the PATH.
  }
  return "deno";
}

function actorPermissions(dir: string): string[] {
  return [
    "--allow-net=127.0.0.1,localhost,[::1]",
    `--allow-read=${dir}`,
    `--allow-write=${dir}`,
  ];
}

/** The visible part of an output line (a progress bar redraws with `\r`). */
function visible(line: string): string {
  const i = line.lastIndexOf("\r", line.length - 2);
  // Terminal escape sequences (colours, line clearing) are dropped.
  // deno-lint-ignore no-control-regex
  const escapes = /\x1b\[[0-9;]*[A-Za-z]/g;
  return (i >= 0 ? line.slice(i + 1) : line).replace(/\r$/, "").replace(escapes, "");
}

/** One actor process, its output forwarded line by line and kept for `waitFor`. */
class ActorRun {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly done: Promise<{ code: number; stdout: string; stderr: string }>;
  #stdout = "";
  #stderr = "";

  constructor(
    name: string,
    script: string,
    args: string[],
    options: { dir: string; sink: Sink; env?: Record<string, string>; stdin?: string },
  ) {
    this.name = name;
    this.child = new Deno.Command(denoCommand(), {
      args: ["run", "--quiet", ...actorPermissions(options.dir), script, ...args],
      cwd: PROJECT_ROOT,
      env: { NO_COLOR: "1", ...options.env },
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (options.stdin !== undefined) {
      const w = this.child.stdin.getWriter();
      w.write(new TextEncoder().encode(options.stdin)).then(() => w.close()).catch(() => {});
    }
    const pump = async (
      stream: ReadableStream<Uint8Array>,
      add: (s: string) => void,
      show: (line: string) => void,
    ) => {
      let pending = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        add(chunk);
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = visible(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
          if (line.trim() !== "") show(line);
        }
      }
      if (visible(pending).trim() !== "") show(visible(pending));
    };
    // Actors log their STEP lines on standard error, tagged `[actor]`; results go to stdout.
    const out = pump(
      this.child.stdout,
      (s) => (this.#stdout += s),
      (l) => options.sink(`  [${name}] ${l}`),
    );
    const err = pump(this.child.stderr, (s) => (this.#stderr += s), (l) => options.sink(`  ${l}`));
    this.done = Promise.all([this.child.status, out, err]).then(([s]) => ({
      code: s.code,
      stdout: this.#stdout,
      stderr: this.#stderr,
    }));
  }

  get output(): string {
    return this.#stdout + this.#stderr;
  }

  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.done.then(() => (exited = true));
    while (Date.now() < deadline) {
      const m = this.#stderr.match(pattern) ?? this.#stdout.match(pattern);
      if (m) return m;
      if (exited) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const tail = this.#stderr.trim().split("\n").slice(-3).join(" / ");
    throw new ScenarioError(
      `${this.name} ${exited ? "exited" : "timed out"} before printing ${pattern}: ${tail}`,
    );
  }

  kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
  }
}

/** The actors of one scenario; disposing stops every server still running (SIGINT). */
export class Actors implements AsyncDisposable {
  readonly dir: string;
  readonly sink: Sink;
  readonly #running: ActorRun[] = [];

  constructor(dir: string, sink: Sink) {
    this.dir = dir;
    this.sink = sink;
  }

  /** Starts a server and waits for its `listening on` line. */
  async serve(
    name: string,
    script: string,
    args: string[],
    env: Record<string, string> = {},
  ): Promise<ActorRun> {
    const run = new ActorRun(name, script, args, { dir: this.dir, sink: this.sink, env });
    this.#running.push(run);
    await run.waitFor(/listening on/, START_TIMEOUT_MS);
    return run;
  }

  /** Starts a client that runs on its own (e.g. a scripted chat client). */
  spawn(name: string, script: string, args: string[], env: Record<string, string> = {}): ActorRun {
    const run = new ActorRun(name, script, args, { dir: this.dir, sink: this.sink, env });
    this.#running.push(run);
    return run;
  }

  /** Waits for a spawned client; throws with its last error line when it fails. */
  async finish(run: ActorRun, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    const timer = setTimeout(() => run.kill("SIGTERM"), timeoutMs);
    try {
      const res = await run.done;
      if (res.code !== 0) {
        const last = res.stderr.trim().split("\n").pop() ?? "";
        throw new ScenarioError(`${run.name} failed (exit ${res.code}): ${visible(last)}`);
      }
      return res.stdout;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs a command to completion; returns its standard output. */
  async run(
    name: string,
    script: string,
    args: string[],
    options: { env?: Record<string, string>; stdin?: string } = {},
  ): Promise<string> {
    const run = new ActorRun(name, script, args, { dir: this.dir, sink: this.sink, ...options });
    return await this.finish(run);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const run of this.#running) run.kill("SIGINT");
    await Promise.all(this.#running.map(async (run) => {
      const timer = setTimeout(() => run.kill("SIGKILL"), 10_000);
      await run.done.catch(() => {});
      clearTimeout(timer);
    }));
  }
}

// ---------------------------------------------------------------------------------------------

interface Context {
  dir: string;
  ports: Record<string, number>;
  actors: Actors;
  /** SSLKEYLOGFILE for the TLS actors when capturing. */
  tlsEnv: Record<string, string>;
  sink: Sink;
  /** Facts for the summary (e.g. `AES128-SHA refused by python3`). */
  notes: string[];
  /** Assertions on what the actors did (an attack's verdicts), with or without capture. */
  checks: Check[];
}

interface ScenarioSpec {
  name: ScenarioName;
  title: string;
  /** Named ports to pick (free ones). */
  ports: string[];
  /** The ports the capture filter takes. */
  capture: (ports: Record<string, number>) => number[];
  actors: (ports: Record<string, number>) => ActorMap;
  /** TLS expectations and their server ports. */
  tls?: (ports: Record<string, number>, ctx: Context) => {
    serverPorts: number[];
    expect: Array<{ name: string; count: number }>;
  };
  /** Lab message labels the dissected capture must show. */
  labels?: string[];
  /** Trudy's ports (free ones: pcap/lab.lua must recognise them heuristically). */
  trudyPorts?: (ports: Record<string, number>) => number[];
  /** Lanes the ladder must show in this order, with arrows between neighbours (victim, Trudy, server). */
  path?: string[];
  run: (ctx: Context) => Promise<void>;
  /** Runs on the finished capture (Trudy's passive sniffer reads it). */
  analyse?: (ctx: Context, capture: string) => Promise<void>;
}

const STUDENT_SID = "1155123456";
const ALICE_SID = "1155000001";

async function startCa(ctx: Context): Promise<void> {
  await ctx.actors.serve("CUHK", "actors/ca.ts", [
    "serve",
    "--port",
    String(ctx.ports.ca),
    "--data-dir",
    `${ctx.dir}/ca`,
  ]);
}

async function enrol(ctx: Context, sid: string): Promise<string> {
  ctx.sink(`* the CA operator issues a one-time enrolment code for ${sid}`);
  const code = (await ctx.actors.run("ca code", "actors/ca.ts", [
    "code",
    "--sid",
    sid,
    "--data-dir",
    `${ctx.dir}/ca`,
  ])).trim();
  const home = `${ctx.dir}/students/${sid}`;
  await ctx.actors.run("student", "actors/student.ts", [
    "enroll",
    "--sid",
    sid,
    "--code",
    code,
    "--ca",
    `127.0.0.1:${ctx.ports.ca}`,
    "--ca-cert",
    `${ctx.dir}/ca/cuhk.cer`,
    "--home",
    home,
  ]);
  return home;
}

async function issueServer(ctx: Context, name: string, out: string): Promise<void> {
  ctx.sink(`* the CA issues a server certificate for ${name} (SAN ${name}, 127.0.0.1)`);
  await ctx.actors.run("ca issue", "actors/ca.ts", [
    "issue",
    "--server",
    name,
    "--ip",
    "127.0.0.1",
    "--out",
    out,
    "--data-dir",
    `${ctx.dir}/ca`,
  ]);
}

/** A report of `size` bytes of readable text. */
async function writeReport(path: string, size: number): Promise<void> {
  const line = "Network security report: the session key never crosses the wire in the clear.\n";
  const text = line.repeat(Math.ceil(size / line.length)).slice(0, size);
  await Deno.writeTextFile(path, text);
}

/** Which independent TLS client can offer only AES128-SHA, as the seed did. */
async function refusalClient(): Promise<"python3" | "openssl" | undefined> {
  if (await hasTool("python3")) return "python3";
  if (await hasTool("openssl")) return "openssl";
  return undefined;
}

const SEED_CLIENT = `import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers('AES128-SHA')
ctx.load_verify_locations(sys.argv[2])
try:
    ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='localhost')
    print('connected with AES128-SHA')
    sys.exit(1)
except ssl.SSLError as e:
    print('refused:', e.reason)`;

/** Connects offering only AES128-SHA; returns what happened, throws if it was accepted. */
async function offerAes128Sha(ctx: Context, port: number, root: string): Promise<string> {
  const tool = await refusalClient();
  if (!tool) return "AES128-SHA refusal not tried: neither python3 nor openssl is installed";
  const args = tool === "python3"
    ? ["-c", SEED_CLIENT, String(port), root]
    : ["s_client", "-connect", `127.0.0.1:${port}`, "-tls1_2", "-cipher", "AES128-SHA"];
  ctx.sink(`* ${tool}: a TLS 1.2 client offering only AES128-SHA (the seed's set_ciphers)`);
  const out = await new Deno.Command(tool, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const refused = tool === "python3"
    ? /^refused: .*HANDSHAKE_FAILURE/im.test(text)
    : !out.success && /handshake failure|alert number 40/i.test(text);
  if (!refused) throw new ScenarioError(`AES128-SHA was not refused: ${text.trim().slice(0, 200)}`);
  const line = tool === "python3"
    ? text.trim().split("\n")[0]!
    : "refused: sslv3 alert handshake failure";
  ctx.sink(`  [${tool}] ${line}`);
  return `AES128-SHA ${line} (${tool})`;
}

function chatClient(
  ctx: Context,
  nick: string,
  args: string[],
  tls12 = false,
): ActorRun {
  return ctx.actors.spawn(`chat ${nick}`, "actors/chat.ts", [
    "client",
    "--nick",
    nick,
    "--server",
    `127.0.0.1:${ctx.ports.chat}`,
    "--ca-cert",
    `${ctx.dir}/chat/cuhk.cer`,
    "--server-name",
    "localhost",
    ...(tls12 ? ["--tls12"] : []),
    ...args,
  ], ctx.tlsEnv);
}

async function startChat(ctx: Context): Promise<void> {
  await issueServer(ctx, "localhost", `${ctx.dir}/chat`);
  await ctx.actors.serve("chat server", "actors/chat.ts", [
    "serve",
    "--port",
    String(ctx.ports.chat),
    "--cert",
    `${ctx.dir}/chat/localhost.cer`,
    "--key",
    `${ctx.dir}/chat/localhost.key`,
  ], ctx.tlsEnv);
}

const bb = (t: keyof typeof blackboardProtocol.messages) => blackboardProtocol.label(t);
const session = (t: keyof typeof sessionProtocol.messages) =>
  `${bb("record")} [${sessionProtocol.label(t)}]`;
const bank = (t: keyof typeof bankProtocol.messages) => bankProtocol.label(t);

// --- Trudy's attacks: each half (seed, then default) on its own free ports ----------------------

type Half = "seed" | "default";

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

const VICTIM_SID = "1155000777";

/** Waits for an actor that may fail (a victim refused, Trudy's exit 3); stopped after the timeout. */
async function outcome(run: ActorRun, timeoutMs = COMMAND_TIMEOUT_MS): Promise<Outcome> {
  const timer = setTimeout(() => run.kill("SIGTERM"), timeoutMs);
  try {
    return await run.done;
  } finally {
    clearTimeout(timer);
  }
}

function check(ctx: Context, what: string, ok: boolean, report?: string): void {
  ctx.checks.push({ what, ok, ...(report !== undefined ? { report } : {}) });
}

/** Whether an actor prints `pattern` within a few seconds (its output arrives asynchronously). */
async function prints(run: ActorRun, pattern: RegExp, timeoutMs = 5_000): Promise<boolean> {
  return await run.waitFor(pattern, timeoutMs).then(() => true, () => false);
}

/**
 * Asserts Trudy's verdict line: `ATTACK SUCCEEDED` (exit 0) against seed mode, `ATTACK FAILED:
 * <why>` (exit 3) against the default; the line goes into the notes.
 */
function checkVerdict(
  ctx: Context,
  half: Half,
  trudy: Outcome,
  expected: { pattern: RegExp; says: string },
): void {
  const line = trudy.stdout.split("\n").find((l) => l.startsWith("ATTACK ")) ??
    `(no verdict line, exit ${trudy.code})`;
  ctx.notes.push(`${half}: ${line}`);
  const status = half === "seed" ? 0 : 3;
  check(
    ctx,
    `${half}: Trudy's verdict ${expected.says} (exit ${status})`,
    trudy.code === status && expected.pattern.test(line),
    `exit ${trudy.code}: ${line}`,
  );
}

/** Starts Trudy on the path: `ATTACK --listen-port PORT --once`, after her `listening on` line. */
async function startTrudy(
  ctx: Context,
  half: Half,
  attack: string,
  args: string[],
  port: number,
): Promise<ActorRun> {
  ctx.sink(
    `* ${half} mode: Trudy (${attack}) waits on 127.0.0.1:${port}; the victim is sent there`,
  );
  return await ctx.actors.serve("Trudy", "actors/trudy.ts", [
    attack,
    ...args,
    "--listen-port",
    String(port),
    "--once",
  ]);
}

/** Options shared by the scenarios' Blackboard and Bob processes. */
interface ServerRun {
  /** The actor's name in the log and the ladder. */
  name: string;
  port: number;
  dataDir: string;
  seed?: boolean;
}

/** Blackboard with the certificate `issueServer` wrote, pinning the scenario's CA and its CRL. */
function serveBlackboard(ctx: Context, run: ServerRun): Promise<ActorRun> {
  return ctx.actors.serve(run.name, "actors/blackboard.ts", [
    "serve",
    ...(run.seed ? ["--protocol", "seed"] : []),
    "--port",
    String(run.port),
    "--data-dir",
    run.dataDir,
    "--cert",
    `${ctx.dir}/blackboard/blackboard.cer`,
    "--key",
    `${ctx.dir}/blackboard/blackboard.key`,
    "--ca-cert",
    `${ctx.dir}/ca/cuhk.cer`,
    "--ca",
    `127.0.0.1:${ctx.ports.ca}`,
  ]);
}

/** Bob (his certificate, if any, in the data directory); `crl` makes him check the CA's CRL. */
function serveBob(ctx: Context, run: ServerRun & { crl?: boolean }): Promise<ActorRun> {
  return ctx.actors.serve(run.name, "actors/bank.ts", [
    "serve",
    ...(run.seed ? ["--protocol", "seed"] : []),
    "--port",
    String(run.port),
    "--data-dir",
    run.dataDir,
    ...(run.crl ? ["--ca", `127.0.0.1:${ctx.ports.ca}`] : []),
  ]);
}

/** The bank attacks' set-up: Bob in seed mode; the CA, Bob in secure mode and Alice enrolled. */
async function startBanks(ctx: Context): Promise<{ home: string }> {
  await Promise.all([
    startCa(ctx),
    serveBob(ctx, {
      name: "Bob (seed)",
      seed: true,
      port: ctx.ports.bankSeed!,
      dataDir: `${ctx.dir}/bank-seed`,
    }),
  ]);
  await issueServer(ctx, "bank", `${ctx.dir}/bank`);
  const [home] = await Promise.all([
    enrol(ctx, ALICE_SID),
    serveBob(ctx, { name: "Bob", port: ctx.ports.bank!, dataDir: `${ctx.dir}/bank` }),
  ]);
  return { home };
}

/** Bob's stored balance for a customer, in cents, read from his accounts database. */
function storedBalance(ctx: Context, dataDir: string, customer: string): number {
  using accounts = Accounts.open(`${ctx.dir}/${dataDir}/accounts.db`);
  return accounts.balance(customer);
}

/** Blackboard attacks' set-up: the CA, Blackboard in seed mode and in the default, a student. */
async function startBlackboards(
  ctx: Context,
): Promise<{ seed: ActorRun; def: ActorRun; home: string }> {
  await startCa(ctx);
  await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
  const [seed, def, home] = await Promise.all([
    serveBlackboard(ctx, {
      name: "Blackboard (seed)",
      seed: true,
      port: ctx.ports.bbSeed!,
      dataDir: `${ctx.dir}/blackboard-seed`,
    }),
    serveBlackboard(ctx, {
      name: "Blackboard",
      port: ctx.ports.blackboard!,
      dataDir: `${ctx.dir}/blackboard`,
    }),
    enrol(ctx, STUDENT_SID),
  ]);
  return { seed, def, home };
}

/** The student's `send` through Trudy's port (seed or default protocol). */
function studentSend(ctx: Context, half: Half, home: string, port: number, text: string): ActorRun {
  return ctx.actors.spawn("student", "actors/student.ts", [
    "send",
    ...(half === "seed" ? ["--protocol", "seed"] : []),
    "--sid",
    STUDENT_SID,
    "--home",
    home,
    "--blackboard",
    `127.0.0.1:${port}`,
    "--message",
    text,
  ]);
}

function count(text: string, line: string): number {
  return text.split("\n").filter((l) => l === line).length;
}

const BANK_ATTACK_PORTS = ["ca", "bankSeed", "trudySeed", "bank", "trudy"];
const BB_ATTACK_PORTS = ["ca", "bbSeed", "trudySeed", "blackboard", "trudy"];

const bankAttackActors = (p: Record<string, number>): ActorMap => ({
  servers: {
    [p.bankSeed!]: "Bob (bank)",
    [p.bank!]: "Bob (bank)",
    [p.trudySeed!]: "Trudy",
    [p.trudy!]: "Trudy",
  },
  clients: {
    [p.bankSeed!]: "Trudy",
    [p.bank!]: "Trudy",
    [p.trudySeed!]: "Alice",
    [p.trudy!]: "Alice",
  },
  order: ["Alice", "Trudy", "Bob (bank)"],
});

const bbAttackActors = (p: Record<string, number>): ActorMap => ({
  servers: {
    [p.bbSeed!]: "Blackboard",
    [p.blackboard!]: "Blackboard",
    [p.trudySeed!]: "Trudy",
    [p.trudy!]: "Trudy",
  },
  clients: {
    [p.bbSeed!]: "Trudy",
    [p.blackboard!]: "Trudy",
    [p.trudySeed!]: "Student",
    [p.trudy!]: "Student",
  },
  order: ["Student", "Trudy", "Blackboard"],
});

const SPECS: Record<ScenarioName, ScenarioSpec> = {
  "enrol": {
    name: "enrol",
    title: "System 1, steps 1-2: a student enrols with the CA",
    ports: ["ca"],
    capture: (p) => [p.ca!],
    actors: (p) => ({ servers: { [p.ca!]: "CUHK (CA)" }, clients: { [p.ca!]: "Student" } }),
    labels: [caProtocol.label("csr"), caProtocol.label("certificate")],
    async run(ctx) {
      await startCa(ctx);
      await enrol(ctx, STUDENT_SID);
    },
  },
  "upload": {
    name: "upload",
    title: "System 1, steps 1-6: enrolment, a session with Blackboard, a report upload",
    ports: ["ca", "blackboard"],
    capture: (p) => [p.ca!, p.blackboard!],
    actors: (p) => ({
      servers: { [p.ca!]: "CUHK (CA)", [p.blackboard!]: "Blackboard" },
      clients: { [p.ca!]: "Student", [p.blackboard!]: "Student" },
      byFirstMessage: { [caProtocol.label("crlRequest")]: "Blackboard" },
      order: ["Student", "CUHK (CA)", "Blackboard", "Alice", "Bob (bank)"],
    }),
    labels: [
      caProtocol.label("csr"),
      caProtocol.label("certificate"),
      caProtocol.label("crlRequest"),
      caProtocol.label("crl"),
      bb("request"),
      bb("sessionKey"),
      bb("confirm"),
      bb("ready"),
      session("message"),
      session("uploadBegin"),
      session("chunk"),
      session("uploadEnd"),
      session("receipt"),
    ],
    async run(ctx) {
      await startCa(ctx);
      await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
      await serveBlackboard(ctx, {
        name: "Blackboard",
        port: ctx.ports.blackboard!,
        dataDir: `${ctx.dir}/blackboard`,
      });
      const home = await enrol(ctx, STUDENT_SID);
      const common = [
        "--sid",
        STUDENT_SID,
        "--home",
        home,
        "--blackboard",
        `127.0.0.1:${ctx.ports.blackboard}`,
      ];
      await ctx.actors.run("student", "actors/student.ts", [
        "send",
        ...common,
        "--message",
        "Hello Blackboard, this is my first authenticated message",
      ]);
      const report = `${ctx.dir}/report.txt`;
      await writeReport(report, 600 * 1024);
      ctx.sink("* the student uploads report.txt (600 KiB, in chunks of 256 KiB)");
      await ctx.actors.run("student", "actors/student.ts", ["upload", ...common, "--file", report]);
    },
  },
  "bank": {
    name: "bank",
    title: "System 2: Alice banks with Bob (secure mode)",
    ports: ["ca", "bank"],
    capture: (p) => [p.ca!, p.bank!],
    actors: (p) => ({
      servers: { [p.ca!]: "CUHK (CA)", [p.bank!]: "Bob (bank)" },
      clients: { [p.ca!]: "Alice", [p.bank!]: "Alice" },
      byFirstMessage: { [caProtocol.label("crlRequest")]: "Bob (bank)" },
      order: ["Alice", "CUHK (CA)", "Bob (bank)"],
    }),
    labels: [
      caProtocol.label("csr"),
      caProtocol.label("certificate"),
      caProtocol.label("crlRequest"),
      caProtocol.label("crl"),
      bank("hello"),
      bank("hiBob"),
      bank("proveIt"),
      bank("proof"),
      bank("secret"),
      bank("record"),
    ],
    async run(ctx) {
      await startCa(ctx);
      await issueServer(ctx, "bank", `${ctx.dir}/bank`);
      await serveBob(ctx, {
        name: "Bob",
        port: ctx.ports.bank!,
        dataDir: `${ctx.dir}/bank`,
        crl: true,
      });
      const home = await enrol(ctx, ALICE_SID);
      ctx.sink("* Alice: deposit 100.00, withdraw 25.50, check balance, exit");
      await ctx.actors.run("Alice", "actors/bank.ts", [
        "client",
        "--bank",
        `127.0.0.1:${ctx.ports.bank}`,
        "--home",
        home,
      ], { stdin: "deposit 100.00\nwithdraw 25.50\nbalance\nexit\n" });
    },
  },
  "chat-tls13": {
    name: "chat-tls13",
    title: "System 3: three chat clients over TLS 1.3",
    ports: ["chat"],
    capture: (p) => [p.chat!],
    actors: (p) => ({
      servers: { [p.chat!]: "chat server" },
      clients: { [p.chat!]: "client" },
      numbered: [p.chat!],
    }),
    tls: (p) => ({ serverPorts: [p.chat!], expect: [{ name: "tls13", count: 3 }] }),
    async run(ctx) {
      await startChat(ctx);
      const alice = chatClient(ctx, "alice", [
        "--expect",
        "carol joined",
        "--send",
        "hello from alice",
        "--expect",
        "<carol> bye all",
      ]);
      await alice.waitFor(/joined as alice/, START_TIMEOUT_MS);
      const bob = chatClient(ctx, "bob", [
        "--expect",
        "carol joined",
        "--send",
        "/who",
        "--expect",
        "<carol> bye all",
      ]);
      await bob.waitFor(/joined as bob/, START_TIMEOUT_MS);
      const carol = chatClient(ctx, "carol", [
        "--expect",
        "<alice> hello from alice",
        "--send",
        "/msg bob psst, bob",
        "--send",
        "bye all",
      ]);
      await Promise.all([alice, bob, carol].map((c) => ctx.actors.finish(c)));
    },
  },
  "chat-tls12": {
    name: "chat-tls12",
    title: "System 3: a chat client over TLS 1.2, and AES128-SHA refused",
    ports: ["chat"],
    capture: (p) => [p.chat!],
    actors: (p) => ({
      servers: { [p.chat!]: "chat server" },
      clients: { [p.chat!]: "client" },
      numbered: [p.chat!],
    }),
    tls: (p, ctx) => ({
      serverPorts: [p.chat!],
      expect: [
        { name: "tls12", count: 1 },
        ...(ctx.notes.some((n) => n.startsWith("AES128-SHA refused"))
          ? [{ name: "aes128-sha-refused", count: 1 }]
          : []),
      ],
    }),
    async run(ctx) {
      await startChat(ctx);
      const dave = chatClient(ctx, "dave", [
        "--send",
        "hello over TLS 1.2, as in the seed's capture",
        "--send",
        "/who",
        "--expect",
        "online \\(1\\)",
      ], true);
      await ctx.actors.finish(dave);
      ctx.notes.push(await offerAes128Sha(ctx, ctx.ports.chat!, `${ctx.dir}/chat/cuhk.cer`));
    },
  },
  "seed": {
    name: "seed",
    title: "Seed mode (teaching): systems 1 and 2 as the seeds wrote them, flaws on the wire",
    ports: ["ca", "blackboard", "bank"],
    capture: (p) => [p.ca!, p.blackboard!, p.bank!],
    actors: (p) => ({
      servers: { [p.ca!]: "CUHK (CA)", [p.blackboard!]: "Blackboard", [p.bank!]: "Bob (bank)" },
      clients: { [p.ca!]: "Student", [p.blackboard!]: "Student", [p.bank!]: "Alice" },
      byFirstMessage: { [caProtocol.label("crlRequest")]: "Blackboard" },
      order: ["Student", "CUHK (CA)", "Blackboard", "Alice", "Bob (bank)"],
    }),
    labels: [
      bb("seedRequest"),
      bb("seedSessionKey"),
      bb("seedKeyEcho"),
      bb("seedOk"),
      bb("seedMessage"),
      bank("seedHello"),
      bank("seedHiBob"),
      bank("seedProveIt"),
      bank("seedProof"),
      bank("seedSecret"),
      bank("seedRecord"),
    ],
    async run(ctx) {
      await startCa(ctx);
      await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
      await serveBlackboard(ctx, {
        name: "Blackboard",
        seed: true,
        port: ctx.ports.blackboard!,
        dataDir: `${ctx.dir}/blackboard`,
      });
      const home = await enrol(ctx, STUDENT_SID);
      ctx.sink("* seed mode: the student sends the decrypted session key back in the clear");
      await ctx.actors.run("student", "actors/student.ts", [
        "send",
        "--protocol",
        "seed",
        "--sid",
        STUDENT_SID,
        "--home",
        home,
        "--blackboard",
        `127.0.0.1:${ctx.ports.blackboard}`,
        "--message",
        "Anyone who saw STEP 5 can forge this",
      ]);
      await serveBob(ctx, {
        name: "Bob",
        seed: true,
        port: ctx.ports.bank!,
        dataDir: `${ctx.dir}/bank`,
      });
      ctx.sink("* seed mode: Bob's key unauthenticated, a replayable proof, ECB records");
      await ctx.actors.run("Alice", "actors/bank.ts", [
        "client",
        "--protocol",
        "seed",
        "--bank",
        `127.0.0.1:${ctx.ports.bank}`,
        "--customer",
        "alice",
      ], { stdin: "deposit 10.00\nbalance\nexit\n" });
    },
  },
  "attack-enrol-impersonation": {
    name: "attack-enrol-impersonation",
    title: "Trudy, enrol-impersonation: a certificate for someone else's student ID",
    ports: ["caOpen", "ca"],
    capture: (p) => [p.caOpen!, p.ca!],
    actors: (p) => ({
      servers: { [p.caOpen!]: "CUHK (CA, open enrolment)", [p.ca!]: "CUHK (CA)" },
      clients: { [p.caOpen!]: "Trudy", [p.ca!]: "Trudy" },
      order: ["Trudy", "CUHK (CA, open enrolment)", "CUHK (CA)"],
    }),
    labels: [caProtocol.label("csr"), caProtocol.label("certificate"), caProtocol.label("error")],
    path: ["Trudy", "CUHK (CA, open enrolment)"],
    async run(ctx) {
      const [open, strict] = await Promise.all([
        ctx.actors.serve("CUHK (open)", "actors/ca.ts", [
          "serve",
          "--open-enrolment",
          "--port",
          String(ctx.ports.caOpen),
          "--data-dir",
          `${ctx.dir}/ca-open`,
        ]),
        ctx.actors.serve("CUHK", "actors/ca.ts", [
          "serve",
          "--port",
          String(ctx.ports.ca),
          "--data-dir",
          `${ctx.dir}/ca`,
        ]),
      ]);
      const attack = (ca: number, dir: string) =>
        outcome(ctx.actors.spawn("Trudy", "actors/trudy.ts", [
          "enrol-impersonation",
          "--victim",
          VICTIM_SID,
          "--ca",
          `127.0.0.1:${ca}`,
          "--ca-cert",
          `${ctx.dir}/${dir}/cuhk.cer`,
        ]));

      ctx.sink(`* seed mode (--open-enrolment): Trudy asks for cert 2 with ${VICTIM_SID}'s ID`);
      checkVerdict(ctx, "seed", await attack(ctx.ports.caOpen!, "ca-open"), {
        pattern: /^ATTACK SUCCEEDED: /,
        says: "ATTACK SUCCEEDED",
      });
      check(
        ctx,
        `seed: the open CA signed cert 2 for ${VICTIM_SID}, Trudy's key in it`,
        await prints(open, new RegExp(`STEP 2 signed cert 2 for SID ${VICTIM_SID}`)),
      );

      ctx.sink(`* default: ${VICTIM_SID} has a one-time code; Trudy does not know it`);
      await ctx.actors.run("ca code", "actors/ca.ts", [
        "code",
        "--sid",
        VICTIM_SID,
        "--data-dir",
        `${ctx.dir}/ca`,
      ]);
      checkVerdict(ctx, "default", await attack(ctx.ports.ca!, "ca"), {
        pattern: new RegExp(
          `^ATTACK FAILED: the CA refused to issue a certificate for ${VICTIM_SID}: Enrolment refused: Enrolment code is not valid for ${VICTIM_SID}$`,
        ),
        says: "ATTACK FAILED: the CA refused (no valid enrolment code)",
      });
      check(
        ctx,
        "default: the CA refused and signed nothing",
        await prints(strict, /refused .*Enrolment code is not valid/) &&
          !/signed cert 2/.test(strict.output),
      );
    },
  },
  "attack-bank-mitm": {
    name: "attack-bank-mitm",
    title: "Trudy, bank-mitm: on the path between Alice and Bob, seed mode then the default",
    ports: BANK_ATTACK_PORTS,
    capture: (p) => [p.bankSeed!, p.trudySeed!, p.bank!, p.trudy!],
    actors: bankAttackActors,
    labels: [
      bank("seedHello"),
      bank("seedHiBob"),
      bank("seedProveIt"),
      bank("seedProof"),
      bank("seedSecret"),
      bank("seedRecord"),
      bank("hello"),
      bank("hiBob"),
      bank("error"),
    ],
    trudyPorts: (p) => [p.trudySeed!, p.trudy!],
    path: ["Alice", "Trudy", "Bob (bank)"],
    async run(ctx) {
      const { home } = await startBanks(ctx);

      let trudy = await startTrudy(ctx, "seed", "bank-mitm", [
        "--bank",
        `127.0.0.1:${ctx.ports.bankSeed}`,
        "--amount",
        "900.00",
      ], ctx.ports.trudySeed!);
      ctx.sink("* Alice (seed mode): deposit 10.00, balance, exit");
      const seen = await ctx.actors.run("Alice", "actors/bank.ts", [
        "client",
        "--protocol",
        "seed",
        "--bank",
        `127.0.0.1:${ctx.ports.trudySeed}`,
        "--customer",
        "alice",
      ], { stdin: "deposit 10.00\nbalance\nexit\n" });
      checkVerdict(ctx, "seed", await outcome(trudy), {
        pattern: /^ATTACK SUCCEEDED: .*changed a deposit of 10\.00 into 900\.00/,
        says: "ATTACK SUCCEEDED (a deposit of 10.00 changed into 900.00)",
      });
      const seedBalance = storedBalance(ctx, "bank-seed", "seed/alice");
      check(
        ctx,
        "seed: Bob stored a balance of 900.00 for alice; Alice was shown 10.00",
        seedBalance === 90_000 && /balance 10\.00$/m.test(seen) && !/900/.test(seen),
        `Bob's balance ${seedBalance} cents; Alice saw: ${seen.trim().replaceAll("\n", " / ")}`,
      );

      trudy = await startTrudy(ctx, "default", "bank-mitm", [
        "--bank",
        `127.0.0.1:${ctx.ports.bank}`,
        "--amount",
        "900.00",
      ], ctx.ports.trudy!);
      ctx.sink("* Alice (secure mode): deposit 10.00");
      const alice = await outcome(ctx.actors.spawn("Alice", "actors/bank.ts", [
        "client",
        "--bank",
        `127.0.0.1:${ctx.ports.trudy}`,
        "--home",
        home,
        "deposit",
        "10.00",
      ]));
      checkVerdict(ctx, "default", await outcome(trudy), {
        pattern:
          /^ATTACK FAILED: Alice refused Trudy's key at STEP 2 and told Trudy why: .*it is not issued by the pinned root/,
        says: "ATTACK FAILED: Alice refused Trudy's certificate at STEP 2",
      });
      const balance = storedBalance(ctx, "bank", ALICE_SID);
      check(
        ctx,
        "default: Alice stopped at STEP 2 (certificate not issued by the pinned root), Bob's balance 0",
        alice.code !== 0 && /STEP 2 .*not issued by the pinned root/.test(alice.stderr) &&
          balance === 0,
        `Alice exit ${alice.code}; Bob's balance ${balance} cents`,
      );
    },
  },
  "attack-bank-replay": {
    name: "attack-bank-replay",
    title: "Trudy, bank-replay: Bob's recorded proof replayed to Alice, seed mode then the default",
    ports: BANK_ATTACK_PORTS,
    capture: (p) => [p.bankSeed!, p.trudySeed!, p.bank!, p.trudy!],
    actors: bankAttackActors,
    labels: [
      bank("seedHello"),
      bank("seedHiBob"),
      bank("seedProveIt"),
      bank("seedProof"),
      bank("seedSecret"),
      bank("hello"),
      bank("hiBob"),
      bank("proveIt"),
      bank("proof"),
      bank("error"),
    ],
    trudyPorts: (p) => [p.trudySeed!, p.trudy!],
    path: ["Alice", "Trudy", "Bob (bank)"],
    async run(ctx) {
      const { home } = await startBanks(ctx);
      const halves = [
        {
          half: "seed" as const,
          bank: ctx.ports.bankSeed!,
          port: ctx.ports.trudySeed!,
          alice: ["--protocol", "seed", "--customer", "alice"],
          expected: {
            pattern:
              /^ATTACK SUCCEEDED: Alice accepted Bob's proof replayed from an earlier session/,
            says: "ATTACK SUCCEEDED (Alice took Trudy for Bob)",
          },
          victim: /STEP 5 Alice's secret: sent/,
          seen: "seed: Alice accepted the replayed proof and sent her secret (STEP 5) to Trudy",
        },
        {
          half: "default" as const,
          bank: ctx.ports.bank!,
          port: ctx.ports.trudy!,
          alice: ["--home", home],
          expected: {
            pattern:
              /^ATTACK FAILED: Alice refused the replayed frames at STEP 4 .*Alice's nonce is not in it/,
            says: "ATTACK FAILED: Alice refused the replayed proof at STEP 4 (her nonce)",
          },
          victim: /STEP 4 Bob's proof failed: .*Alice's nonce is not in it/,
          seen: "default: Alice stopped at STEP 4 and sent no secret",
        },
      ];
      for (const h of halves) {
        const trudy = await startTrudy(ctx, h.half, "bank-replay", [
          "--bank",
          `127.0.0.1:${h.bank}`,
          "--protocol",
          h.half === "seed" ? "seed" : "secure",
        ], h.port);
        ctx.sink(`* Alice (${h.half} mode) connects to "Bob" and asks for her balance`);
        const run = ctx.actors.spawn("Alice", "actors/bank.ts", [
          "client",
          ...h.alice,
          "--bank",
          `127.0.0.1:${h.port}`,
          "balance",
        ]);
        checkVerdict(ctx, h.half, await outcome(trudy), h.expected);
        if (h.half === "seed") {
          // Trudy hung up with Alice's secret; Alice's retries of her balance cannot reach Bob.
          await prints(run, /STEP 5 Alice's secret: sent/);
          ctx.sink("* Trudy has hung up with Alice's secret: Alice is stopped");
          run.kill("SIGTERM");
        }
        const alice = await outcome(run);
        check(
          ctx,
          h.seen,
          h.victim.test(alice.stderr) &&
            (h.half === "seed" || !/STEP 5 Alice's secret: sent/.test(alice.stderr)),
          alice.stderr.trim().split("\n").slice(-2).join(" / "),
        );
      }
    },
  },
  "attack-session-key-sniff": {
    name: "attack-session-key-sniff",
    title:
      "Trudy, session-key-sniff: the session key read off the wire, a forged message | HMAC; seed mode then the default",
    ports: BB_ATTACK_PORTS,
    capture: (p) => [p.bbSeed!, p.trudySeed!, p.blackboard!, p.trudy!],
    actors: bbAttackActors,
    labels: [
      bb("seedRequest"),
      bb("seedSessionKey"),
      bb("seedKeyEcho"),
      bb("seedMessage"),
      bb("request"),
      bb("sessionKey"),
      bb("confirm"),
      bb("error"),
    ],
    trudyPorts: (p) => [p.trudySeed!, p.trudy!],
    path: ["Student", "Trudy", "Blackboard"],
    async run(ctx) {
      const { seed, def, home } = await startBlackboards(ctx);

      let trudy = await startTrudy(ctx, "seed", "session-key-sniff", [
        "--blackboard",
        `127.0.0.1:${ctx.ports.bbSeed}`,
        "--settle-ms",
        "500",
      ], ctx.ports.trudySeed!);
      ctx.sink("* the student (seed protocol) sends one message through Trudy's port");
      await outcome(studentSend(ctx, "seed", home, ctx.ports.trudySeed!, "my own message"));
      checkVerdict(ctx, "seed", await outcome(trudy), {
        pattern:
          /^ATTACK SUCCEEDED: Trudy read the session key that the student sent back in the clear at STEP 5 and injected a forged message \| HMAC under it; Blackboard accepted it/,
        says: "ATTACK SUCCEEDED (key read at STEP 5, forgery accepted)",
      });
      const forged = `Message from ${STUDENT_SID}: ${FORGED_MESSAGE}`;
      check(
        ctx,
        `seed: Blackboard printed Trudy's forgery as ${STUDENT_SID}'s message`,
        await prints(seed, new RegExp(forged.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))),
      );

      trudy = await startTrudy(ctx, "default", "session-key-sniff", [
        "--blackboard",
        `127.0.0.1:${ctx.ports.blackboard}`,
      ], ctx.ports.trudy!);
      ctx.sink("* the student (default protocol) sends one message through Trudy's port");
      const student = await outcome(
        studentSend(ctx, "default", home, ctx.ports.trudy!, "my own message"),
      );
      checkVerdict(ctx, "default", await outcome(trudy), {
        pattern:
          /^ATTACK FAILED: no session key crossed the wire .*Blackboard refused Trudy's message forged under a guessed key: .*HMAC does not verify/,
        says: "ATTACK FAILED: no key on the wire, the forgery refused",
      });
      check(
        ctx,
        "default: Blackboard printed nothing (the session closed on the forgery), the student was told",
        !/Message from/.test(def.output) && student.code !== 0,
        `student exit ${student.code}`,
      );
    },
    async analyse(ctx, capture) {
      ctx.sink("* Trudy, passive: session-key-sniff --pcap on this scenario's own capture");
      const log = new StepLog("Trudy", { sink: (line) => ctx.sink(`  ${line}`) });
      const seed = await sniffCapture({ pcap: capture, port: ctx.ports.bbSeed!, log });
      ctx.sink(`  [Trudy] ${verdictLine(seed)}`);
      checkVerdict(ctx, "seed", {
        code: verdictStatus(seed),
        stdout: verdictLine(seed),
        stderr: "",
      }, {
        pattern: new RegExp(
          `^ATTACK SUCCEEDED: Trudy read the session key of student ${STUDENT_SID} from STEP 5 .*2 of 2 captured messages verify under it`,
        ),
        says: "(--pcap) ATTACK SUCCEEDED: the key read from the capture, 2 of 2 messages verify",
      });
      const def = await sniffCapture({ pcap: capture, port: ctx.ports.blackboard!, log });
      ctx.sink(`  [Trudy] ${verdictLine(def)}`);
      checkVerdict(ctx, "default", {
        code: verdictStatus(def),
        stdout: verdictLine(def),
        stderr: "",
      }, {
        pattern: /^ATTACK FAILED: no session key in the capture/,
        says: "(--pcap) ATTACK FAILED: no session key in the capture",
      });
    },
  },
  "attack-message-replay": {
    name: "attack-message-replay",
    title: "Trudy, message-replay: a step-6 message sent twice, seed mode then the default",
    ports: BB_ATTACK_PORTS,
    capture: (p) => [p.bbSeed!, p.trudySeed!, p.blackboard!, p.trudy!],
    actors: bbAttackActors,
    labels: [
      bb("seedRequest"),
      bb("seedSessionKey"),
      bb("seedKeyEcho"),
      bb("seedMessage"),
      bb("request"),
      bb("sessionKey"),
      bb("confirm"),
      bb("ready"),
      session("message"),
      bb("error"),
    ],
    trudyPorts: (p) => [p.trudySeed!, p.trudy!],
    path: ["Student", "Trudy", "Blackboard"],
    async run(ctx) {
      const { seed, def, home } = await startBlackboards(ctx);
      const text = "pay me once";
      const printed = `Message from ${STUDENT_SID}: ${text}`;

      let trudy = await startTrudy(ctx, "seed", "message-replay", [
        "--blackboard",
        `127.0.0.1:${ctx.ports.bbSeed}`,
        "--settle-ms",
        "500",
      ], ctx.ports.trudySeed!);
      ctx.sink(`* the student (seed protocol) sends '${text}' once, through Trudy's port`);
      await outcome(studentSend(ctx, "seed", home, ctx.ports.trudySeed!, text));
      checkVerdict(ctx, "seed", await outcome(trudy), {
        pattern: /^ATTACK SUCCEEDED: Blackboard accepted the copy of the student's message/,
        says: "ATTACK SUCCEEDED (the copy accepted)",
      });
      await prints(seed, new RegExp(`(${printed}\\n[^]*){2}`));
      check(
        ctx,
        `seed: Blackboard printed '${text}' twice`,
        count(seed.output, printed) === 2,
        `printed ${count(seed.output, printed)} times`,
      );

      trudy = await startTrudy(ctx, "default", "message-replay", [
        "--blackboard",
        `127.0.0.1:${ctx.ports.blackboard}`,
      ], ctx.ports.trudy!);
      ctx.sink(`* the student (default protocol) sends '${text}' once, through Trudy's port`);
      await outcome(studentSend(ctx, "default", home, ctx.ports.trudy!, text));
      checkVerdict(ctx, "default", await outcome(trudy), {
        pattern:
          /^ATTACK FAILED: Blackboard refused the copy of record 0: .*sequence number 0, expected 1/,
        says: "ATTACK FAILED: the copy refused by its sequence number",
      });
      await prints(def, new RegExp(printed));
      check(
        ctx,
        `default: Blackboard printed '${text}' once`,
        count(def.output, printed) === 1,
        `printed ${count(def.output, printed)} times`,
      );
    },
  },
};

export function scenarioTitle(name: ScenarioName): string {
  return SPECS[name].title;
}

export interface Check {
  what: string;
  ok: boolean;
  /** The full report (side by side sequences) for a TLS check. */
  report?: string;
}

export interface ScenarioResult {
  name: ScenarioName;
  title: string;
  ok: boolean;
  /** The scenario's own failure, if it did not run to the end. */
  error?: string;
  capture?: string;
  checks: Check[];
  diagram?: DiagramFiles;
  notes: string[];
  seconds: number;
}

export interface RunOptions {
  /** Where the pcapng files and diagrams go (e.g. pcap/captures). */
  outDir: string;
  /** A private parent for the work directory (inside the project for scoped permissions). */
  workParent: string;
  /** Capture with dumpcap (needs root or the wireshark group). */
  capture: boolean;
  diagram: boolean;
  sink: Sink;
  /** Keep the actors' data (keys, ledgers, reports) after the run. */
  keepWork?: boolean;
}

/** Runs one scenario end to end; never throws for a failure of the scenario itself. */
export async function runScenario(
  name: ScenarioName,
  options: RunOptions,
): Promise<ScenarioResult> {
  const spec = SPECS[name];
  const started = Date.now();
  await Deno.mkdir(options.workParent, { recursive: true, mode: 0o700 });
  const dir = await Deno.makeTempDir({ dir: options.workParent, prefix: `${name}-` });
  const absDir = await Deno.realPath(dir);
  // Servers stay off the ports Wireshark dissects as other protocols (pcap/lab.lua must name them).
  const picked = freePorts(
    spec.ports.length,
    options.capture ? await wiresharkTcpPorts() : new Set(),
  );
  const ports = Object.fromEntries(spec.ports.map((p, i) => [p, picked[i]!]));
  const result: ScenarioResult = {
    name,
    title: spec.title,
    ok: false,
    checks: [],
    notes: [],
    seconds: 0,
  };
  // Output shows the work directory without its random suffix, relative to the project.
  const shown = `${
    absDir.startsWith(PROJECT_ROOT + "/")
      ? absDir.slice(PROJECT_ROOT.length + 1).replace(/-[0-9a-f]+$/, "")
      : absDir
  }`;
  const sink: Sink = (line) => options.sink(line.replaceAll(absDir, shown));
  const ctx: Context = {
    dir: absDir,
    ports,
    actors: new Actors(absDir, sink),
    tlsEnv: {},
    sink,
    notes: result.notes,
    checks: result.checks,
  };
  let capture: Capture | undefined;
  try {
    if (options.capture) {
      capture = await Capture.start({ ports: spec.capture(ports), workDir: `${absDir}/capture` });
      ctx.tlsEnv = { SSLKEYLOGFILE: capture.keyLogPath };
      sink(`* capturing on lo (${capture.filter})`);
    }
    try {
      await using _actors = ctx.actors;
      await spec.run(ctx);
    } catch (err) {
      result.error = errorMessage(err);
    }
    if (capture) {
      await Deno.mkdir(options.outDir, { recursive: true, mode: 0o755 });
      const out = `${options.outDir}/${name}.pcapng`;
      const { path, secrets } = await capture.finish(out);
      capture = undefined;
      result.capture = path;
      if (spec.tls) result.notes.push(secrets ? "TLS key log embedded" : "no TLS key log");
      if (spec.analyse && result.error === undefined) {
        try {
          await spec.analyse(ctx, path);
        } catch (err) {
          result.error = errorMessage(err);
        }
      }
      if (result.error === undefined) result.checks.push(...await checkScenario(spec, ctx, path));
      if (options.diagram) {
        result.diagram = await writeDiagram(path, `${options.outDir}/${name}`, {
          title: spec.title,
          actors: spec.actors(ports),
          ...(spec.tls ? { tlsPorts: spec.tls(ports, ctx).serverPorts } : {}),
        });
        if (spec.path && result.error === undefined) {
          result.checks.push(checkPath(spec.path, result.diagram.ladder));
        }
      }
    }
  } catch (err) {
    result.error ??= errorMessage(err);
  } finally {
    if (capture) await capture[Symbol.asyncDispose]();
    if (!options.keepWork) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  result.ok = result.error === undefined && result.checks.every((c) => c.ok);
  result.seconds = (Date.now() - started) / 1000;
  return result;
}

/** The ladder shows `path`'s lanes in order, with messages both ways between each neighbour. */
function checkPath(path: readonly string[], ladder: Ladder): Check {
  const lanes = path.map((a) => ladder.actors.indexOf(a));
  const ordered = lanes.every((l, i) => l >= 0 && (i === 0 || l > lanes[i - 1]!));
  const between = (from: string, to: string) =>
    ladder.arrows.filter((a) => a.from === from && a.to === to).length;
  const missing: string[] = [];
  for (let i = 1; i < path.length; i++) {
    const [a, b] = [path[i - 1]!, path[i]!];
    if (between(a, b) === 0) missing.push(`no message ${a} → ${b}`);
    if (between(b, a) === 0) missing.push(`no message ${b} → ${a}`);
  }
  return {
    what: `the ladder shows ${path.join(" ⇄ ")}${
      path.length > 2 ? `, ${path[1]} in the middle lane` : ""
    }`,
    ok: ordered && missing.length === 0,
    report: [`lanes: ${ladder.actors.join(", ")}`, ...missing].join("\n"),
  };
}

async function checkScenario(spec: ScenarioSpec, ctx: Context, file: string): Promise<Check[]> {
  const checks: Check[] = [];
  if (spec.tls) {
    const { serverPorts, expect } = spec.tls(ctx.ports, ctx);
    const requirements = await Promise.all(
      expect.map(async (e) => ({ expectation: await loadExpectation(e.name), count: e.count })),
    );
    const res = await checkCapture(file, requirements, { serverPorts });
    checks.push({
      what: `TLS records match ${expect.map((e) => `${e.name} ×${e.count}`).join(", ")}`,
      ok: res.ok,
      report: res.report,
    });
  }
  if (spec.labels) {
    const messages = await readLabMessages(file);
    const seen = new Set(messages.map((m) => m.label));
    const missing = spec.labels.filter((l) => !seen.has(l));
    const unknown = messages.filter((m) => /unknown message type|empty frame/.test(m.label));
    // Every payload byte of every connection must sit inside a frame the dissector named.
    const unnamed = [...(await labCoverage(file))].filter(([, c]) => c.named !== c.wire);
    if (spec.trudyPorts) {
      const trudy = spec.trudyPorts(ctx.ports);
      const onTrudy = messages.filter((m) =>
        trudy.includes(m.srcPort) || trudy.includes(m.dstPort)
      );
      const streams = new Set(onTrudy.map((m) => m.stream));
      checks.push({
        what: `pcap/lab.lua recognises Trudy's free port${trudy.length === 1 ? "" : "s"} ${
          trudy.join(", ")
        } (heuristic): ${onTrudy.length} messages named on ${streams.size} connection${
          streams.size === 1 ? "" : "s"
        }`,
        ok: trudy.every((p) => onTrudy.some((m) => m.srcPort === p || m.dstPort === p)),
        report: onTrudy.map((m) => `frame ${m.frame}: ${m.srcPort} → ${m.dstPort} ${m.label}`)
          .join("\n"),
      });
    }
    checks.push({
      what:
        `pcap/lab.lua names all ${messages.length} lab messages (every byte), every step present`,
      ok: missing.length === 0 && unknown.length === 0 && unnamed.length === 0 &&
        messages.length > 0,
      report: [
        ...missing.map((l) => `missing: ${l}`),
        ...unknown.map((m) => `frame ${m.frame}: ${m.label}`),
        ...unnamed.map(([s, c]) => `TCP stream ${s}: ${c.named} of ${c.wire} payload bytes named`),
      ].join("\n") || messages.map((m) => `frame ${m.frame}: ${m.label}`).join("\n"),
    });
  }
  return checks;
}
