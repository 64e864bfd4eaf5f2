/**
 * How `deno task bench` runs a row (`measurePairs`, tasks/bench_rows.ts), with sides that record
 * their calls: the warm-up once, then each pair back to back with the first side turned each pair;
 * a pair's two values kept only together; a failing peer left out with the lab still measured; a
 * failing warm-up reported, the pairs measured anyway.
 */

import assert from "node:assert/strict";
import { measurePairs, type Sides } from "../../tasks/bench_rows.ts";
import type { RowResult } from "../../tasks/bench_report.ts";

function emptyRow(): RowResult {
  return {
    id: "tls13",
    label: "a row",
    peer: "a peer",
    unit: "things/s",
    higherIsBetter: true,
    target: { kind: "ratio", min: 1 },
    lab: [],
    peerValues: [],
  };
}

/** Sides whose calls are written to `calls`; `fail` names calls that throw ("lab2", "peer1", …). */
function recordingSides(calls: string[], fail: string[] = []): Sides {
  let lab = 0;
  let peer = 0;
  const step = (name: string, value: number) => {
    calls.push(name);
    if (fail.includes(name)) return Promise.reject(new Error(`${name} broke`));
    return Promise.resolve(value);
  };
  return {
    warmUp: async () => {
      await step("warm-up", 0);
    },
    lab: () => step(`lab${lab}`, 100 + lab++),
    peer: () => step(`peer${peer}`, 200 + peer++),
    teardown: () => Promise.resolve(),
  };
}

Deno.test("measurePairs: the warm-up once, then lab and peer back to back, the first side turned each pair", async () => {
  const calls: string[] = [];
  const lines: string[] = [];
  const result = emptyRow();
  await measurePairs(recordingSides(calls), 3, result, (l) => lines.push(l));
  assert.deepEqual(calls, ["warm-up", "lab0", "peer0", "peer1", "lab1", "lab2", "peer2"]);
  assert.deepEqual(result.lab, [100, 101, 102]);
  assert.deepEqual(result.peerValues, [200, 201, 202]);
  assert.equal(result.problem, undefined);
  assert.match(lines.join("\n"), /pair 2\/3 \(peer first\): lab 101\.0, peer 201\.0/);
});

Deno.test("measurePairs: a lab that fails after the peer ran drops that pair's peer value, and the row fails with the pairs before it kept", async () => {
  const calls: string[] = [];
  const result = emptyRow();
  await assert.rejects(
    measurePairs(recordingSides(calls, ["lab1"]), 3, result, () => {}),
    /lab1 broke/,
  );
  assert.deepEqual(calls, ["warm-up", "lab0", "peer0", "peer1", "lab1"]);
  assert.deepEqual(result.lab, [100]);
  assert.deepEqual(result.peerValues, [200], "the pairs stay aligned");
});

Deno.test("measurePairs: a peer that fails is reported and left out of the later pairs; the lab is still measured in each", async () => {
  const calls: string[] = [];
  const result = emptyRow();
  await measurePairs(recordingSides(calls, ["peer1"]), 3, result, () => {});
  assert.deepEqual(calls, ["warm-up", "lab0", "peer0", "peer1", "lab1", "lab2"]);
  assert.deepEqual(result.lab, [100, 101, 102]);
  assert.deepEqual(result.peerValues, [200]);
  assert.equal(result.problem, "failed: peer1 broke");
});

Deno.test("measurePairs: a warm-up that fails is reported, and the pairs are measured anyway", async () => {
  const calls: string[] = [];
  const lines: string[] = [];
  const result = emptyRow();
  await measurePairs(recordingSides(calls, ["warm-up"]), 2, result, (l) => lines.push(l));
  assert.deepEqual(result.lab, [100, 101]);
  assert.deepEqual(result.peerValues, [200, 201]);
  assert.match(lines.join("\n"), /warm-up failed \(warm-up broke\); measuring anyway/);
  assert.equal(result.problem, undefined);
});

Deno.test("measurePairs: a row without a warm-up or a peer measures the lab alone", async () => {
  const calls: string[] = [];
  const sides = recordingSides(calls);
  delete sides.warmUp;
  delete sides.peer;
  const result = emptyRow();
  await measurePairs(sides, 2, result, () => {});
  assert.deepEqual(calls, ["lab0", "lab1"]);
  assert.deepEqual(result.lab, [100, 101]);
  assert.deepEqual(result.peerValues, []);
});
