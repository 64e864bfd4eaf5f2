/**
 * One process owns a data directory: an exclusive lock (flock) on `DIR/.lock`, taken at start and
 * held until the process exits (the kernel releases it even after SIGKILL, so a crash leaves no
 * stale lock). A second server on the same directory gets a clear error instead of a second root,
 * a second ledger writer or CRL numbers that go backwards.
 */

import { ensureDir } from "./fs.ts";

/** Another process holds the data directory. */
export class DataDirLockedError extends Error {
  override name = "DataDirLockedError";
}

export interface DataDirLock extends Disposable {
  readonly path: string;
  release(): void;
}

const LOCK_FILE = ".lock";

/**
 * Who holds the lock at `path` ("CA, pid 123"), or "" if it does not say. The holder writes this
 * line just after taking the lock, so a process that lost a race by a moment may find the file
 * still empty: it reads again, for at most 200 ms, until the line is there.
 */
async function holderOf(path: string): Promise<string> {
  for (let attempt = 0;; attempt++) {
    const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
    if (holder !== "" || attempt === 20) return holder;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Takes the lock of `dir` (creating the directory, mode 0700, if needed) for `owner`. */
export async function lockDataDir(dir: string, owner: string): Promise<DataDirLock> {
  await ensureDir(dir, 0o700);
  const path = `${dir}/${LOCK_FILE}`;
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  let locked = false;
  try {
    locked = await file.tryLock(true);
  } catch (err) {
    file.close();
    throw err;
  }
  // check: data-dir-lock tests/runtime/files_test.ts
  if (!locked) {
    const holder = await holderOf(path);
    file.close();
    throw new DataDirLockedError(
      `${dir} is in use by another process${holder ? ` (${holder})` : ""}: one ${owner} per ` +
        "data directory; stop it first or give another --data-dir",
    );
  }
  await file.truncate(0);
  await file.write(new TextEncoder().encode(`${owner}, pid ${Deno.pid}\n`));
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    try {
      file.unlockSync();
    } finally {
      file.close();
    }
  };
  return { path, release, [Symbol.dispose]: release };
}
