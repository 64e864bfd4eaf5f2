import assert from "node:assert/strict";
import { percentile } from "../../lib/runtime/mod.ts";

Deno.test("percentile is the nearest rank: the smallest sample with p% at or below it", () => {
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 75), 3);
  assert.equal(percentile([1, 2, 3, 4], 100), 4);
  assert.equal(percentile([7], 1), 7);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 99), 99);
  assert.equal(percentile(hundred, 50), 50);
  // One slow sample in a hundred is the p100, not the p99; two make the p99.
  assert.equal(percentile([...hundred.slice(0, 99).map(() => 1), 500], 99), 1);
  assert.equal(percentile([...hundred.slice(0, 98).map(() => 1), 500, 500], 99), 500);
});

Deno.test("percentile of nothing is NaN, and p outside (0, 100] is refused", () => {
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.throws(() => percentile([1], 0), RangeError);
  assert.throws(() => percentile([1], 101), RangeError);
});
