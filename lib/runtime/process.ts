/**
 * Child processes, for the capture scenarios (tasks/scenarios) and the tests' fixtures alike:
 *
 *     const server = spawnDeno("actors/ca.ts", ["serve", "--port", "0"], { permissions });
 *     const m = await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
 *     const { code, stdout } = await runCommand("tshark", ["-v"]);
 *
 * A `RunningProcess` collects its standard output and error as they come (and can hand each line
 * to `onLine`); `waitFor` is checked again each time output arrives or the process exits, so it
 * ends at that moment, and fails at once when the process exits without printing what is awaited.
 */

import { ffiFlags } from "./launch.ts";
import { PROJECT_ROOT } from "./paths.ts";
import { Changes, waitFor } from "./wait.ts";

export interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class ProcessError extends Error {
  override name = "ProcessError";
}

export interface ProcessOptions {
  /** The process's name in errors (default the command). */
  name?: string;
  /** Default the project's top folder. */
  cwd?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Written to standard input, which is then closed; without it standard input is null. */
  stdin?: string;
  /** Each visible, non-blank line of output as it comes (`visible`: a redrawn line's last state). */
  onLine?: (line: string, from: "stdout" | "stderr") => void;
}

/** The visible part of an output line (a progress bar redraws with `\r`), escapes dropped. */
export function visible(line: string): string {
  const i = line.lastIndexOf("\r", line.length - 2);
  // Terminal escape sequences (colours, line clearing) are dropped.
  // deno-lint-ignore no-control-regex
  const escapes = /\x1b\[[0-9;]*[A-Za-z]/g;
  return (i >= 0 ? line.slice(i + 1) : line).replace(/\r$/, "").replace(escapes, "");
}

/** A started process whose output is collected; dispose it to kill it (SIGKILL). */
export class RunningProcess implements AsyncDisposable {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  /** The exit status, once the process exited and all its output was read. */
  readonly status: Promise<Deno.CommandStatus>;
  /** The exit code and all the output, once the process exited and its output was read. */
  readonly done: Promise<ProcessResult>;
  #stdout = "";
  #stderr = "";
  #exited = false;
  readonly #changes = new Changes();

  constructor(command: string, args: readonly string[], options: ProcessOptions = {}) {
    this.name = options.name ?? command;
    this.child = new Deno.Command(command, {
      args: [...args],
      cwd: options.cwd ?? PROJECT_ROOT,
      ...(options.env ? { env: options.env } : {}),
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (options.stdin !== undefined) {
      const w = this.child.stdin.getWriter();
      // A process that exits without reading its input says so by its exit status.
      w.write(new TextEncoder().encode(options.stdin)).then(() => w.close()).catch(() => {});
    }
    const onLine = options.onLine;
    const pump = async (stream: ReadableStream<Uint8Array>, from: "stdout" | "stderr") => {
      let pending = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        if (from === "stdout") this.#stdout += chunk;
        else this.#stderr += chunk;
        this.#changes.notify();
        if (!onLine) continue;
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = visible(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
          if (line.trim() !== "") onLine(line, from);
        }
      }
      if (onLine && visible(pending).trim() !== "") onLine(visible(pending), from);
    };
    this.status = Promise.all([
      this.child.status,
      pump(this.child.stdout, "stdout"),
      pump(this.child.stderr, "stderr"),
    ]).then(([s]) => s).finally(() => {
      this.#exited = true;
      this.#changes.notify();
    });
    this.done = this.status.then((s) => ({
      code: s.code,
      stdout: this.#stdout,
      stderr: this.#stderr,
    }));
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Standard output then standard error. */
  get output(): string {
    return this.#stdout + this.#stderr;
  }

  /** Whether the process exited and all its output was read. */
  get exited(): boolean {
    return this.#exited;
  }

  /** The last lines of standard error, on one line (for errors). */
  tail(lines = 3): string {
    return this.#stderr.trim().split("\n").slice(-lines).join(" / ");
  }

  /**
   * The first match of `pattern` in standard error, else in standard output, as soon as it is
   * printed; throws when the process exits without printing it, or after `timeoutMs`.
   */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return await waitFor(() => {
      const m = this.#stderr.match(pattern) ?? this.#stdout.match(pattern);
      if (m) return m;
      if (this.#exited) {
        throw new ProcessError(`${this.name} exited before printing ${pattern}: ${this.tail()}`);
      }
      return null;
    }, {
      what: `${this.name} to print ${pattern}`,
      timeoutMs,
      changes: this.#changes,
      detail: () => this.tail(),
    });
  }

  /** Sends a signal; nothing when the process already exited. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  /** Sends a signal (default SIGINT) and waits for the process to exit. */
  async stop(signal: Deno.Signal = "SIGINT"): Promise<Deno.CommandStatus> {
    this.kill(signal);
    return await this.status;
  }

  /** Waits for the exit; after `timeoutMs` the process is stopped with SIGTERM. */
  async result(timeoutMs?: number): Promise<ProcessResult> {
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => this.kill(), timeoutMs);
    try {
      return await this.done;
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

/**
 * The Deno binary to start scripts with: this one when the permissions allow running it, else
 * `deno` from the PATH (a task scoped with `--allow-run=deno` grants only that name).
 */
export function denoCommand(): string {
  const exec = Deno.execPath();
  try {
    if (Deno.permissions.querySync({ name: "run", command: exec }).state === "granted") return exec;
  } catch {
    // Permission queries unavailable: fall back to the PATH.
  }
  return "deno";
}

export interface DenoOptions extends ProcessOptions {
  /** `--allow-…` flags for the script. */
  permissions: readonly string[];
  /**
   * A command that runs Deno for us, its arguments before Deno's (`["ip", "netns", "exec", NS]`:
   * the script runs in that network namespace; `ip netns exec` execs Deno, so signals reach it).
   */
  wrapper?: readonly string[];
}

/**
 * The environment every actor starts with: glibc's malloc told to keep freed memory for reuse.
 * An upload allocates several fresh 256 KiB buffers per chunk (a frame, a record, WebCrypto's
 * output); with glibc's defaults the freed heap top is handed back to the kernel and taken again at
 * once, and the page faults and zeroing cost more than the ciphers (perf: the kernel's
 * page-fault path was the largest share of both processes). Allocations under 1 MiB come from the
 * heap, and up to 32 MiB of free heap top is kept: a 512 MiB upload went from 62 to 119–127 MiB/s,
 * at 10–15 MiB more resident memory. Ignored by any other allocator; a value already set wins.
 */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(32 * 1024 * 1024),
};

/** `ALLOCATOR_ENV`, under what this process's environment already sets (when it may read it). */
export function allocatorEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(ALLOCATOR_ENV)) {
    // Read only when already allowed (never a permission prompt); otherwise the lab's value.
    const allowed = Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
    env[name] = (allowed ? Deno.env.get(name) : undefined) ?? value;
  }
  return env;
}

/**
 * On the `deno run` of every actor that `spawnDeno` or the launcher (tasks/launch.ts) starts:
 * V8's young generation held to 8 MiB per semi-space. On this 24 GiB machine V8 lets it grow to
 * 32 MiB per semi-space (64 MiB of new space), which a chat server with 1,000 clients fills with
 * short-lived frames and promises during the joins and then keeps: its peak resident memory was
 * 176–187 MiB, and 127–131 MiB with the cap, with no loss in its fan-out or in the Blackboard, CA
 * and bank rows of `deno task bench` (alternating runs, 28 Nov 2026). It is a command-line flag,
 * not `DENO_V8_FLAGS`, so that flags set there (`--prof`) still apply beside it (a
 * `--max-semi-space-size` set there is overridden by this one). `--expose-gc` gives the process the
 * `gc()` that `shortLivedBytes` (garbage.ts) calls to free dead frames' buffers early: an upload's
 * peak went from 153–169 MiB to 87–90 MiB on each side.
 */
export const V8_MEMORY_FLAG = "--v8-flags=--max-semi-space-size=8,--expose-gc";

/**
 * `run --quiet V8_MEMORY_FLAG PERMISSIONS [--allow-ffi] SCRIPT ARGS…`: the arguments of
 * `denoCommand()` for a script. An actor whose task grants `--allow-ffi` gets it here too
 * (`ffiFlags`, lib/runtime/launch.ts), as its task runs it; `--deny-ffi` among PERMISSIONS
 * takes it away again (a control in the tests).
 */
export function denoRunArgs(
  script: string,
  args: readonly string[],
  permissions: readonly string[],
): string[] {
  return ["run", "--quiet", V8_MEMORY_FLAG, ...permissions, ...ffiFlags(script), script, ...args];
}

/**
 * Starts `deno run --quiet V8_MEMORY_FLAG PERMISSIONS SCRIPT ARGS…` (SCRIPT relative to `cwd`, or
 * absolute) with the allocator settings (`allocatorEnv()`).
 */
export function spawnDeno(
  script: string,
  args: readonly string[],
  options: DenoOptions,
): RunningProcess {
  const { permissions, wrapper, ...rest } = options;
  const argv = [denoCommand(), ...denoRunArgs(script, args, permissions)];
  const [command, ...commandArgs] = [...(wrapper ?? []), ...argv];
  return new RunningProcess(command!, commandArgs, {
    name: script,
    ...rest,
    env: { ...allocatorEnv(), ...rest.env },
  });
}

/** Runs a command to completion (stopped with SIGTERM after `timeoutMs`, if given). */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: ProcessOptions & { timeoutMs?: number } = {},
): Promise<ProcessResult> {
  const { timeoutMs, ...rest } = options;
  return await new RunningProcess(command, args, rest).result(timeoutMs);
}

/** What running a program's version option said: it runs, it is not there, or we may not run it. */
export type ToolState = "ok" | "missing" | "not-permitted";

/**
 * Whether a program runs (`PROGRAM --version`, or another option such as `ip -V`): `not-permitted`
 * when this process may not run it (Deno resolves `--allow-run=NAME` when it starts, so a program
 * installed later is refused).
 */
export async function toolState(name: string, versionArg = "--version"): Promise<ToolState> {
  try {
    const out = await new Deno.Command(name, {
      args: [versionArg],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success ? "ok" : "missing";
  } catch (err) {
    return err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied
      ? "not-permitted"
      : "missing";
  }
}

/** Whether a program is on the PATH and may be run (its version option succeeds). */
export async function hasTool(name: string, versionArg = "--version"): Promise<boolean> {
  return (await toolState(name, versionArg)) === "ok";
}

/** Whether a command is on the PATH (`command -v NAME`). */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${name}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** The signals a foreground parent passes on to its child (and does not die of itself). */
export const FORWARDED_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Runs a command in the foreground, as if in this process's place: standard input, output and
 * error are this process's own (a terminal stays a terminal, so prompts and raw mode work), and
 * SIGINT, SIGTERM and SIGHUP are passed on to the child instead of ending this process, which waits
 * for the child whatever it receives. (From a terminal, Ctrl-C reaches both: the child sees SIGINT
 * twice, which the actors' shutdown treats as once.) Returns the child's exit status, as a shell
 * reports it: the code, or 128 + the signal's number when a signal ended it.
 */
export async function runForeground(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<number> {
  const child = new Deno.Command(command, {
    args: [...args],
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.env !== undefined ? { env: options.env } : {}),
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const listeners = FORWARDED_SIGNALS.map((signal) => {
    const pass = () => {
      try {
        child.kill(signal);
      } catch {
        // The child already exited.
      }
    };
    try {
      Deno.addSignalListener(signal, pass);
    } catch {
      // Signals are not available on every platform.
    }
    return [signal, pass] as const;
  });
  try {
    return (await child.status).code;
  } finally {
    for (const [signal, pass] of listeners) {
      try {
        Deno.removeSignalListener(signal, pass);
      } catch {
        // Never added.
      }
    }
  }
}

/**
 * `apt-get update`, then `apt-get install -y PACKAGES` (non-interactive; as root). Returns
 * undefined when both succeed, or why not: `apt-get install failed: LAST LINE OF ITS ERRORS`.
 */
export async function aptInstall(packages: readonly string[]): Promise<string | undefined> {
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (
    const args of [["update", "-qq"], [
      "install",
      "-y",
      "-qq",
      "--no-install-recommends",
      ...packages,
    ]]
  ) {
    let res;
    try {
      res = await runCommand("apt-get", args, { env });
    } catch (err) {
      return `apt-get ${args[0]} failed: ${err instanceof Error ? err.message : err}`;
    }
    if (res.code !== 0) {
      return `apt-get ${args[0]} failed: ${res.stderr.trim().split("\n").pop() ?? ""}`;
    }
  }
  return undefined;
}
