/**
 * The short fuzz run in `deno task test`: every decoder takes generated and mutated inputs and
 * either returns or throws its own typed error (the long run is `deno task fuzz`).
 */

import assert from "node:assert/strict";
import { fuzzTarget, TARGETS } from "../../tasks/fuzz.ts";

/** Inputs per decoder here (the long run, `deno task fuzz`, takes a million each). */
const RUNS = 10_000;

for (const target of TARGETS) {
  Deno.test(`fuzz: ${target.name} returns or throws its own error on generated input`, async () => {
    const result = await fuzzTarget(target, RUNS);
    assert.equal(result.failure, undefined, result.failure);
    assert.equal(result.runs, RUNS);
  });
}

Deno.test("fuzz: a decoder that throws something else is caught and reported with its input", async () => {
  const broken = {
    name: "broken",
    seeds: () => Promise.resolve([Uint8Array.of(1, 2, 3)]),
    run: (input: Uint8Array) => {
      if (input.length > 2 && input[0] === 1) throw new TypeError("not a typed error");
    },
    expected: (err: unknown) => err instanceof RangeError,
  };
  const result = await fuzzTarget(broken, 500, 42);
  assert.match(result.failure ?? "", /threw TypeError: not a typed error on input \[1,/);
});
