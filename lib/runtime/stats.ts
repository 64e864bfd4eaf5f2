/** Summaries of measured samples (latencies, sizes), for the benches and netlab's class run. */

/**
 * The median of the finite samples, in any order: the middle one, or the mean of the two middle
 * ones (NaN when there are none). The benches' medians of a few runs, where nearest rank would
 * pick one run of two.
 */
export function median(xs: readonly number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/**
 * The nearest-rank percentile of samples sorted ascending: the smallest sample with at least
 * `p` percent of the samples at or below it (p50 of [1, 2, 3, 4] is 2, p99 of 100 samples is the
 * 99th). NaN when there are no samples.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`);
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}
