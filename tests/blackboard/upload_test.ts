/**
 * Report uploads (step 6): a 50 MiB report stored with the same SHA-256, a cut connection
 * resumed (across a Blackboard restart), and the uploads Blackboard must refuse with nothing stored.
 */

import assert from "node:assert/strict";
import { CHUNK_SIZE, openSession } from "../../lib/blackboard/mod.ts";
import { PeerRefusedError } from "../../lib/wire/mod.ts";
import { randomBytes, sha256, toHex } from "../../lib/crypto/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { waitFor } from "../../lib/runtime/mod.ts";
import { memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";
import {
  fileSha256,
  identity,
  listFiles,
  startBlackboard,
  writeTestFile,
} from "../_fixtures/blackboard.ts";

const SID = "1155000301";
const MiB = 1024 * 1024;

Deno.test("blackboard: a 50 MiB report is stored under its name with the same SHA-256", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  await using dir = await tempDir();
  const path = `${dir.path}/final report.pdf`;
  await writeTestFile(path, 50 * MiB);
  const digest = await fileSha256(path);

  const { log, lines } = memoryLog("student");
  const progress: number[] = [];
  using session = await openSession({
    blackboard: bb.addr,
    identity: await identity(student.home),
    log,
  });
  const receipt = await session.upload(path, { onProgress: (sent) => progress.push(sent) });
  assert.equal(receipt.stored, `reports/${SID}/final_report.pdf`);
  assert.equal(receipt.size, 50 * MiB);
  assert.equal(receipt.sha256, digest);
  assert.equal(receipt.resumedFrom, 0);
  assert.equal(await fileSha256(`${bb.dataDir}/${receipt.stored}`), digest);
  assert.equal(progress.at(-1), 50 * MiB);
  assert.equal(progress.length, 50 * MiB / CHUNK_SIZE + 1);
  // No partial left behind (only the receipt, kept for a retry whose receipt was lost), and the
  // student's resume state is gone.
  const [receiptFile, ...rest] = await listFiles(bb.dataDir);
  assert.match(receiptFile!, new RegExp(`^receipts/${SID}/[0-9a-f]{32}\\.json$`));
  assert.deepEqual(rest, [`reports/${SID}/final_report.pdf`]);
  assert.deepEqual(await listFiles(`${student.home}/uploads`), []);
  assert.match(
    lines.join("\n"),
    /STEP 6 receipt: stored as reports\/1155000301\/final_report\.pdf/,
  );
  assert.deepEqual(bb.printed, [
    `Report from ${SID}: reports/${SID}/final_report.pdf (${50 * MiB} bytes, SHA-256 ${digest})`,
  ]);

  // The same name again is stored beside it, never over it.
  await Deno.writeFile(`${dir.path}/final report.pdf`, randomBytes(1000));
  const second = await session.upload(path);
  assert.equal(second.stored, `reports/${SID}/final_report-2.pdf`);
  assert.equal(await fileSha256(`${bb.dataDir}/${receipt.stored}`), digest);
});

Deno.test("blackboard: an upload cut in the middle resumes after a restart, nothing under the final name before", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using data = await tempDir("lab-bb-data-");
  await using dir = await tempDir();
  const path = `${dir.path}/thesis.bin`;
  await writeTestFile(path, 12 * MiB);
  const digest = await fileSha256(path);
  const { log } = memoryLog("student");
  const id = await identity(student.home);

  {
    await using bb = await startBlackboard(pki, { dataDir: data.path });
    // The relay cuts the connection after about 5 MiB from the student.
    await using relay = startRelay({
      upstream: bb.addr,
      log: memoryLog("relay").log,
      connection: (id) => (id === 1 ? { cutAfterBytes: 5 * MiB + 12345 } : undefined),
    });
    using session = await openSession({ blackboard: relay.addr, identity: id, log });
    await assert.rejects(session.upload(path));
    // Let Blackboard notice the cut.
    await waitFor(() => /partial thesis\.bin kept/.test(bb.lines.join("\n")), {
      what: "Blackboard to keep the partial",
      timeoutMs: 2000,
    });
    assert.match(bb.lines.join("\n"), /partial thesis\.bin kept at byte \d+ for a resume/);
  }
  // Blackboard is down: the partial is there, nothing under a final name.
  const files = await listFiles(data.path);
  assert.equal(files.filter((f) => f.startsWith("reports/")).length, 0);
  const part = files.find((f) => f.endsWith(".part"));
  assert.ok(part, `no partial in ${files.join(", ")}`);
  const held = (await Deno.stat(`${data.path}/${part}`)).size;
  assert.ok(held > 0 && held <= 5 * MiB + 12345, `partial holds ${held} bytes`);

  // A new Blackboard on the same data; the same command resumes.
  await using bb2 = await startBlackboard(pki, { dataDir: data.path });
  using session = await openSession({ blackboard: bb2.addr, identity: id, log });
  const receipt = await session.upload(path);
  assert.equal(receipt.resumedFrom, held);
  assert.equal(receipt.sha256, digest);
  assert.equal(await fileSha256(`${data.path}/reports/${SID}/thesis.bin`), digest);
  const [receiptFile, ...rest] = await listFiles(data.path);
  assert.match(receiptFile!, new RegExp(`^receipts/${SID}/[0-9a-f]{32}\\.json$`));
  assert.deepEqual(rest, [`reports/${SID}/thesis.bin`]);
  assert.match(bb2.lines.join("\n"), new RegExp(`resumes thesis\\.bin .* from byte ${held}`));
});

Deno.test("blackboard: an upload ended early is refused, its partial kept and closed: the same upload resumes in the next session", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const { log } = memoryLog("student");
  const data = randomBytes(100_000);
  const uploadId = toHex(randomBytes(16));
  {
    using session = await openSession({
      blackboard: bb.addr,
      identity: await identity(student.home),
      log,
    });
    await session.secure.send("uploadBegin", { uploadId, name: "early.bin", size: data.length });
    assert.equal((await session.secure.receive(["uploadOffset"])).offset, 0);
    await session.secure.send("chunk", { offset: 0, data: data.subarray(0, 40_000) });
    await session.secure.send("uploadEnd", { sha256: randomBytes(32) });
    await assert.rejects(session.secure.receive(["receipt"]), (err: Error) => {
      assert.ok(err instanceof PeerRefusedError);
      assert.equal(err.message, "Upload ended at byte 40000 of 100000");
      return true;
    });
  }
  using session = await openSession({
    blackboard: bb.addr,
    identity: await identity(student.home),
    log,
  });
  await session.secure.send("uploadBegin", { uploadId, name: "early.bin", size: data.length });
  assert.equal((await session.secure.receive(["uploadOffset"])).offset, 40_000);
  await session.secure.send("chunk", { offset: 40_000, data: data.subarray(40_000) });
  await session.secure.send("uploadEnd", {
    sha256: await sha256(data),
  });
  const receipt = await session.secure.receive(["receipt"]);
  assert.equal(receipt.size, data.length);
});

Deno.test("blackboard: an upload whose final SHA-256 does not match is refused, nothing stored", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const { log } = memoryLog("student");
  using session = await openSession({
    blackboard: bb.addr,
    identity: await identity(student.home),
    log,
  });
  const data = randomBytes(100_000);
  await session.secure.send("uploadBegin", {
    uploadId: toHex(randomBytes(16)),
    name: "report.txt",
    size: data.length,
  });
  assert.equal((await session.secure.receive(["uploadOffset"])).offset, 0);
  await session.secure.send("chunk", { offset: 0, data });
  await session.secure.send("uploadEnd", { sha256: randomBytes(32) });
  await assert.rejects(
    session.secure.receive(["receipt"]),
    (err: Error) => {
      assert.ok(err instanceof PeerRefusedError);
      assert.equal(
        err.message,
        "SHA-256 mismatch: the report received is not the file sent, nothing stored",
      );
      return true;
    },
  );
  assert.deepEqual(await listFiles(bb.dataDir), []);
  assert.deepEqual(bb.printed, []);
});

Deno.test("blackboard: a chunk at the wrong offset and a bad report name are refused", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki);
  const { log } = memoryLog("student");
  const id = await identity(student.home);
  {
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    await session.secure.send("uploadBegin", {
      uploadId: toHex(randomBytes(16)),
      name: "report.txt",
      size: 300_000,
    });
    await session.secure.receive(["uploadOffset"]);
    await session.secure.send("chunk", { offset: 0, data: randomBytes(1000) });
    // Skips ahead: bytes 1000-1999 never sent.
    await session.secure.send("chunk", { offset: 2000, data: randomBytes(1000) });
    await assert.rejects(
      session.secure.receive(["receipt"]),
      /Chunk out of order: it starts at byte 2000, expected 1000/,
    );
  }
  {
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    await session.secure.send("uploadBegin", {
      uploadId: toHex(randomBytes(16)),
      name: "../../etc/passwd",
      size: 10,
    });
    await assert.rejects(
      session.secure.receive(["uploadOffset"]),
      /Invalid report name '..\/..\/etc\/passwd'/,
    );
  }
  assert.deepEqual((await listFiles(bb.dataDir)).filter((f) => f.startsWith("reports/")), []);
});

Deno.test("blackboard: a student over the quota of unfinished uploads gets a clear refusal, and the partial they hold is kept", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki, { store: { maxSize: 1000, partialQuota: 1500 } });
  const { log } = memoryLog("student");
  const held = toHex(randomBytes(16));
  {
    using session = await openSession({
      blackboard: bb.addr,
      identity: await identity(student.home),
      log,
    });
    await session.secure.send("uploadBegin", { uploadId: held, name: "a.txt", size: 1000 });
    assert.equal((await session.secure.receive(["uploadOffset"])).offset, 0);
    await session.secure.send("chunk", { offset: 0, data: randomBytes(600) });
    // The student's "received" for a message proves the chunk before it was applied.
    await session.secure.send("message", { text: "chunk sent" });
    await session.secure.receive(["received"]);
  }
  await waitFor(() => /(left in the middle of|partial) a\.txt/.test(bb.lines.join("\n")), {
    what: "Blackboard to keep the partial",
  });
  using session = await openSession({
    blackboard: bb.addr,
    identity: await identity(student.home),
    log,
  });
  await session.secure.send("uploadBegin", {
    uploadId: toHex(randomBytes(16)),
    name: "b.txt",
    size: 1000,
  });
  await assert.rejects(session.secure.receive(["uploadOffset"]), (err: Error) => {
    assert.ok(err instanceof PeerRefusedError, String(err));
    assert.match(
      err.message,
      /^Upload quota reached: your 1 unfinished upload\(s\) hold 600 bytes and this one declares 1000; the limit is 1500 bytes/,
    );
    return true;
  });
  assert.deepEqual(await listFiles(bb.dataDir), [
    `partial/${SID}/${held}.json`,
    `partial/${SID}/${held}.part`,
  ]);
  assert.equal((await Deno.stat(`${bb.dataDir}/partial/${SID}/${held}.part`)).size, 600);
});

Deno.test("Blackboard stopped in the middle of an upload: the student is told inside the session that it is kept, and the same upload resumes", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using data = await tempDir("lab-bb-stop-");
  await using dir = await tempDir();
  const path = `${dir.path}/big.bin`;
  await writeTestFile(path, 64 * MiB);
  const digest = await fileSha256(path);
  const { log } = memoryLog("student");
  const id = await identity(student.home);
  {
    const bb = await startBlackboard(pki, { dataDir: data.path });
    using session = await openSession({ blackboard: bb.addr, identity: id, log });
    let closing: Promise<void> | undefined;
    await assert.rejects(
      session.upload(path, {
        onProgress: (sent) => {
          // Once some of it has arrived, Blackboard is stopped (as by SIGINT).
          if (sent >= 4 * MiB) closing ??= bb.server.close();
        },
      }),
      (err: Error) => {
        assert.match(
          err.message,
          /^(Blackboard is shutting down: your upload is kept at byte \d+ of 67108864; run the same command to resume|upload paused at .* run the same command to resume)$/,
        );
        return true;
      },
    );
    await closing;
    await bb[Symbol.asyncDispose]();
    const all = bb.lines.join("\n");
    assert.doesNotMatch(all, /internal error|Bad resource/);
    assert.match(all, /Blackboard is stopping; partial big\.bin kept at byte \d+ for a resume/);
  }
  await using bb2 = await startBlackboard(pki, { dataDir: data.path });
  using session = await openSession({ blackboard: bb2.addr, identity: id, log });
  const receipt = await session.upload(path);
  assert.ok(receipt.resumedFrom > 0, "resumed");
  assert.equal(receipt.sha256, digest);
});
