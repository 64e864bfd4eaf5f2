/**
 * Step 6's record layer (lib/blackboard/protocol.ts) one refusal at a time, each with its reason:
 * a replayed record (refused by its sequence number, before its MAC is looked at), an altered one
 * (by its MAC or AES-GCM tag), and a record of the other kind than the session agreed.
 */

import assert from "node:assert/strict";
import { RecordError, RecordLayer, trafficKeys } from "../../lib/blackboard/mod.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";

const utf8 = new TextEncoder();

async function layers(encrypt: boolean): Promise<[RecordLayer, RecordLayer]> {
  const key = randomBytes(32);
  const th = randomBytes(32);
  return [
    new RecordLayer(await trafficKeys(key, th, "student", encrypt), "student", encrypt),
    new RecordLayer(await trafficKeys(key, th, "blackboard", encrypt), "blackboard", encrypt),
  ];
}

async function refused(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RecordError, String(err));
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("records: a replay is refused by its sequence number, in both record kinds", async () => {
  for (const encrypt of [false, true]) {
    const [student, board] = await layers(encrypt);
    const r0 = await student.seal(utf8.encode("first"));
    await board.open(r0);
    await refused(
      board.open(r0),
      "Record refused: sequence number 0, expected 1 (replayed or reordered)",
    );
  }
});

Deno.test("records: one bit altered is refused by the HMAC, or by the AES-GCM tag", async () => {
  for (const encrypt of [false, true]) {
    const [student, board] = await layers(encrypt);
    const r0 = await student.seal(utf8.encode("first"));
    const altered = r0.slice();
    altered[altered.length - 3]! ^= 0x80;
    await refused(
      board.open(altered),
      encrypt
        ? "Record 0 refused: AES-GCM tag does not verify (altered)"
        : "Record 0 refused: HMAC does not verify (altered)",
    );
    assert.equal(new TextDecoder().decode(await board.open(r0)), "first");
  }
});

Deno.test("records: a record of the other kind than the session's is refused", async () => {
  const [plain] = await layers(false);
  const [, sealedBoard] = await layers(true);
  const [sealed] = await layers(true);
  const [, plainBoard] = await layers(false);
  await refused(
    sealedBoard.open(await plain.seal(utf8.encode("x"))),
    "Expected a step-6 sealed, got record",
  );
  await refused(
    plainBoard.open(await sealed.seal(utf8.encode("x"))),
    "Expected a step-6 record, got sealed",
  );
});
