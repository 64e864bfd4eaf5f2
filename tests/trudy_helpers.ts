/**
 * Trudy as a real process for the attack tests: started on port 0 with `--once`, her listening
 * port read from her `Trudy listening on` line, her verdict line read from standard output.
 */

import { ACTOR_PERMISSIONS, ActorProcess } from "./helpers.ts";

export interface TrudyRun extends AsyncDisposable {
  process: ActorProcess;
  /** Where victims connect. */
  port: number;
  /** Waits for Trudy to exit; returns her exit status, verdict line (stdout) and log (stderr). */
  result(): Promise<{ code: number; stdout: string; stderr: string }>;
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
