/**
 * How the demo writes (tasks/demo_output.ts): nothing over 100 columns, colour only on a terminal
 * without NO_COLOR, and a summary that fits 100 columns and, with --quiet, 40 lines.
 */

import assert from "node:assert/strict";
import {
  colourise,
  COLUMNS,
  fold,
  QUIET_LINES,
  summaryLines,
  type SummaryRun,
  useColour,
} from "../../tasks/demo_output.ts";

const width = (line: string) => [...line].length;

Deno.test("demo output: a long line folds at spaces under 100 columns, keeping its indentation", () => {
  const long =
    `  PASS  attack-error-injection: default: Alice did not believe the cleartext error, ${"resent the same request; Bob applied the withdrawal exactly once (balance 5.00)"}`;
  const lines = fold(long);
  assert.ok(lines.length > 1);
  for (const l of lines) assert.ok(width(l) <= COLUMNS, l);
  assert.ok(lines.slice(1).every((l) => l.startsWith("    ")), "continued two spaces further in");
  assert.equal(lines.join(" ").replace(/ +/g, " ").trim(), long.replace(/ +/g, " ").trim());
  // A word longer than the line is cut, not left over.
  for (const l of fold(`x ${"y".repeat(250)}`)) assert.ok(width(l) <= COLUMNS);
  assert.deepEqual(fold("short"), ["short"]);
});

Deno.test("demo output: colour on a terminal only, and never under NO_COLOR", () => {
  assert.equal(useColour(true, undefined), true);
  assert.equal(useColour(true, ""), true);
  assert.equal(useColour(true, "1"), false);
  assert.equal(useColour(false, undefined), false);
  const line = "PASS seed: ATTACK SUCCEEDED; default: ATTACK FAILED; FAIL x";
  assert.equal(colourise(line, false), line);
  const coloured = colourise(line, true);
  // deno-lint-ignore no-control-regex
  assert.match(coloured, /\x1b\[32mPASS\x1b\[0m/);
  // deno-lint-ignore no-control-regex
  assert.match(coloured, /\x1b\[31m\x1b\[1mATTACK SUCCEEDED\x1b\[0m/);
  // deno-lint-ignore no-control-regex
  assert.match(coloured, /\x1b\[32m\x1b\[1mATTACK FAILED\x1b\[0m/);
  // deno-lint-ignore no-control-regex
  assert.match(coloured, /\x1b\[31m\x1b\[1mFAIL\x1b\[0m x$/);
  // deno-lint-ignore no-control-regex
  assert.equal(coloured.replace(/\x1b\[[0-9;]*m/g, ""), line);
});

const SCENARIOS = [
  ["1", "upload"],
  ["2", "bank"],
  ["3", "chat-tls13"],
  ["3", "chat-tls12"],
  ...[
    "enrol-impersonation",
    "enrol-code-theft",
    "bank-mitm",
    "bank-replay",
    "session-key-sniff",
    "message-replay",
    "cross-service",
    "crl-rollback",
    "error-injection",
  ].map((a) => ["Trudy", `attack-${a}`]),
];

function runs(failing = 0): SummaryRun[] {
  return SCENARIOS.map(([system, scenario], i) => ({
    system: system!,
    scenario: scenario!,
    checks: Array.from({ length: 6 }, (_, k) => ({
      ok: !(i < failing && k === 0),
      what: `check ${k} of ${scenario}, with a long explanation of what it asserted on the capture`,
    })),
    notes: system === "Trudy"
      ? ["seed: ATTACK SUCCEEDED (x)", "default: ATTACK FAILED: y", "default: ATTACK FAILED: z"]
      : [],
    seconds: 12.3,
  }));
}

Deno.test("demo output: the summary of all 13 runs fits 100 columns and 40 lines", () => {
  const lines = summaryLines(
    runs(),
    "Captures and ladder diagrams: pcap/captures/ (13 .pcapng, 13 .html)",
  );
  assert.ok(lines.length + 3 <= QUIET_LINES, `${lines.length} lines`);
  for (const l of lines) assert.ok(width(l) <= COLUMNS, `${width(l)}: ${l}`);
  assert.match(lines.at(-1)!, /^All 13 runs completed, all 78 checks passed$/);
  assert.ok(lines.some((l) => /attack-bank-mitm .* seed SUCCEEDED, default FAILED ×2/.test(l)));
});

Deno.test("demo output: failed checks are listed in the summary (at most 10), and the last line says FAILED", () => {
  const lines = summaryLines(runs(12), undefined);
  assert.equal(lines.filter((l) => /^ {2}FAIL {2}/.test(l)).length, 10);
  assert.ok(lines.includes("  … and 2 more"));
  assert.ok(lines.some((l) => /^FAILED: upload, bank, /.test(l)), lines.join("\n"));
  for (const l of lines) assert.ok(width(l) <= COLUMNS, l);
});
