#!/usr/bin/env -S deno run --allow-run=deno
/**
 * What the actors' `deno task` lines run: `tasks/launch.ts FLAGS… actors/NAME.ts ARGS…` starts
 * `deno run --no-prompt V8_MEMORY_FLAG --allow-net=127.0.0.1,localhost,[::1][,HOST…] FLAGS…
 * actors/NAME.ts ARGS…` (V8_MEMORY_FLAG and the allocator settings: lib/runtime/process.ts),
 * where the HOSTs are those that ARGS name in the actor's address options (lib/runtime/launch.ts),
 * in the foreground (same terminal; SIGINT, SIGTERM and SIGHUP passed on), and exits with the
 * actor's status. `--no-prompt`: at a terminal Deno would ask to widen a permission; here a
 * refusal says why instead (runMain's permission hint).
 * FLAGS are the task's other permissions, as deno.json writes them; `--allow-net` is never among
 * them, and `-A` or `--allow-all` is refused.
 */

import {
  AddressError,
  allocatorEnv,
  allowNetFlag,
  denoCommand,
  launchedActor,
  runForeground,
  runMain,
  UsageError,
  V8_MEMORY_FLAG,
} from "../lib/runtime/mod.ts";

const USAGE = `Usage: deno run --allow-run=deno tasks/launch.ts [--allow-…]… actors/NAME.ts [ARGS…]

Runs an actor with the network permission its command line needs: loopback, and the hosts that its
--host, --listen, --ca, --blackboard, --bank and --server options name. The deno.json tasks ca,
student, blackboard, bank, chat and trudy use it.`;

/** Splits `FLAGS… SCRIPT ARGS…` and checks the flags. */
export function parseLaunch(
  args: readonly string[],
): { flags: string[]; script: string; actor: string; rest: string[] } {
  const i = args.findIndex((a) => !a.startsWith("--allow-"));
  const flags = args.slice(0, Math.max(i, 0));
  const script = i < 0 ? undefined : args[i]!;
  const actor = script === undefined ? undefined : launchedActor(script);
  if (script === undefined || actor === undefined) {
    throw new UsageError(
      `expected --allow-… flags then an actor's script (actors/NAME.ts), got '${
        script ?? args.join(" ")
      }'`,
    );
  }
  for (const flag of flags) {
    if (/^--allow-(net|all)\b/.test(flag)) {
      throw new UsageError(`${flag} is not for the launcher: it grants the network itself`);
    }
  }
  return { flags, script, actor, rest: args.slice(i + 1) };
}

/**
 * The arguments of `deno` for the launcher's ARGS: `run --no-prompt V8_MEMORY_FLAG --allow-net=…
 * FLAGS… SCRIPT ARGS…`.
 */
export function launchArgs(args: readonly string[]): string[] {
  const { flags, script, actor, rest } = parseLaunch(args);
  let net: string;
  try {
    net = allowNetFlag(actor, rest);
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    const usage = new UsageError(err.message);
    usage.command = rest[0] === undefined ? actor : `${actor} ${rest[0]}`;
    throw usage;
  }
  // Without --no-prompt, `ca serve` at a terminal asked at every start to read /proc/self/limits.
  return ["run", "--no-prompt", V8_MEMORY_FLAG, net, ...flags, script, ...rest];
}

export async function main(args: string[]): Promise<number> {
  if (args.length === 0 || args[0] === "--help") {
    console.log(USAGE);
    return args.length === 0 ? 2 : 0;
  }
  const argv = launchArgs(args);
  const deno = denoCommand();
  try {
    return await runForeground(deno, argv, { env: allocatorEnv() });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    throw new Error(
      `Cannot start '${deno}': it is not on the PATH (the task may run only 'deno' from the PATH): add Deno's folder to PATH, e.g. PATH="${
        Deno.execPath().replace(/\/[^/]*$/, "")
      }:$PATH"`,
    );
  }
}

if (import.meta.main) await runMain("launch", main);
