/**
 * What every capture scenario is made of: its name, its spec (named ports, what to capture, the
 * ladder's actors, what to check), the context it runs in, and its actors, each a real process
 * (lib/runtime's process runner) on free loopback ports in a private work directory.
 */

import {
  type ProcessResult,
  PROJECT_ROOT,
  type RunningProcess,
  spawnDeno,
  visible,
} from "../../lib/runtime/mod.ts";
import { type ActorMap, freePorts, type LadderMark } from "../../lib/wireshark/mod.ts";
import { LOOPBACK, type Placement } from "./placement.ts";

export const SCENARIO_NAMES = [
  "enrol",
  "upload",
  "bank",
  "chat-tls13",
  "chat-tls12",
  "seed",
  "attack-enrol-impersonation",
  "attack-enrol-code-theft",
  "attack-bank-mitm",
  "attack-bank-replay",
  "attack-session-key-sniff",
  "attack-message-replay",
  "attack-cross-service",
  "attack-crl-rollback",
  "attack-error-injection",
] as const;
export type ScenarioName = typeof SCENARIO_NAMES[number];
/**
 * What `attacks` runs: Trudy's attacks, each against seed mode and the default (crl-rollback the
 * default only: the seeds had no CRL).
 */
export const ATTACK_SCENARIOS: readonly ScenarioName[] = [
  "attack-enrol-impersonation",
  "attack-enrol-code-theft",
  "attack-bank-mitm",
  "attack-bank-replay",
  "attack-session-key-sniff",
  "attack-message-replay",
  "attack-cross-service",
  "attack-crl-rollback",
  "attack-error-injection",
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
export const COMMAND_TIMEOUT_MS = 120_000;
/** How long a server gets to say it is listening. */
export const START_TIMEOUT_MS = 60_000;

export class ScenarioError extends Error {
  override name = "ScenarioError";
}

/** A scenario's ports by name (`ca`, `blackboard`, `trudySeed`…), each a free one. */
export type Ports<K extends string> = Readonly<Record<K, number>>;

/**
 * A free port for each name, none of them in `avoid`; `fixed` gives a name its port (the netlab's
 * servers keep their default ports: each host has its own).
 */
export function freeNamedPorts<const K extends string>(
  names: readonly K[],
  avoid: ReadonlySet<number> = new Set(),
  fixed: (name: K) => number | undefined = () => undefined,
): Ports<K> {
  const taken = new Set([...avoid, ...names.map(fixed).filter((p) => p !== undefined)]);
  const picked = freePorts(names.length, taken);
  return Object.fromEntries(names.map((name, i) => [name, fixed(name) ?? picked[i]])) as Ports<K>;
}

function actorPermissions(dir: string, allowNet: string): string[] {
  return [
    `--allow-net=${allowNet}`,
    `--allow-read=${dir}`,
    `--allow-write=${dir}`,
  ];
}

/** The actors of one scenario; disposing stops every server still running (SIGINT). */
export class Actors implements AsyncDisposable {
  readonly dir: string;
  readonly sink: Sink;
  readonly place: Placement;
  readonly #running: RunningProcess[] = [];

  constructor(dir: string, sink: Sink, place: Placement = LOOPBACK) {
    this.dir = dir;
    this.sink = sink;
    this.place = place;
  }

  /** One actor process, its output forwarded line by line and kept for `waitFor`. */
  #start(
    name: string,
    script: string,
    args: string[],
    options: { env?: Record<string, string>; stdin?: string; permissions?: readonly string[] },
  ): RunningProcess {
    return spawnDeno(script, args, {
      name,
      permissions: [
        ...actorPermissions(this.dir, this.place.allowNet),
        ...(options.permissions ?? []),
      ],
      wrapper: this.place.wrapper(name),
      cwd: PROJECT_ROOT,
      env: { NO_COLOR: "1", ...options.env },
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
      // Actors log their STEP lines on standard error, tagged `[actor]`; results go to stdout.
      onLine: (line, from) => this.sink(from === "stdout" ? `  [${name}] ${line}` : `  ${line}`),
    });
  }

  /**
   * Starts a server and waits for its `listening on` line. `permissions` adds to the actors' own
   * (the chat server's `--allow-ffi`, as its task grants it).
   */
  async serve(
    name: string,
    script: string,
    args: string[],
    env: Record<string, string> = {},
    permissions: readonly string[] = [],
  ): Promise<RunningProcess> {
    const run = this.#start(name, script, args, { env, permissions });
    this.#running.push(run);
    await run.waitFor(/listening on/, START_TIMEOUT_MS);
    return run;
  }

  /** Starts a client that runs on its own (e.g. a scripted chat client). */
  spawn(
    name: string,
    script: string,
    args: string[],
    env: Record<string, string> = {},
  ): RunningProcess {
    const run = this.#start(name, script, args, { env });
    this.#running.push(run);
    return run;
  }

  /** Waits for a spawned client; throws with its last error line when it fails. */
  async finish(run: RunningProcess, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    const res = await run.result(timeoutMs);
    if (res.code !== 0) {
      const last = res.stderr.trim().split("\n").pop() ?? "";
      throw new ScenarioError(`${run.name} failed (exit ${res.code}): ${visible(last)}`);
    }
    return res.stdout;
  }

  /** Runs a command to completion; returns its standard output. */
  async run(
    name: string,
    script: string,
    args: string[],
    options: { env?: Record<string, string>; stdin?: string } = {},
  ): Promise<string> {
    return await this.finish(this.#start(name, script, args, options));
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

/** Waits for an actor that may fail (a victim refused, Trudy's exit 3); stopped after the timeout. */
export async function outcome(
  run: RunningProcess,
  timeoutMs = COMMAND_TIMEOUT_MS,
): Promise<ProcessResult> {
  return await run.result(timeoutMs);
}

/** Whether an actor prints `pattern` within a few seconds (its output arrives asynchronously). */
export async function prints(
  run: RunningProcess,
  pattern: RegExp,
  timeoutMs = 5_000,
): Promise<boolean> {
  return await run.waitFor(pattern, timeoutMs).then(() => true, () => false);
}

export interface Check {
  what: string;
  ok: boolean;
  /** The full report (side by side sequences) for a TLS check. */
  report?: string;
}

/** What a scenario runs with; `K` names its ports. */
export interface Context<K extends string = never> {
  dir: string;
  ports: Ports<K>;
  /** Where the actors run: loopback, or each in its netlab host. */
  place: Placement;
  actors: Actors;
  /** SSLKEYLOGFILE for the TLS actors when capturing. */
  tlsEnv: Record<string, string>;
  sink: Sink;
  /** Facts for the summary (e.g. `AES128-SHA refused by python3`). */
  notes: string[];
  /** Assertions on what the actors did (an attack's verdicts), with or without capture. */
  checks: Check[];
}

/** One scenario; `K` names its ports (each picked free), so that `ports.ca` is a number. */
export interface ScenarioSpec<K extends string> {
  name: ScenarioName;
  title: string;
  /** Named ports to pick (free ones). */
  ports: readonly K[];
  /** The ports the capture filter takes. */
  capture(ports: Ports<K>): number[];
  /** The ladder's lanes (the context: what the run found, e.g. which tool the chat refused). */
  actors(ports: Ports<K>, ctx: Context<K>): ActorMap;
  /**
   * TLS expectations and their server ports: `expect` per record on the decrypted capture,
   * `packets` per packet on its raw twin (`SCENARIO.raw.pcapng`, no keys: what the seed's Wireshark
   * list shows); `timing` also checks that no handshake waited for a delayed ACK
   * (lib/wireshark/tls_timing.ts).
   */
  tls?(ports: Ports<K>, ctx: Context<K>): {
    serverPorts: number[];
    expect: Array<{ name: string; count: number }>;
    packets: Array<{ name: string; count: number }>;
    timing?: boolean;
  };
  /** Lab message labels the dissected capture must show. */
  labels?: string[];
  /** Trudy's ports (free ones: pcap/lab.lua must recognise them heuristically). */
  trudyPorts?(ports: Ports<K>): number[];
  /** Lanes the ladder must show in this order, with arrows between neighbours (victim, Trudy, server). */
  path?: string[];
  /** An attack's key moments: red notes on the arrows where Trudy changed something. */
  marks?: LadderMark[];
  run(ctx: Context<K>): Promise<void>;
  /** Runs on the finished capture (Trudy's passive sniffer reads it). */
  analyse?(ctx: Context<K>, capture: string): Promise<void>;
}

/** `HOST:PORT` of the server on a named port, as its clients dial it. */
export function at<K extends string>(ctx: Context<K>, port: K): string {
  return `${ctx.place.address(port)}:${ctx.ports[port]}`;
}

/** A server's address and port, as its clients dial it. */
export interface Target {
  host: string;
  port: number;
}

/** The server on port `port` (one of the scenario's ports) where its clients find it. */
export function serverAt(ctx: { ports: object; place: Placement }, port: number): Target {
  const name = Object.entries(ctx.ports).find(([, p]) => p === port)?.[0];
  if (name === undefined) throw new RangeError(`Port ${port} is none of the scenario's`);
  return { host: ctx.place.address(name), port };
}

export function hostPort(t: Target): string {
  return `${t.host}:${t.port}`;
}

/**
 * Where a victim dials to reach `target` with Trudy (on `trudyPort`) on the path: her own port on
 * loopback; on the netlab the real server, since Trudy, the router, takes the connection over
 * (`startTrudy` installs her nft redirect).
 */
export function via(ctx: { place: Placement }, trudyPort: number, target: Target): string {
  return ctx.place.kind === "loopback" ? `127.0.0.1:${trudyPort}` : hostPort(target);
}

/**
 * `--host ADDRESS` for a server of the kind a port is named for (`ca`, `bankSeed`): nothing on
 * loopback (the default), its host's address on the netlab.
 */
export function listenArgs(ctx: Context<string> | Context, port: string): string[] {
  return ctx.place.kind === "loopback" ? [] : ["--host", ctx.place.address(port)];
}

/** A scenario whose port names are its own: `scenario({ ports: ["ca"], … })` types `ports.ca`. */
export function scenario<const K extends string>(spec: ScenarioSpec<K>): ScenarioSpec<K> {
  return spec;
}
