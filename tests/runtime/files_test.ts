/**
 * lib/runtime's guards on files, one at a time: a private key that others can read, a data
 * directory that another owner holds, and a database that fails SQLite's own check. Each drives
 * input that only that guard refuses and asserts its reason (for `deno task mutate`).
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  assertPrivateFile,
  CorruptDatabaseError,
  DataDirLockedError,
  lockDataDir,
  openDatabase,
  writeSecretFile,
} from "../../lib/runtime/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

Deno.test("a secret file is written 0600 and passes; readable by group or others, it is refused", async () => {
  await using dir = await tempDir("lab-files-");
  const path = `${dir.path}/k.key`;
  await writeSecretFile(path, "secret");
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  await assertPrivateFile(path);
  for (const mode of [0o640, 0o604, 0o644]) {
    await Deno.chmod(path, mode);
    await assert.rejects(assertPrivateFile(path), (err: unknown) => {
      assert.equal(
        (err as Error).message,
        `Refusing to use ${path}: mode ${mode.toString(8)} lets others read the key (chmod 600 it)`,
      );
      return true;
    });
  }
});

Deno.test("a data directory held by one owner is refused to a second, and free again once released", async () => {
  await using dir = await tempDir("lab-files-");
  const first = await lockDataDir(dir.path, "the CA");
  await assert.rejects(lockDataDir(dir.path, "the CA"), (err: unknown) => {
    assert.ok(err instanceof DataDirLockedError, String(err));
    assert.match(
      err.message,
      new RegExp(
        `^${dir.path} is in use by another process \\(the CA, pid ${Deno.pid}\\): one the CA per data directory`,
      ),
    );
    return true;
  });
  first.release();
  using second = await lockDataDir(dir.path, "the CA");
  assert.equal(second.path, `${dir.path}/.lock`);
});

Deno.test("a database whose pages fail quick_check, or a file that is no database, is refused", async () => {
  await using dir = await tempDir("lab-files-");
  const path = `${dir.path}/x.db`;
  {
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t (v); BEGIN");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    for (let i = 0; i < 500; i++) insert.run(`row ${i} ${"x".repeat(40)}`);
    db.exec("COMMIT");
    db.close();
  }
  // The last page (a b-tree page) zeroed: the file opens, and quick_check reports the damage.
  const bytes = await Deno.readFile(path);
  bytes.fill(0, bytes.length - 4096);
  await Deno.writeFile(path, bytes);
  assert.throws(() => openDatabase(path), (err: unknown) => {
    assert.ok(err instanceof CorruptDatabaseError, String(err));
    assert.match(err.message, /^.*x\.db is corrupt \(quick_check: /);
    assert.match(err.message, /refusing to start; restore it from a backup$/);
    return true;
  });

  const garbage = `${dir.path}/garbage.db`;
  await Deno.writeFile(garbage, new Uint8Array(8192).fill(0x42));
  assert.throws(() => openDatabase(garbage), (err: unknown) => {
    assert.ok(err instanceof CorruptDatabaseError, String(err));
    assert.match(err.message, /is corrupt \(.*not a database.*\): refusing to start/);
    return true;
  });
});
