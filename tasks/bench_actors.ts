/**
 * What the benches share: the real actors started as servers in their own processes (optionally
 * pinned to CPUs), their ports, and a process's peak resident memory.
 */

import { PROJECT_ROOT as ROOT, type RunningProcess, spawnDeno } from "../lib/runtime/mod.ts";

const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;

export interface ActorOptions {
  /** Run the actor on these CPUs only (`taskset -c`). */
  cpus?: string;
}

/**
 * Starts `actors/SCRIPT` with `args` (a server on port 0), allowed to write only `dir` (and
 * `--allow-ffi` where its task grants it, through spawnDeno), and waits for its `listening on` line.
 */
export async function startActor(
  script: string,
  args: string[],
  dir: string,
  options: ActorOptions = {},
): Promise<RunningProcess> {
  const permissions = [
    "--allow-net=127.0.0.1",
    `--allow-read=${ROOT}`,
    `--allow-write=${dir}`,
  ];
  const server = spawnDeno(`${ROOT}/actors/${script}`, args, {
    permissions,
    ...(options.cpus ? { wrapper: ["taskset", "-c", options.cpus] } : {}),
  });
  await server.waitFor(LISTENING, 60_000);
  return server;
}

const ports = new WeakMap<RunningProcess, number>();

/**
 * The port a started actor said it listens on, read once: its log keeps growing (a line per
 * session), and searching all of it again in every session took 8% of the bench's own time.
 */
export function portOf(server: RunningProcess): number {
  let port = ports.get(server);
  if (port === undefined) {
    port = Number(LISTENING.exec(server.stderr)![1]);
    ports.set(server, port);
  }
  return port;
}

/**
 * The peak resident memory (VmHWM) of a process, in bytes; undefined when it cannot be read.
 * Deno reads another process's /proc entry only with --allow-all, so `cat` reads it.
 */
export async function peakRss(pid: number): Promise<number | undefined> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!out.success) return undefined;
  const m = /VmHWM:\s+(\d+) kB/.exec(new TextDecoder().decode(out.stdout));
  return m ? Number(m[1]) * 1024 : undefined;
}

/**
 * CPU time a process has used so far (user + system, all its threads), in milliseconds, from
 * `/proc/PID/stat` read by `cat` (Deno reads /proc only with --allow-all); undefined when gone.
 * Its resolution is the kernel's clock tick (10 ms), so callers measure over many operations.
 */
export async function cpuMs(pid: number): Promise<number | undefined> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!out.success) return undefined;
  // Fields after the command name (which may hold spaces) start at the state, field 3.
  const fields = new TextDecoder().decode(out.stdout).split(") ").at(-1)!.split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime and stime: fields 14 and 15
  return Number.isFinite(ticks) ? ticks * 10 : undefined;
}
