// Drift histograms: one binning, used by the server (baselines from the reference set, PSI) and by the
// agent (counts over a telemetry window), so the two are comparable bin for bin.
//   values: counts.length === edges.length + 1. counts[0] holds x < edges[0], counts[i] holds
//           edges[i-1] <= x < edges[i], counts[edges.length] holds x >= edges[last]. NaN is not counted.
//   argmax: counts[i] is the number of rows (along the last axis) whose largest element is at index i.

type Numeric = ArrayLike<number> | ArrayLike<bigint>;

/** Index of the bin x falls in (see above); edges must be sorted ascending. */
export function binIndex(edges: readonly number[], x: number): number {
  let lo = 0, hi = edges.length; // first edge > x, by binary search
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (edges[mid] <= x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/**
 * Add up to `maxSamples` elements of `data` to `counts`, strided evenly over the tensor. `phase` shifts
 * the sampled positions (the agent rotates it per call, so over many calls every position is seen and
 * fixed pixels, say an image's always-black corner, do not bias the histogram). With maxSamples >=
 * data.length every element is counted, which is what the server does for a baseline.
 * Returns the number of elements counted.
 */
export function binValues(edges: readonly number[], data: Numeric, counts: number[], maxSamples = Infinity, phase = 0): number {
  const n = data.length;
  if (n === 0 || maxSamples <= 0) return 0;
  const stride = maxSamples >= n ? 1 : Math.ceil(n / maxSamples);
  let counted = 0;
  for (let i = stride === 1 ? 0 : Math.abs(Math.trunc(phase)) % stride; i < n; i += stride) {
    const x = Number(data[i]);
    if (Number.isNaN(x)) continue;
    counts[binIndex(edges, x)]++;
    counted++;
  }
  return counted;
}

/** Count, for each row along the last axis, the index of its largest element. Indexes beyond counts are dropped. */
export function binArgmax(data: Numeric, dims: readonly number[], counts: number[]): number {
  const width = dims.length ? dims[dims.length - 1] : data.length;
  if (!width) return 0;
  const rows = Math.floor(data.length / width);
  for (let r = 0; r < rows; r++) {
    const base = r * width;
    let best = 0, bestValue = Number(data[base]);
    for (let j = 1; j < width; j++) {
      const v = Number(data[base + j]);
      if (v > bestValue) { bestValue = v; best = j; }
    }
    if (best < counts.length) counts[best]++;
  }
  return rows;
}

/** Empty counts with the shape a baseline histogram implies. */
export function emptyCounts(h: { kind: 'values' | 'argmax'; edges: readonly number[]; counts: readonly number[] }): number[] {
  return new Array<number>(h.kind === 'values' ? h.edges.length + 1 : h.counts.length).fill(0);
}
