/**
 * Blackboard's report store: partial uploads under `partial/<sid>/`, finished reports under
 * `reports/<sid>/`.
 *
 * A partial upload is `<uploadId>.part` (the bytes received so far, each from an authenticated
 * chunk) and `<uploadId>.json` (its name and declared size). A report reaches its final name only
 * after the whole file has arrived, been synced to disk and matched the student's SHA-256: it is
 * hard-linked under a name that does not exist yet (never overwriting), then the partial is
 * removed. A crash or a cut connection leaves at worst a partial, which the next upload with the
 * same upload ID resumes.
 *
 * A finished upload keeps its receipt under `receipts/<sid>/<uploadId>.json`, written before the
 * partial goes: a retry of the same upload whose receipt was lost (Blackboard crashed before
 * sending it, or the connection broke) gets the same receipt, never a second copy of the report.
 * A finish cut short between the link and the receipt is recognised by the partial still being
 * linked under its final name, which is reused.
 *
 * Partials are bounded: each student may hold at most `partialQuota` bytes in unfinished uploads
 * (an upload in progress counts with its declared size, an idle partial with the bytes it holds)
 * and at most `maxPartials` of them; a partial untouched for `partialExpiryMs` (24 h) is removed by
 * `sweep()`, which Blackboard runs at start-up and hourly, and so is a receipt that old.
 */

import { createHash, type Hash } from "node:crypto";
import { constantTimeEqual, fromHex, toHex } from "../crypto/mod.ts";
import { ensureDir, exists, syncDir, writeAll, writeFileAtomic } from "../runtime/mod.ts";
import { checkReportName, linkedAs, linkUnique, UPLOAD_ID, UploadError } from "./report_names.ts";

export interface Receipt {
  /** Path relative to the data directory: `reports/<sid>/<name>`. */
  stored: string;
  size: number;
  sha256: Uint8Array;
}

interface PartialMeta {
  sid: string;
  name: string;
  size: number;
}

/** What `receipts/<sid>/<uploadId>.json` holds: the answer to a finished upload. */
interface ReceiptRecord {
  name: string;
  size: number;
  /** The report's name under `reports/<sid>/`. */
  stored: string;
  /** Hex. */
  sha256: string;
}

const READ_BUFFER = 1024 * 1024;

export interface UploadStoreOptions {
  /** Largest report accepted, in bytes. */
  maxSize?: number;
  /** Bytes one student may hold in unfinished uploads (at least `maxSize`). */
  partialQuota?: number;
  /** Unfinished uploads one student may hold. */
  maxPartials?: number;
  /** A partial untouched for this long is removed by `sweep()`. */
  partialExpiryMs?: number;
}

export const DEFAULT_MAX_REPORT_SIZE = 8 * 1024 ** 3;
/** Default per-student quota on unfinished uploads: one largest report. */
export const DEFAULT_PARTIAL_QUOTA = DEFAULT_MAX_REPORT_SIZE;
export const DEFAULT_MAX_PARTIALS = 16;
export const DEFAULT_PARTIAL_EXPIRY_MS = 24 * 3600 * 1000;
/** How often Blackboard sweeps expired partials. */
export const SWEEP_INTERVAL_MS = 3600 * 1000;

/** What one `sweep()` removed. */
export interface SweepResult {
  removed: number;
  bytes: number;
}

export class UploadStore {
  readonly dataDir: string;
  readonly maxSize: number;
  readonly partialQuota: number;
  readonly maxPartials: number;
  readonly partialExpiryMs: number;
  /** Uploads in progress (`sid/uploadId`) and their declared sizes. */
  readonly #active = new Map<string, number>();

  constructor(dataDir: string, options: UploadStoreOptions = {}) {
    this.dataDir = dataDir;
    this.maxSize = options.maxSize ?? DEFAULT_MAX_REPORT_SIZE;
    this.partialQuota = options.partialQuota ?? Math.max(DEFAULT_PARTIAL_QUOTA, this.maxSize);
    this.maxPartials = options.maxPartials ?? DEFAULT_MAX_PARTIALS;
    this.partialExpiryMs = options.partialExpiryMs ?? DEFAULT_PARTIAL_EXPIRY_MS;
    if (this.partialQuota < this.maxSize) {
      throw new RangeError(
        `The quota on unfinished uploads (${this.partialQuota} bytes) is below the largest report (${this.maxSize} bytes)`,
      );
    }
  }

  partialDir(sid: string): string {
    return `${this.dataDir}/partial/${sid}`;
  }

  reportsDir(sid: string): string {
    return `${this.dataDir}/reports/${sid}`;
  }

  receiptsDir(sid: string): string {
    return `${this.dataDir}/receipts/${sid}`;
  }

  /** The receipt of a finished upload of this name and size whose report is still there. */
  async #receiptOf(
    sid: string,
    uploadId: string,
    name: string,
    size: number,
  ): Promise<ReceiptRecord | undefined> {
    let record: ReceiptRecord;
    try {
      record = JSON.parse(
        await Deno.readTextFile(`${this.receiptsDir(sid)}/${uploadId}.json`),
      ) as ReceiptRecord;
    } catch {
      return undefined;
    }
    if (record.name !== name || record.size !== size) return undefined;
    if (!(await exists(`${this.reportsDir(sid)}/${record.stored}`))) return undefined;
    return record;
  }

  /** @internal Keeps the receipt of a finished upload (synced before the partial goes). */
  async keepReceipt(sid: string, uploadId: string, record: ReceiptRecord): Promise<void> {
    const dir = this.receiptsDir(sid);
    await ensureDir(dir, 0o700);
    await writeFileAtomic(`${dir}/${uploadId}.json`, JSON.stringify(record), { mode: 0o600 });
  }

  /**
   * Starts or resumes an upload. The returned upload's `offset` is where the student continues:
   * the length of the partial already held (re-hashed from disk), or 0.
   */
  async begin(sid: string, uploadId: string, name: string, size: number): Promise<PartialUpload> {
    // check: upload-id tests/blackboard/upload_store_test.ts
    if (!UPLOAD_ID.test(uploadId)) {
      throw new UploadError("Invalid upload ID: 32 hex digits expected");
    }
    checkReportName(name);
    // check: report-max-size tests/blackboard/upload_store_test.ts
    if (size > this.maxSize) {
      throw new UploadError(`Report of ${size} bytes exceeds the limit of ${this.maxSize} bytes`);
    }
    const key = `${sid}/${uploadId}`;
    // check: upload-not-twice tests/blackboard/upload_store_test.ts
    if (this.#active.has(key)) throw new UploadError("This upload is already in progress");
    this.#active.set(key, size);
    try {
      const dir = this.partialDir(sid);
      const part = `${dir}/${uploadId}.part`;
      const metaPath = `${dir}/${uploadId}.json`;
      // Finished already (its receipt was lost): nothing more to send, the same receipt to come.
      const done = await this.#receiptOf(sid, uploadId, name, size);
      if (done) {
        // What a crash may have left before the partial went.
        await Deno.remove(part).catch(() => {});
        await Deno.remove(metaPath).catch(() => {});
        return new PartialUpload(this, {
          sid,
          uploadId,
          name,
          size,
          part,
          metaPath,
          file: undefined,
          hash: undefined,
          offset: size,
          done,
        });
      }
      await ensureDir(dir, 0o700);
      await this.#checkQuota(sid, uploadId, size);
      const meta: PartialMeta = { sid, name, size };
      let keep = false;
      if (await exists(metaPath)) {
        try {
          const old = JSON.parse(await Deno.readTextFile(metaPath)) as PartialMeta;
          keep = old.sid === sid && old.name === name && old.size === size;
        } catch {
          keep = false;
        }
      }
      if (!keep) {
        await Deno.remove(part).catch(() => {});
        await writeFileAtomic(metaPath, JSON.stringify(meta));
      }
      const file = await Deno.open(part, { read: true, write: true, create: true, mode: 0o600 });
      try {
        let hash = createHash("sha256");
        let offset = keep ? await hashFile(file, hash) : 0;
        // check: partial-over-size tests/blackboard/upload_store_test.ts
        if (offset > size) {
          // More than was declared: not ours to trust. Start over.
          await file.truncate(0);
          hash = createHash("sha256");
          offset = 0;
        }
        await file.seek(offset, Deno.SeekMode.Start);
        return new PartialUpload(this, {
          sid,
          uploadId,
          name,
          size,
          part,
          metaPath,
          file,
          hash,
          offset,
        });
      } catch (err) {
        file.close();
        throw err;
      }
    } catch (err) {
      this.#active.delete(key);
      throw err;
    }
  }

  /**
   * Refuses an upload of `size` bytes when the student's other unfinished uploads plus this one
   * would go over the quota or the count: uploads in progress count with their declared size (they
   * may still grow to it), idle partials with the bytes they hold.
   */
  async #checkQuota(sid: string, uploadId: string, size: number): Promise<void> {
    const others = (await this.#partials(sid)).filter((p) => p.uploadId !== uploadId);
    let held = 0;
    for (const p of others) held += this.#active.get(`${sid}/${p.uploadId}`) ?? p.bytes;
    const hours = Math.round(this.partialExpiryMs / 3600_000);
    const advice =
      `finish or resume them (upload the same file again), or wait: unfinished uploads expire after ${hours} h`;
    // check: partial-count tests/blackboard/upload_store_test.ts
    if (others.length >= this.maxPartials) {
      throw new UploadError(
        `Too many unfinished uploads: you have ${others.length}, the limit is ${this.maxPartials}; ${advice}`,
      );
    }
    // check: partial-quota tests/blackboard/upload_store_test.ts
    if (held + size > this.partialQuota) {
      throw new UploadError(
        `Upload quota reached: your ${others.length} unfinished upload(s) hold ${held} bytes and this one declares ${size}; the limit is ${this.partialQuota} bytes; ${advice}`,
      );
    }
  }

  /** The student's partials on disk: upload ID, bytes held, last change. */
  async #partials(sid: string): Promise<{ uploadId: string; bytes: number; mtime: number }[]> {
    const dir = this.partialDir(sid);
    const ids = new Set<string>();
    try {
      for await (const entry of Deno.readDir(dir)) {
        const m = /^([0-9a-f]{32})\.(?:part|json)$/.exec(entry.name);
        if (m && entry.isFile) ids.add(m[1]!);
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw err;
    }
    const out = [];
    for (const uploadId of ids) {
      let bytes = 0;
      let mtime = 0;
      for (const ext of ["part", "json"]) {
        try {
          const info = await Deno.stat(`${dir}/${uploadId}.${ext}`);
          if (ext === "part") bytes = info.size;
          mtime = Math.max(mtime, info.mtime?.getTime() ?? 0);
        } catch (err) {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
        }
      }
      out.push({ uploadId, bytes, mtime });
    }
    return out;
  }

  /**
   * Removes every partial untouched for `partialExpiryMs` (except uploads in progress), every
   * receipt kept that long, the temporary files a crash left, and the folders it empties. The
   * result counts the partials.
   */
  async sweep(now = Date.now()): Promise<SweepResult> {
    const result: SweepResult = { removed: 0, bytes: 0 };
    const root = `${this.dataDir}/partial`;
    let sids: string[];
    try {
      sids = [];
      for await (const entry of Deno.readDir(root)) if (entry.isDirectory) sids.push(entry.name);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return result;
      throw err;
    }
    for (const sid of sids) {
      const dir = this.partialDir(sid);
      await this.#removeStrayTemps(sid, dir);
      const partials = await this.#partials(sid);
      let left = partials.length;
      for (const p of partials) {
        if (this.#active.has(`${sid}/${p.uploadId}`)) continue;
        // check: partial-expiry tests/blackboard/upload_store_test.ts
        if (now - p.mtime < this.partialExpiryMs) continue;
        await Deno.remove(`${dir}/${p.uploadId}.part`).catch(() => {});
        await Deno.remove(`${dir}/${p.uploadId}.json`).catch(() => {});
        result.removed++;
        result.bytes += p.bytes;
        left--;
      }
      if (left === 0 && !this.#busy(sid)) await Deno.remove(dir).catch(() => {});
    }
    await this.#sweepReceipts(now);
    return result;
  }

  /**
   * Removes the receipts kept longer than `partialExpiryMs`, and the folders it empties (not the
   * folder of a student with an upload in progress, which may be about to keep a receipt there).
   */
  async #sweepReceipts(now: number): Promise<void> {
    const root = `${this.dataDir}/receipts`;
    const sids: string[] = [];
    try {
      for await (const entry of Deno.readDir(root)) if (entry.isDirectory) sids.push(entry.name);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    for (const sid of sids) {
      const dir = this.receiptsDir(sid);
      await this.#removeStrayTemps(sid, dir);
      const names: string[] = [];
      for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.push(entry.name);
      for (const name of names) {
        const info = await Deno.stat(`${dir}/${name}`).catch(() => undefined);
        if (now - (info?.mtime?.getTime() ?? now) < this.partialExpiryMs) continue;
        await Deno.remove(`${dir}/${name}`).catch(() => {});
      }
      // Only an empty folder goes.
      if (!this.#busy(sid)) await Deno.remove(dir).catch(() => {});
    }
  }

  /** Whether the student has an upload in progress. */
  #busy(sid: string): boolean {
    return [...this.#active.keys()].some((key) => key.startsWith(`${sid}/`));
  }

  /**
   * Removes the temporary files of atomic writes (`.NAME.RANDOM.tmp`) that a crash left in one of
   * the student's folders: only an upload in progress writes there, so with none they are garbage.
   */
  async #removeStrayTemps(sid: string, dir: string): Promise<void> {
    const temps: string[] = [];
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && /^\..+\.tmp$/.test(entry.name)) temps.push(entry.name);
    }
    for (const name of temps) {
      if (this.#busy(sid)) return;
      await Deno.remove(`${dir}/${name}`).catch(() => {});
    }
  }

  /** @internal */
  release(sid: string, uploadId: string): void {
    this.#active.delete(`${sid}/${uploadId}`);
  }
}

async function hashFile(file: Deno.FsFile, hash: Hash): Promise<number> {
  const buf = new Uint8Array(READ_BUFFER);
  await file.seek(0, Deno.SeekMode.Start);
  let total = 0;
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
    total += n;
  }
  return total;
}

interface PartialState {
  sid: string;
  uploadId: string;
  name: string;
  size: number;
  part: string;
  metaPath: string;
  /** The partial, open for appending (none when the upload had finished before). */
  file: Deno.FsFile | undefined;
  hash: Hash | undefined;
  offset: number;
  /** The upload had finished before: its receipt. */
  done?: ReceiptRecord;
}

/** One upload in progress; `close()` keeps the partial for a later resume. */
export class PartialUpload {
  readonly sid: string;
  readonly uploadId: string;
  readonly name: string;
  readonly size: number;
  readonly #store: UploadStore;
  readonly #s: PartialState;
  readonly resumedFrom: number;
  #closed = false;
  /** The chunk being written behind (settles to its error, if it failed). */
  #writing: Promise<unknown> | undefined;

  constructor(store: UploadStore, state: PartialState) {
    this.#store = store;
    this.#s = state;
    this.sid = state.sid;
    this.uploadId = state.uploadId;
    this.name = state.name;
    this.size = state.size;
    this.resumedFrom = state.offset;
  }

  get offset(): number {
    return this.#s.offset;
  }

  /**
   * Appends one authenticated chunk, which must start exactly at the current offset. The chunk is
   * written behind: `write` returns once it is checked, hashed and handed to the file, so the
   * next chunk is received and decrypted while it is written. A write that failed is reported by
   * the next `write` or `finish`; `close` and `finish` wait for it, and `data` must not change.
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    const s = this.#s;
    await this.#drain();
    // check: upload-closed tests/blackboard/upload_store_test.ts
    if (this.#closed) throw new UploadError("Upload is closed");
    // check: chunk-in-order tests/blackboard/upload_store_test.ts
    if (offset !== s.offset) {
      throw new UploadError(
        `Chunk out of order: it starts at byte ${offset}, expected ${s.offset}`,
      );
    }
    // check: chunk-within-size tests/blackboard/upload_store_test.ts
    if (s.offset + data.length > s.size) {
      throw new UploadError(`Chunk goes past the declared size of ${s.size} bytes`);
    }
    if (data.length === 0) return;
    const file = s.file!;
    s.hash!.update(data);
    s.offset += data.length;
    this.#writing = writeAll(file, data).then(
      () => undefined,
      (err) => err ?? new Error("write failed"),
    );
  }

  /** Waits for the chunk being written behind; throws what its write threw. */
  async #drain(): Promise<void> {
    const writing = this.#writing;
    if (writing === undefined) return;
    this.#writing = undefined;
    const failed = await writing;
    if (failed !== undefined) throw failed;
  }

  /**
   * Ends the upload: all bytes must be there and their SHA-256 must match `sha256`. On a match the
   * report is synced and linked under its final name; on a mismatch the partial is deleted and
   * nothing is stored.
   */
  async finish(sha256: Uint8Array): Promise<Receipt> {
    const s = this.#s;
    // check: upload-finish-closed tests/blackboard/upload_store_test.ts
    if (this.#closed) throw new UploadError("Upload is closed");
    await this.#drain();
    // check: upload-complete tests/blackboard/upload_store_test.ts
    if (s.offset !== s.size) {
      throw new UploadError(`Upload ended at byte ${s.offset} of ${s.size}`);
    }
    if (s.done) return this.#finishedBefore(s.done, sha256);
    const digest = new Uint8Array(s.hash!.digest());
    // check: upload-sha256 tests/blackboard/upload_store_test.ts
    if (!constantTimeEqual(digest, sha256)) {
      await this.discard();
      throw new UploadError(
        "SHA-256 mismatch: the report received is not the file sent, nothing stored",
      );
    }
    await s.file!.sync();
    s.file!.close();
    s.file = undefined;
    // The upload stays in progress (for the sweep) until its receipt is kept.
    try {
      const dir = this.#store.reportsDir(s.sid);
      await ensureDir(dir, 0o755);
      // A finish cut short after the link left the partial linked under its final name: that one.
      const stored = await linkedAs(s.part, dir) ?? await linkUnique(s.part, dir, s.name);
      await syncDir(dir);
      // The receipt is kept before the partial goes, so that a retry never stores a second copy.
      await this.#store.keepReceipt(s.sid, s.uploadId, {
        name: s.name,
        size: s.size,
        stored,
        sha256: toHex(digest),
      });
      await Deno.remove(s.part);
      await Deno.remove(s.metaPath).catch(() => {});
      await syncDir(this.#store.partialDir(s.sid));
      return { stored: `reports/${s.sid}/${stored}`, size: s.size, sha256: digest };
    } finally {
      this.#close();
    }
  }

  /** The receipt again for an upload that had finished (the same file, by its SHA-256). */
  #finishedBefore(done: ReceiptRecord, sha256: Uint8Array): Receipt {
    this.#close();
    const digest = fromHex(done.sha256);
    // check: upload-retry-sha256 tests/blackboard/upload_store_test.ts
    if (!constantTimeEqual(digest, sha256)) {
      throw new UploadError(
        "SHA-256 mismatch: the report received is not the file sent, nothing stored",
      );
    }
    return { stored: `reports/${this.sid}/${done.stored}`, size: done.size, sha256: digest };
  }

  /** Deletes the partial (nothing stored). */
  async discard(): Promise<void> {
    await this.#drain().catch(() => {});
    this.#close();
    if (this.#s.done) return;
    await Deno.remove(this.#s.part).catch(() => {});
    await Deno.remove(this.#s.metaPath).catch(() => {});
  }

  /** Syncs and keeps the partial so that the student can resume; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#drain();
      await this.#s.file?.sync();
    } catch {
      // Best effort: the resume re-reads what is on disk.
    }
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#s.file?.close();
    } catch {
      // Already closed.
    }
    this.#store.release(this.#s.sid, this.#s.uploadId);
  }
}
