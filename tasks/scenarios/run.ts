/**
 * Running a scenario: free ports (off the ones Wireshark dissects as other protocols), a private
 * work directory, dumpcap on the scenario's ports when capturing, the scenario's actors, then the
 * checks on the capture and its ladder diagram; the result says what passed.
 */

import { errorMessage, PROJECT_ROOT } from "../../lib/runtime/mod.ts";
import {
  type ActorMap,
  Capture,
  type DiagramBrowser,
  type DiagramFiles,
  wiresharkTcpPorts,
  writeDiagram,
} from "../../lib/wireshark/mod.ts";
import { ATTACK_ENROL_CODE_THEFT, ATTACK_ENROL_IMPERSONATION } from "./attacks.ts";
import {
  ATTACK_BANK_MITM,
  ATTACK_BANK_REPLAY,
  ATTACK_CROSS_SERVICE,
  ATTACK_ERROR_INJECTION,
} from "./attacks_bank.ts";
import {
  ATTACK_CRL_ROLLBACK,
  ATTACK_MESSAGE_REPLAY,
  ATTACK_SESSION_KEY_SNIFF,
} from "./attacks_blackboard.ts";
import { BANK } from "./bank.ts";
import { CHAT_TLS12, CHAT_TLS13 } from "./chat.ts";
import { checkMarks, checkPath, checkScenario } from "./checks.ts";
import {
  Actors,
  type Check,
  type Context,
  freeNamedPorts,
  type ScenarioName,
  type ScenarioSpec,
  type Sink,
} from "./harness.ts";
import { LOOPBACK, type Placement } from "./placement.ts";
import { SEED } from "./seed.ts";
import { ENROL, UPLOAD } from "./system1.ts";

const SPECS: Record<ScenarioName, ScenarioSpec<string>> = {
  "enrol": ENROL,
  "upload": UPLOAD,
  "bank": BANK,
  "chat-tls13": CHAT_TLS13,
  "chat-tls12": CHAT_TLS12,
  "seed": SEED,
  "attack-enrol-impersonation": ATTACK_ENROL_IMPERSONATION,
  "attack-enrol-code-theft": ATTACK_ENROL_CODE_THEFT,
  "attack-bank-mitm": ATTACK_BANK_MITM,
  "attack-bank-replay": ATTACK_BANK_REPLAY,
  "attack-session-key-sniff": ATTACK_SESSION_KEY_SNIFF,
  "attack-message-replay": ATTACK_MESSAGE_REPLAY,
  "attack-cross-service": ATTACK_CROSS_SERVICE,
  "attack-crl-rollback": ATTACK_CRL_ROLLBACK,
  "attack-error-injection": ATTACK_ERROR_INJECTION,
};

export function scenarioTitle(name: ScenarioName): string {
  return SPECS[name].title;
}

export interface ScenarioResult {
  name: ScenarioName;
  title: string;
  ok: boolean;
  /** The scenario's own failure, if it did not run to the end. */
  error?: string;
  capture?: string;
  /** A TLS scenario's raw twin: the same packets with no keys embedded. */
  rawCapture?: string;
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
  /** Draws a PNG of each diagram page with it (none without). */
  browser?: DiagramBrowser;
  sink: Sink;
  /** Keep the actors' data (keys, ledgers, reports) after the run. */
  keepWork?: boolean;
  /** Where the actors run (default loopback; the netlab's hosts for `deno task netlab run`). */
  placement?: Placement;
}

/** The ladder's lanes renamed by the placement (on the netlab: `cuhk 10.0.3.2`). */
function renameLanes(map: ActorMap, lane: (name: string) => string): ActorMap {
  const each = (r: Record<number, string>) =>
    Object.fromEntries(Object.entries(r).map(([k, v]) => [k, lane(v)]));
  return {
    ...map,
    servers: each(map.servers),
    clients: each(map.clients),
    ...(map.inOrder
      ? {
        inOrder: Object.fromEntries(
          Object.entries(map.inOrder).map(([k, v]) => [k, v.map(lane)]),
        ),
      }
      : {}),
    ...(map.byFirstMessage
      ? {
        byFirstMessage: Object.fromEntries(
          Object.entries(map.byFirstMessage).map(([k, v]) => [k, lane(v)]),
        ),
      }
      : {}),
    ...(map.order ? { order: map.order.map(lane) } : {}),
  };
}

/**
 * The scenario's actor map where it ran: lanes renamed by the placement, and on the netlab Trudy
 * named by her addresses (her relay dials the real server's port) and her interception rules, so
 * that a victim's connection she answered in place ends at her lane, as on loopback.
 */
function placedActors(
  map: ActorMap,
  place: Placement,
  redirects: ReturnType<Placement["redirects"]>,
): ActorMap {
  const renamed = renameLanes(map, place.lane);
  if (place.trudyAddresses.length === 0) return renamed;
  const trudy = place.lane("Trudy");
  return {
    ...renamed,
    addresses: Object.fromEntries(place.trudyAddresses.map((a) => [a, trudy])),
    redirects: [...redirects],
  };
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
  const place = options.placement ?? LOOPBACK;
  const ports = freeNamedPorts(
    spec.ports,
    options.capture ? await wiresharkTcpPorts() : new Set(),
    (name) => place.fixedPort(name),
  );
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
  const ctx: Context<string> = {
    dir: absDir,
    ports,
    place,
    actors: new Actors(absDir, sink, place),
    tlsEnv: {},
    sink,
    notes: result.notes,
    checks: result.checks,
  };
  let capture: Capture | undefined;
  // The interception rules this scenario makes (the netlab's; none on loopback).
  const rulesBefore = place.redirects().length;
  try {
    if (options.capture) {
      const { where, ...at } = place.captureAt;
      capture = await Capture.start({
        ports: spec.capture(ports),
        workDir: `${absDir}/capture`,
        ...at,
      });
      ctx.tlsEnv = { SSLKEYLOGFILE: capture.keyLogPath };
      sink(`* capturing on ${where} (${capture.filter})`);
    }
    try {
      await using _actors = ctx.actors;
      await spec.run(ctx);
    } catch (err) {
      result.error = errorMessage(err);
    } finally {
      // Trudy's interception rules (nft) go with each scenario.
      await place.release();
    }
    if (capture) {
      await Deno.mkdir(options.outDir, { recursive: true, mode: 0o755 });
      const out = `${options.outDir}/${name}.pcapng`;
      // A TLS scenario also gets its raw twin, checked packet by packet as the seed showed it.
      const { path, secrets, raw } = await capture.finish(
        out,
        spec.tls ? { rawTwin: `${options.outDir}/${name}.raw.pcapng` } : {},
      );
      capture = undefined;
      result.capture = path;
      if (raw !== undefined) result.rawCapture = raw;
      if (spec.tls) result.notes.push(secrets ? "TLS key log embedded" : "no TLS key log");
      if (spec.analyse && result.error === undefined) {
        try {
          await spec.analyse(ctx, path);
        } catch (err) {
          result.error = errorMessage(err);
        }
      }
      if (result.error === undefined) {
        result.checks.push(...await checkScenario(spec, ctx, path, raw));
      }
      if (options.diagram) {
        const marks = spec.marks?.map((m) => ({
          ...m,
          from: place.lane(m.from),
          to: place.lane(m.to),
        }));
        result.diagram = await writeDiagram(path, `${options.outDir}/${name}`, {
          title: spec.title,
          actors: placedActors(
            spec.actors(ports, ctx),
            place,
            place.redirects().slice(rulesBefore),
          ),
          ...(spec.tls ? { tlsPorts: spec.tls(ports, ctx).serverPorts } : {}),
          ...(marks ? { marks } : {}),
          ...(options.browser ? { browser: options.browser } : {}),
        });
        if (spec.path && result.error === undefined) {
          result.checks.push(checkPath(spec.path.map(place.lane), result.diagram.ladder));
        }
        if (marks?.length && result.error === undefined) {
          result.checks.push(checkMarks(marks, result.diagram.missedMarks));
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
