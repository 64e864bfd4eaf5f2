/**
 * Blackboard's report store on its own (lib/blackboard/upload_store.ts), one refusal at a time:
 * each test drives input that only one check refuses and asserts that check's reason, so that
 * switching the check off (`deno task mutate`) fails the test.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { checkReportName, UploadError, UploadStore } from "../../lib/blackboard/mod.ts";
import { exists } from "../../lib/runtime/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";
import { listFiles } from "../_fixtures/blackboard.ts";

const SID = "1155000301";
const ID = "0123456789abcdef0123456789abcdef";

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

async function refusedWith(p: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof UploadError, `not an UploadError: ${err}`);
    assert.match(err.message, reason);
    return true;
  });
}

Deno.test("upload store: an upload ID with '../' (or anything but 32 hex digits) is refused before any file is touched", async () => {
  await using dir = await tempDir("lab-store-");
  // The data directory sits two levels down, so that '../../' would land in the test's own folder.
  const dataDir = `${dir.path}/a/data`;
  const store = new UploadStore(dataDir);
  for (
    const id of [
      "../../escaped",
      `../${"0".repeat(29)}`,
      `${"0".repeat(16)}/../${"0".repeat(12)}`,
      ID.toUpperCase(),
      ID.slice(1),
      `${ID}0`,
      "",
    ]
  ) {
    await refusedWith(
      store.begin(SID, id, "report.pdf", 10),
      /^Invalid upload ID: 32 hex digits expected$/,
    );
  }
  assert.equal(await exists(`${dir.path}/a/escaped.json`), false);
  assert.equal(await exists(`${dir.path}/escaped.json`), false);
  assert.deepEqual(await listFiles(dir.path), []);
});

Deno.test("upload store: a report one byte over the limit is refused; one at the limit is stored", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path, { maxSize: 1000 });
  await refusedWith(
    store.begin(SID, ID, "report.pdf", 1001),
    /^Report of 1001 bytes exceeds the limit of 1000 bytes$/,
  );
  assert.deepEqual(await listFiles(dir.path), []);
  const data = crypto.getRandomValues(new Uint8Array(1000));
  const upload = await store.begin(SID, ID, "report.pdf", 1000);
  await upload.write(0, data);
  const receipt = await upload.finish(sha256(data));
  assert.equal(receipt.stored, `reports/${SID}/report.pdf`);
  assert.equal(receipt.size, 1000);
});

Deno.test("upload store: report names with a path, a leading dot or '..' are refused", () => {
  for (const name of ["../x", "a/b", ".hidden", "a..b", "", "x".repeat(101), "a b"]) {
    assert.throws(() => checkReportName(name), (err: unknown) => {
      assert.ok(err instanceof UploadError);
      assert.match(err.message, /^Invalid report name '.*': use 1-100 letters/);
      return true;
    }, name);
  }
  assert.equal(checkReportName("report-1.pdf"), "report-1.pdf");
});

Deno.test("upload store: the same upload twice at once is refused", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path);
  const first = await store.begin(SID, ID, "report.pdf", 10);
  await refusedWith(store.begin(SID, ID, "report.pdf", 10), /^This upload is already in progress$/);
  await first.close();
  // Once closed, the same upload resumes.
  const again = await store.begin(SID, ID, "report.pdf", 10);
  await again.close();
});

Deno.test("upload store: a chunk out of order or past the declared size is refused", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path);
  const upload = await store.begin(SID, ID, "report.pdf", 10);
  await refusedWith(
    upload.write(5, new Uint8Array(5)),
    /^Chunk out of order: it starts at byte 5, expected 0$/,
  );
  await refusedWith(
    upload.write(0, new Uint8Array(11)),
    /^Chunk goes past the declared size of 10 bytes$/,
  );
  assert.equal(upload.offset, 0);
  await upload.close();
});

Deno.test("upload store: an upload that ends early, or whose SHA-256 differs, stores nothing", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path);
  const data = crypto.getRandomValues(new Uint8Array(10));
  {
    const upload = await store.begin(SID, ID, "report.pdf", 10);
    await upload.write(0, data.subarray(0, 5));
    await refusedWith(upload.finish(sha256(data)), /^Upload ended at byte 5 of 10$/);
    await upload.close();
  }
  {
    const upload = await store.begin(SID, ID, "report.pdf", 10);
    assert.equal(upload.offset, 5, "the partial resumes");
    await upload.write(5, data.subarray(5));
    const wrong = sha256(data);
    wrong[0]! ^= 0x01;
    await refusedWith(
      upload.finish(wrong),
      /^SHA-256 mismatch: the report received is not the file sent, nothing stored$/,
    );
  }
  assert.equal(await exists(`${dir.path}/reports/${SID}/report.pdf`), false);
  assert.deepEqual(await listFiles(`${dir.path}/partial`), []);
});

Deno.test("upload store: a finished upload takes no more chunks", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path);
  const data = new Uint8Array(4);
  const upload = await store.begin(SID, ID, "report.pdf", 4);
  await upload.write(0, data);
  await upload.finish(sha256(data));
  await refusedWith(upload.write(4, new Uint8Array(1)), /^Upload is closed$/);
  await refusedWith(upload.finish(sha256(data)), /^Upload is closed$/);
});

Deno.test("upload store: a partial longer than its declared size is not trusted: the upload starts over", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path);
  const upload = await store.begin(SID, ID, "report.pdf", 10);
  await upload.write(0, new Uint8Array(4));
  await upload.close();
  // Someone appended to the partial behind Blackboard's back.
  await Deno.writeFile(`${store.partialDir(SID)}/${ID}.part`, new Uint8Array(20));
  const resumed = await store.begin(SID, ID, "report.pdf", 10);
  assert.equal(resumed.offset, 0);
  assert.equal((await Deno.stat(`${store.partialDir(SID)}/${ID}.part`)).size, 0);
  await resumed.close();
});

const ID2 = "fedcba9876543210fedcba9876543210";
const ID3 = "00112233445566778899aabbccddeeff";

Deno.test("upload store: a student's unfinished uploads are bounded by a quota: in progress by their declared size, idle by the bytes held", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path, { maxSize: 100, partialQuota: 150 });
  const first = await store.begin(SID, ID, "a.pdf", 100);
  // In progress, the first counts with its declared 100 bytes: 100 + 60 > 150.
  await refusedWith(
    store.begin(SID, ID2, "b.pdf", 60),
    /^Upload quota reached: your 1 unfinished upload\(s\) hold 100 bytes and this one declares 60; the limit is 150 bytes; finish or resume them .* expire after 24 h$/,
  );
  await first.write(0, new Uint8Array(30));
  await first.close();
  // Idle, it counts with the 30 bytes it holds: 30 + 100 fits.
  const second = await store.begin(SID, ID2, "b.pdf", 100);
  await second.write(0, new Uint8Array(30));
  await second.close();
  // Two idle partials hold 60 bytes: 60 + 100 does not fit.
  await refusedWith(
    store.begin(SID, ID3, "c.pdf", 100),
    /^Upload quota reached: your 2 unfinished upload\(s\) hold 60 bytes and this one declares 100;/,
  );
  // Resuming an upload does not count it twice; another student has a quota of their own.
  const resumed = await store.begin(SID, ID, "a.pdf", 100);
  assert.equal(resumed.offset, 30);
  await resumed.close();
  const other = await store.begin("1155000302", ID3, "c.pdf", 100);
  await other.close();
  // A quota below the largest report could never be met.
  assert.throws(() => new UploadStore(dir.path, { maxSize: 100, partialQuota: 99 }), RangeError);
});

Deno.test("upload store: a student may hold only so many unfinished uploads", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path, { maxPartials: 2 });
  for (const id of [ID, ID2]) await (await store.begin(SID, id, "r.pdf", 10)).close();
  await refusedWith(
    store.begin(SID, ID3, "r.pdf", 10),
    /^Too many unfinished uploads: you have 2, the limit is 2; finish or resume them/,
  );
  // Resuming one of the two is still allowed.
  await (await store.begin(SID, ID2, "r.pdf", 10)).close();
});

Deno.test("upload store: sweep removes partials untouched for 24 h, keeps fresh ones and uploads in progress", async () => {
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path);
  const old = await store.begin(SID, ID, "old.pdf", 10);
  await old.write(0, new Uint8Array(7));
  await old.close();
  await (await store.begin(SID, ID2, "fresh.pdf", 10)).close();
  const busy = await store.begin("1155000302", ID3, "busy.pdf", 10);
  const partial = store.partialDir(SID);
  const dayAgo = new Date(Date.now() - 24 * 3600_000 - 60_000);
  for (const f of [`${partial}/${ID}.part`, `${partial}/${ID}.json`]) {
    await Deno.utime(f, dayAgo, dayAgo);
  }
  assert.deepEqual(await store.sweep(), { removed: 1, bytes: 7 });
  assert.deepEqual(await listFiles(partial), [`${ID2}.json`, `${ID2}.part`]);
  // A day later everything idle has expired; the upload in progress stays, and so does its folder.
  const later = Date.now() + 24 * 3600_000 + 60_000;
  assert.deepEqual(await store.sweep(later), { removed: 1, bytes: 0 });
  assert.equal(await exists(partial), false, "the emptied folder goes too");
  assert.ok(await exists(`${store.partialDir("1155000302")}/${ID3}.part`));
  await busy.close();
  assert.deepEqual(await store.sweep(later), { removed: 1, bytes: 0 });
  assert.deepEqual(await listFiles(`${dir.path}/partial`), []);
});

Deno.test("upload store: a retry whose receipt was lost gets the same report, never a second copy (a crash after the link, or after the finish)", async () => {
  // Found by tests/chaos/kill_test.ts: Blackboard killed between storing a report and sending its
  // receipt; the student's retry of the same upload stored it again as report-2.pdf.
  await using dir = await tempDir("lab-store-");
  const data = crypto.getRandomValues(new Uint8Array(1000));
  const reports = `${dir.path}/reports/${SID}`;
  {
    // A finish cut short right after the link: the partial is still there, linked as report.pdf.
    const store = new UploadStore(dir.path);
    const upload = await store.begin(SID, ID, "report.pdf", 1000);
    await upload.write(0, data);
    await upload.close();
    await Deno.mkdir(reports, { recursive: true });
    await Deno.link(`${store.partialDir(SID)}/${ID}.part`, `${reports}/report.pdf`);
  }
  {
    // After the restart the student resumes at the end and ends the upload again.
    const store = new UploadStore(dir.path);
    const upload = await store.begin(SID, ID, "report.pdf", 1000);
    assert.equal(upload.offset, 1000);
    const receipt = await upload.finish(sha256(data));
    assert.equal(receipt.stored, `reports/${SID}/report.pdf`);
  }
  {
    // A finished upload whose receipt never arrived: the retry needs to send nothing and gets
    // the same receipt; a different file under the same upload ID is refused, nothing stored.
    const store = new UploadStore(dir.path);
    const upload = await store.begin(SID, ID, "report.pdf", 1000);
    assert.equal(upload.offset, 1000);
    const wrong = sha256(data);
    wrong[0]! ^= 0x01;
    await refusedWith(upload.finish(wrong), /^SHA-256 mismatch: .*nothing stored$/);
    const again = await store.begin(SID, ID, "report.pdf", 1000);
    const receipt = await again.finish(sha256(data));
    assert.equal(receipt.stored, `reports/${SID}/report.pdf`);
    assert.deepEqual(receipt.sha256, sha256(data));
  }
  assert.deepEqual(await listFiles(reports), ["report.pdf"]);
  assert.deepEqual(await Deno.readFile(`${reports}/report.pdf`), data);
  assert.deepEqual(await listFiles(`${dir.path}/partial`), []);
  // Another upload of the same name (a new upload ID) is still stored beside it.
  const store = new UploadStore(dir.path);
  const other = await store.begin(SID, ID2, "report.pdf", 4);
  await other.write(0, new Uint8Array(4));
  // Receipts are kept as long as partials: a day later they are gone, with their folder.
  assert.deepEqual(await listFiles(store.receiptsDir(SID)), [`${ID}.json`]);
  await store.sweep(Date.now() + 24 * 3600_000 + 60_000);
  assert.equal(await exists(store.receiptsDir(SID)), true, "kept while an upload is in progress");
  assert.deepEqual(await listFiles(store.receiptsDir(SID)), []);
  assert.equal(
    (await other.finish(sha256(new Uint8Array(4)))).stored,
    `reports/${SID}/report-2.pdf`,
  );
  // A fresh receipt stays.
  await store.sweep();
  assert.deepEqual(await listFiles(store.receiptsDir(SID)), [`${ID2}.json`]);
});

Deno.test("upload store: the temporary files of atomic writes that a crash left are swept once the student has no upload in progress", async () => {
  // Found by tests/chaos/kill_test.ts: Blackboard killed while writing a partial's metadata left
  // partial/<id>/.<upload-id>.json.<random>.tmp behind for good.
  await using dir = await tempDir("lab-store-");
  const store = new UploadStore(dir.path);
  const busy = await store.begin(SID, ID, "report.pdf", 10);
  const stray = [`${store.partialDir(SID)}/.${ID2}.json.0123456789ab.tmp`];
  await Deno.mkdir(store.receiptsDir(SID), { recursive: true });
  stray.push(`${store.receiptsDir(SID)}/.${ID2}.json.ba9876543210.tmp`);
  for (const path of stray) await Deno.writeTextFile(path, "{");
  // An upload in progress may be writing one of them: they stay.
  await store.sweep();
  for (const path of stray) assert.ok(await exists(path), path);
  await busy.close();
  await store.sweep();
  for (const path of stray) assert.equal(await exists(path), false, path);
  // The idle partial is kept, and the emptied receipts folder goes.
  assert.deepEqual(await listFiles(store.partialDir(SID)), [`${ID}.json`, `${ID}.part`]);
  assert.equal(await exists(store.receiptsDir(SID)), false);
});
