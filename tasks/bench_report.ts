/**
 * The pure half of `deno task bench` (tasks/bench.ts): medians and spreads of paired runs, the
 * lab-to-peer ratio (above 1 means the lab did better), each row's verdict against its target,
 * the printed table, the JSON written to data/bench/latest.json and the comparison with the
 * previous run. No I/O here, so that tests/tasks/bench_report_test.ts can check it.
 */

import { median } from "../lib/runtime/mod.ts";

/** What a row is held to: a ratio to its peer (at least `min`) or an absolute ceiling. */
export type Target =
  | { kind: "ratio"; min: number }
  | { kind: "max"; value: number; unit: string };

export interface RowResult {
  id: string;
  /** What the lab does, e.g. "chat TLS 1.2 handshakes/s". */
  label: string;
  /** The peer, e.g. "openssl s_server"; "(absolute)" for a ceiling. */
  peer: string;
  unit: string;
  /** Whether more is better (handshakes/s) or less (MiB). */
  higherIsBetter: boolean;
  target: Target;
  /** One value per pair, in run order. */
  lab: number[];
  /** One value per pair; empty when the peer is missing. */
  peerValues: number[];
  /** Why the peer (or the row) could not be measured: "missing: …", "failed: …". */
  problem?: string;
  note?: string;
}

export interface BenchRun {
  date: string;
  machine: { cpus: number; cpuModel: string; memMiB: number };
  pairs: number;
  loadStart: number[];
  loadEnd: number[];
  rows: RowResult[];
}

export function spread(xs: readonly number[]): { min: number; max: number } {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length === 0) return { min: NaN, max: NaN };
  return { min: Math.min(...v), max: Math.max(...v) };
}

/** lab / peer when more is better, peer / lab when less is better: above 1, the lab did better. */
export function ratio(lab: number, peer: number, higherIsBetter: boolean): number {
  if (!Number.isFinite(lab) || !Number.isFinite(peer) || lab <= 0 || peer <= 0) return NaN;
  return higherIsBetter ? lab / peer : peer / lab;
}

export type Verdict = "met" | "NOT met" | "missing" | "n/a";

/**
 * Which side of pair `i` (from 0) runs first: the lab in the first pair, the peer in the second,
 * and so on in turn, so that whatever the first run of a pair meets (the previous row's teardown, a
 * cold cache, a load that is fading) falls on both sides alike.
 */
export function pairOrder(i: number): "lab first" | "peer first" {
  return i % 2 === 0 ? "lab first" : "peer first";
}

/**
 * Each pair's ratio, in run order: lab and peer ran back to back, so a change of load between
 * pairs falls on both sides of one ratio. Empty when the peer was not measured in every pair.
 */
export function pairRatios(row: RowResult): number[] {
  if (row.target.kind === "max" || row.peerValues.length !== row.lab.length) return [];
  return row.lab.map((lab, i) => ratio(lab, row.peerValues[i]!, row.higherIsBetter));
}

/**
 * The row's ratio (NaN for an absolute row) and whether the target is met: the median of the
 * pairs' ratios, or the ratio of the medians when the pairs are incomplete.
 */
export function evaluate(row: RowResult): { ratio: number; verdict: Verdict } {
  const lab = median(row.lab);
  if (row.target.kind === "max") {
    if (!Number.isFinite(lab)) return { ratio: NaN, verdict: row.problem ? "missing" : "n/a" };
    return { ratio: NaN, verdict: lab <= row.target.value ? "met" : "NOT met" };
  }
  const pairs = pairRatios(row);
  const r = pairs.length > 0
    ? median(pairs)
    : ratio(lab, median(row.peerValues), row.higherIsBetter);
  if (!Number.isFinite(r)) return { ratio: NaN, verdict: row.problem ? "missing" : "n/a" };
  return { ratio: r, verdict: r >= row.target.min ? "met" : "NOT met" };
}

/** A number for the table: 3 significant figures, thousands separated. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return "–";
  const abs = Math.abs(x);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return x.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** "median (min–max)", or "–" when nothing was measured. */
export function formatCell(xs: readonly number[]): string {
  if (xs.filter((x) => Number.isFinite(x)).length === 0) return "–";
  const s = spread(xs);
  return `${formatNumber(median(xs))} (${formatNumber(s.min)}–${formatNumber(s.max)})`;
}

/** "0.52 (0.38–0.96)": the ratio, then the pairs' lowest and highest. */
export function formatRatio(r: number, pairs: readonly number[]): string {
  if (!Number.isFinite(r)) return "–";
  const s = spread(pairs);
  return pairs.length > 1 && Number.isFinite(s.min)
    ? `${r.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`
    : r.toFixed(2);
}

export function formatTarget(t: Target): string {
  return t.kind === "ratio" ? `≥ ${t.min}` : `≤ ${t.value} ${t.unit}`;
}

/** A Markdown table (it also reads well in a terminal), one line per row. */
export function formatTable(rows: readonly RowResult[]): string {
  const header = ["measure", "lab", "peer", "peer value", "ratio (pairs)", "target", "verdict"];
  const lines = rows.map((row) => {
    const { ratio: r, verdict } = evaluate(row);
    return [
      row.label,
      formatCell(row.lab),
      row.peer,
      row.target.kind === "max"
        ? ""
        : (row.problem && row.peerValues.length === 0 ? row.problem : formatCell(row.peerValues)),
      formatRatio(r, pairRatios(row)),
      formatTarget(row.target),
      verdict,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [fmt(header), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...lines.map(fmt)]
    .join("\n");
}

/** The heading lines: date, machine, pairs, load average at start and end. */
export function formatHeading(run: BenchRun): string {
  const load = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(" ");
  return [
    `deno task bench, ${run.date}: ${run.machine.cpus} CPUs (${run.machine.cpuModel}), ${
      Math.round(run.machine.memMiB / 1024)
    } GiB RAM; ${run.pairs} pairs, lab and peer back to back, which first in turn; median ` +
    "(min–max); ratio above 1:",
    "the lab did better; the ratio is the median of the pairs' ratios (min–max)",
    `load average at start ${load(run.loadStart)}, at end ${load(run.loadEnd)}`,
  ].join("\n");
}

/** One line per row present in both runs: the lab's median then and now, and the change. */
export function compareRuns(previous: BenchRun, current: BenchRun): string[] {
  const out: string[] = [];
  for (const row of current.rows) {
    const before = previous.rows.find((r) => r.id === row.id);
    if (!before) continue;
    const a = median(before.lab);
    const b = median(row.lab);
    if (!Number.isFinite(a) || !Number.isFinite(b) || a === 0) continue;
    const change = (b / a - 1) * 100;
    const ra = evaluate(before).ratio;
    const rb = evaluate(row).ratio;
    const ratios = Number.isFinite(ra) && Number.isFinite(rb)
      ? `, ratio ${ra.toFixed(2)} → ${rb.toFixed(2)}`
      : "";
    out.push(
      `${row.label}: ${formatNumber(a)} → ${formatNumber(b)} ${row.unit} (${
        change >= 0 ? "+" : ""
      }${change.toFixed(0)}%${ratios})`,
    );
  }
  return out;
}

/** Parses a previous run's JSON; undefined when it is not one. */
export function parseRun(text: string): BenchRun | undefined {
  try {
    const v = JSON.parse(text) as Partial<BenchRun>;
    if (!v || !Array.isArray(v.rows) || typeof v.date !== "string") return undefined;
    return v as BenchRun;
  } catch {
    return undefined;
  }
}

/** The load average from /proc/loadavg's text. */
export function parseLoadavg(text: string): number[] {
  return text.trim().split(/\s+/).slice(0, 3).map(Number);
}

/** "N connections in T real seconds" from `openssl s_time` → connections per second. */
export function parseSTime(text: string): number {
  const m = /(\d+) connections in ([\d.]+) real seconds/.exec(text);
  if (!m) return NaN;
  const seconds = Number(m[2]);
  return seconds > 0 ? Number(m[1]) / seconds : NaN;
}
