// The drift baseline a manifest carries: histograms of the reference set's inputs and of the shipped
// model's outputs on it, binned exactly as the agent bins what it sees (shared/histogram.ts).
import { createSession, runSession } from '../../runtime/onnx-session.ts';
import { binArgmax, binValues } from '../../shared/histogram.ts';
import type { Histogram, Manifest, TensorJson } from '../../shared/messages.ts';
import { decodeTensor } from '../../shared/tensor-codec.ts';

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

export async function computeDriftBaseline(artifact: Uint8Array, sessionConfig: Record<string, string>, reference: Record<string, TensorJson>): Promise<NonNullable<Manifest['driftBaseline']>> {
  const inputs: Record<string, Histogram> = {};
  const feeds: Record<string, { data: never; dims: number[]; type: never }> = {};
  for (const [name, t] of Object.entries(reference)) {
    const d = decodeTensor(t);
    inputs[name] = valuesHistogram(d.data as ArrayLike<number>);
    feeds[name] = { data: d.data as never, dims: d.dims, type: d.dtype as never };
  }
  const outputs: Record<string, Histogram> = {};
  const session = await createSession(artifact, { config: sessionConfig });
  try {
    const out = await runSession(session, feeds);
    for (const [name, o] of Object.entries(out)) {
      if (o.type === 'string') continue;
      const width = o.dims[o.dims.length - 1] ?? 1;
      if (o.dims.length >= 2 && width > 1 && width <= 256) {
        const counts = new Array<number>(width).fill(0);
        binArgmax(o.data as ArrayLike<number>, o.dims, counts);
        outputs[name] = { kind: 'argmax', edges: [], counts };
      } else {
        outputs[name] = valuesHistogram(o.data as ArrayLike<number>);
      }
    }
  } finally {
    await session.release();
  }
  return { inputs, outputs };
}
