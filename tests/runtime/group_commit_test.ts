/**
 * GroupCommit (lib/runtime/sqlite.ts) on a real database file: pieces submitted together share one
 * commit and settle after it, in order; a piece that throws is rolled back alone; a COMMIT that
 * fails (a deferred foreign key, checked only then) rejects every piece and stores nothing. And
 * `prepared`, the statements kept per connection.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { GroupCommit, openDatabase, prepared, transaction } from "../../lib/runtime/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

const SCHEMA = `
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (
  id INTEGER PRIMARY KEY,
  parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED
);`;

Deno.test("GroupCommit: pieces submitted together share one commit, settle in order after it, and one that throws is rolled back alone", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/group.db`;
  const db = openDatabase(path);
  db.exec(SCHEMA);
  const group = new GroupCommit(db);
  const insert = db.prepare("INSERT INTO parent (id) VALUES (?)");
  const order: number[] = [];
  const pieces = [1, 2, 3, 2, 4].map((id, i) =>
    group.run(() => {
      insert.run(id); // the second 2 breaks the primary key: that piece alone is refused
      return i;
    }).then((i) => (order.push(i), i))
  );
  const outside = new DatabaseSync(path);
  const count = () =>
    (outside.prepare("SELECT count(*) AS n FROM parent").get() as { n: number }).n;
  assert.equal(count(), 0, "nothing is visible before the group commits");
  const settled = await Promise.allSettled(pieces);
  assert.deepEqual(settled.map((s) => s.status), [
    "fulfilled",
    "fulfilled",
    "fulfilled",
    "rejected",
    "fulfilled",
  ]);
  assert.deepEqual(order, [0, 1, 2, 4]);
  assert.equal(count(), 4);
  assert.deepEqual(group.stats, { groups: 1, pieces: 5 });
  outside.close();
  db.close();
});

Deno.test("GroupCommit: a COMMIT that fails rejects every piece of the group and stores none of them", async () => {
  await using dir = await tempDir();
  const db = openDatabase(`${dir.path}/group.db`);
  db.exec(SCHEMA);
  const group = new GroupCommit(db);
  const pieces = [
    group.run(() => db.prepare("INSERT INTO parent (id) VALUES (1)").run()),
    // A child of a parent that does not exist: deferred, so only COMMIT sees it.
    group.run(() => db.prepare("INSERT INTO child (id, parent) VALUES (1, 99)").run()),
  ];
  const settled = await Promise.allSettled(pieces);
  assert.deepEqual(settled.map((s) => s.status), ["rejected", "rejected"]);
  const n = (db.prepare("SELECT count(*) AS n FROM parent").get() as { n: number }).n;
  assert.equal(n, 0);
  // The connection is usable again afterwards.
  await group.run(() => db.prepare("INSERT INTO parent (id) VALUES (2)").run());
  db.close();
});

Deno.test("prepared: one statement per connection and text, reused across transactions; another connection gets its own", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/prepared.db`;
  const db = openDatabase(path);
  db.exec(SCHEMA);
  const sql = "INSERT INTO parent (id) VALUES (?)";
  const first = prepared(db, sql);
  assert.equal(prepared(db, sql), first);
  assert.notEqual(prepared(db, "SELECT id FROM parent WHERE id = ?"), first);
  transaction(db, () => prepared(db, sql).run(1));
  assert.throws(() => transaction(db, () => prepared(db, sql).run(1)), /UNIQUE/);
  transaction(db, () => prepared(db, sql).run(2));
  const other = openDatabase(path);
  assert.notEqual(prepared(other, sql), first);
  assert.deepEqual(
    prepared(other, "SELECT id FROM parent ORDER BY id").all().map((r) => r.id),
    [1, 2],
  );
  other.close();
  db.close();
});
