/**
 * Starts `flood.py` (a hostile host on 127.0.0.2) against one server and stops it: shared by the
 * hostile-load bench and the availability tests.
 */

import { PROJECT_ROOT } from "../../lib/runtime/mod.ts";
import { toHex } from "../../lib/crypto/mod.ts";

export const FLOOD_SCRIPT = `${PROJECT_ROOT}/tasks/hostile/flood.py`;

export interface FloodOptions {
  /** Idle connections to hold (reconnected when dropped). */
  hold?: number;
  /** Threads sending garbage. */
  garbage?: number;
  /** Threads replaying `flights` (framed messages, each answered by one frame): a handshake flood. */
  replay?: number;
  flights?: Uint8Array[];
  /** Threads completing TLS handshakes. */
  tls?: number;
  /** The hostile host's own loopback address (default 127.0.0.2). */
  source?: string;
  /** Run the flood on these CPUs only (`taskset -c`), as if it were another machine. */
  cpus?: string;
}

export interface FloodCounts {
  held: number;
  answers: number;
  refused: number;
  failed: number;
  seconds: number;
}

export interface Flood extends AsyncDisposable {
  /** Connections held once the flood was ready. */
  readonly held: number;
  /** Stops the flood and returns what it counted (safe to call twice). */
  stop(): Promise<FloodCounts>;
}

/** Starts the flood; resolves once its connections are held and its first exchanges are done. */
export async function startFlood(port: number, options: FloodOptions): Promise<Flood> {
  const args = [FLOOD_SCRIPT, String(port)];
  if (options.source) args.push("--source", options.source);
  if (options.hold) args.push("--hold", String(options.hold));
  if (options.garbage) args.push("--garbage", String(options.garbage));
  if (options.replay) {
    args.push("--replay", String(options.replay));
    for (const flight of options.flights ?? []) args.push("--flight", toHex(flight));
  }
  if (options.tls) args.push("--tls", String(options.tls));
  const child = new Deno.Command(options.cpus ? "taskset" : "python3", {
    args: options.cpus ? ["-c", options.cpus, "python3", ...args] : args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let ready: RegExpExecArray | null = null;
  while (!(ready = /ready held (\d+)/.exec(out))) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`the flood (flood.py) exited before it was ready: ${out}`);
    }
    out += value;
  }
  const started = performance.now();
  let stopped: Promise<FloodCounts> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      const seconds = (performance.now() - started) / 1000;
      await child.stdin.close();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        out += value;
      }
      await child.status;
      const m = /held (\d+) answers (\d+) refused (\d+) failed (\d+)\s*$/.exec(out);
      if (!m) throw new Error(`the flood's report is missing: ${out}`);
      return {
        held: Number(m[1]),
        answers: Number(m[2]),
        refused: Number(m[3]),
        failed: Number(m[4]),
        seconds,
      };
    })();
  return {
    held: Number(ready[1]),
    stop,
    async [Symbol.asyncDispose]() {
      await stop().catch(() => {});
    },
  };
}
