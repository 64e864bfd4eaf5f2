/**
 * One vocabulary for the two protocols on every actor: `--protocol default|seed`, with old
 * spellings accepted for one release and a one-line deprecation warning.
 */

import assert from "node:assert/strict";
import {
  parseProtocolMode,
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
