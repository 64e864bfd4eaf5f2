import assert from "node:assert/strict";
import {
  disableCondition,
  findMarkers,
  markerProblems,
  markersIn,
  mutate,
} from "../../tasks/mutate.ts";
import { tempDir } from "../_fixtures/helpers.ts";

Deno.test("disableCondition switches off the first if's whole condition", () => {
  assert.equal(
    disableCondition("  if (!ok(a, (b))) throw new Error(x);"),
    "  if (false) throw new Error(x);",
  );
  assert.equal(disableCondition("} else if (n > max) {"), "} else if (false) {");
  assert.equal(disableCondition("return ok;"), undefined);
  assert.equal(disableCondition("if (a &&"), undefined, "a condition over several lines");
});

Deno.test("markersIn reads name, tests and the guarded line; a marker over no if is stale", () => {
  const source = [
    "// check: size-limit tests/a_test.ts, tests/b_test.ts",
    "",
    "if (n > 10) throw new Error('too big');",
    "// check: stale-one tests/a_test.ts",
    "return n;",
  ].join("\n");
  const [a, b] = markersIn("lib/x.ts", source);
  assert.equal(a?.name, "size-limit");
  assert.deepEqual(a?.tests, ["tests/a_test.ts", "tests/b_test.ts"]);
  assert.equal(a?.target?.line, 3);
  assert.equal(a?.target?.mutated, "if (false) throw new Error('too big');");
  assert.equal(b?.name, "stale-one");
  assert.equal(b?.target, undefined);
});

const LIB = `export function take(n: number): number {
  // check: limit tests/limit_test.ts
  if (n > 10) throw new RangeError("too big");
  // check: negative tests/limit_test.ts
  if (n < 0) throw new RangeError("negative");
  return n;
}
`;
// Pins the limit, not the sign: the second mutant survives.
const TEST = `import { take } from "../lib/x/limit.ts";
Deno.test("over the limit is refused", () => {
  let threw = false;
  try { take(11); } catch { threw = true; }
  if (!threw) throw new Error("take(11) was accepted");
});
`;

Deno.test("mutate kills a pinned check and reports an unpinned one as survived", async () => {
  await using dir = await tempDir("lab-mutate-");
  await Deno.mkdir(`${dir.path}/lib/x`, { recursive: true });
  await Deno.mkdir(`${dir.path}/tests`);
  await Deno.writeTextFile(`${dir.path}/deno.json`, "{}\n");
  await Deno.writeTextFile(`${dir.path}/lib/x/limit.ts`, LIB);
  await Deno.writeTextFile(`${dir.path}/tests/limit_test.ts`, TEST);
  const markers = await findMarkers(dir.path);
  assert.deepEqual(markers.map((m) => m.name), ["limit", "negative"]);
  assert.deepEqual(await markerProblems(dir.path, markers), []);
  const lines: string[] = [];
  const results = await mutate({ root: dir.path, log: (l) => lines.push(l) });
  assert.deepEqual(
    results.map((r) => [r.name, r.outcome]),
    [["limit", "killed"], ["negative", "survived"]],
  );
  // The scratch copy is gone and the original is untouched.
  assert.equal(await Deno.readTextFile(`${dir.path}/lib/x/limit.ts`), LIB);
  const left = [...Deno.readDirSync(`${dir.path}/data/mutate`)];
  assert.deepEqual(left, []);
});

Deno.test("mutate refuses to judge when the unmutated tests fail; stale markers are problems", async () => {
  await using dir = await tempDir("lab-mutate-");
  await Deno.mkdir(`${dir.path}/lib/x`, { recursive: true });
  await Deno.mkdir(`${dir.path}/tests`);
  await Deno.writeTextFile(`${dir.path}/deno.json`, "{}\n");
  await Deno.writeTextFile(
    `${dir.path}/lib/x/limit.ts`,
    LIB.replace('if (n > 10) throw new RangeError("too big");', "return n; // the check is gone"),
  );
  await Deno.writeTextFile(`${dir.path}/tests/limit_test.ts`, TEST);
  const markers = await findMarkers(dir.path);
  const problems = await markerProblems(dir.path, markers);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /marker 'limit' has no 'if/);
  await assert.rejects(
    () => mutate({ root: dir.path, log: () => {} }),
    /the unmutated tests fail/,
  );
});
