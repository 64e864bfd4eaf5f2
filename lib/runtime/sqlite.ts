/**
 * The embedded SQL store (`node:sqlite`): WAL journal, full synchronous commits, and a
 * transaction helper that commits all or nothing.
 */

import { DatabaseSync } from "node:sqlite";

export type Database = DatabaseSync;

/** Opens (creating if needed) a database tuned for durability. */
export function openDatabase(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA foreign_keys = ON");
  db.exec("PRAGMA busy_timeout = 5000");
  return db;
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
