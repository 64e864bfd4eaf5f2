/**
 * The actors' memory settings (lib/runtime/process.ts MEMORY_ENV) reach every Deno process the
 * harness starts and take effect there, and a value the caller sets wins.
 */

import assert from "node:assert/strict";
import { MEMORY_ENV, spawnDeno } from "../../lib/runtime/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

/** Prints the settings it was started with, and V8's new space after 3 million short-lived objects. */
const PROBE = `
import v8 from "node:v8";
let keep = [];
for (let i = 0; i < 3e6; i++) {
  keep.push({ i, s: "x" + i });
  if (keep.length > 200000) keep = [];
}
const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
console.log(JSON.stringify({
  mmap: Deno.env.get("MALLOC_MMAP_THRESHOLD_"),
  trim: Deno.env.get("MALLOC_TRIM_THRESHOLD_"),
  v8: Deno.env.get("DENO_V8_FLAGS"),
  newSpaceMiB: space.space_size / 2 ** 20,
}));
`;

Deno.test("spawnDeno starts Deno with malloc's thresholds and V8's young generation capped, unless the caller sets its own", async () => {
  assert.deepEqual(MEMORY_ENV, {
    MALLOC_MMAP_THRESHOLD_: "1048576",
    MALLOC_TRIM_THRESHOLD_: "33554432",
    DENO_V8_FLAGS: "--max-semi-space-size=8",
  });
  await using dir = await tempDir();
  const script = `${dir.path}/probe.ts`;
  await Deno.writeTextFile(script, PROBE);

  const plain = JSON.parse(
    (await spawnDeno(script, [], { permissions: ["--allow-env"] }).result(60_000)).stdout,
  );
  assert.equal(plain.mmap, "1048576");
  assert.equal(plain.trim, "33554432");
  assert.equal(plain.v8, "--max-semi-space-size=8");
  // Two semi-spaces of 8 MiB at most: the flag took effect, not only reached the environment.
  assert.ok(plain.newSpaceMiB <= 16, `new space ${plain.newSpaceMiB} MiB with the cap`);

  const own = JSON.parse(
    (await spawnDeno(script, [], {
      permissions: ["--allow-env"],
      env: { MALLOC_TRIM_THRESHOLD_: "1", DENO_V8_FLAGS: "--max-semi-space-size=32" },
    }).result(60_000)).stdout,
  );
  assert.equal(own.mmap, "1048576");
  assert.equal(own.trim, "1");
  assert.equal(own.v8, "--max-semi-space-size=32");
  // The same churn with the caller's larger cap grows past it: the probe measures the cap.
  assert.ok(own.newSpaceMiB > 16, `new space ${own.newSpaceMiB} MiB with the caller's flags`);
});
