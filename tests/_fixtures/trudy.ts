/**
 * Trudy as a real process for the attack tests: started on port 0 with `--once`, her listening
 * port read from her `Trudy listening on` line, her verdict and its reason code read from standard
 * output.
 */

import assert from "node:assert/strict";
import type { BlackboardMode } from "../../lib/blackboard/mod.ts";
import type { HostPort, StepLog } from "../../lib/runtime/mod.ts";
import type { StudentIdentity } from "../../lib/ca/mod.ts";
import { identity, startBlackboard, type TestBlackboard } from "./blackboard.ts";
import { ACTOR_PERMISSIONS, ActorProcess, memoryLog, TestPki } from "./helpers.ts";

export interface TrudyRun extends AsyncDisposable {
  process: ActorProcess;
  /** Where victims connect. */
  port: number;
  /** Waits for Trudy to exit; returns her exit status, verdict line (stdout) and log (stderr). */
  result(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** Trudy's verdict as printed: the verdict line's outcome and words, and the reason code. */
export interface PrintedVerdict {
  outcome: "SUCCEEDED" | "FAILED";
  /** The words after `ATTACK …: `. */
  detail: string;
  /** The code of the `[reason: …]` line. */
  reason: string;
}

/**
 * Reads Trudy's standard output, which must be exactly one verdict line and its reason line:
 * `ATTACK SUCCEEDED|FAILED: …` then `[reason: code]`.
 */
export function printedVerdict(stdout: string): PrintedVerdict {
  const m = /^ATTACK (SUCCEEDED|FAILED): ([^\n]*)\n\[reason: ([a-z0-9-]+)\]\n$/.exec(stdout);
  assert.ok(m, `not one verdict line and its reason line: ${JSON.stringify(stdout)}`);
  return { outcome: m[1] as PrintedVerdict["outcome"], detail: m[2]!, reason: m[3]! };
}

/** Starts `trudy ATTACK ARGS… --once --listen-port 0` and waits until she listens. */
export async function startTrudy(attack: string, args: string[]): Promise<TrudyRun> {
  const process = new ActorProcess("actors/trudy.ts", [
    attack,
    ...args,
    "--once",
    "--listen-port",
    "0",
  ], { permissions: [...ACTOR_PERMISSIONS, "--allow-run=tshark"] });
  let port: number;
  try {
    const m = await process.waitFor(/Trudy listening on 127\.0\.0\.1:(\d+)/, 60_000);
    port = Number(m[1]);
  } catch (err) {
    await process.stop("SIGKILL");
    throw err;
  }
  return {
    process,
    port,
    async result() {
      const status = await process.status;
      return { code: status.code, stdout: process.stdout, stderr: process.stderr };
    },
    async [Symbol.asyncDispose]() {
      await process.stop("SIGTERM");
    },
  };
}

/** A student, a Blackboard, and Trudy on the path between them: what the Blackboard attacks need. */
export interface BlackboardOnThePath extends AsyncDisposable {
  bb: TestBlackboard;
  trudy: TrudyRun;
  /** The student's session options: connect to Trudy, with the student's identity. */
  session: { blackboard: HostPort; identity: StudentIdentity; log: StepLog };
}

/**
 * Starts a test PKI, enrols `sid`, starts Blackboard (`protocol`) and Trudy's `attack` relaying to
 * it (with `trudyArgs`); disposing stops all three.
 */
export async function blackboardOnThePath(
  attack: string,
  sid: string,
  protocol: BlackboardMode,
  trudyArgs: string[] = [],
): Promise<BlackboardOnThePath> {
  const pki = await TestPki.start();
  try {
    const student = await pki.student(sid);
    const bb = await startBlackboard(pki, { protocol });
    try {
      const trudy = await startTrudy(attack, [
        "--blackboard",
        `127.0.0.1:${bb.addr.port}`,
        ...trudyArgs,
      ]);
      return {
        bb,
        trudy,
        session: {
          blackboard: { hostname: "127.0.0.1", port: trudy.port },
          identity: await identity(student.home),
          log: memoryLog("student").log,
        },
        async [Symbol.asyncDispose]() {
          await trudy[Symbol.asyncDispose]();
          await bb[Symbol.asyncDispose]();
          await pki[Symbol.asyncDispose]();
        },
      };
    } catch (err) {
      await bb[Symbol.asyncDispose]();
      throw err;
    }
  } catch (err) {
    await pki[Symbol.asyncDispose]();
    throw err;
  }
}
