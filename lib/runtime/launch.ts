/**
 * The network permission of the actors' `deno task` lines: loopback, plus exactly the hosts that
 * the command line names. `tasks/launch.ts` reads an actor's own arguments, collects the hosts of
 * its address options (`--host`, `--listen`, `--ca`, `--blackboard`, `--bank`, `--server`), and runs the actor
 * as a child with `--allow-net=127.0.0.1,localhost,[::1],HOST…` and the task's other flags:
 *
 *     deno task student enroll --ca 10.0.0.1:9335 …
 *     → deno run --allow-net=127.0.0.1,localhost,[::1],10.0.0.1 --allow-read=. … actors/student.ts …
 *
 * The table below is the one list of those options; `tests/runtime/launch_test.ts` reads every
 * actor's `--help` and fails when an actor has a HOST or HOST:PORT option that it lacks.
 */

import { loadOpenSslRsa, type OpenSslOutcome } from "../crypto/mod.ts";
import { printable } from "./text.ts";

/** Always allowed: the lab on one machine. */
export const LOOPBACK: readonly string[] = ["127.0.0.1", "localhost", "[::1]"];

/**
 * For each actor the launcher runs, each command's options that name an address to listen on
 * (`--host`) or to dial (`HOST:PORT`). Options that name a service (`ca issue --server NAME`) or go
 * into a certificate (`--ip`, `--dns`) are not addresses the process uses, and are not here.
 */
export const ADDRESS_OPTIONS: Readonly<
  Record<string, Readonly<Record<string, readonly string[]>>>
> = {
  ca: { serve: ["host"] },
  student: { enroll: ["ca"], send: ["blackboard"], upload: ["blackboard"] },
  blackboard: { serve: ["host", "ca"] },
  bank: { serve: ["host", "ca"], client: ["bank"] },
  chat: { serve: ["host"], client: ["server"] },
  trudy: {
    "enrol-impersonation": ["ca"],
    "enrol-code-theft": ["ca", "listen"],
    "bank-mitm": ["bank", "listen"],
    "bank-replay": ["bank", "listen"],
    "cross-service": ["ca", "listen"],
    "session-key-sniff": ["blackboard", "listen"],
    "message-replay": ["blackboard", "listen"],
    "crl-rollback": ["ca", "blackboard", "listen"],
    "error-injection": ["bank", "blackboard", "listen"],
  },
};

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const IPV6 = /^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$/;
const DNS_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** A value of an address option that is no address: the launcher refuses it (exit status 2). */
export class AddressError extends Error {
  override name = "AddressError";
}

/**
 * The host of an option's value (`HOST`, `HOST:PORT`, `[V6]:PORT`), as `--allow-net` spells it
 * (an IPv6 address in brackets). Throws `AddressError` for anything that is not an IP address or a
 * host name, so that no value can widen the permission (a comma, a wildcard, a path).
 */
export function allowNetHost(value: string, option: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(value);
  const host = bracketed ? bracketed[1]! : (value.match(/:/g)?.length ?? 0) >= 2
    ? value // a bare IPv6 address (`--host ::`)
    : value.replace(/:\d{1,5}$/, "");
  if (IPV4.test(host) && host.split(".").every((n) => Number(n) <= 255)) return host;
  if (host.includes(":") && IPV6.test(host)) return `[${host}]`;
  if (!bracketed && DNS_NAME.test(host) && !/^[\d.]+$/.test(host)) return host;
  throw new AddressError(
    `--${option} must name an IP address or a host name (HOST or HOST:PORT), got '${
      printable(value)
    }'`,
  );
}

/**
 * The hosts that `args` (an actor's arguments: `COMMAND [options]`) name in the command's address
 * options, in order, each once. Read as `node:util`'s strict `parseArgs` reads them: `--opt VALUE`
 * or `--opt=VALUE`, nothing after `--`. A command or actor without address options names none.
 */
export function namedHosts(actor: string, args: readonly string[]): string[] {
  const [command, ...rest] = args;
  const table = Object.hasOwn(ADDRESS_OPTIONS, actor) ? ADDRESS_OPTIONS[actor]! : {};
  const options = command !== undefined && Object.hasOwn(table, command) ? table[command]! : [];
  const hosts: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--") break;
    for (const option of options) {
      let value: string | undefined;
      if (arg === `--${option}`) value = rest[++i];
      else if (arg.startsWith(`--${option}=`)) value = arg.slice(option.length + 3);
      if (value === undefined) continue;
      const host = allowNetHost(value, option);
      if (!hosts.includes(host) && !LOOPBACK.includes(host)) hosts.push(host);
      break;
    }
  }
  return hosts;
}

/** `--allow-net=127.0.0.1,localhost,[::1][,HOST…]` for an actor run with `args`. */
export function allowNetFlag(actor: string, args: readonly string[]): string {
  return `--allow-net=${[...LOOPBACK, ...namedHosts(actor, args)].join(",")}`;
}

/** The actor a script path names (`actors/chat.ts` → `chat`), if the launcher knows it. */
export function launchedActor(script: string): string | undefined {
  const name = /(?:^|\/)actors\/([a-z]+)\.ts$/.exec(script)?.[1];
  return name !== undefined && Object.hasOwn(ADDRESS_OPTIONS, name) ? name : undefined;
}

/**
 * The actors whose tasks grant `--allow-ffi`, and what for. Each uses it once at start and
 * revokes it: the chat server for TCP_NODELAY on its listening socket (lib/net/nodelay.ts), the
 * others to load OpenSSL for their RSA signatures (lib/crypto/openssl_rsa.ts). Every harness that
 * starts an actor (the tests, the scenarios, the bench) grants what its task grants.
 */
export const FFI_ACTORS: readonly string[] = ["ca", "student", "blackboard", "bank", "chat"];

/** `["--allow-ffi"]` for an actor script whose task grants it, else nothing. */
export function ffiFlags(script: string): string[] {
  const actor = launchedActor(script);
  return actor !== undefined && FFI_ACTORS.includes(actor) ? ["--allow-ffi"] : [];
}

/** Revokes `--allow-ffi` for the rest of the process (a no-op when it was not granted). */
export function dropFfi(): void {
  Deno.permissions.revokeSync({ name: "ffi" });
}

/**
 * At an actor's start: loads OpenSSL for its RSA signatures when the process may use FFI (its
 * task grants `--allow-ffi` for this; lib/crypto/openssl_rsa.ts), then revokes `--allow-ffi`
 * whatever the outcome: no library can be opened after, and the functions bound stay usable.
 */
export function startOpenSslRsa(): OpenSslOutcome {
  const outcome = loadOpenSslRsa();
  dropFfi();
  return outcome;
}
