/**
 * The embedded SQL store (`node:sqlite`): WAL journal, full synchronous commits, and a
 * transaction helper that commits all or nothing.
 */

import { DatabaseSync } from "node:sqlite";

export type Database = DatabaseSync;

/** A database file that fails SQLite's own consistency check: nothing may start on it. */
export class CorruptDatabaseError extends Error {
  override name = "CorruptDatabaseError";
}

/**
 * Opens (creating if needed) a database tuned for durability, after `PRAGMA quick_check`: a
 * corrupted file is refused with a clear error instead of being served from.
 */
export function openDatabase(path: string): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path);
    db.exec("PRAGMA busy_timeout = 5000");
    const rows = db.prepare("PRAGMA quick_check").all() as Record<string, unknown>[];
    const problems = rows.map((r) => String(Object.values(r)[0])).filter((v) => v !== "ok");
    // check: db-quick-check tests/runtime/files_test.ts
    if (problems.length > 0) {
      throw new CorruptDatabaseError(
        `${path} is corrupt (quick_check: ${problems.slice(0, 3).join("; ")}): refusing to start;` +
          " restore it from a backup",
      );
    }
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA foreign_keys = ON");
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch { /* already unusable */ }
    if (err instanceof CorruptDatabaseError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    // SQLite's own words for a file that is not (or no longer) a database.
    // check: db-not-a-database tests/runtime/files_test.ts
    if (/not a database|malformed|corrupt/i.test(message)) {
      throw new CorruptDatabaseError(
        `${path} is corrupt (${message}): refusing to start; restore it from a backup`,
      );
    }
    throw err;
  }
}

/**
 * Runs `fn` inside `BEGIN IMMEDIATE … COMMIT`; any throw rolls everything back. `fn` must be
 * synchronous: no other statement on this connection can slip into the transaction.
 */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
}
