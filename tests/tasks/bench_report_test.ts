/**
 * The pure half of `deno task bench` (tasks/bench_report.ts): medians and spreads, the ratio's
 * direction, verdicts against targets, the table, the JSON round trip and the comparison; and the
 * process readings the rows take (CPU time, peak RSS).
 */

import assert from "node:assert/strict";
import {
  type BenchRun,
  compareRuns,
  evaluate,
  formatCell,
  formatRatio,
  formatTable,
  pairOrder,
  pairRatios,
  parseLoadavg,
  parseRun,
  parseSTime,
  ratio,
  type RowResult,
  spread,
} from "../../tasks/bench_report.ts";
import { cpuMs, cpuWindow, peakRss } from "../../tasks/bench_actors.ts";
import { median } from "../../lib/runtime/mod.ts";

const row = (over: Partial<RowResult>): RowResult => ({
  id: "tls12",
  label: "chat TLS 1.2 handshakes/s",
  peer: "openssl s_server",
  unit: "handshakes/s",
  higherIsBetter: true,
  target: { kind: "ratio", min: 0.7 },
  lab: [100, 300, 200],
  peerValues: [250, 150, 200],
  ...over,
});

Deno.test("bench report: median and spread of paired runs, ignoring what was not measured", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.equal(median([NaN, 5]), 5);
  assert.deepEqual(spread([3, 1, 2]), { min: 1, max: 3 });
  assert.equal(formatCell([100, 300, 200]), "200 (100–300)");
  assert.equal(formatCell([]), "–");
});

Deno.test("bench report: above 1 means the lab did better, whichever way the unit points", () => {
  assert.equal(ratio(200, 100, true), 2);
  assert.equal(ratio(50, 100, false), 2, "half the memory of the peer: twice as good");
  assert.ok(Number.isNaN(ratio(0, 100, true)));
  assert.ok(Number.isNaN(ratio(100, NaN, true)));
});

Deno.test("bench report: verdicts against ratio targets and absolute ceilings; missing peers", () => {
  assert.deepEqual(evaluate(row({ peerValues: [100, 300, 200] })), { ratio: 1, verdict: "met" });
  assert.equal(evaluate(row({ lab: [100, 100, 100] })).verdict, "NOT met");
  assert.equal(
    evaluate(row({ peerValues: [], problem: "missing: cfssl not installed" })).verdict,
    "missing",
  );
  const rss = row({
    higherIsBetter: false,
    target: { kind: "max", value: 64, unit: "MiB" },
    lab: [60, 70, 63],
    peerValues: [],
  });
  assert.equal(evaluate(rss).verdict, "met");
  assert.equal(evaluate({ ...rss, lab: [65, 70, 80] }).verdict, "NOT met");
});

Deno.test("bench report: the ratio is the median of each pair's ratio, so drift between pairs cancels", () => {
  // The machine got twice as fast between pairs; each pair shows the lab at half the peer.
  const drift = row({ lab: [100, 200, 400], peerValues: [200, 400, 800] });
  assert.deepEqual(pairRatios(drift), [0.5, 0.5, 0.5]);
  assert.equal(evaluate(drift).ratio, 0.5);
  // A peer that failed after the first pair: the ratio of the medians.
  assert.equal(evaluate(row({ peerValues: [100], problem: "failed: x" })).ratio, 2);
  assert.equal(formatRatio(0.5, [0.4, 0.5, 0.9]), "0.50 (0.40–0.90)");
  assert.equal(formatRatio(NaN, []), "–");
});

Deno.test("bench report: one table line per row, with the peer's problem in place of its value", () => {
  const table = formatTable([row({}), row({ id: "ca", peerValues: [], problem: "missing: x" })]);
  const lines = table.split("\n");
  assert.equal(lines.length, 4);
  assert.match(lines[2]!, /200 \(100–300\).*200 \(150–250\).*1\.00 \(0\.40–2\.00\).*≥ 0\.7.*met/);
  assert.match(lines[3]!, /missing: x.*missing/);
  assert.equal(new Set(lines.map((l) => l.length)).size, 1, "columns line up");
});

Deno.test("bench report: JSON round trip and the comparison with the previous run", () => {
  const run: BenchRun = {
    date: "2026-11-27T21:00:00.000Z",
    machine: { cpus: 2, cpuModel: "AMD EPYC", memMiB: 24105 },
    pairs: 3,
    loadStart: [1, 2, 3],
    loadEnd: [1, 2, 3],
    rows: [row({ id: "bank", label: "bank ops/s", lab: [100, 100, 100] })],
  };
  const back = parseRun(JSON.stringify(run));
  assert.deepEqual(back, run);
  assert.equal(parseRun("not json"), undefined);
  assert.equal(parseRun("{}"), undefined);
  const now = { ...run, rows: [row({ id: "bank", label: "bank ops/s", lab: [150, 150, 150] })] };
  assert.deepEqual(compareRuns(run, now), [
    "bank ops/s: 100 → 150 handshakes/s (+50%, ratio 0.50 → 0.75)",
  ]);
});

Deno.test("bench report: parses openssl s_time's count and /proc/loadavg", () => {
  const out = "Collecting connection statistics for 3 seconds\n" +
    "tttt\n\n612 connections in 2.13s; 287.32 connections/user sec, bytes read 0\n" +
    "612 connections in 4 real seconds, 0 bytes read per connection\n";
  assert.equal(parseSTime(out), 153);
  assert.ok(Number.isNaN(parseSTime("connect: Connection refused")));
  assert.deepEqual(parseLoadavg("3.51 4.00 3.49 2/431 12345\n"), [3.51, 4, 3.49]);
});

Deno.test("cpuMs and peakRss: a process's CPU time grows with the work it does; a process that is gone has none", async () => {
  const before = await cpuMs(Deno.pid);
  assert.ok(before !== undefined && before >= 0);
  // 200 ms of work on this thread: at least a few 10 ms clock ticks.
  const until = performance.now() + 200;
  let spin = 0;
  while (performance.now() < until) spin++;
  const after = await cpuMs(Deno.pid);
  assert.ok(spin > 0 && after! - before! >= 100, `${before} -> ${after}`);
  assert.ok(((await peakRss(Deno.pid)) ?? 0) > 1024 * 1024);
  const gone = new Deno.Command("true").spawn();
  await gone.status;
  assert.equal(await cpuMs(gone.pid), undefined);
  // A window: this process's own time (microseconds) and another's (here this one, through /proc).
  const end = await cpuWindow(Deno.pid);
  const stop = performance.now() + 200;
  while (performance.now() < stop) spin++;
  const used = await end();
  assert.ok(used.self >= 150 && used.self < 1000, `self ${used.self} ms`);
  assert.ok(used.other >= 100, `other ${used.other} ms`);
});

Deno.test("each pair runs lab and peer back to back, the lab first in the first pair and the peer first in the next, in turn", () => {
  assert.deepEqual([0, 1, 2, 3, 4].map(pairOrder), [
    "lab first",
    "peer first",
    "lab first",
    "peer first",
    "lab first",
  ]);
});
