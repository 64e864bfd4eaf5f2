/**
 * session-key-sniff: on the path (Trudy as a real process) and passive (a real capture on lo with
 * dumpcap, read back with tshark). Seed mode: the key crosses the wire in the clear at STEP 5 and
 * Trudy's forged message | HMAC is printed by Blackboard. Default: no key on the wire, and a message
 * forged under a guessed key is refused.
 */

import assert from "node:assert/strict";
import { sniffCapture } from "../../lib/trudy/mod.ts";
import { blackboardProtocol, openSeedSession, openSession } from "../../lib/blackboard/mod.ts";
import { Capture } from "../../lib/wireshark/mod.ts";
import { waitFor } from "../../lib/runtime/mod.ts";
import { constantTimeEqual, fromHex, hmacSha256, toBytes } from "../../lib/crypto/mod.ts";
import { identity, startBlackboard } from "../_fixtures/blackboard.ts";
import { ACTOR_PERMISSIONS, memoryLog, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { blackboardOnThePath, printedVerdict } from "../_fixtures/trudy.ts";

const SID = "1155000501";
const FORGED = "Trudy deserves full marks (signed: the student)";

Deno.test("trudy session-key-sniff on the path succeeds against seed mode: Blackboard prints the forgery", async () => {
  await using rig = await blackboardOnThePath("session-key-sniff", SID, "seed", [
    "--settle-ms",
    "500",
  ]);
  const { bb, trudy } = rig;
  const session = await openSeedSession(rig.session);
  await session.send("my own message");
  await trudy.process.waitFor(/^ATTACK /m);
  session.close();
  const r = await trudy.result();
  assert.equal(r.code, 0, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "SUCCEEDED");
  assert.equal(verdict.reason, "sniffed-key-forgery-accepted");
  // Acceptance was judged from --settle-ms of silence.
  assert.match(verdict.detail, / within 500 ms /);
  // What Blackboard printed: Trudy's forgery first (injected before the student spoke), then the
  // student's own message.
  assert.deepEqual(bb.printed, [
    `Message from ${SID}: ${FORGED}`,
    `Message from ${SID}: my own message`,
  ]);
  assert.match(
    r.stderr,
    /STEP 5 the student sent the decrypted session key back IN THE CLEAR: [0-9a-f]{64}/,
  );
});

Deno.test("trudy session-key-sniff on the path fails against the default: no key, the forgery is refused", async () => {
  await using rig = await blackboardOnThePath("session-key-sniff", SID, "default");
  const { bb, trudy } = rig;
  using session = await openSession(rig.session);
  // Trudy's forgery went in first; Blackboard refused it and closed the session.
  await assert.rejects(session.send("my own message"));
  const r = await trudy.result();
  assert.equal(r.code, 3, r.stderr);
  const verdict = printedVerdict(r.stdout);
  assert.equal(verdict.outcome, "FAILED");
  assert.equal(verdict.reason, "mac-refused");
  // The default records are AES-GCM: Trudy cannot read Blackboard's sealed refusal, she sees it
  // end the session right after her forgery.
  assert.match(
    verdict.detail,
    /forged under a guessed key: Blackboard (closed the session right after Trudy's frame|sent a sealed record Trudy cannot open)/,
  );
  // Blackboard's own words, in its log: the guessed key fails the tag.
  await waitFor(
    () => bb.lines.some((l) => /Record 0 refused: AES-GCM tag does not verify \(altered\)/.test(l)),
    { what: "Blackboard's refusal of the forgery", timeoutMs: 5000 },
  );
  assert.deepEqual(bb.printed, []);
  assert.doesNotMatch(r.stderr, /IN THE CLEAR/);
});

/** Captures one student session with Blackboard (seed or default) on lo; returns the pcapng. */
async function captureSession(
  pki: TestPki,
  dir: string,
  protocol: "seed" | "default",
): Promise<{ file: string; port: number }> {
  const student = await pki.student(protocol === "seed" ? SID : "1155000502");
  await using bb = await startBlackboard(pki, { protocol });
  // Capture is part of the test: a failure to capture fails it (we run as root).
  const cap = await Capture.start({ ports: [bb.addr.port], workDir: `${dir}/${protocol}-work` });
  try {
    const { log } = memoryLog("student");
    const id = await identity(student.home);
    if (protocol === "seed") {
      const s = await openSeedSession({ blackboard: bb.addr, identity: id, log });
      await s.send("first captured message");
      await s.send("second captured message");
      await waitFor(() => bb.printed.length >= 2, {
        what: "Blackboard to print both messages",
        timeoutMs: 2000,
      });
      s.close();
    } else {
      using s = await openSession({ blackboard: bb.addr, identity: id, log });
      await s.send("first captured message");
    }
    assert.equal(bb.printed.length, protocol === "seed" ? 2 : 1);
  } finally {
    await cap.stop();
  }
  const file = `${dir}/${protocol}.pcapng`;
  await cap.finish(file);
  return { file, port: bb.addr.port };
}

Deno.test("trudy session-key-sniff --pcap: a seed capture gives the key and a valid forgery; a default capture holds no key", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir("lab-trudy-pcap-");

  // Seed mode.
  const seed = await captureSession(pki, dir.path, "seed");
  const { log, lines } = memoryLog("Trudy");
  const verdict = await sniffCapture({ pcap: seed.file, port: seed.port, log, message: FORGED });
  assert.equal(verdict.succeeded, true, verdict.detail);
  assert.equal(verdict.reason, "key-in-capture");
  assert.deepEqual(verdict.verified, { valid: 2, total: 2 });
  assert.equal(verdict.sessionKey?.length, 32);
  // The forgery is a valid seedMessage: its HMAC is the session key's over the text.
  const forged = blackboardProtocol.decode(verdict.forged!);
  assert.equal(forged.type, "seedMessage");
  assert.ok(
    forged.type === "seedMessage" &&
      constantTimeEqual(forged.hmac, await hmacSha256(verdict.sessionKey!, toBytes(FORGED))),
  );
  assert.match(lines.join("\n"), /captured message 'second captured message': HMAC verifies/);
  // The same through the CLI, Blackboard's port found in the capture: the printed key is the one
  // found.
  const cli = await runActor("actors/trudy.ts", [
    "session-key-sniff",
    "--pcap",
    seed.file,
  ], { permissions: [...ACTOR_PERMISSIONS, "--allow-run=tshark"] });
  assert.equal(cli.code, 0, cli.stderr);
  const seedVerdict = printedVerdict(cli.stdout);
  assert.equal(seedVerdict.outcome, "SUCCEEDED");
  assert.equal(seedVerdict.reason, "key-in-capture");
  // Whose key, from which stream, and how many captured messages it verifies.
  assert.match(seedVerdict.detail, new RegExp(` student ${SID} from STEP 5 of TCP stream \\d+ `));
  assert.match(seedVerdict.detail, / 2 of 2 captured messages verify /);
  const printed = /IN THE CLEAR: ([0-9a-f]{64})/.exec(cli.stderr)?.[1];
  assert.ok(printed && constantTimeEqual(fromHex(printed), verdict.sessionKey!));
  assert.match(cli.stderr, new RegExp(`1 TCP connection to Blackboard \\(port ${seed.port}\\)`));

  // Default mode: no key anywhere in the capture.
  const def = await captureSession(pki, dir.path, "default");
  const r = await runActor("actors/trudy.ts", [
    "session-key-sniff",
    "--pcap",
    def.file,
    "--port",
    String(def.port),
  ], { permissions: [...ACTOR_PERMISSIONS, "--allow-run=tshark"] });
  assert.equal(r.code, 3, r.stderr);
  const defVerdict = printedVerdict(r.stdout);
  assert.equal(defVerdict.outcome, "FAILED");
  assert.equal(defVerdict.reason, "no-key-in-capture");
  // What the capture's connections carried instead.
  assert.ok(
    defVerdict.detail.includes(
      `: 1 connection to port ${def.port} carry request, confirm, sealed, sessionKey, ready `,
    ),
    defVerdict.detail,
  );
});
