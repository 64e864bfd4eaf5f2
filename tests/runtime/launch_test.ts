/**
 * The launcher's network permission (lib/runtime/launch.ts): which hosts a command line names, and
 * that the table of address options matches every actor's real options (their `--help`).
 */

import assert from "node:assert/strict";
import {
  ADDRESS_OPTIONS,
  AddressError,
  allowNetFlag,
  allowNetHost,
  launchedActor,
  namedHosts,
  runCommand,
} from "../../lib/runtime/mod.ts";
import { ROOT } from "../_fixtures/helpers.ts";

const LOOP = "--allow-net=127.0.0.1,localhost,[::1]";

Deno.test("allowNetHost: the host of HOST, HOST:PORT or [V6]:PORT, as --allow-net spells it", () => {
  const cases: [string, string][] = [
    ["10.0.0.1", "10.0.0.1"],
    ["10.0.0.1:9335", "10.0.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["cuhk.lab:9335", "cuhk.lab"],
    ["Instructor-PC", "Instructor-PC"],
    ["[fe80::1]:3141", "[fe80::1]"],
    ["[::1]", "[::1]"],
    ["::", "[::]"],
    ["fd00::7", "[fd00::7]"],
  ];
  for (const [value, host] of cases) assert.equal(allowNetHost(value, "ca"), host, value);
});

Deno.test("allowNetHost: a value that could widen the permission, or is no address, is refused", () => {
  for (
    const value of [
      "",
      "a,b",
      "a,b:1",
      "*",
      "10.0.0.1,0.0.0.0",
      "999.1.1.1",
      "1.2.3",
      "h:p",
      "[x]",
      "a b",
      "../x",
      "-x",
    ]
  ) {
    assert.throws(
      () => allowNetHost(value, "ca"),
      (err) =>
        err instanceof AddressError &&
        err.message ===
          `--ca must name an IP address or a host name (HOST or HOST:PORT), got '${value}'`,
      JSON.stringify(value),
    );
  }
});

Deno.test("namedHosts: each command's address options, as parseArgs reads them; loopback and repeats once", () => {
  assert.deepEqual(
    namedHosts("student", ["enroll", "--sid", "1155123456", "--ca", "10.0.0.1:9335"]),
    ["10.0.0.1"],
  );
  assert.deepEqual(namedHosts("student", ["upload", "--blackboard=bb.lab:3141"]), ["bb.lab"]);
  assert.deepEqual(
    namedHosts("blackboard", ["serve", "--host", "10.0.0.1", "--ca", "10.0.0.1:9335"]),
    ["10.0.0.1"],
  );
  assert.deepEqual(namedHosts("bank", ["serve", "--host", "0.0.0.0", "--ca", "cuhk.lab"]), [
    "0.0.0.0",
    "cuhk.lab",
  ]);
  assert.deepEqual(namedHosts("bank", ["client", "--bank", "[fd00::1]:6001", "deposit", "5"]), [
    "[fd00::1]",
  ]);
  assert.deepEqual(namedHosts("chat", ["client", "--server", "10.0.0.1:8443", "--nick", "a"]), [
    "10.0.0.1",
  ]);
  assert.deepEqual(namedHosts("chat", ["serve", "--host", "127.0.0.1"]), []);
  assert.deepEqual(namedHosts("ca", ["serve", "--host", "::"]), ["[::]"]);
  // Another command's option of the same name is no address: `ca issue --server NAME`, `--ip`.
  assert.deepEqual(
    namedHosts("ca", ["issue", "--server", "chat", "--ip", "10.0.0.1", "--out", "d"]),
    [],
  );
  assert.deepEqual(namedHosts("chat", ["serve", "--server", "10.0.0.1"]), []);
  // A message that looks like an option is a value; after `--` nothing is an option.
  assert.deepEqual(
    namedHosts("student", ["send", "--message=--blackboard", "--blackboard", "10.0.0.2"]),
    ["10.0.0.2"],
  );
  assert.deepEqual(namedHosts("bank", ["client", "--", "--bank", "10.0.0.3"]), []);
  // No command, an unknown command or actor, --help: nothing named.
  assert.deepEqual(namedHosts("ca", []), []);
  assert.deepEqual(namedHosts("ca", ["--help"]), []);
  assert.deepEqual(namedHosts("trudy", ["bank-mitm", "--host", "10.0.0.1"]), []);
  // A missing value is left to the actor's own usage error.
  assert.deepEqual(namedHosts("student", ["enroll", "--ca"]), []);
  assert.throws(() => namedHosts("student", ["enroll", "--ca", "a,b"]), AddressError);
});

Deno.test("allowNetFlag: loopback by default, then the named hosts", () => {
  assert.equal(allowNetFlag("ca", ["serve"]), LOOP);
  assert.equal(allowNetFlag("ca", ["serve", "--host", "10.0.0.1"]), `${LOOP},10.0.0.1`);
  assert.equal(
    allowNetFlag("blackboard", ["serve", "--host", "0.0.0.0", "--ca", "10.0.0.1:9335"]),
    `${LOOP},0.0.0.0,10.0.0.1`,
  );
  assert.equal(launchedActor("actors/chat.ts"), "chat");
  assert.equal(launchedActor("/home/me/lab/actors/ca.ts"), "ca");
  assert.equal(launchedActor("actors/trudy.ts"), "trudy");
  assert.equal(launchedActor("tasks/demo.ts"), undefined);
});

/** `NAME:` sections of a help text: the command names of a `Commands:` list. */
function commandsOf(help: string): string[] {
  // Trudy calls her commands attacks; a description may go on over more deeply indented lines.
  const section = /^(?:Commands|Attacks):\n((?: {2}.*\n?)+)/m.exec(help)?.[1] ?? "";
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)\s/gm)].map((m) => m[1]!);
}

/** Options whose value is an address: a placeholder with HOST, or ending in :PORT. */
function addressOptionsOf(help: string): string[] {
  return [...help.matchAll(/^\s+--([a-z][a-z-]*)[ =](\S+)/gm)]
    .filter((m) => /HOST|ADDR(ESS)?:PORT|:PORT$/.test(m[2]!))
    .map((m) => m[1]!);
}

async function help(actor: string, command?: string): Promise<string> {
  const args = [
    "run",
    "--quiet",
    "--allow-read",
    "--allow-write",
    "--allow-net=127.0.0.1",
    `${ROOT}/actors/${actor}.ts`,
  ];
  const r = await runCommand(Deno.execPath(), [...args, ...(command ? [command] : []), "--help"]);
  assert.equal(r.code, 0, `${actor} ${command ?? ""} --help: ${r.stderr}`);
  return r.stdout;
}

Deno.test("ADDRESS_OPTIONS names every command of every launched actor and exactly its HOST and HOST:PORT options (from each --help)", async () => {
  // The launched actors are the actors/ scripts that deno.json's tasks run through the launcher.
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const launched: string[] = [];
  for (
    const [task, entry] of Object.entries(
      config.tasks as Record<string, { command: string } | string>,
    )
  ) {
    const line = typeof entry === "string" ? entry : entry.command;
    const script = / (actors\/[a-z]+\.ts)\b/.exec(line)?.[1];
    if (script === undefined || !line.includes("tasks/launch.ts")) continue;
    assert.doesNotMatch(
      line,
      /--allow-net|--allow-all|\s-A\b/,
      `task ${task} grants the network itself`,
    );
    launched.push(launchedActor(script) ?? `unknown ${script}`);
  }
  assert.deepEqual(launched.sort(), Object.keys(ADDRESS_OPTIONS).sort());

  const found: Record<string, Record<string, string[]>> = {};
  for (const actor of launched) {
    const commands = commandsOf(await help(actor));
    assert.ok(commands.length > 0, `${actor} --help lists its commands`);
    const helps = await Promise.all(commands.map((c) => help(actor, c)));
    found[actor] = {};
    commands.forEach((c, i) => {
      const options = addressOptionsOf(helps[i]!);
      if (options.length > 0) found[actor]![c] = options.sort();
    });
  }
  const table = Object.fromEntries(
    Object.entries(ADDRESS_OPTIONS).map(([actor, commands]) => [
      actor,
      Object.fromEntries(Object.entries(commands).map(([c, o]) => [c, [...o].sort()])),
    ]),
  );
  assert.deepEqual(table, found);
});

Deno.test("ADDRESS_OPTIONS covers every address an actor's source parses (parseHostPort of an option, or hostname: values.…)", async () => {
  for (const actor of Object.keys(ADDRESS_OPTIONS)) {
    const source = await Deno.readTextFile(`${ROOT}/actors/${actor}.ts`);
    const parsed = [
      ...source.matchAll(/parseHostPort\(\s*values(?:\.([a-z]+)|\["([a-z-]+)"\])/g),
      ...source.matchAll(/hostname: values(?:\.([a-z]+)|\["([a-z-]+)"\])/g),
    ].map((m) => m[1] ?? m[2]!);
    const known = new Set(Object.values(ADDRESS_OPTIONS[actor]!).flat());
    assert.ok(parsed.length > 0, `${actor}: no address parsed? the pattern no longer matches`);
    for (const option of parsed) assert.ok(known.has(option), `${actor}: --${option} is missing`);
  }
});
