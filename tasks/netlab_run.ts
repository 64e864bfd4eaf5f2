/**
 * `deno task netlab run SCENARIO`: builds the netlab, runs capture scenarios across it (each actor
 * in its host, Trudy the router capturing on her interfaces and, in the attacks, intercepting with
 * nft), prints each result and a summary, and removes the netlab again. `class` is tasks/netlab_class.ts.
 */

import {
  giveBack,
  MAX_STUDENTS,
  missingPaths,
  netlabDown,
  netlabUp,
  preflight,
  sudoUser,
  tearDownOnSignal,
  type Topology,
  topology,
} from "../lib/netlab/mod.ts";
import {
  parseCommand,
  parsePositiveInt,
  PROJECT_ROOT,
  stderrSink,
  UsageError,
} from "../lib/runtime/mod.ts";
import { missingCaptureTools } from "../lib/wireshark/mod.ts";
import { printOpenCommands, printResult } from "./capture.ts";
import { runClass } from "./netlab_class.ts";
import {
  ATTACK_SCENARIOS,
  runScenario,
  SCENARIO_NAMES,
  type ScenarioName,
  type ScenarioResult,
} from "./scenarios/mod.ts";
import { netlabPlacement } from "./scenarios/placement.ts";

/** Systems 1-3 end to end. */
const SYSTEMS: readonly ScenarioName[] = ["upload", "bank", "chat-tls13", "chat-tls12"];
const GROUPS: Record<string, readonly ScenarioName[]> = {
  systems: SYSTEMS,
  attacks: ATTACK_SCENARIOS,
  all: [...SYSTEMS, ...ATTACK_SCENARIOS],
};

/** The netlab's own folders: its captures, and its actors' work (kept with --keep). */
const OUT_DIR = `${PROJECT_ROOT}/pcap/captures/netlab`;
const WORK_PARENT = `${PROJECT_ROOT}/data/netlab`;

export const NETLAB_SCENARIOS = [...SCENARIO_NAMES, ...Object.keys(GROUPS), "class"];

const USAGE = `Usage: deno task netlab run SCENARIO… [--students N] [--diagram] [--keep] [--quiet]

Builds the netlab (removing a previous one's leftovers), runs each SCENARIO across it in turn,
removes it again.
Each actor runs in its own host (ip netns exec seclab-HOST deno run …): the CA in cuhk, Blackboard,
Bob and the chat server in theirs on their default ports, students, alice and the chat clients in
the client subnet; trudy routes between them, and dumpcap captures on her interfaces.
In the attacks the victims dial the real server; an nft rule in trudy's namespace (table ip
seclab_trudy, prerouting redirect) hands the connection to her relay, which dials the server from her
own address; the rule goes with each scenario.

Scenarios:
  ${SCENARIO_NAMES.join(", ")}
  systems    ${SYSTEMS.join(", ")}
  attacks    every attack, seed mode then the default (crl-rollback the default only)
  all        systems, then attacks: exit 0 only when every check passes
  class      N students at once (default 50): enrol, message, report, bank; timings

Options:
  --students N   student hosts (class: default 50; others: 3), at most ${MAX_STUDENTS}
  --parallel P   class: at most P actor processes at once (default 8; every host starts at
                 once, but 51 Deno processes at once on 2 cores push the servers past their 10 s
                 read deadlines: --parallel 51 shows it)
  --diagram      draw each capture as a ladder (SVG, HTML), lanes named by host
  --keep         keep the actors' data under data/netlab/
  --quiet        print only the results

Captures go to pcap/captures/netlab/.`;

export async function runNetlab(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "netlab run",
    usage: USAGE,
    positionals: NETLAB_SCENARIOS.length,
    options: {
      students: { type: "string" },
      parallel: { type: "string", default: "8" },
      diagram: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const asked = parsed.positionals;
  if (asked.length === 0) throw new UsageError("missing SCENARIO");
  for (const name of asked) {
    if (!NETLAB_SCENARIOS.includes(name)) {
      throw new UsageError(`unknown scenario '${name}' (one of: ${NETLAB_SCENARIOS.join(", ")})`);
    }
  }
  if (asked.includes("class") && asked.length > 1) {
    throw new UsageError("class runs alone (it builds its own netlab of N students)");
  }
  const which = asked.join(" ");
  const students = parsePositiveInt(
    parsed.values.students ?? (which === "class" ? "50" : "3"),
    "students",
    MAX_STUDENTS,
  );
  await preflight((l) => console.error(l));
  const topo = topology(students);
  // Run with sudo: what the run writes goes back to the user who ran sudo (a later 'deno task ca
  // serve' as that user must be able to write data/); its own folders all through, and those
  // above them it makes.
  const owner = sudoUser();
  const made = await missingPaths(
    ["data", "pcap", "pcap/captures"].map((p) => `${PROJECT_ROOT}/${p}`),
  );
  using _signals = tearDownOnSignal();
  try {
    if (which === "class") {
      return await runClass(topo, {
        keep: parsed.values.keep,
        quiet: parsed.values.quiet,
        parallel: parsePositiveInt(parsed.values.parallel, "parallel", MAX_STUDENTS + 1),
      });
    }
    return await runScenarios(topo, asked, parsed.values);
  } finally {
    if (owner) await giveBack(owner, made, [WORK_PARENT, OUT_DIR]);
  }
}

async function runScenarios(
  topo: Topology,
  asked: readonly string[],
  options: { diagram: boolean; keep: boolean; quiet: boolean },
): Promise<number> {
  const missing = await missingCaptureTools();
  if (missing.length > 0) {
    throw new Error(`${missing.join(", ")} not found: run 'deno task setup' first`);
  }
  const names = asked.flatMap((name) => GROUPS[name] ?? [name as ScenarioName]);
  const started = performance.now();
  const results: ScenarioResult[] = [];
  try {
    const leftovers = await netlabUp(topo);
    if (leftovers.length > 0) console.error(`netlab: removed leftovers: ${leftovers.join(", ")}`);
    console.error(`netlab: up (${topo.hosts.length + 1} namespaces)`);
    const placement = netlabPlacement(topo);
    for (const name of names) {
      const r = await runScenario(name, {
        outDir: OUT_DIR,
        workParent: WORK_PARENT,
        capture: true,
        diagram: options.diagram,
        keepWork: options.keep,
        sink: options.quiet ? () => {} : stderrSink,
        placement,
      });
      results.push(r);
      printResult(r, (s) => console.log(s));
    }
  } finally {
    await netlabDown();
    console.error("netlab: down");
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `\nnetlab run ${asked.join(" ")}: ${results.length} scenario(s) in ${seconds.toFixed(0)} s`,
  );
  for (const r of results) {
    console.log(`  ${r.ok ? "PASS" : "FAIL"} ${r.name.padEnd(28)} ${r.seconds.toFixed(1)} s`);
  }
  const failed = results.filter((r) => !r.ok).map((r) => r.name);
  console.log(
    failed.length === 0 ? `All ${results.length} passed` : `Failed: ${failed.join(", ")}`,
  );
  printOpenCommands(results, (s) => console.log(s));
  return failed.length === 0 ? 0 : 1;
}
