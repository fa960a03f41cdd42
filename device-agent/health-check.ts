// The health check a new model must pass before it becomes active: the manifest's golden inputs give
// outputs within tolerance, within the latency budget, without errors. The vectors come inline in the
// manifest or from its golden blob (golden-set.ts); the tolerances and budget always from the manifest.
import type { GoldenVector, Manifest } from '../shared/messages.ts';
import { UpdateRefused } from '../shared/reason-codes.ts';
import { decodeTensor, worstToleranceExcess } from '../shared/tensor-codec.ts';
import { deviceMsOf, type LoadedModel } from './model-runtime.ts';
import type { Feeds } from '../runtime/onnx-session.ts';

export interface HealthReport { vectors: number; maxMs: number; worstExcess: number }

export function feedsFromJson(inputs: GoldenVector['inputs']): Feeds {
  const feeds: Feeds = {};
  for (const [name, t] of Object.entries(inputs)) {
    const d = decodeTensor(t);
    feeds[name] = { data: d.data, dims: d.dims, type: d.dtype };
  }
  return feeds;
}

/**
 * `opts.runtimeTime`: judge the latency budget on the time the runtime reports for each run (DEVICE_MS:
 * the shadow thread times the run inside the thread) instead of the wall time around the call, which for
 * a thread also holds two message hops and the main event loop's lag.
 */
export async function runHealthCheck(model: LoadedModel, hc: Manifest['healthCheck'], vectors: GoldenVector[] = hc.vectors, opts: { runtimeTime?: boolean } = {}): Promise<HealthReport> {
  let maxMs = 0;
  let worst = -Infinity;
  if (vectors.length === 0) throw new UpdateRefused('HEALTH_CHECK_FAILED', 'the manifest gives no health-check vectors');
  // one untimed run first: the first call pays for allocations that later calls do not
  await safeRun(model, feedsFromJson(vectors[0].inputs), 'warm-up');
  for (const [i, v] of vectors.entries()) {
    const t0 = performance.now();
    const out = await safeRun(model, feedsFromJson(v.inputs), `vector ${i}`);
    const wall = performance.now() - t0;
    maxMs = Math.max(maxMs, opts.runtimeTime ? deviceMsOf(out) ?? wall : wall);
    for (const [name, expectedJson] of Object.entries(v.outputs)) {
      const actual = out[name];
      if (!actual) throw new UpdateRefused('HEALTH_CHECK_FAILED', `vector ${i}: model gave no output ${name}`);
      const expected = decodeTensor(expectedJson);
      if (actual.dims.join('x') !== expected.dims.join('x')) throw new UpdateRefused('HEALTH_CHECK_FAILED', `vector ${i}: output ${name} has shape ${actual.dims.join('x')}, expected ${expected.dims.join('x')}`);
      const excess = worstToleranceExcess(actual.data as ArrayLike<number>, expected.data as ArrayLike<number>, hc.atol, hc.rtol);
      worst = Math.max(worst, excess);
      if (excess > 0) throw new UpdateRefused('HEALTH_CHECK_FAILED', `vector ${i}: output ${name} off by ${excess.toExponential(2)} beyond tolerance (atol ${hc.atol}, rtol ${hc.rtol})`);
    }
  }
  if (maxMs > hc.latencyBudgetMs) throw new UpdateRefused('LATENCY_BUDGET', `golden inputs took up to ${maxMs.toFixed(1)} ms, budget ${hc.latencyBudgetMs} ms`);
  return { vectors: vectors.length, maxMs, worstExcess: worst };
}

async function safeRun(model: LoadedModel, feeds: Feeds, what: string) {
  try {
    return await model.run(feeds);
  } catch (err) {
    throw new UpdateRefused('HEALTH_CHECK_FAILED', `${what}: inference failed: ${(err as Error).message}`);
  }
}
