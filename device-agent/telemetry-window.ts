// Inference figures gathered over one window: counts, errors, latency percentiles, and drift histograms
// over the bins of the active model's baseline (see shared/histogram.ts).
import { binArgmax, binValues, emptyCounts } from '../shared/histogram.ts';
import type { ActiveModel, CallFigures, Histogram, Manifest, Telemetry } from '../shared/messages.ts';
import type { Feeds, Outputs } from '../runtime/onnx-session.ts';

/**
 * The process's resident memory, read at most once per RSS_MAX_AGE_MS: one agent cuts a window every
 * few seconds and reads it fresh each time, but a simulator process hosting a thousand agents read
 * /proc once per agent per window (9% of its CPU in a 2,000-device revert), all for the same process.
 */
const RSS_MAX_AGE_MS = 250;
let rssRead = { at: -Infinity, bytes: 0 };
function residentBytes(): number {
  const now = performance.now(); // the host's monotonic clock, not the agent's (tests move that one)
  if (!(now - rssRead.at < RSS_MAX_AGE_MS)) rssRead = { at: now, bytes: process.memoryUsage.rss() };
  return rssRead.bytes;
}

/** per call and input: enough for a histogram over a window, cheap next to a ~25 µs inference */
const MAX_SAMPLES_PER_INPUT = 32;
const MAX_LATENCIES = 50_000;

type Baseline = NonNullable<Manifest['driftBaseline']>;
interface Bins { name: string; kind: Histogram['kind']; edges: number[]; counts: number[] }

export class TelemetryWindow {
  private latencies: number[] = [];
  private errors = 0;
  private start: number;
  private inputs: Bins[] = [];
  private outputs: Bins[] = [];
  private phase = 0;

  constructor(private readonly now: () => number) {
    this.start = now();
  }

  /** Bin by this baseline from now on (a new model: its histograms start empty). */
  setBaseline(baseline: Baseline | undefined): void {
    this.inputs = baseline ? binsOf(baseline.inputs) : [];
    this.outputs = baseline ? binsOf(baseline.outputs) : [];
  }

  record(ms: number, ok: boolean, feeds?: Feeds, outputs?: Outputs): void {
    if (ok) this.latencies.push(ms); else this.errors++;
    if (this.latencies.length > MAX_LATENCIES) this.latencies = this.latencies.filter((_, i) => i % 2 === 0); // bounded memory
    if (feeds && this.inputs.length) this.phase++;
    binCall(this.inputs, this.outputs, this.phase, feeds, outputs);
  }

  get count(): number { return this.latencies.length + this.errors; }

  // [#19] per-model and per-chain figures, for a device running several models (absent otherwise, so a
  // single-model window is unchanged)
  private models = new Map<string, { model: ActiveModel; calls: Calls; inputs: Bins[]; outputs: Bins[]; phase: number }>();
  private chain: Calls | null = null;

  /**
   * One call of one model of a set (the call also counts in record()). With the model's drift baseline,
   * its inputs and outputs are binned by it too (the drift gate per model of a release campaign).
   */
  recordModel(model: ActiveModel, ms: number, ok: boolean, feeds?: Feeds, outputs?: Outputs, baseline?: Baseline): void {
    let m = this.models.get(model.modelId);
    if (!m || m.model.manifestSha256 !== model.manifestSha256) {
      // a new set switched in mid-window: the model's figures are of the manifest it runs now
      this.models.set(model.modelId, m = {
        model: { modelId: model.modelId, version: model.version, manifestSha256: model.manifestSha256 }, calls: new Calls(),
        inputs: baseline ? binsOf(baseline.inputs) : [], outputs: baseline ? binsOf(baseline.outputs) : [], phase: 0,
      });
    }
    m.calls.add(ms, ok);
    if (feeds && m.inputs.length) m.phase++;
    binCall(m.inputs, m.outputs, m.phase, feeds, outputs);
  }

  /** One inferChain call, end to end. */
  recordChain(ms: number, ok: boolean): void {
    (this.chain ??= new Calls()).add(ms, ok);
  }

  /** Close the window and start the next one. */
  cut(deviceId: string, seq: number, active: ActiveModel | null): Telemetry {
    const end = this.now();
    const sorted = this.latencies.sort((a, b) => a - b);
    const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0);
    const t: Telemetry = {
      deviceId, seq,
      windowStart: new Date(this.start).toISOString(), windowEnd: new Date(end).toISOString(),
      active, count: this.count, errors: this.errors,
      latencyMs: { p50: q(0.5), p95: q(0.95), p99: q(0.99), max: sorted.length ? sorted[sorted.length - 1] : 0 },
      rssBytes: residentBytes(),
      ...(this.inputs.length ? { inputHistograms: take(this.inputs) } : {}),
      ...(this.outputs.length ? { outputHistograms: take(this.outputs) } : {}),
    };
    if (this.models.size) {
      t.models = Object.fromEntries([...this.models].map(([id, m]) => [id, {
        version: m.model.version, manifestSha256: m.model.manifestSha256, ...m.calls.figures(),
        ...(m.inputs.length ? { inputHistograms: take(m.inputs) } : {}),
        ...(m.outputs.length ? { outputHistograms: take(m.outputs) } : {}),
      }]));
      this.models = new Map();
    }
    if (this.chain) {
      t.chain = this.chain.figures();
      this.chain = null;
    }
    this.latencies = [];
    this.errors = 0;
    this.start = end;
    return t;
  }
}

function binsOf(hs: Record<string, Histogram>): Bins[] {
  return Object.entries(hs).map(([name, h]) => ({ name, kind: h.kind, edges: [...h.edges], counts: emptyCounts(h) }));
}

/** One call's inputs and outputs into their bins (a tensor a bin names but the call lacks is skipped). */
function binCall(inputs: Bins[], outputs: Bins[], phase: number, feeds?: Feeds, outs?: Outputs): void {
  if (feeds) for (const b of inputs) {
    const t = feeds[b.name];
    if (t) addTo(b, t.data as ArrayLike<number>, t.dims, phase);
  }
  if (outs) for (const b of outputs) {
    const t = outs[b.name];
    if (t) addTo(b, t.data as ArrayLike<number>, t.dims, phase);
  }
}

function addTo(b: Bins, data: ArrayLike<number>, dims: readonly number[], phase: number): void {
  if (b.kind === 'values') binValues(b.edges, data, b.counts, MAX_SAMPLES_PER_INPUT, phase);
  else binArgmax(data, dims, b.counts);
}

/** The window's histograms, and fresh zeroed counts for the next window. */
function take(bins: Bins[]): Record<string, Histogram> {
  const out: Record<string, Histogram> = {};
  for (const b of bins) {
    out[b.name] = { kind: b.kind, edges: b.edges, counts: b.counts };
    b.counts = new Array<number>(b.counts.length).fill(0);
  }
  return out;
}

/** [#19] one model's (or the chain's) calls over a window: count, errors, latency percentiles */
class Calls {
  private latencies: number[] = [];
  private errors = 0;
  add(ms: number, ok: boolean): void {
    if (ok) this.latencies.push(ms); else this.errors++;
    if (this.latencies.length > MAX_LATENCIES) this.latencies = this.latencies.filter((_, i) => i % 2 === 0);
  }
  figures(): CallFigures {
    const sorted = this.latencies.sort((a, b) => a - b);
    const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0);
    return { count: sorted.length + this.errors, errors: this.errors, latencyMs: { p50: q(0.5), p95: q(0.95), p99: q(0.99), max: sorted.length ? sorted[sorted.length - 1] : 0 } };
  }
}
