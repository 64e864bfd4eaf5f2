/**
 * The actors' memory settings (lib/runtime/process.ts: ALLOCATOR_ENV, V8_MEMORY_FLAG) reach every
 * Deno process the harness starts and take effect there; an allocator value the caller sets wins,
 * and V8 flags set in DENO_V8_FLAGS still apply beside the lab's.
 */

import assert from "node:assert/strict";
import { ALLOCATOR_ENV, runCommand, spawnDeno, V8_MEMORY_FLAG } from "../../lib/runtime/mod.ts";
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
  exposedGc: typeof globalThis.gc === "function",
  heapLimitMiB: v8.getHeapStatistics().heap_size_limit / 2 ** 20,
  newSpaceMiB: space.space_size / 2 ** 20,
}));
`;

Deno.test("spawnDeno starts Deno with malloc's thresholds, V8's young generation capped and gc() exposed; the caller's own values and DENO_V8_FLAGS still apply", async () => {
  assert.deepEqual(ALLOCATOR_ENV, {
    MALLOC_MMAP_THRESHOLD_: "1048576",
    MALLOC_TRIM_THRESHOLD_: "33554432",
  });
  assert.equal(V8_MEMORY_FLAG, "--v8-flags=--max-semi-space-size=8,--expose-gc");
  await using dir = await tempDir();
  const script = `${dir.path}/probe.ts`;
  await Deno.writeTextFile(script, PROBE);

  const plain = JSON.parse(
    (await spawnDeno(script, [], { permissions: ["--allow-env"] }).result(60_000)).stdout,
  );
  assert.equal(plain.mmap, "1048576");
  assert.equal(plain.trim, "33554432");
  // Two semi-spaces of 8 MiB at most: the flag took effect.
  assert.ok(plain.newSpaceMiB <= 16, `new space ${plain.newSpaceMiB} MiB with the cap`);
  // gc() for shortLivedBytes (lib/runtime/garbage.ts).
  assert.equal(plain.exposedGc, true, "--expose-gc took effect");

  const own = JSON.parse(
    (await spawnDeno(script, [], {
      permissions: ["--allow-env"],
      env: { MALLOC_TRIM_THRESHOLD_: "1", DENO_V8_FLAGS: "--max-old-space-size=256" },
    }).result(60_000)).stdout,
  );
  assert.equal(own.mmap, "1048576");
  assert.equal(own.trim, "1");
  assert.ok(own.heapLimitMiB < 512, `heap limit ${own.heapLimitMiB} MiB: DENO_V8_FLAGS applies`);
  assert.equal(own.exposedGc, true, "and the lab's flag beside it");
  assert.ok(own.newSpaceMiB <= 16, `new space ${own.newSpaceMiB} MiB with DENO_V8_FLAGS set too`);

  // The same work with a larger cap (V8's own default on a machine of 16 GiB or more: 32 MiB)
  // grows past 16 MiB: the probe measures the cap.
  const bare = await runCommand(Deno.execPath(), [
    "run",
    "--quiet",
    "--v8-flags=--max-semi-space-size=32",
    "--allow-env",
    script,
  ]);
  assert.equal(bare.code, 0, bare.stderr);
  const uncapped = JSON.parse(bare.stdout);
  assert.ok(uncapped.newSpaceMiB > 16, `new space ${uncapped.newSpaceMiB} MiB with a 32 MiB cap`);
  assert.equal(uncapped.exposedGc, false, "gc() comes from the lab's flag");
});
