/**
 * The actors' allocator settings (lib/runtime/process.ts ALLOCATOR_ENV) reach every Deno process
 * the harness starts, and a value the caller sets wins.
 */

import assert from "node:assert/strict";
import { ALLOCATOR_ENV, spawnDeno } from "../../lib/runtime/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

Deno.test("spawnDeno starts Deno with glibc malloc's thresholds set, unless the caller sets its own", async () => {
  await using dir = await tempDir();
  const script = `${dir.path}/env.ts`;
  await Deno.writeTextFile(
    script,
    `console.log(JSON.stringify([Deno.env.get("MALLOC_MMAP_THRESHOLD_"), Deno.env.get("MALLOC_TRIM_THRESHOLD_")]));`,
  );
  const plain = await spawnDeno(script, [], { permissions: ["--allow-env"] }).result(30_000);
  assert.deepEqual(JSON.parse(plain.stdout), [
    ALLOCATOR_ENV.MALLOC_MMAP_THRESHOLD_,
    ALLOCATOR_ENV.MALLOC_TRIM_THRESHOLD_,
  ]);
  assert.deepEqual(ALLOCATOR_ENV, {
    MALLOC_MMAP_THRESHOLD_: "1048576",
    MALLOC_TRIM_THRESHOLD_: "33554432",
  });
  const own = await spawnDeno(script, [], {
    permissions: ["--allow-env"],
    env: { MALLOC_TRIM_THRESHOLD_: "1" },
  }).result(30_000);
  assert.deepEqual(JSON.parse(own.stdout), ["1048576", "1"]);
});
