#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read=. --allow-write=. --allow-run --allow-sys=uid
/**
 * `deno task demo`: the whole lab end to end on 127.0.0.1, every step printed, every capture
 * checked.
 *
 *     system 1  the CA starts (STEP 0), a code is issued, a student enrols (STEP 1-2), talks to
 *               Blackboard (STEP 3-6) and uploads a report in authenticated chunks
 *     system 2  Alice enrols and banks with Bob: Hello, Hi I'm Bob, prove it, Bob's proof,
 *               Alice's secret, AES-GCM records (deposit, withdraw, balance)
 *     system 3  three chat clients over TLS 1.3, one over TLS 1.2 (the seed's sequence), and a
 *               client offering only AES128-SHA (the seed's cipher), refused
 *     Trudy     each of the attacker's attacks (ATTACK_SCENARIOS) against seed mode (ATTACK
 *               SUCCEEDED) and then the default (ATTACK FAILED: why), both legs of her relay
 *               captured; crl-rollback against the default only (the seeds had no CRL)
 *
 * With tshark/dumpcap available (installed here with apt-get when run as root), each system is
 * captured on `lo` into pcap/captures/*.pcapng with the TLS key log embedded, the TLS record
 * sequences are asserted against pcap/expected/*.json, pcap/lab.lua must name every lab message,
 * and each capture is drawn as a ladder diagram. Without them, the systems still run.
 */

import { errorMessage, parseCommand, PROJECT_ROOT, runMain } from "../lib/runtime/mod.ts";
import { colourise, fold, summaryLines, useColour } from "./demo_output.ts";
import { freePort } from "../lib/net/mod.ts";
import { Capture, DiagramBrowser, ensureCaptureTools, ladderLines } from "../lib/wireshark/mod.ts";
import {
  ATTACK_SCENARIOS,
  runScenario,
  type ScenarioName,
  type ScenarioResult,
  scenarioTitle,
} from "./scenarios/mod.ts";

const USAGE = `Usage: deno task demo [--no-capture] [--quiet]

Runs the three systems end to end on 127.0.0.1 (free ports, data in data/demo/, removed after),
then Trudy's attacks, each against seed mode and the default; prints every protocol step, captures
each run with dumpcap (TLS key log embedded), asserts the TLS record sequences, the dissector's
names and each attack's verdicts, draws each capture, and ends with a summary.

Output is folded to 100 columns; PASS, FAIL and the attack verdicts are coloured on a terminal
(not under NO_COLOR, nor into a file or a pipe).

Options:
  --no-capture   run the systems without capturing (no dumpcap or tshark needed)
  --quiet        print only the summary (at most 40 lines when all is well)`;

/** What the demo says each attack shows (an attack not listed here shows its scenario title). */
const ATTACK_WHAT: Partial<Record<ScenarioName, string>> = {
  "attack-enrol-impersonation":
    "enrol-impersonation: cert 2 for another's ID from the open CA; refused without the code",
  "attack-enrol-code-theft":
    "enrol-code-theft: Trudy's CSR swapped in; the open CA signs it, the default refuses (binding)",
  "attack-bank-mitm":
    "bank-mitm: seed mode falls (10.00 becomes 900.00); the default refuses at STEP 2",
  "attack-bank-replay":
    "bank-replay: Bob's recorded proof accepted in seed mode; refused at STEP 4 (nonce)",
  "attack-session-key-sniff":
    "session-key-sniff (on the path and --pcap): key read, forgery accepted; default: no key",
  "attack-message-replay":
    "message-replay: a step-6 message printed twice in seed mode; refused by sequence number",
  "attack-cross-service":
    "cross-service: Bob played with Blackboard's certificate; seed mode falls, refused at STEP 2",
  "attack-crl-rollback":
    "crl-rollback: the pre-revocation CRL replayed to Blackboard; refused (default only: no seed CRL)",
  "attack-error-injection":
    "error-injection: a forged cleartext error believed in seed mode; the default resends, applied once",
};

const PARTS: Array<{ scenario: ScenarioName; system: string; what: string }> = [
  {
    scenario: "upload",
    system: "1 report upload",
    what: "CA starts, code issued, student enrols, talks to Blackboard, uploads a report",
  },
  {
    scenario: "bank",
    system: "2 the bank",
    what: "Alice enrols, banks with Bob (secure mode): deposit, withdraw, balance",
  },
  {
    scenario: "chat-tls13",
    system: "3 the chat",
    what: "three chat clients over TLS 1.3",
  },
  {
    scenario: "chat-tls12",
    system: "3 the chat",
    what: "one chat client over TLS 1.2; AES128-SHA refused",
  },
  // Then every attack of ATTACK_SCENARIOS, in its order.
  ...ATTACK_SCENARIOS.map((scenario) => ({
    scenario,
    system: "Trudy",
    what: ATTACK_WHAT[scenario] ?? scenarioTitle(scenario),
  })),
];

/** Whether dumpcap can capture on lo here (root, or the wireshark group). */
async function canCapture(dir: string): Promise<string | undefined> {
  try {
    await using _cap = await Capture.start({ ports: [freePort()], workDir: dir });
    return undefined;
  } catch (err) {
    return errorMessage(err);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function relative(path: string): string {
  return path.startsWith(PROJECT_ROOT + "/") ? path.slice(PROJECT_ROOT.length + 1) : path;
}

export async function main(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "demo",
    usage: USAGE,
    options: {
      "no-capture": { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const quiet = parsed.values.quiet;
  const colour = useColour();
  // Every line through here: folded to 100 columns, coloured on a terminal.
  const print = (text: string) => {
    for (const line of text.split("\n")) {
      for (const part of fold(line)) console.log(colourise(part, colour));
    }
  };
  // What only the full demo shows (each run's steps, checks and ladder).
  const detail = quiet ? () => {} : print;
  const sink = detail;
  const workParent = `${PROJECT_ROOT}/data/demo`;
  const outDir = `${PROJECT_ROOT}/pcap/captures`;

  print("Secure-channel lab: the three systems end to end on 127.0.0.1, then Trudy's attacks\n");
  let capture = !parsed.values["no-capture"];
  let captureNote = parsed.values["no-capture"] ? "capture off (--no-capture)" : "";
  if (capture) {
    const ready = await ensureCaptureTools({ print: (l) => print(`setup: ${l}`) });
    if (!ready) {
      capture = false;
      captureNote = "capture off: tshark/dumpcap/editcap are missing (see above)";
    } else {
      await Deno.mkdir(workParent, { recursive: true, mode: 0o700 });
      const why = await canCapture(`${workParent}/probe-${crypto.randomUUID()}`);
      if (why !== undefined) {
        capture = false;
        captureNote = `capture off: dumpcap cannot capture on lo here (${why}); run as root, ` +
          "or 'sudo dpkg-reconfigure wireshark-common' (Yes) and 'sudo usermod -aG wireshark $USER'";
      }
    }
  }
  print(capture ? "Capturing each system on lo into pcap/captures/\n" : `${captureNote}\n`);
  // One browser draws the PNG of every diagram (none without Chromium: SVG and HTML only).
  let browser: DiagramBrowser | undefined;
  if (capture) {
    try {
      browser = await DiagramBrowser.launch();
    } catch (err) {
      print(`note: the diagrams get no PNG: ${errorMessage(err)}\n`);
    }
  }
  try {
    return await runParts({
      print,
      detail,
      quiet,
      sink,
      workParent,
      outDir,
      capture,
      captureNote,
      browser,
    });
  } finally {
    await browser?.close();
  }
}

async function runParts(o: {
  print: (s: string) => void;
  /** What only the full demo shows. */
  detail: (s: string) => void;
  quiet: boolean;
  sink: (s: string) => void;
  workParent: string;
  outDir: string;
  capture: boolean;
  captureNote: string;
  browser: DiagramBrowser | undefined;
}): Promise<number> {
  const { print, detail, quiet, sink, workParent, outDir, capture, captureNote, browser } = o;

  const results: ScenarioResult[] = [];
  for (const part of PARTS) {
    if (part.system === "Trudy" && part === PARTS.find((p) => p.system === "Trudy")) {
      detail(
        "\n━━━━━━ Trudy, the attacker: each attack against seed mode, then the default ━━━━━━",
      );
    }
    detail(
      part.system === "Trudy"
        ? `\n━━━ Attack ${part.what} ━━━`
        : `\n━━━ System ${part.system}: ${part.what} ━━━`,
    );
    const r = await runScenario(part.scenario, {
      outDir,
      workParent,
      capture,
      diagram: capture,
      ...(browser ? { browser } : {}),
      sink,
    });
    results.push(r);
    if (r.error) detail(`FAIL ${part.scenario}: ${r.error}`);
    for (const c of r.checks) {
      detail(`${c.ok ? "PASS" : "FAIL"} ${c.what}`);
      // The side-by-side comparison with the seed's sequence, and the notes on what differs.
      if (c.report && (!c.ok || part.scenario === "chat-tls12")) {
        detail(c.report.split("\n").map((l) => `    ${l}`).join("\n"));
      }
    }
    for (const n of r.notes) detail(`note: ${n}`);
    if (r.diagram) {
      detail(
        `On the wire (${relative(r.capture!)}, as pcap/lab.lua and the key log show it)${
          part.system !== "Trudy"
            ? ""
            : r.notes.some((n) => n.startsWith("no seed half"))
            ? ": the default only (no seed half)"
            : ": seed mode first (the '(seed)' steps), then the default"
        }:`,
      );
      for (const line of ladderLines(r.diagram.ladder)) detail(`  ${line}`);
    }
  }

  if (!quiet && capture) {
    detail(
      "\nCaptures (open in Wireshark: the chat's TLS decrypts itself; add the lab's dissector with",
    );
    detail("  wireshark -X lua_script:pcap/lab.lua FILE, or install it once with");
    detail("  'deno task dissector --install'; installed and given with -X as well is harmless):");
    for (const r of results) if (r.capture) detail(`  ${relative(r.capture)}`);
    const raws = results.flatMap((r) => r.rawCapture ? [r.rawCapture] : []);
    if (raws.length > 0) {
      detail(
        "Raw twins of the TLS captures (no keys: packet by packet, as the seed's Wireshark list):",
      );
      for (const raw of raws) detail(`  ${relative(raw)}`);
    }
    detail(
      "Ladder diagrams (open the .html in a browser; the .png beside each .svg is a picture):",
    );
    for (const r of results) {
      const d = r.diagram;
      if (!d) continue;
      const pages = d.pages.length > 1 ? `, ${d.pages.length} pages` : "";
      detail(`  ${relative(d.html)}  (${d.arrows} messages${pages})${d.png ? "  + .png" : ""}`);
    }
  }
  const runs = results.map((r, i) => ({
    system: PARTS[i]!.system.split(" ")[0]!,
    scenario: r.name,
    ...(r.error ? { error: r.error } : {}),
    checks: r.checks,
    notes: r.notes,
    seconds: r.seconds,
  }));
  const captures = capture
    ? `Captures and ladder diagrams: pcap/captures/ (${
      results.filter((r) => r.capture).length
    } .pcapng, ${results.filter((r) => r.rawCapture).length} raw twins, ${
      results.filter((r) => r.diagram).length
    } .html)`
    : captureNote;
  print("");
  print(summaryLines(runs, captures).join("\n"));
  const failed = results.filter((r) => !r.ok);
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) await runMain("demo", main);
