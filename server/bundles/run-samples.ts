// Run a model on checked samples in onnxruntime-web: in batches when every sample is one row of the same
// shape and the model takes a batch on the first dim of every input, else one sample at a time (a
// streaming model with its state first, a fixed batch of 1, a scalar input). A batched run that fails,
// or whose outputs are not batch-first, is redone one sample at a time, so a failure names its sample.
import { createSession, runSession, type Feeds, type SessionOptions } from '../../runtime/onnx-session.ts';
import type { TypedData } from '../../shared/tensor-codec.ts';
import { elementCount } from '../../shared/tensor-codec.ts';
import type { IoSpec } from '../onnx/types.ts';
import type { Decoded, RunSample } from './samples.ts';

export interface OutputTensor { dims: number[]; data: TypedData | string[]; type: string }
export type SampleOutputs = Record<string, OutputTensor>;

/** onnxruntime refused the model or one sample; `sample` is null when the model did not load. */
export class ModelRunError extends Error {
  constructor(readonly sample: number | null, readonly ortMessage: string) {
    super(sample === null ? `onnxruntime could not load the model: ${ortMessage}` : `sample ${sample}: ${ortMessage}`);
    this.name = 'ModelRunError';
  }
}

const BATCH = 64;

export function feedsOf(inputs: Record<string, Decoded>): Feeds {
  return Object.fromEntries(Object.entries(inputs).map(([name, d]) => [name, { data: d.data, dims: d.dims, type: d.dtype }]));
}

/** Every sample one row of the same dims, and every input batch-first with a dynamic batch dim. */
export function batchable(samples: RunSample[], inputs: IoSpec[]): boolean {
  if (samples.length < 2) return false;
  if (!inputs.every((s) => s.shape.length > 0 && typeof s.shape[0] !== 'number')) return false;
  const first = samples[0].inputs;
  return samples.every((s) => inputs.every((spec) => {
    const d = s.inputs[spec.name];
    const f = first[spec.name];
    return d.dims.length > 0 && d.dims[0] === 1 && d.dtype === f.dtype && d.dims.join(',') === f.dims.join(',');
  }));
}

export async function runOnSamples(bytes: Uint8Array, session: SessionOptions, samples: RunSample[], inputs: IoSpec[], batchSize = BATCH): Promise<SampleOutputs[]> {
  const batch = Math.max(1, batchSize);
  let s;
  try {
    s = await createSession(bytes, session);
  } catch (err) {
    throw new ModelRunError(null, ortMessage(err));
  }
  try {
    const out: SampleOutputs[] = [];
    const batched = batchable(samples, inputs);
    for (let start = 0; start < samples.length; start += batched ? batch : 1) {
      const chunk = samples.slice(start, start + (batched ? batch : 1));
      const rows = chunk.length > 1 ? await tryBatch(s, chunk) : null;
      if (rows) { out.push(...rows); continue; }
      for (const [k, sample] of chunk.entries()) {
        try {
          out.push(copyOutputs(await runSession(s, feedsOf(sample.inputs))));
        } catch (err) {
          throw new ModelRunError(start + k, ortMessage(err));
        }
      }
    }
    return out;
  } finally {
    await s.release();
  }
}

async function tryBatch(s: Awaited<ReturnType<typeof createSession>>, chunk: RunSample[]): Promise<SampleOutputs[] | null> {
  const feeds: Feeds = {};
  for (const name of Object.keys(chunk[0].inputs)) {
    const f = chunk[0].inputs[name];
    const per = f.data.length;
    const data = new (f.data.constructor as new (n: number) => TypedData)(per * chunk.length);
    chunk.forEach((c, i) => (data as Float32Array).set(c.inputs[name].data as Float32Array, i * per));
    feeds[name] = { data, dims: [chunk.length, ...f.dims.slice(1)], type: f.dtype };
  }
  let res;
  try {
    res = await runSession(s, feeds);
  } catch {
    return null; // redone one by one: the failing sample gets named
  }
  if (!Object.values(res).every((o) => o.dims.length > 0 && o.dims[0] === chunk.length)) return null;
  return chunk.map((_, i) => Object.fromEntries(Object.entries(res).map(([name, o]) => {
    const per = elementCount(o.dims.slice(1));
    return [name, { dims: [1, ...o.dims.slice(1)], data: o.data.slice(i * per, (i + 1) * per) as TypedData, type: o.type }];
  })));
}

function copyOutputs(res: Awaited<ReturnType<typeof runSession>>): SampleOutputs {
  return Object.fromEntries(Object.entries(res).map(([name, o]) => [name, { dims: [...o.dims], data: o.data.slice() as TypedData, type: o.type }]));
}

/** onnxruntime's own words, one line, bounded (never a stack). */
export function ortMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s+/g, ' ').trim().slice(0, 600);
}
