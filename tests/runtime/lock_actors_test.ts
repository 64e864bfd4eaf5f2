/**
 * One process owns a data directory (hostile-load report, item 6): a second Blackboard or Bob on
 * the same directory stops at once with a clear error, and the first goes on serving.
 */

import assert from "node:assert/strict";
import { ActorProcess, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";

Deno.test("a second 'bank serve' on Bob's data directory is refused; the first keeps serving", async () => {
  await using dir = await tempDir("lab-lock-bob-");
  const args = ["serve", "--protocol", "seed", "--port", "0", "--data-dir", `${dir.path}/bank`];
  await using first = new ActorProcess("actors/bank.ts", args);
  await first.waitFor(/listening on 127\.0\.0\.1:\d+/);
  const second = await runActor("actors/bank.ts", args);
  assert.equal(second.code, 1, second.stderr);
  assert.match(
    second.stderr,
    /in use by another process \(Bob, pid \d+\): one Bob per data directory/,
  );
  const exited = await Promise.race([first.status.then(() => true), Promise.resolve(false)]);
  assert.equal(exited, false, "the first Bob is still running");
});

Deno.test("a second 'blackboard serve' on Blackboard's data directory is refused", async () => {
  await using pki = await TestPki.start();
  const server = await pki.serverCert("blackboard");
  await using dir = await tempDir("lab-lock-bb-");
  const args = [
    "serve",
    "--port",
    "0",
    "--data-dir",
    `${dir.path}/blackboard`,
    "--cert",
    server.certPath,
    "--key",
    server.keyPath,
    "--ca-cert",
    server.rootPath,
    "--ca",
    pki.caAddr,
  ];
  await using first = new ActorProcess("actors/blackboard.ts", args);
  await first.waitFor(/listening on 127\.0\.0\.1:\d+/);
  const second = await runActor("actors/blackboard.ts", args);
  assert.equal(second.code, 1, second.stderr);
  assert.match(second.stderr, /one Blackboard per data directory/);
});
