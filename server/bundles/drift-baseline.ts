// The drift baseline a manifest carries: histograms of the samples' inputs and of the shipped
// model's outputs on it, binned exactly as the agent bins what it sees (shared/histogram.ts).
import { binArgmax, binValues } from '../../shared/histogram.ts';
import type { Histogram, Manifest } from '../../shared/messages.ts';
import type { SampleOutputs } from './run-samples.ts';
import type { RunSample } from './samples.ts';

const BINS = 10;

export function valueEdges(data: ArrayLike<number | bigint>): number[] {
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const x = Number(data[i]);
    if (x < min) min = x;
    if (x > max) max = x;
  }
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0];
  if (min === max) return [min, min + 1e-6];
  return Array.from({ length: BINS + 1 }, (_, i) => min + ((max - min) * i) / BINS);
}

function valuesHistogram(data: ArrayLike<number | bigint>): Histogram {
  const edges = valueEdges(data);
  const counts = new Array<number>(edges.length + 1).fill(0);
  binValues(edges, data as ArrayLike<number>, counts);
  return { kind: 'values', edges, counts };
}

/**
 * Histograms of the samples' inputs and of the shipped model's outputs on them (outputs computed once,
 * by the gate or by runOnSamples, on the exact artifact that ships).
 */
export function computeDriftBaseline(samples: RunSample[], outputs: SampleOutputs[]): NonNullable<Manifest['driftBaseline']> {
  const inputs: Record<string, Histogram> = {};
  for (const name of Object.keys(samples[0]?.inputs ?? {})) inputs[name] = valuesHistogram(concat(samples.map((s) => s.inputs[name].data)));
  const outs: Record<string, Histogram> = {};
  for (const [name, first] of Object.entries(outputs[0] ?? {})) {
    if (first.type === 'string') continue;
    const width = first.dims[first.dims.length - 1] ?? 1;
    if (first.dims.length >= 2 && width > 1 && width <= 256) {
      const counts = new Array<number>(width).fill(0);
      for (const o of outputs) if (o[name]?.dims[o[name].dims.length - 1] === width) binArgmax(o[name].data as ArrayLike<number>, o[name].dims, counts);
      outs[name] = { kind: 'argmax', edges: [], counts };
    } else {
      outs[name] = valuesHistogram(concat(outputs.map((o) => o[name]?.data ?? new Float32Array(0))));
    }
  }
  return { inputs, outputs: outs };
}

function concat(parts: ArrayLike<number | bigint | string>[]): number[] {
  const out: number[] = [];
  for (const p of parts) for (let i = 0; i < p.length; i++) out.push(Number(p[i]));
  return out;
}
