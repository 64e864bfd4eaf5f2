/**
 * Trudy's verdict output: the verdict line, then its reason code on a line of its own; a run with
 * no victim ends with the `no-victim` code. And how she judges a refusal she cannot read (the
 * default Blackboard's sealed records), whichever end of the session she reads first.
 */

import assert from "node:assert/strict";
import {
  BlackboardObserver,
  reasonLine,
  type Verdict,
  verdictLine,
  verdictStatus,
} from "../../lib/trudy/mod.ts";
import { blackboardProtocol } from "../../lib/blackboard/mod.ts";
import type { Direction } from "../../lib/net/mod.ts";
import { printedVerdict, startTrudy } from "../_fixtures/trudy.ts";
import { memoryLog } from "../_fixtures/helpers.ts";

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

/** Blackboard's default records as they pass Trudy: sealed, so she can only count them. */
const sealed = (seq: number) =>
  blackboardProtocol.encode("sealed", { seq, ciphertext: new Uint8Array(40) });

/** Drives Blackboard's observer through one default session after Trudy's frame went in. */
async function judged(
  frames: [Direction, Uint8Array][],
  ends: Direction[],
): Promise<string | undefined> {
  const observer = new BlackboardObserver(memoryLog("trudy").log, 60_000);
  observer.watch.arm();
  for (const [direction, frame] of frames) await observer.observe(direction, frame);
  for (const direction of ends) observer.ended(direction);
  const result = observer.watch.result;
  observer.watch.closed(); // stops the settle clock
  return result?.kind === "refused" ? result.reason : result?.kind;
}

Deno.test("trudy's judgement of a sealed refusal: one sealed record then the end is a refusal whoever is seen to stop first; two are not", async () => {
  // The student's own message went through, Blackboard answered with one sealed record and closed.
  const refusal: [Direction, Uint8Array][] = [["toServer", sealed(0)], ["toClient", sealed(0)]];
  assert.match(
    (await judged(refusal, ["toClient", "toServer"]))!,
    /^Blackboard sent a sealed record Trudy cannot open .*, then closed the session before the student did$/,
  );
  // The same session with the student's end read first (a loaded machine): still a refusal.
  assert.match(
    (await judged(refusal, ["toServer", "toClient"]))!,
    /^Blackboard answered Trudy's frame with one sealed record .*, its last, and closed the session/,
  );
  // Blackboard took her frame ("received") and then answered the student's record too: not judged
  // a refusal when the student is seen to stop first.
  const answeredTwice: [Direction, Uint8Array][] = [
    ["toServer", sealed(0)],
    ["toClient", sealed(0)],
    ["toClient", sealed(1)],
  ];
  assert.equal(await judged(answeredTwice, ["toServer", "toClient"]), undefined);
  // Blackboard closing before the student's next message went through is a refusal, as before.
  assert.match(
    (await judged([], ["toClient", "toServer"]))!,
    /^Blackboard closed the session right after Trudy's frame/,
  );
});
