/**
 * One vocabulary for the two protocols on every actor: `--protocol default|seed`, with old
 * spellings accepted for one release and a one-line deprecation warning.
 */

import assert from "node:assert/strict";
import {
  parseProtocolMode,
  permissionHint,
  PROTOCOL_MODES,
  UsageError,
  warnDeprecated,
} from "../../lib/runtime/mod.ts";

Deno.test("parseProtocolMode: default, seed, and absent means default", () => {
  assert.deepEqual(PROTOCOL_MODES, ["default", "seed"]);
  assert.equal(parseProtocolMode("default"), "default");
  assert.equal(parseProtocolMode("seed"), "seed");
  assert.equal(parseProtocolMode(undefined), "default");
});

Deno.test("parseProtocolMode: anything else is a usage error naming the two modes", () => {
  for (const text of ["", "Seed", "DEFAULT", "tls", "secure", "open", " seed"]) {
    assert.throws(
      () => parseProtocolMode(text),
      (err) =>
        err instanceof UsageError &&
        err.message === `--protocol must be default or seed, got '${text}'`,
      JSON.stringify(text),
    );
  }
});

Deno.test("parseProtocolMode: a deprecated spelling works, with one warning line", () => {
  const lines: string[] = [];
  const options = {
    deprecated: { secure: "default" as const },
    command: "bank serve",
    warn: (line: string) => lines.push(line),
  };
  assert.equal(parseProtocolMode("secure", options), "default");
  assert.deepEqual(lines, [
    "bank serve: --protocol secure is deprecated; use --protocol default|seed",
  ]);
  // The current names never warn; an old name for another command is still an error.
  assert.equal(parseProtocolMode("seed", options), "seed");
  assert.equal(parseProtocolMode("default", options), "default");
  assert.equal(lines.length, 1);
  assert.throws(() => parseProtocolMode("toString", options), UsageError);
  assert.throws(() => parseProtocolMode("secure"), UsageError);
});

Deno.test("warnDeprecated: one line, with the command when there is one", () => {
  const lines: string[] = [];
  warnDeprecated("--open-enrolment", { command: "ca serve", warn: (l) => lines.push(l) });
  warnDeprecated("--old", { warn: (l) => lines.push(l) });
  assert.deepEqual(lines, [
    "ca serve: --open-enrolment is deprecated; use --protocol default|seed",
    "--old is deprecated; use --protocol default|seed",
  ]);
});

Deno.test("permissionHint: Deno's 'run again with --allow-read' becomes why, and a deno run line that works", () => {
  const tasks = {
    chat: {
      command:
        "deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read=. --allow-ffi actors/chat.ts",
    },
    ca: "deno run --allow-read=. actors/ca.ts",
  };
  const hint = permissionHint(
    'Cannot read the server certificate from /etc/x y: Requires read access to "/etc/x y", run again with the --allow-read flag',
    ["serve", "--cert", "/etc/x y"],
    "file:///home/me/lab/actors/chat.ts",
    () => tasks,
  );
  assert.equal(
    hint,
    "The 'deno task' scripts may read files inside this project only, and /etc/x y is outside it. " +
      "Move the file into the project (for example under data/), or run the script with that access added:\n" +
      "  deno run '--allow-net=127.0.0.1,localhost,[::1]' '--allow-read=.,/etc/x y' --allow-ffi actors/chat.ts serve --cert '/etc/x y'",
  );
  // A write, for a task without --allow-write: the flag is added.
  assert.match(
    permissionHint(
      'Requires write access to "/tmp/out", run again with the --allow-write flag',
      ["issue", "--out", "/tmp/out"],
      "file:///home/me/lab/actors/ca.ts",
      () => tasks,
    )!,
    /\n {2}deno run --allow-read=\. --allow-write=\/tmp\/out actors\/ca\.ts issue --out \/tmp\/out$/,
  );
  // Any other error, or a script no task runs: no hint.
  assert.equal(
    permissionHint("Connection refused", [], "file:///x/actors/ca.ts", () => tasks),
    undefined,
  );
  assert.equal(
    permissionHint('Requires read access to "/x"', [], "file:///x/actors/bank.ts", () => tasks),
    undefined,
  );
});

Deno.test("permissionHint: for a task run through tasks/launch.ts, the line is the launcher's child, with the network the command line names", () => {
  const tasks = {
    student:
      "deno run --allow-run=deno tasks/launch.ts --allow-read=. --allow-write=. actors/student.ts",
  };
  const args = [
    "enroll",
    "--sid",
    "1155123456",
    "--ca",
    "10.0.0.1:9335",
    "--ca-cert",
    "/tmp/r.cer",
  ];
  assert.equal(
    permissionHint(
      'Cannot read the CA root certificate: Requires read access to "/tmp/r.cer"',
      args,
      "file:///home/me/lab/actors/student.ts",
      () => tasks,
    )?.split("\n").at(-1),
    "  deno run '--allow-net=127.0.0.1,localhost,[::1],10.0.0.1' --allow-read=.,/tmp/r.cer --allow-write=. actors/student.ts enroll --sid 1155123456 --ca 10.0.0.1:9335 --ca-cert /tmp/r.cer",
  );
});
