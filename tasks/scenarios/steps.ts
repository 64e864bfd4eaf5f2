/**
 * The steps the scenarios share: the CA and enrolment (system 1, steps 1-2), server certificates,
 * Blackboard and Bob as processes, and the lab message labels the captures must show.
 */

import { bankProtocol } from "../../lib/bank/mod.ts";
import { blackboardProtocol, sessionProtocol } from "../../lib/blackboard/mod.ts";
import type { RunningProcess } from "../../lib/runtime/mod.ts";
import { at, type Context, listenArgs } from "./harness.ts";

export const STUDENT_SID = "1155123456";
export const ALICE_SID = "1155000001";

export async function startCa(ctx: Context<"ca">): Promise<void> {
  await ctx.actors.serve("CUHK", "actors/ca.ts", [
    "serve",
    ...listenArgs(ctx, "ca"),
    "--port",
    String(ctx.ports.ca),
    "--data-dir",
    `${ctx.dir}/ca`,
  ]);
}

/** Enrols `sid` (a code from the CA operator, then `student enroll`); `codes` collects the code. */
export async function enrol(ctx: Context<"ca">, sid: string, codes?: string[]): Promise<string> {
  ctx.sink(`* the CA operator issues a one-time enrolment code for ${sid}`);
  const code = (await ctx.actors.run("ca code", "actors/ca.ts", [
    "code",
    "--sid",
    sid,
    "--data-dir",
    `${ctx.dir}/ca`,
  ])).trim();
  codes?.push(code);
  const home = `${ctx.dir}/students/${sid}`;
  await ctx.actors.run("student", "actors/student.ts", [
    "enroll",
    "--sid",
    sid,
    "--code",
    code,
    "--ca",
    at(ctx, "ca"),
    "--ca-cert",
    `${ctx.dir}/ca/cuhk.cer`,
    "--home",
    home,
  ]);
  return home;
}

export async function issueServer(
  ctx: Context,
  name: string,
  out: string,
  dnsNames: string[] = [],
): Promise<void> {
  // The service's name (clients check it), and the address it serves on.
  const ip = ctx.place.kind === "loopback" ? "127.0.0.1" : ctx.place.address(name);
  ctx.sink(
    `* the CA issues a server certificate for ${name} (SAN ${
      [name, ...dnsNames].join(", ")
    }, ${ip})`,
  );
  await ctx.actors.run("ca issue", "actors/ca.ts", [
    "issue",
    "--server",
    name,
    ...dnsNames.flatMap((dns) => ["--dns", dns]),
    "--ip",
    ip,
    "--out",
    out,
    "--data-dir",
    `${ctx.dir}/ca`,
  ]);
}

/** A report of `size` bytes of readable text. */
export async function writeReport(path: string, size: number): Promise<void> {
  const line = "Network security report: the session key never crosses the wire in the clear.\n";
  const text = line.repeat(Math.ceil(size / line.length)).slice(0, size);
  await Deno.writeTextFile(path, text);
}

export const bb = (t: keyof typeof blackboardProtocol.messages) => blackboardProtocol.label(t);
export const session = (t: keyof typeof sessionProtocol.messages) =>
  `${bb("record")} [${sessionProtocol.label(t)}]`;
export const bank = (t: keyof typeof bankProtocol.messages) => bankProtocol.label(t);

/** Options shared by the scenarios' Blackboard and Bob processes. */
export interface ServerRun {
  /** The actor's name in the log and the ladder. */
  name: string;
  port: number;
  dataDir: string;
  seed?: boolean;
  /**
   * Let students ask for MAC-only records (teaching): an attack scenario's default Blackboard does,
   * so that its capture names each step-6 message; the upload scenario keeps the real default.
   */
  macOnly?: boolean;
}

/**
 * Blackboard with the certificate `issueServer` wrote, pinning the scenario's CA and its CRL;
 * `crlFrom` points its CRL fetches elsewhere (HOST:PORT: Trudy's), `crlRefreshSecs` fetches more
 * often.
 */
export function serveBlackboard(
  ctx: Context<"ca">,
  run: ServerRun & { crlFrom?: string; crlRefreshSecs?: number },
): Promise<RunningProcess> {
  return ctx.actors.serve(run.name, "actors/blackboard.ts", [
    "serve",
    ...listenArgs(ctx, "blackboard"),
    ...(run.seed ? ["--protocol", "seed"] : run.macOnly ? ["--records", "hmac"] : []),
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
    run.crlFrom ?? at(ctx, "ca"),
    ...(run.crlRefreshSecs !== undefined ? ["--crl-refresh", String(run.crlRefreshSecs)] : []),
  ]);
}

/**
 * Bob (his certificate, if any, in the data directory). In the default mode he always checks the
 * scenario's CA's CRL (`crl` is implied); seed mode has no certificates to check.
 */
export function serveBob(
  ctx: Context<"ca">,
  run: ServerRun & { crl?: boolean },
): Promise<RunningProcess> {
  return ctx.actors.serve(run.name, "actors/bank.ts", [
    "serve",
    ...listenArgs(ctx, "bank"),
    ...(run.seed ? ["--protocol", "seed"] : []),
    "--port",
    String(run.port),
    "--data-dir",
    run.dataDir,
    ...(run.seed ? [] : ["--ca", at(ctx, "ca")]),
  ]);
}
