/**
 * message-replay, Trudy as a real process between a student and Blackboard: the first step-6
 * message goes twice. Seed mode: Blackboard prints it twice. Default: refused by sequence number.
 */

import assert from "node:assert/strict";
import { openSeedSession, openSession } from "../../lib/blackboard/mod.ts";
import { PeerRefusedError } from "../../lib/wire/mod.ts";
import { waitFor } from "../../lib/runtime/mod.ts";
import { blackboardOnThePath, printedVerdict } from "../_fixtures/trudy.ts";

const SID = "1155000401";

Deno.test("trudy message-replay succeeds against seed mode: Blackboard prints the message twice", async () => {
  await using rig = await blackboardOnThePath("message-replay", SID, "seed", [
    "--settle-ms",
    "500",
  ]);
  const { bb, trudy } = rig;
  const session = await openSeedSession(rig.session);
  await session.send("pay me once");
  // Trudy judges while the session is open; then the student leaves.
  await trudy.process.waitFor(/^ATTACK /m);
  session.close();
  const r = await trudy.result();
  assert.equal(r.code, 0, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "SUCCEEDED");
  assert.equal(verdict.reason, "copy-accepted");
  // What was replayed, and that acceptance was judged from --settle-ms of silence.
  assert.match(verdict.detail, / message 'pay me once' \| HMAC: /);
  assert.match(verdict.detail, / within 500 ms /);
  assert.deepEqual(bb.printed, [
    `Message from ${SID}: pay me once`,
    `Message from ${SID}: pay me once`,
  ]);
  assert.match(r.stderr, /STEP 6 saw the student's message 'pay me once' \| HMAC .*sent again/);
});

Deno.test("trudy message-replay fails against the default: the copy's sequence number is refused", async () => {
  await using rig = await blackboardOnThePath("message-replay", SID, "default");
  const { bb, trudy } = rig;
  using session = await openSession(rig.session);
  await session.send("pay me once");
  await assert.rejects(
    session.send("after the replay"),
    (err: Error) => err instanceof PeerRefusedError || /closed/.test(err.message),
  );
  const r = await trudy.result();
  assert.equal(r.code, 3, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "replay-refused");
  // The record replayed, then how Trudy knew: the default's refusal is sealed (AES-GCM), so she
  // cannot read it; she sees Blackboard end the session right after her copy.
  assert.match(
    verdict.detail,
    / record 0: Blackboard (closed the session right after Trudy's frame|sent a sealed record Trudy cannot open)/,
  );
  // What Blackboard itself said, in its log: the copy's sequence number.
  await waitFor(
    () => bb.lines.some((l) => /sequence number 0, expected 1 \(replayed or reordered\)/.test(l)),
    { what: "Blackboard's refusal of the copy", timeoutMs: 5000 },
  );
  assert.deepEqual(bb.printed, [`Message from ${SID}: pay me once`]);
});
