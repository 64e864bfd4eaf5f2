#!/usr/bin/env -S deno run --allow-run=apt-get,tshark,dumpcap,editcap --allow-sys=uid
/**
 * `deno task setup`: makes sure the capture tools (tshark, dumpcap, editcap) are installed:
 * installs them with apt-get when run as root, otherwise prints exactly how.
 */

import { CAPTURE_TOOLS, ensureCaptureTools } from "../lib/wireshark/mod.ts";
import { parseCommand, runMain } from "../lib/runtime/mod.ts";

const USAGE = `Usage: deno task setup [--check]

Checks for tshark, dumpcap and editcap (Wireshark's command-line tools, used by 'deno task
capture' and 'deno task demo'). When they are missing: installs them with apt-get if run as root,
otherwise prints the exact commands for your system.

Options:
  --check   only check; never install (exit 1 when something is missing)`;

async function version(tool: string): Promise<string> {
  try {
    const out = await new Deno.Command(tool, {
      args: ["--version"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).split("\n")[0]!.trim();
  } catch {
    // Installed after this task started: Deno's --allow-run=NAME did not resolve it then.
    return "installed";
  }
}

export async function main(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "setup",
    usage: USAGE,
    options: { check: { type: "boolean", default: false } },
  });
  if (!parsed) return;
  const ready = await ensureCaptureTools({
    install: !parsed.values.check,
    print: (line) => console.error(line),
  });
  if (!ready) return 1;
  for (const tool of CAPTURE_TOOLS) console.log(`${tool}: ${await version(tool)}`);
  console.log("Capture tools ready: try 'deno task capture enrol --diagram'");
}

if (import.meta.main) await runMain("setup", main);
