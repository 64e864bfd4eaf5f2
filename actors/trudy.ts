#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-write
/**
 * Trudy, the attacker: each flaw of the seeds shown by an attack that works against seed mode
 * and fails against the default.
 *
 *     deno task trudy ATTACK [options]
 */

import { verdictLine, verdictStatus } from "../lib/attack.ts";
import { enrolImpersonation } from "../lib/attack_enrol.ts";
import { CA_PORT } from "../lib/ca_protocol.ts";
import {
  dispatch,
  parseCommand,
  parseHostPort,
  parseStudentId,
  required,
  runMain,
} from "../lib/cli.ts";
import { loadRoot } from "../lib/enrol.ts";
import { StepLog } from "../lib/log.ts";

const USAGE = `Trudy, the attacker (for the lab's own servers on loopback only)

Usage: deno task trudy ATTACK [options]

Attacks:
  enrol-impersonation   get a certificate for someone else's student ID

Each attack prints what Trudy saw and did as STEP lines and ends with a verdict line:
'ATTACK SUCCEEDED: …' (exit status 0) or 'ATTACK FAILED: <why>' (exit status 3).
Run 'deno task trudy ATTACK --help' for an attack's options.`;

async function enrolImpersonationCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy enrol-impersonation",
    usage: `Usage: deno task trudy enrol-impersonation --victim SID [options]

Trudy makes her own key and a CSR with the victim's ID and asks the CA to sign it without the
victim's enrolment code. Succeeds against 'ca serve --open-enrolment' (the seeds' CA); fails
against the default CA, which wants the victim's one-time code.

Options:
  --victim SID         the student ID to steal (10 digits)
  --ca HOST:PORT       the CA (default 127.0.0.1:${CA_PORT})
  --ca-cert FILE       the root everyone trusts (default data/ca/cuhk.cer)`,
    options: {
      victim: { type: "string" },
      ca: { type: "string", default: `127.0.0.1:${CA_PORT}` },
      "ca-cert": { type: "string", default: "data/ca/cuhk.cer" },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const victim = parseStudentId(required(values.victim, "victim"), "victim");
  const ca = parseHostPort(values.ca, CA_PORT, "ca");
  const root = await loadRoot(values["ca-cert"]);
  const log = new StepLog("Trudy");
  const verdict = await enrolImpersonation({ ca, root, victim, log });
  console.log(verdictLine(verdict));
  return verdictStatus(verdict);
}

export async function main(args: string[]): Promise<number | void> {
  return await dispatch("trudy", USAGE, {
    "enrol-impersonation": enrolImpersonationCommand,
  }, args);
}

if (import.meta.main) await runMain("trudy", main);
