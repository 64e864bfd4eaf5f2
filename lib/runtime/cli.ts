/**
 * Command-line plumbing shared by every actor: strict option parsing with one clear line per
 * mistake, `--help`, `HOST:PORT` and number parsing, and a `runMain` that maps errors to exit codes.
 */

import { allowNetFlag, launchedActor } from "./launch.ts";
import { printable } from "./text.ts";
import { PROJECT_ROOT } from "./paths.ts";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** A mistake in how the command was called: exit status 2 with a hint to use `--help`. */
export class UsageError extends Error {
  override name = "UsageError";
  /** The command whose `--help` to suggest, e.g. `ca serve`; set by `dispatch`. */
  command?: string;
}

export interface CommandSpec<O extends ParseArgsOptionsConfig> {
  /** For messages, e.g. `ca serve`. */
  name: string;
  /** The whole `--help` text. */
  usage: string;
  options: O;
  /** Allowed positional arguments (default none). */
  positionals?: number;
}

/**
 * Parses `args` strictly. Returns `null` after printing the usage when `--help` was given.
 * Unknown options, missing values and extra arguments throw `UsageError`.
 */
export function parseCommand<O extends ParseArgsOptionsConfig>(
  args: string[],
  spec: CommandSpec<O>,
) {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(spec.usage.trimEnd());
    return null;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, spec.options),
      options: spec.options,
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  const max = spec.positionals ?? 0;
  if (parsed.positionals.length > max) {
    throw new UsageError(`unexpected argument '${parsed.positionals[max]}'`);
  }
  return parsed;
}

/**
 * `--days -1` as `--days=-1`: a value that looks like a negative number belongs to the option
 * before it (parseArgs would read it as an option), so that its check can say what is wrong.
 */
function joinNegativeValues(args: string[], options: ParseArgsOptionsConfig): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    if (
      name !== undefined && options[name]?.type === "string" && next !== undefined &&
      /^-\d/.test(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

function describeParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  const option = /'(-[^']*)'/.exec(message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) return `unknown option '${option}'`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) {
    return message.includes("argument missing")
      ? `option '${option.split(" ")[0]}' needs a value`
      : `option '${option.split(" ")[0]}' takes no value`;
  }
  return message.split(". ")[0]!;
}

/** Throws a UsageError when a required option is missing. */
export function required<T>(value: T | undefined, option: string): T {
  if (value === undefined || value === "") {
    throw new UsageError(`missing required option --${option}`);
  }
  return value;
}

/** Parses a TCP port (0 to 65535). */
export function parsePort(text: string, option = "port"): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new UsageError(`--${option} must be a port number from 0 to 65535, got '${text}'`);
  }
  return Number(text);
}

/** Parses a positive integer option. */
export function parsePositiveInt(text: string, option: string, max?: number): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--${option} must be a positive whole number, got '${text}'`);
  }
  if (max !== undefined && Number(text) > max) {
    throw new UsageError(`--${option} must be a whole number from 1 to ${max}, got '${text}'`);
  }
  return Number(text);
}

export interface HostPort {
  hostname: string;
  port: number;
}

/** Parses `HOST:PORT` (or `[v6]:PORT`); a bare `HOST` takes `defaultPort`. */
export function parseHostPort(text: string, defaultPort: number, option: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]+))(?::(\d{1,5}))?$/.exec(text);
  if (!m) throw new UsageError(`--${option} must be HOST:PORT, got '${text}'`);
  const port = m[3] === undefined ? defaultPort : parsePort(m[3], option);
  return { hostname: (m[1] ?? m[2])!, port };
}

export const STUDENT_ID = /^\d{10}$/;

/** Checks a student ID: exactly 10 digits. */
export function parseStudentId(text: string, option = "sid"): string {
  if (!STUDENT_ID.test(text)) {
    throw new UsageError(`--${option} must be exactly 10 digits, got '${text}'`);
  }
  return text;
}

/**
 * The one vocabulary for the lab's two protocols, on every actor: `--protocol default` (the
 * default: done right) or `--protocol seed` (the seeds' protocol, flaws included, for teaching).
 */
export type ProtocolMode = "default" | "seed";

export const PROTOCOL_MODES: readonly ProtocolMode[] = ["default", "seed"];

/** The hint every deprecation warning ends with. */
export const PROTOCOL_HINT = "use --protocol default|seed";

export interface ProtocolModeOptions {
  /**
   * Old spellings still accepted for one release, each with the mode it means, e.g.
   * `{ secure: "default" }`; each use prints a one-line deprecation warning.
   */
  deprecated?: Readonly<Record<string, ProtocolMode>>;
  /** The command, for the warning (`bank serve: …`). */
  command?: string;
  /** Where a deprecation warning goes (default: standard error). */
  warn?: (line: string) => void;
}

/**
 * Parses `--protocol MODE`: `default` (also when the option is absent) or `seed`. A deprecated
 * spelling is accepted with a warning; anything else is a `UsageError`.
 */
export function parseProtocolMode(
  text: string | undefined,
  options: ProtocolModeOptions = {},
): ProtocolMode {
  if (text === undefined || text === "default") return "default";
  if (text === "seed") return "seed";
  const old = options.deprecated && Object.hasOwn(options.deprecated, text)
    ? options.deprecated[text]
    : undefined;
  if (old !== undefined) {
    warnDeprecated(`--protocol ${text}`, options);
    return old;
  }
  throw new UsageError(`--protocol must be default or seed, got '${text}'`);
}

/**
 * Prints `[COMMAND: ]OLD is deprecated; use --protocol default|seed` on standard error (or
 * `options.warn`), for an old flag kept for one release.
 */
export function warnDeprecated(
  old: string,
  options: Pick<ProtocolModeOptions, "command" | "warn"> = {},
): void {
  const line = `${
    options.command ? `${options.command}: ` : ""
  }${old} is deprecated; ${PROTOCOL_HINT}`;
  (options.warn ?? ((l: string) => console.error(l)))(line);
}

/**
 * Runs an actor's main function: a `UsageError` prints one line and a hint (exit 2), any other
 * error prints one line (exit 1). The returned number, if any, is the exit status.
 */
export async function runMain(
  program: string,
  main: (args: string[]) => Promise<number | void>,
  args: string[] = Deno.args,
): Promise<never> {
  let status = 0;
  try {
    status = (await main(args)) ?? 0;
  } catch (err) {
    if (err instanceof UsageError) {
      const command = err.command ?? program;
      console.error(
        `${command}: ${printable(err.message)}\nTry '${command} --help' for more information.`,
      );
      status = 2;
    } else {
      // The message may carry a peer's words (a refusal): one sanitised line.
      const message = err instanceof Error ? err.message : String(err);
      console.error(`${program}: ${printable(message)}`);
      const hint = permissionHint(message, args);
      if (hint) console.error(hint);
      status = 1;
    }
  }
  Deno.exit(status);
}

/**
 * For Deno's "Requires read access to "/x", run again with the --allow-read flag" (which a
 * `deno task` user cannot do as told): why the task refused, and the `deno run` line, with the
 * task's own flags from deno.json plus the one missing, that would work. Undefined for any other
 * error, or when the task is not found.
 */
export function permissionHint(
  message: string,
  args: readonly string[],
  mainModule: string = Deno.mainModule,
  readTasks: () => Record<string, unknown> = readDenoJsonTasks,
): string | undefined {
  const m = /Requires (read|write) access to "([^"]+)"/.exec(message);
  if (!m) return undefined;
  const [, kind, path] = m;
  const script = mainModule.startsWith("file://")
    ? new URL(mainModule).pathname.replace(/^.*\/(actors|tasks)\//, "$1/")
    : undefined;
  let command: string | undefined;
  try {
    for (const task of Object.values(readTasks())) {
      const line = typeof task === "string" ? task : (task as { command?: string } | null)?.command;
      if (line && script && line.includes(` ${script}`)) command = line;
    }
  } catch {
    return undefined;
  }
  if (command === undefined || script === undefined) return undefined;
  let [before] = command.split(` ${script}`);
  // An actor's task runs it through tasks/launch.ts, which adds the network permission: the line
  // that works is the launcher's child, `deno run --allow-net=… FLAGS… SCRIPT ARGS…`.
  const launcher = " tasks/launch.ts";
  const actor = launchedActor(script);
  if (before!.includes(launcher) && actor !== undefined) {
    let net: string;
    try {
      net = allowNetFlag(actor, args);
    } catch {
      return undefined;
    }
    before = `deno run ${net}${before!.slice(before!.indexOf(launcher) + launcher.length)}`;
  }
  const quote = (a: string) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
  // The task's flags, with the path added to its --allow-read or --allow-write (or a new one).
  const flag = `--allow-${kind}`;
  let added = false;
  const words = before!.split(/\s+/).map((w) => {
    if (w === flag) {
      added = true;
      return w; // already everything
    }
    if (w.startsWith(`${flag}=`)) {
      added = true;
      return `${w},${path}`;
    }
    return w;
  });
  if (!added) words.push(`${flag}=${path}`);
  return `The 'deno task' scripts may ${kind} files inside this project only, and ${
    printable(path!)
  } is outside it. Move the file into the project (for example under data/), or run the script with that access added:\n  ${
    [...words, script, ...args].map(quote).join(" ")
  }`;
}

function readDenoJsonTasks(): Record<string, unknown> {
  const json = JSON.parse(Deno.readTextFileSync(`${PROJECT_ROOT}/deno.json`));
  return (json.tasks ?? {}) as Record<string, unknown>;
}

/** Picks a subcommand: `ca serve …` calls `commands.serve(rest)`. */
export async function dispatch(
  program: string,
  usage: string,
  commands: Record<string, (args: string[]) => Promise<number | void>>,
  args: string[],
): Promise<number | void> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage.trimEnd());
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    throw new UsageError(`unknown command '${name}' (one of: ${Object.keys(commands).join(", ")})`);
  }
  try {
    return await command(rest);
  } catch (err) {
    if (err instanceof UsageError) err.command ??= `${program} ${name}`;
    throw err;
  }
}

/** An AbortSignal that fires on SIGINT or SIGTERM, for graceful shutdown. */
export function shutdownSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort(new Error("Shutting down"));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(sig, stop);
    } catch {
      // Signals are not available on every platform.
    }
  }
  return controller.signal;
}
