/**
 * Trudy's verdict output: the verdict line, then its reason code on a line of its own; a run with
 * no victim ends with the `no-victim` code. And how she judges a refusal she cannot read (the
 * default Blackboard's sealed records), whichever end of the session she reads first.
 */

import assert from "node:assert/strict";
import {
  BlackboardObserver,
  reasonLine,
  SEALED_ACK_BYTES,
  type Verdict,
  verdictLine,
  verdictStatus,
} from "../../lib/trudy/mod.ts";
import { blackboardProtocol, sessionProtocol } from "../../lib/blackboard/mod.ts";
import {
  aesGcmEncrypt,
  importAesGcmKey,
  randomBytes,
  sequenceNonce,
} from "../../lib/crypto/mod.ts";
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

/** Blackboard's default records as they pass Trudy: sealed, so she sees only their sizes. */
const sealed = (seq: number, bytes: number) =>
  blackboardProtocol.encode("sealed", { seq, ciphertext: new Uint8Array(bytes) });
/** An acknowledgement ("received"), and an error with a reason, as the record layer seals them. */
const ack = (seq: number) => sealed(seq, SEALED_ACK_BYTES);
const error = (seq: number) => sealed(seq, 60);

/** Drives Blackboard's observer through one default session after Trudy's frame went in. */
async function judged(
  frames: [Direction, Uint8Array][],
  ends: Direction[],
  answersBefore = 0,
): Promise<string | undefined> {
  const observer = new BlackboardObserver(memoryLog("trudy").log, 60_000);
  observer.answersBefore = answersBefore;
  observer.watch.arm();
  for (const [direction, frame] of frames) await observer.observe(direction, frame);
  for (const direction of ends) observer.ended(direction);
  const result = observer.watch.result;
  observer.watch.closed(); // stops the settle clock
  return result?.kind === "refused" ? result.reason : result?.kind;
}

Deno.test("trudy's judgement of a sealed refusal: Blackboard's answer to her frame longer than an acknowledgement, then its end, is a refusal whoever is seen to stop first", async () => {
  // What the record layer seals: an acknowledgement is SEALED_ACK_BYTES; an error, even with an
  // empty reason, is longer.
  const key = await importAesGcmKey(randomBytes(32));
  const seal = async (m: Uint8Array) =>
    (await aesGcmEncrypt(key, sequenceNonce(0), m, new Uint8Array())).length;
  assert.equal(await seal(sessionProtocol.encode("received", {})), SEALED_ACK_BYTES);
  assert.ok(await seal(sessionProtocol.encode("error", { reason: "" })) > SEALED_ACK_BYTES);

  // session-key-sniff: the student's own message went through, Blackboard answered her forged
  // record with an error and closed.
  const refusal: [Direction, Uint8Array][] = [["toServer", error(0)], ["toClient", error(0)]];
  assert.match(
    (await judged(refusal, ["toClient", "toServer"]))!,
    /^Blackboard sent a sealed record Trudy cannot open .*, then closed the session before the student did$/,
  );
  // The same session with the student's end read first (a loaded machine): still a refusal.
  assert.match(
    (await judged(refusal, ["toServer", "toClient"]))!,
    /^Blackboard answered Trudy's frame with a sealed record of 60 bytes, longer than an acknowledgement's 17 /,
  );
  // A Blackboard that took her frame acknowledged it (then refused the student's own record 0):
  // not a refusal of her frame when the student is seen to stop first.
  const taken: [Direction, Uint8Array][] = [
    ["toServer", error(0)],
    ["toClient", ack(0)],
    ["toClient", error(1)],
  ];
  assert.equal(await judged(taken, ["toServer", "toClient"]), undefined);
  // message-replay: the original is answered first, then the copy.
  const replayRefused: [Direction, Uint8Array][] = [["toClient", ack(0)], ["toClient", error(1)]];
  assert.match(
    (await judged(replayRefused, ["toServer", "toClient"], 1))!,
    /^Blackboard answered Trudy's frame with a sealed record of 60 bytes/,
  );
  const replayTaken: [Direction, Uint8Array][] = [["toClient", ack(0)], ["toClient", ack(1)]];
  assert.equal(await judged(replayTaken, ["toServer", "toClient"], 1), undefined);
  // Blackboard closing before the student's next message went through is a refusal, as before.
  assert.match(
    (await judged([], ["toClient", "toServer"]))!,
    /^Blackboard closed the session right after Trudy's frame/,
  );
});
