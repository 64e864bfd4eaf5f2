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
 */

import { bankProtocol } from "./bank_protocol.ts";
import { blackboardProtocol, sessionProtocol } from "./blackboard_protocol.ts";
import { caProtocol } from "./ca_protocol.ts";
import { Capture, freePorts, hasTool } from "./capture.ts";
import {
  type ActorMap,
  type DiagramFiles,
  labCoverage,
  readLabMessages,
  writeDiagram,
} from "./diagram.ts";
import { errorMessage } from "./log.ts";
import { checkCapture, loadExpectation } from "./tls_sequence.ts";

export const PROJECT_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

export const SCENARIO_NAMES = [
  "enrol",
  "upload",
  "bank",
  "chat-tls13",
  "chat-tls12",
  "seed",
] as const;
export type ScenarioName = typeof SCENARIO_NAMES[number];
/** What `all` runs (enrol is the first half of upload). */
export const ALL_SCENARIOS: readonly ScenarioName[] = [
  "upload",
  "bank",
  "chat-tls13",
  "chat-tls12",
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
  run: (ctx: Context) => Promise<void>;
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
      await ctx.actors.serve("Blackboard", "actors/blackboard.ts", [
        "serve",
        "--port",
        String(ctx.ports.blackboard),
        "--data-dir",
        `${ctx.dir}/blackboard`,
        "--ca-cert",
        `${ctx.dir}/ca/cuhk.cer`,
        "--ca",
        `127.0.0.1:${ctx.ports.ca}`,
      ]);
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
      await ctx.actors.serve("Bob", "actors/bank.ts", [
        "serve",
        "--port",
        String(ctx.ports.bank),
        "--data-dir",
        `${ctx.dir}/bank`,
        "--ca",
        `127.0.0.1:${ctx.ports.ca}`,
      ]);
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
      await ctx.actors.serve("Blackboard", "actors/blackboard.ts", [
        "serve",
        "--protocol",
        "seed",
        "--port",
        String(ctx.ports.blackboard),
        "--data-dir",
        `${ctx.dir}/blackboard`,
        "--ca-cert",
        `${ctx.dir}/ca/cuhk.cer`,
        "--ca",
        `127.0.0.1:${ctx.ports.ca}`,
      ]);
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
      await ctx.actors.serve("Bob", "actors/bank.ts", [
        "serve",
        "--protocol",
        "seed",
        "--port",
        String(ctx.ports.bank),
        "--data-dir",
        `${ctx.dir}/bank`,
      ]);
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
  const picked = freePorts(spec.ports.length);
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
      if (result.error === undefined) result.checks.push(...await checkScenario(spec, ctx, path));
      if (options.diagram) {
        result.diagram = await writeDiagram(path, `${options.outDir}/${name}`, {
          title: spec.title,
          actors: spec.actors(ports),
          ...(spec.tls ? { tlsPorts: spec.tls(ports, ctx).serverPorts } : {}),
        });
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
