/**
 * The Blackboard message tables and record layer in isolation: every message round-trips, every
 * strict prefix and any trailing byte is refused, and records bind sequence number and direction.
 */

import assert from "node:assert/strict";
import {
  blackboardProtocol,
  checkReportName,
  parseRequestLine,
  RecordError,
  RecordLayer,
  reportNameOf,
  requestLine,
  sessionProtocol,
  trafficKeys,
  UploadError,
} from "../../lib/blackboard/mod.ts";
import { type Fields, FrameError, type Protocol } from "../../lib/wire/mod.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";

function sample(fields: Fields): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(fields)) {
    out[name] = kind === "text" ? `${name} é ✓` : kind === "uint" ? 2 ** 40 + 7 : randomBytes(37);
  }
  return out;
}

function roundTrips(
  protocol: Protocol<Record<string, { code: number; label: string; fields: Fields }>>,
) {
  for (const [type, spec] of Object.entries(protocol.messages)) {
    const values = sample(spec.fields);
    // deno-lint-ignore no-explicit-any
    const bytes = protocol.encode(type, values as any);
    assert.deepEqual(protocol.decode(bytes), { type, ...values });
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => protocol.decode(bytes.subarray(0, n)), FrameError, `${type} prefix ${n}`);
    }
    assert.throws(() => protocol.decode(Uint8Array.of(...bytes, 0)), /trailing bytes/);
  }
}

Deno.test("blackboard messages round-trip; prefixes and trailing bytes are refused", () => {
  roundTrips(blackboardProtocol);
  roundTrips(sessionProtocol);
  assert.throws(
    () => blackboardProtocol.decode(Uint8Array.of(0x55)),
    /Unknown Blackboard message type 0x55/,
  );
  // Every message carries a label naming its step for the dissector.
  for (const spec of Object.values(blackboardProtocol.messages)) assert.ok(spec.label.length > 0);
  assert.match(blackboardProtocol.label("seedKeyEcho"), /STEP 5 .*IN THE CLEAR/);
});

Deno.test("the step-3 request line is exactly the seeds' sentence", () => {
  assert.equal(requestLine("1155123456"), "SID:1155123456 requests to upload report !");
  assert.equal(parseRequestLine("SID:1155123456 requests to upload report !"), "1155123456");
  for (
    const bad of [
      "SID:115512345 requests to upload report !",
      "SID:1155123456 requests to upload report !\n",
      "SID: 1155123456 requests to upload report !",
      "sid:1155123456 requests to upload report !",
    ]
  ) {
    assert.equal(parseRequestLine(bad), undefined, bad);
  }
});

Deno.test("records: in order accepted; replayed, reflected or altered refused", async () => {
  for (const encrypt of [false, true]) {
    const key = randomBytes(32);
    const th = randomBytes(32);
    const student = new RecordLayer(
      await trafficKeys(key, th, "student", encrypt),
      "student",
      encrypt,
    );
    const board = new RecordLayer(
      await trafficKeys(key, th, "blackboard", encrypt),
      "blackboard",
      encrypt,
    );
    const r0 = await student.seal(new TextEncoder().encode("first"));
    const r1 = await student.seal(new TextEncoder().encode("second"));
    assert.equal(new TextDecoder().decode(await board.open(r0)), "first");
    await assert.rejects(board.open(r0), RecordError); // replay
    const altered = r1.slice();
    altered[altered.length - 3]! ^= 0x80;
    await assert.rejects(board.open(altered), /does not verify \(altered\)/);
    // A refused record does not advance the sequence: the genuine one still opens.
    assert.equal(new TextDecoder().decode(await board.open(r1)), "second");
    // A student's own record reflected back to it is refused (direction is under the MAC).
    const fresh = async () =>
      new RecordLayer(await trafficKeys(key, th, "student", encrypt), "student", encrypt);
    const reflected = await (await fresh()).seal(new Uint8Array(3));
    await assert.rejects((await fresh()).open(reflected), /does not verify/);
    // Another handshake (another transcript hash) gives other keys.
    const other = new RecordLayer(
      await trafficKeys(key, randomBytes(32), "blackboard", encrypt),
      "blackboard",
      encrypt,
    );
    await assert.rejects(other.open(r0), /does not verify/);
  }
});

Deno.test("report names: no paths, no hidden files, local names made safe", () => {
  for (const ok of ["report.pdf", "a", "final_report-2.tar.gz"]) {
    assert.equal(checkReportName(ok), ok);
  }
  for (const bad of ["", "../x", "a/b", ".hidden", "x".repeat(101), "a..b", "é.pdf"]) {
    assert.throws(() => checkReportName(bad), UploadError, bad);
  }
  assert.equal(reportNameOf("/tmp/my report (v2).pdf"), "my_report__v2_.pdf");
  assert.equal(reportNameOf("dir/.bashrc"), "report.bashrc");
  for (const p of ["x/../../..", "/a/..", "é"]) checkReportName(reportNameOf(p));
});

Deno.test("report names: a name starting with '-' is refused (an option to the tools that list reports)", () => {
  for (const bad of ["-rf", "--help", "-", "-report.pdf"]) {
    assert.throws(() => checkReportName(bad), (err: unknown) => {
      assert.ok(err instanceof UploadError, `${bad}: ${err}`);
      assert.match(err.message, /not starting with '\.' or '-'/);
      return true;
    });
  }
  // A local file whose name starts with '-' is still uploadable, under a safe name.
  assert.equal(reportNameOf("/tmp/-rf"), "report-rf");
  assert.equal(checkReportName(reportNameOf("--help.pdf")), "report--help.pdf");
  // '-' and '_' inside a name stay allowed; '_' may still start one.
  assert.equal(checkReportName("_draft-2.pdf"), "_draft-2.pdf");
});
