// Latency percentiles that can be merged honestly. Devices send, per telemetry window, only p50, p95,
// p99 and max of their latencies (shared/messages.ts Telemetry), not the latencies themselves, and
// percentiles cannot be averaged. So each window is turned into a distribution that reproduces its
// own percentiles: 50% of its inferences at p50, 45% at p95, 4% at p99, 1% at max. These masses go
// into fixed logarithmic buckets (each 10% wider than the last, 0.01 ms to about 10 minutes), and
// rollups add bucket counts. A percentile of a rollup is read from the merged buckets.
//
// What that gives: for one window, p50/p95/p99 come back to within one bucket (<= 10%); for many
// windows, the merged p95 is the p95 of the union of those step distributions, which weights each
// window by its inference count (a busy device counts more than an idle one, as in a true fleet p95).
// What it does not give: the shape between a window's reported percentiles (a window whose p50 is
// 2 ms and p95 is 9 ms has no mass at 5 ms here); docs/observability.md says so.

/** Bucket i holds latencies in (EDGE0 * RATIO^(i-1), EDGE0 * RATIO^i]; bucket 0 holds <= EDGE0. */
export const EDGE0_MS = 0.01;
export const RATIO = 1.1;
export const BUCKETS = 186; // EDGE0 * 1.1^185 ~ 4.4e5 ms

/** Sparse counts: bucket index -> weight (fractional weights come from the 50/45/4/1 split). */
export type LatencyHistogram = Record<number, number>;

export function bucketOf(ms: number): number {
  if (!(ms > EDGE0_MS)) return 0;
  const i = Math.ceil(Math.log(ms / EDGE0_MS) / Math.log(RATIO) - 1e-9);
  return Math.min(Math.max(i, 0), BUCKETS - 1);
}

/** Upper edge of a bucket, in ms: what a percentile read from it reports. */
export function upperEdge(i: number): number {
  return EDGE0_MS * RATIO ** i;
}

const SPLIT: readonly [keyof WindowLatency, number][] = [['p50', 0.5], ['p95', 0.45], ['p99', 0.04], ['max', 0.01]];

export interface WindowLatency { p50: number; p95: number; p99: number; max: number }

/** Add one window of `n` successful inferences with its reported percentiles. */
export function addWindow(h: LatencyHistogram, n: number, l: WindowLatency): void {
  if (!(n > 0)) return;
  addToBuckets(h, n, windowBuckets(l));
}

/** The buckets of a window's p50, p95, p99 and max (in SPLIT's order): computed once for the several rollup rows a window feeds. */
export function windowBuckets(l: WindowLatency): [number, number, number, number] {
  return [bucketOf(l.p50), bucketOf(l.p95), bucketOf(l.p99), bucketOf(l.max)];
}

/** addWindow with the buckets already computed (windowBuckets). */
export function addToBuckets(h: LatencyHistogram, n: number, b: readonly [number, number, number, number]): void {
  if (!(n > 0)) return;
  for (let k = 0; k < 4; k++) h[b[k]] = (h[b[k]] ?? 0) + n * SPLIT[k][1];
}

export function merge(into: LatencyHistogram, from: LatencyHistogram): LatencyHistogram {
  for (const [k, v] of Object.entries(from)) into[Number(k)] = (into[Number(k)] ?? 0) + v;
  return into;
}

/**
 * The q-quantile (0..1) of a histogram, as its bucket's upper edge, never above `max` when given (the
 * largest latency actually reported): null for an empty histogram.
 */
export function quantile(h: LatencyHistogram, q: number, max?: number): number | null {
  return quantiles(h, [q], max)[0];
}

/** Several quantiles (ascending) in one pass over the sorted buckets. */
export function quantiles(h: LatencyHistogram, qs: readonly number[], max?: number): (number | null)[] {
  const keys = Object.keys(h).map(Number).sort((a, b) => a - b);
  const total = keys.reduce((a, k) => a + h[k], 0);
  if (total <= 0) return qs.map(() => null);
  const out: (number | null)[] = [];
  let acc = 0, i = 0;
  for (const q of qs) {
    // a small tolerance: 0.5 + 0.45 must reach 0.95 of the total despite floating point
    const target = q * total - total * 1e-9;
    while (i < keys.length - 1 && acc + h[keys[i]] < target) acc += h[keys[i++]];
    const edge = upperEdge(keys[i]);
    out.push(round(max !== undefined ? Math.min(edge, max) : edge));
  }
  return out;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
