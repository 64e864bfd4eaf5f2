#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read=. --allow-write=. --allow-run=dumpcap,editcap,tshark,deno,python3,openssl,chromium
/**
 * `deno task capture SCENARIO [--out DIR] [--diagram]`: runs a scenario on loopback with capture
 * on and writes DIR/SCENARIO.pcapng (TLS key log embedded: Wireshark decrypts it with no set-up)
 * and, for a TLS scenario, its raw twin DIR/SCENARIO.raw.pcapng (no keys); checks the TLS record
 * sequences, the raw twin's TLS packets and the lab messages, and with --diagram draws it
 * (DIR/SCENARIO.svg and .html, and with Chromium installed DIR/SCENARIO.png; a long capture has
 * more pages: SCENARIO-page2.svg …).
 */

import {
  errorMessage,
  parseCommand,
  PROJECT_ROOT,
  runMain,
  stderrSink,
  UsageError,
} from "../lib/runtime/mod.ts";
import { DiagramBrowser, missingCaptureTools, openCommands } from "../lib/wireshark/mod.ts";
import {
  ALL_SCENARIOS,
  ATTACK_SCENARIOS,
  runScenario,
  SCENARIO_NAMES,
  type ScenarioName,
  type ScenarioResult,
  scenarioTitle,
} from "./scenarios/mod.ts";

const WIDTH = Math.max(...SCENARIO_NAMES.map((n) => n.length));
/** Names that run several scenarios. */
const GROUPS: Record<string, readonly ScenarioName[]> = {
  attacks: ATTACK_SCENARIOS,
  all: ALL_SCENARIOS,
};

const USAGE = `Usage: deno task capture SCENARIO [--out DIR] [--diagram]

Runs SCENARIO on 127.0.0.1 (free ports, actors as real processes) while dumpcap captures its ports
on 'lo'; writes DIR/SCENARIO.pcapng with the TLS key log embedded (open it in Wireshark: TLS is
decrypted, and pcap/lab.lua names the lab's messages) and, for the TLS scenarios, its raw twin
DIR/SCENARIO.raw.pcapng (no keys: as the seed's capture); checks the TLS record sequence against
pcap/expected/*.json, the raw twin packet by packet against pcap/expected/*-packets.json, and that
every lab message is named by its step.

Scenarios:
${SCENARIO_NAMES.map((n) => `  ${n.padEnd(WIDTH)} ${scenarioTitle(n)}`).join("\n")}
  ${"attacks".padEnd(WIDTH)} ${ATTACK_SCENARIOS.join(", ")}
  ${"all".padEnd(WIDTH)} ${ALL_SCENARIOS.join(", ")}

Options:
  --out DIR      where the captures go (default pcap/captures)
  --diagram      also draw each capture as a ladder diagram: DIR/SCENARIO.svg and .html, and
                 DIR/SCENARIO.png drawn by Chromium when it is installed (apt-get install -y
                 chromium); at most about 25 arrows a page (SCENARIO-page2.svg …)
  --keep         keep the actors' data (keys, ledgers, reports) under data/capture/
  --quiet        print only the results, not the actors' steps

Capturing needs root (or membership of the 'wireshark' group) and tshark: see 'deno task setup'.`;

export function printResult(r: ScenarioResult, print: (s: string) => void): void {
  print(`\n== ${r.name}: ${r.title} (${r.seconds.toFixed(1)} s)`);
  if (r.error) print(`FAIL the scenario did not complete: ${r.error}`);
  for (const c of r.checks) {
    print(`${c.ok ? "PASS" : "FAIL"} ${c.what}`);
    if (c.report && (!c.ok || c.what.startsWith("TLS"))) {
      print(c.report.split("\n").map((l) => `    ${l}`).join("\n"));
    }
  }
  for (const n of r.notes) print(`note: ${n}`);
  if (r.capture) print(`capture: ${r.capture}`);
  if (r.rawCapture) print(`raw twin (no keys, as the seed's capture): ${r.rawCapture}`);
  if (r.diagram) {
    const d = r.diagram;
    const pages = d.pages.length > 1 ? `, ${d.pages.length} pages` : "";
    print(
      `diagram: ${d.html} (${d.arrows} messages${pages}), ${d.svg}${d.png ? `, ${d.png}` : ""}`,
    );
  }
}

/**
 * The exact commands that open each capture with the lab's dissector, Wireshark's and tshark's,
 * relative to the current folder.
 */
export function printOpenCommands(results: ScenarioResult[], print: (s: string) => void): void {
  const captures = results.flatMap((r) => r.capture ? [r.capture] : []);
  if (captures.length === 0) return;
  print(
    `\nOpen ${captures.length === 1 ? "it" : "them"} with the lab's dissector ` +
      "(installed by 'deno task dissector --install', -X is not needed; given as well, it is harmless):",
  );
  for (const capture of captures) {
    const { wireshark, tshark } = openCommands(capture);
    print(`  ${wireshark}`);
    print(`  ${tshark}`);
  }
  const raws = results.flatMap((r) => r.rawCapture ? [r.rawCapture] : []);
  if (raws.length === 0) return;
  print(
    "\nThe raw twin (no keys embedded): TLS packet by packet, as the seed's Wireshark list shows it:",
  );
  for (const raw of raws) print(`  ${openCommands(raw).tshark.replace(/ -X \S+/, "")}`);
}

export async function main(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "capture",
    usage: USAGE,
    positionals: 1,
    options: {
      out: { type: "string", default: "pcap/captures" },
      diagram: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const which = parsed.positionals[0];
  if (which === undefined) throw new UsageError("missing SCENARIO");
  let names: readonly ScenarioName[];
  if (Object.hasOwn(GROUPS, which)) names = GROUPS[which]!;
  else if ((SCENARIO_NAMES as readonly string[]).includes(which)) names = [which as ScenarioName];
  else {
    throw new UsageError(
      `unknown scenario '${which}' (one of: ${SCENARIO_NAMES.join(", ")}, ${
        Object.keys(GROUPS).join(", ")
      })`,
    );
  }
  const missing = await missingCaptureTools();
  if (missing.length > 0) {
    throw new Error(`${missing.join(", ")} not found: run 'deno task setup' first`);
  }
  const out = parsed.values.out.startsWith("/")
    ? parsed.values.out
    : `${Deno.cwd()}/${parsed.values.out}`;
  if (Deno.permissions.querySync({ name: "write", path: out }).state !== "granted") {
    throw new UsageError(
      `--out must be inside the project (the task may write only here), got '${parsed.values.out}'`,
    );
  }
  // One browser for every diagram of the run: it draws each page's PNG.
  let browser: DiagramBrowser | undefined;
  if (parsed.values.diagram) {
    try {
      browser = await DiagramBrowser.launch();
    } catch (err) {
      console.log(`note: the diagrams get no PNG: ${errorMessage(err)}`);
    }
  }
  const results: ScenarioResult[] = [];
  try {
    for (const name of names) {
      console.error(`\n== ${name}: ${scenarioTitle(name)}`);
      const r = await runScenario(name, {
        outDir: out,
        workParent: `${PROJECT_ROOT}/data/capture`,
        capture: true,
        diagram: parsed.values.diagram,
        ...(browser ? { browser } : {}),
        keepWork: parsed.values.keep,
        sink: parsed.values.quiet ? () => {} : stderrSink,
      });
      results.push(r);
      printResult(r, (s) => console.log(s));
    }
  } finally {
    await browser?.close();
  }
  const failed = results.filter((r) => !r.ok).map((r) => r.name);
  console.log(
    failed.length === 0
      ? `\nAll ${results.length} scenario(s) passed`
      : `\nFailed: ${failed.join(", ")}`,
  );
  printOpenCommands(results, (s) => console.log(s));
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) await runMain("capture", main);
