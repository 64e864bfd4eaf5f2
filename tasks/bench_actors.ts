/**
 * What the benches share: the real actors started as servers in their own processes (optionally
 * pinned to CPUs), their ports, and a process's peak resident memory.
 */

import process from "node:process";
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
 * A file of a process's /proc entry, or undefined when it cannot be read (the process is gone).
 * Deno reads another process's /proc entry only with --allow-all, so `cat` reads it.
 */
async function procFile(pid: number, name: "status" | "stat"): Promise<string | undefined> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/${name}`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.success ? new TextDecoder().decode(out.stdout) : undefined;
}

/** The peak resident memory (VmHWM) of a process, in bytes; undefined when it cannot be read. */
export async function peakRss(pid: number): Promise<number | undefined> {
  const m = /VmHWM:\s+(\d+) kB/.exec((await procFile(pid, "status")) ?? "");
  return m ? Number(m[1]) * 1024 : undefined;
}

/**
 * CPU time a process has used so far (user + system, all its threads), in milliseconds, from
 * `/proc/PID/stat`; undefined when gone. Its resolution is the kernel's clock tick (10 ms), so
 * callers measure over many operations.
 */
export async function cpuMs(pid: number): Promise<number | undefined> {
  const stat = await procFile(pid, "stat");
  if (stat === undefined) return undefined;
  // Fields after the command name (which may hold spaces) start at the state, field 3.
  const fields = stat.split(") ").at(-1)!.split(" ");
  // utime and stime, fields 14 and 15, in clock ticks of USER_HZ: 100 a second in Linux's ABI.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks * 10 : undefined;
}

/**
 * Starts measuring the CPU time that another process (`pid`) and this one use; the function it
 * returns ends the window and gives both, in milliseconds. This process's own time comes from
 * `process.cpuUsage()` (microseconds), read inside the other's window, so the `cat` that reads
 * the other's /proc entry is not counted as this process's work.
 */
export async function cpuWindow(
  pid: number,
): Promise<() => Promise<{ self: number; other: number }>> {
  const other = await cpuMs(pid);
  const self = process.cpuUsage();
  return async () => {
    const used = process.cpuUsage(self);
    const otherNow = await cpuMs(pid);
    return { self: (used.user + used.system) / 1000, other: (otherNow ?? NaN) - (other ?? NaN) };
  };
}
