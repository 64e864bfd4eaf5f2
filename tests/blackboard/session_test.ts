/**
 * Steps 3–6 end to end on real sockets, and the step-6 record layer under attack: replayed,
 * reordered, altered records; the seed mode that accepts what the default refuses.
 */

import assert from "node:assert/strict";
import {
  blackboardProtocol,
  CleartextFrameError,
  openSeedSession,
  openSession,
} from "../../lib/blackboard/mod.ts";
import { PeerRefusedError } from "../../lib/wire/mod.ts";
import { memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";
import { startMessageReplay } from "../../lib/trudy/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { waitFor } from "../../lib/runtime/mod.ts";
import { identity, listFiles, startBlackboard } from "../_fixtures/blackboard.ts";

const SID = "1155000101";

Deno.test("blackboard: a student sends authenticated messages (AES-GCM by default, then MAC-only when both sides allow it)", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki, { records: "hmac" });
  const { log, lines } = memoryLog("student");
  const id = await identity(student.home);

  {
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    await session.send("hello Blackboard");
    await session.send("second message");
  }
  {
    using session = await openSession({ blackboard: bb.addr, identity: id, log, records: "hmac" });
    await session.send("MAC-only one");
  }
  assert.deepEqual(bb.printed, [
    `Message from ${SID}: hello Blackboard`,
    `Message from ${SID}: second message`,
    `Message from ${SID}: MAC-only one`,
  ]);
  const text = bb.lines.join("\n");
  for (const step of [3, 4, 5, 6]) assert.match(text, new RegExp(`STEP ${step} `));
  assert.match(text, /not revoked \(CRL #\d+\)/);
  assert.match(
    text,
    /STEP 4 ephemeral X25519 share for \d+ with Blackboard's certificate and the CA's CRL #\d+ \(stapled\)/,
  );
  assert.match(text, /STEP 5 .*\(AES-GCM records with sequence numbers\)/);
  assert.match(text, /STEP 5 .*\(HMAC-SHA256, MAC only records with sequence numbers\)/);
  assert.match(text, /STEP 6 message from \d+: AES-GCM tag and sequence number valid/);
  assert.match(text, /STEP 6 message from \d+: HMAC and sequence number valid/);
  const student_ = lines.join("\n");
  assert.match(student_, /STEP 4 Blackboard's certificate \(CN=blackboard\)/);
  assert.match(
    student_,
    /not revoked \(stapled CRL #\d+\); session key agreed by ephemeral X25519/,
  );
  assert.match(student_, /STEP 6 message sent AES-GCM sealed, Blackboard confirmed it/);
});

Deno.test("blackboard: the session key never crosses the wire in the default mode", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const frames: Uint8Array[] = [];
  await using relay = startRelay({
    upstream: bb.addr,
    log: memoryLog("relay").log,
    onFrame: (direction, f) => {
      if (direction === "toServer") frames.push(f);
      return f;
    },
  });
  const { log } = memoryLog("student");
  using session = await openSession({
    blackboard: relay.addr,
    identity: await identity(student.home),
    log,
  });
  await session.send("secret text");
  const types = frames.map((f) => blackboardProtocol.decode(f).type);
  assert.deepEqual(types, ["request", "confirm", "sealed"]);
  // By default (AES-GCM records) the message itself is not on the wire either.
  const all = new TextDecoder("latin1").decode(new Uint8Array(frames.flatMap((f) => [...f])));
  assert.ok(!all.includes("secret text"));
});

Deno.test("blackboard: a replayed step-6 record is refused, the original was accepted", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  // Trudy sends the first record twice (lib/trudy/message_replay.ts).
  await using relay = startMessageReplay({ blackboard: bb.addr, log: memoryLog("Trudy").log });
  const { log } = memoryLog("student");
  using session = await openSession({
    blackboard: { hostname: "127.0.0.1", port: relay.port },
    identity: await identity(student.home),
    log,
  });
  await session.send("pay me once");
  await assert.rejects(
    session.send("after the replay"),
    (err: Error) => err instanceof PeerRefusedError || /closed/.test(err.message),
  );
  assert.deepEqual(bb.printed, [`Message from ${SID}: pay me once`]);
  assert.match(bb.lines.join("\n"), /sequence number 0, expected 1 \(replayed or reordered\)/);
  const verdict = await relay.nextVerdict();
  assert.equal(verdict.succeeded, false);
  assert.equal(verdict.reason, "replay-refused");
  // The refusal is sealed (AES-GCM): Trudy judged it from Blackboard ending the session.
  assert.match(
    verdict.detail,
    /Blackboard (closed the session|sent a sealed record Trudy cannot open)/,
  );
});

Deno.test("blackboard: a step-6 message with one flipped bit is refused", async () => {
  for (const records of ["hmac", "aes-gcm"] as const) {
    const encrypt = records === "aes-gcm";
    await using pki = await TestPki.start();
    const student = await pki.student(SID);
    await using bb = await startBlackboard(pki, { records: "hmac" });
    await using relay = startRelay({
      upstream: bb.addr,
      log: memoryLog("relay").log,
      onFrame: (direction, f, _session, i) => {
        if (direction !== "toServer" || i !== 2) return f;
        const g = f.slice();
        // A bit inside the message text (or ciphertext), well before the MAC.
        g[g.length - (encrypt ? 20 : 40)]! ^= 0x01;
        return g;
      },
    });
    const { log } = memoryLog("student");
    using session = await openSession({
      blackboard: relay.addr,
      identity: await identity(student.home),
      log,
      records,
    });
    await assert.rejects(session.send("transfer 100 to Alice"), (err: Error) => {
      assert.ok(err instanceof PeerRefusedError, err.message);
      assert.match(err.message, encrypt ? /AES-GCM tag does not verify/ : /HMAC does not verify/);
      return true;
    });
    assert.deepEqual(bb.printed, []);
  }
});

Deno.test("blackboard: reordered records (chunks swapped on the wire) are refused", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  let held: Uint8Array | undefined;
  // 0 request, 1 confirm, 2 uploadBegin, 3 chunk 0, 4 chunk 1: send 4 before 3.
  await using relay = startRelay({
    upstream: bb.addr,
    log: memoryLog("relay").log,
    onFrame: (direction, f, _session, i) => {
      if (direction !== "toServer") return f;
      if (i === 3) {
        held = f;
        return null;
      }
      if (i === 4) return [f, held!];
      return f;
    },
  });
  await using dir = await tempDir();
  const path = `${dir.path}/report.bin`;
  await Deno.writeFile(path, crypto.getRandomValues(new Uint8Array(60_000)));
  const { log } = memoryLog("student");
  using session = await openSession({
    blackboard: relay.addr,
    identity: await identity(student.home),
    log,
  });
  await assert.rejects(
    session.upload(path, { chunkSize: 16 * 1024, stateDir: `${dir.path}/state` }),
    (err: Error) => {
      assert.match(err.message, /sequence number 2, expected 1 \(replayed or reordered\)/);
      return true;
    },
  );
  assert.deepEqual(await listFiles(`${bb.dataDir}/reports`), []);
});

Deno.test("blackboard: seed mode echoes the key in the clear and accepts a replayed message", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki, { protocol: "seed" });
  // Trudy sends the first seedMessage twice (lib/trudy/message_replay.ts).
  await using relay = startMessageReplay({ blackboard: bb.addr, log: memoryLog("Trudy").log });
  const { log, lines } = memoryLog("student");
  const session = await openSeedSession({
    blackboard: { hostname: "127.0.0.1", port: relay.port },
    identity: await identity(student.home),
    log,
  });
  await session.send("seed message");
  // Let Blackboard read both copies before the connection closes.
  await waitFor(() => bb.printed.length >= 2, {
    what: "Blackboard to print both copies",
    timeoutMs: 2000,
  });
  session.close();
  assert.deepEqual(bb.printed, [
    `Message from ${SID}: seed message`,
    `Message from ${SID}: seed message`,
  ]);
  // 0 seedRequest, 1 seedKeyEcho, 2 seedMessage (replayed): the key crossed the wire.
  const verdict = await relay.nextVerdict();
  assert.equal(verdict.succeeded, true, verdict.detail);
  assert.deepEqual(verdict.seen.filter((t) => t.startsWith("toServer")), [
    "toServer seedRequest",
    "toServer seedKeyEcho",
    "toServer seedMessage",
  ]);
  assert.equal(verdict.sessionKey?.length, 32);
  assert.match(lines.join("\n"), /IN THE CLEAR/);
  // The default Blackboard refuses a seed student, and the other way round.
  await using strict = await startBlackboard(pki);
  await assert.rejects(
    openSeedSession({ blackboard: strict.addr, identity: await identity(student.home), log }),
    /Blackboard speaks the default protocol/,
  );
  await assert.rejects(
    openSession({ blackboard: bb.addr, identity: await identity(student.home), log }),
    /seed mode: the student must use --protocol seed/,
  );
});

Deno.test("blackboard: the default refuses MAC-only records; --records hmac allows them", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const { log } = memoryLog("student");
  await assert.rejects(
    openSession({
      blackboard: bb.addr,
      identity: await identity(student.home),
      log,
      records: "hmac",
    }),
    (err: Error) => {
      assert.ok(err instanceof PeerRefusedError, err.message);
      assert.match(err.message, /^Blackboard requires AES-GCM records: MAC-only records/);
      return true;
    },
  );
  using ok = await openSession({
    blackboard: bb.addr,
    identity: await identity(student.home),
    log,
  });
  await ok.send("fine");
  assert.deepEqual(bb.printed, [`Message from ${SID}: fine`]);
  // Blackboard allowing MAC-only records takes them.
  await using teaching = await startBlackboard(pki, { records: "hmac" });
  using mac = await openSession({
    blackboard: teaching.addr,
    identity: await identity(student.home),
    log,
    records: "hmac",
  });
  await mac.send("readable on the wire");
  assert.deepEqual(teaching.printed, [`Message from ${SID}: readable on the wire`]);
});

Deno.test("blackboard serves several students at once", async () => {
  await using pki = await TestPki.start();
  const sids = ["1155000111", "1155000112", "1155000113", "1155000114"];
  const students = await Promise.all(sids.map((sid) => pki.student(sid)));
  await using bb = await startBlackboard(pki, { records: "hmac" });
  await using dir = await tempDir();
  await Promise.all(students.map(async (s, i) => {
    const { log } = memoryLog(s.sid);
    using session = await openSession({
      blackboard: bb.addr,
      identity: await identity(s.home),
      log,
      records: i % 2 === 1 ? "aes-gcm" : "hmac",
    });
    await session.send(`hello from ${s.sid}`);
    const path = `${dir.path}/r${i}.bin`;
    await Deno.writeFile(path, randomBytes(700_000 + i));
    const receipt = await session.upload(path, { stateDir: `${dir.path}/state${i}` });
    assert.equal(receipt.stored, `reports/${s.sid}/r${i}.bin`);
    assert.equal(receipt.size, 700_000 + i);
  }));
  assert.deepEqual(
    bb.printed.filter((l) => l.startsWith("Message")).sort(),
    sids.map((sid) => `Message from ${sid}: hello from ${sid}`),
  );
  assert.deepEqual(
    await listFiles(`${bb.dataDir}/reports`),
    sids.map((sid, i) => `${sid}/r${i}.bin`),
  );
});

Deno.test("blackboard: a message with a bidi override (U+202E) or a control character is refused, never printed", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  const { log } = memoryLog("student");
  const id = await identity(student.home);
  {
    await using bb = await startBlackboard(pki);
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    // The student's own check: nothing is sent.
    for (const text of ["grade: \u202eA+", "a\u2066b", "bell\u0007", "line\nbreak"]) {
      await assert.rejects(session.send(text), (err: unknown) => {
        assert.ok(err instanceof RangeError, `${JSON.stringify(text)}: ${err}`);
        assert.match(err.message, /control characters or bidirectional overrides/);
        return true;
      });
    }
    // Sent anyway, raw: Blackboard refuses it (inside an authenticated record) and prints nothing.
    await session.secure.send("message", { text: "invoice_\u202efdp.exe" });
    await assert.rejects(session.secure.receive(["received"]), (err: unknown) => {
      assert.ok(err instanceof PeerRefusedError, String(err));
      assert.match(
        err.message,
        /control characters or bidirectional overrides \(such as U\+202E\)/,
      );
      return true;
    });
    assert.deepEqual(bb.printed, []);
  }
  // Seed mode keeps the seeds' flaws, not this one: the message is refused too.
  {
    await using bb = await startBlackboard(pki, { protocol: "seed" });
    const session = await openSeedSession({ blackboard: bb.addr, identity: id, log });
    await session.send("invoice_\u202efdp.exe");
    await waitFor(() => bb.lines.some((l) => /refused SID .*bidirectional overrides/.test(l)), {
      what: "Blackboard's refusal",
      timeoutMs: 5000,
    });
    session.close();
    assert.deepEqual(bb.printed, []);
  }
});

Deno.test("after the handshake a cleartext error is a broken connection: the student is not told 'refused' for a message Blackboard printed", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  // Someone on the path replaces Blackboard's confirmation with a cleartext refusal.
  let forged = 0;
  await using relay = startRelay({
    upstream: bb.addr,
    log: memoryLog("relay").log,
    onFrame: (direction, f) => {
      const type = blackboardProtocol.decode(f).type;
      if (direction === "toClient" && (type === "sealed" || type === "record") && forged === 0) {
        forged++;
        return blackboardProtocol.encode("error", { reason: "Message refused: HMAC mismatch" });
      }
      return f;
    },
  });
  const { log } = memoryLog("student");
  using session = await openSession({
    blackboard: relay.addr,
    identity: await identity(student.home),
    log,
  });
  await assert.rejects(session.send("my report is attached"), (err: unknown) => {
    assert.ok(err instanceof CleartextFrameError, String(err));
    assert.ok(!(err instanceof PeerRefusedError));
    assert.equal(err.received, "error");
    assert.match(
      err.message,
      /^Connection broken: a cleartext error arrived after the handshake \('Message refused: HMAC mismatch'\); only authenticated records count/,
    );
    return true;
  });
  assert.equal(forged, 1);
  // Blackboard had printed it; the student told Blackboard, inside the session, why it left.
  assert.deepEqual(bb.printed, [`Message from ${SID}: my report is attached`]);
  await waitFor(
    () => bb.lines.some((l) => /ended the session: Connection broken: a cleartext error/.test(l)),
    { what: "Blackboard's line about the student's authenticated refusal", timeoutMs: 5000 },
  );
});

Deno.test("after the handshake Blackboard refuses a cleartext frame from the student inside a record", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const { log } = memoryLog("student");
  using session = await openSession({
    blackboard: bb.addr,
    identity: await identity(student.home),
    log,
  });
  await session.secure.stream.writeFrame(
    blackboardProtocol.encode("error", { reason: "student \u001b[2Jleaves" }),
  );
  // The answer is an authenticated refusal: it reads as the session's own `error`.
  await assert.rejects(session.secure.receive(["received"]), (err: unknown) => {
    assert.ok(err instanceof PeerRefusedError, String(err));
    assert.match(
      err.message,
      /^Connection broken: a cleartext error arrived after the handshake \('student \\u\{1b\}\[2Jleaves'\)/,
    );
    return true;
  });
  assert.ok(!bb.lines.some((l) => l.includes("\u001b")));
});
