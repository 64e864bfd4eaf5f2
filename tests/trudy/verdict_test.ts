/**
 * Trudy's verdict output: the verdict line, then its reason code on a line of its own; a run with
 * no victim ends with the `no-victim` code.
 */

import assert from "node:assert/strict";
import { reasonLine, type Verdict, verdictLine, verdictStatus } from "../../lib/trudy/mod.ts";
import { printedVerdict, startTrudy } from "../_fixtures/trudy.ts";

Deno.test("trudy verdict: the sentence on the verdict line, the stable code on the next", () => {
  const failed: Verdict = { succeeded: false, reason: "code-required", detail: "the CA refused" };
  assert.equal(verdictLine(failed), "ATTACK FAILED: the CA refused");
  assert.equal(reasonLine(failed), "[reason: code-required]");
  assert.equal(verdictStatus(failed), 3);
  const won: Verdict = {
    succeeded: true,
    reason: "replay-accepted",
    detail: "Alice took the bait",
  };
  assert.deepEqual(printedVerdict(`${verdictLine(won)}\n${reasonLine(won)}\n`), {
    outcome: "SUCCEEDED",
    detail: "Alice took the bait",
    reason: "replay-accepted",
  });
  assert.equal(verdictStatus(won), 0);
});

Deno.test("trudy verdict: stopped before any victim connected, the reason is no-victim", async () => {
  // Nothing listens on the upstream port: no victim ever comes, Trudy is stopped.
  const trudy = await startTrudy("message-replay", ["--blackboard", "127.0.0.1:9"]);
  const status = await trudy.process.stop("SIGTERM");
  assert.equal(status.code, 3, trudy.process.stderr);
  const verdict = printedVerdict(trudy.process.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "no-victim");
});

Deno.test("trudy --timeout: with no victim she stops by herself, says why, and the reason is no-victim", async () => {
  const trudy = await startTrudy("message-replay", [
    "--blackboard",
    "127.0.0.1:9",
    "--timeout",
    "1",
  ]);
  const status = await trudy.process.status;
  assert.equal(status.code, 3, trudy.process.stderr);
  assert.match(
    trudy.process.stderr,
    /no victim connected in 1 s: Trudy stops \(--timeout SECS to wait longer, 0 to wait until Ctrl-C\)/,
  );
  const verdict = printedVerdict(trudy.process.stdout);
  assert.equal(verdict.reason, "no-victim");
  assert.equal(verdict.detail, "no victim connected in 1 s");
});
