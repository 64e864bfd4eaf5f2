/**
 * Short-lived buffers are freed soon after they die (lib/runtime/garbage.ts): `FramedStream`
 * reports each frame to `shortLivedBytes`, which asks V8 for a young-generation collection every
 * 1 MiB of frames of 32 KiB or more when the process has `gc()`, as every actor started by
 * `spawnDeno` or the launcher has.
 * Without it the same frames pile up until V8's own 64 MiB limit on memory outside its heap.
 */

import assert from "node:assert/strict";
import {
  ALLOCATOR_ENV,
  COLLECT_EVERY,
  LARGE_BUFFER,
  runCommand,
  spawnDeno,
  V8_MEMORY_FLAG,
} from "../../lib/runtime/mod.ts";
import { ROOT } from "../_fixtures/helpers.ts";

const PROBE = `${ROOT}/tests/_fixtures/garbage_probe.ts`;
const PERMISSIONS = [`--allow-read=${ROOT}`];

interface Probe {
  grewMiB: number;
  collections: number;
}

Deno.test("frames read and written are freed soon after: 96 MiB of frames grow the peak by less than 24 MiB, and by more without gc()", async () => {
  assert.equal(COLLECT_EVERY, 1024 * 1024);
  assert.equal(LARGE_BUFFER, 32 * 1024);
  // As the actors run: V8_MEMORY_FLAG (with --expose-gc) and the allocator settings.
  const actor = await spawnDeno(PROBE, [], { permissions: PERMISSIONS }).result(60_000);
  const collected = JSON.parse(actor.stdout) as Probe;
  // 384 frames of 256 KiB read and 384 written (4 bytes more each, the header): a collection
  // every 1 MiB reported.
  assert.equal(collected.collections, 192);
  assert.ok(collected.grewMiB < 24, `peak grew by ${collected.grewMiB} MiB with gc()`);

  // Small frames are left to V8 (LARGE_BUFFER): their objects fill the young generation as fast.
  const small = await spawnDeno(PROBE, ["1024"], { permissions: PERMISSIONS }).result(60_000);
  assert.equal((JSON.parse(small.stdout) as Probe).collections, 0);

  // The control: the same probe, the same settings but without gc().
  const withoutGc = V8_MEMORY_FLAG.replace(",--expose-gc", "");
  assert.notEqual(withoutGc, V8_MEMORY_FLAG);
  const plain = await runCommand(Deno.execPath(), [
    "run",
    "--quiet",
    withoutGc,
    ...PERMISSIONS,
    PROBE,
  ], { env: { ...ALLOCATOR_ENV } });
  assert.equal(plain.code, 0, plain.stderr);
  const piled = JSON.parse(plain.stdout) as Probe;
  assert.equal(piled.collections, 0);
  assert.ok(piled.grewMiB > 40, `peak grew by ${piled.grewMiB} MiB without gc()`);
});
