#!/usr/bin/env -S deno run --allow-read=. --allow-write=pcap
/**
 * `deno task dissector [--check]`: regenerates pcap/lab.lua, the Wireshark dissector, from the
 * protocol tables in lib/*_protocol.ts. With --check, only says whether the file is up to date
 * (exit 1 when it is not).
 */

import { parseCommand, runMain, writeFileAtomic } from "../lib/runtime/mod.ts";
import { DISSECTOR_PATH, LAB_DISSECTORS, labDissector } from "../lib/wireshark/mod.ts";

const USAGE = `Usage: deno task dissector [--check]

Generates pcap/lab.lua (the Wireshark dissector of the CUHK, Blackboard and bank protocols, and of
the chat's frames inside decrypted TLS) from the message tables in lib/*_protocol.ts and
lib/chat/protocol.ts. Commit the result.

Options:
  --check   do not write; exit 1 when pcap/lab.lua is out of date`;

export async function main(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "dissector",
    usage: USAGE,
    options: { check: { type: "boolean", default: false } },
  });
  if (!parsed) return;
  const lua = labDissector();
  const path = DISSECTOR_PATH;
  const current = await Deno.readTextFile(DISSECTOR_PATH).catch(() => undefined);
  const names = [
    ...LAB_DISSECTORS.map((d) => `${d.abbrev} (TCP ${d.port})`),
    "labchat (inside TLS)",
  ].join(", ");
  if (parsed.values.check) {
    if (current === lua) {
      console.log(`${path} is up to date: ${names}`);
      return 0;
    }
    console.error(`${path} is out of date: run 'deno task dissector'`);
    return 1;
  }
  if (current === lua) {
    console.log(`${path} already up to date: ${names}`);
    return;
  }
  await writeFileAtomic(path, lua);
  console.log(`Wrote ${path}: ${names}`);
}

if (import.meta.main) await runMain("dissector", main);
