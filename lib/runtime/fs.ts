/**
 * File helpers: atomic writes (temporary file, fsync, rename) and private key files (0600).
 */

import { randomBytes, toHex } from "../crypto/mod.ts";

export interface AtomicWriteOptions {
  /** File mode of the result (the temporary file is created with it). Default 0o644. */
  mode?: number;
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** Syncs a directory so that a rename inside it survives a crash; best effort where unsupported. */
export async function syncDir(dir: string): Promise<void> {
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Some platforms cannot open a directory for syncing; the rename is still atomic.
  }
}

/**
 * Writes `data` to `path` so that `path` holds either the old content or the new, never a part:
 * the data goes to a temporary file in the same directory, is synced, then renamed over `path`.
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const dir = dirname(path);
  const tmp = `${dir}/.${path.slice(dir.length + 1)}.${toHex(randomBytes(6))}.tmp`;
  const mode = options.mode ?? 0o644;
  try {
    {
      using file = await Deno.open(tmp, { write: true, createNew: true, mode });
      await writeAll(file, bytes);
      await file.sync();
    }
    // The mode given to open is filtered by the umask; set it exactly before the file appears.
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dir);
}

/** Writes a private key (or any secret) with mode 0600, atomically. */
export async function writeSecretFile(path: string, data: Uint8Array | string): Promise<void> {
  await writeFileAtomic(path, data, { mode: 0o600 });
}

/** Creates a directory and its parents; `mode` applies to directories it creates. */
export async function ensureDir(path: string, mode = 0o755): Promise<void> {
  await Deno.mkdir(path, { recursive: true, mode });
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Reads a text file, naming the file and what it was for in the error. */
export async function readTextFile(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot read ${what}: ${path} does not exist`);
    }
    throw new Error(
      `Cannot read ${what} from ${path}: ${err instanceof Error ? err.message : err}`,
    );
  }
}

/** Refuses a private key file that others can read. */
export async function assertPrivateFile(path: string): Promise<void> {
  const info = await Deno.stat(path);
  // check: private-key-file-mode tests/runtime/files_test.ts tests/ca/negative_test.ts
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new Error(
      `Refusing to use ${path}: mode ${
        (info.mode & 0o777).toString(8)
      } lets others read the key (chmod 600 it)`,
    );
  }
}

/** Writes all of `bytes` to a file or a connection, in as many `write` calls as that takes. */
export async function writeAll(
  writer: { write(bytes: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await writer.write(bytes.subarray(off));
}
