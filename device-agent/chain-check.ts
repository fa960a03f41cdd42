// The chain's own health check (issue 19): before a set with a chain is switched to, the chain runs end to
// end on the newly loaded models with its golden inputs, and its outputs must match the golden outputs
// within the chain's tolerances. A chain that names a model outside the set is refused as MALFORMED.
import { ChainError, checkChain, runChain, type ChainTensor } from '../shared/chain.ts';
import type { Chain } from '../shared/messages.ts';
import { UpdateRefused } from '../shared/reason-codes.ts';
import { decodeTensor, worstToleranceExcess } from '../shared/tensor-codec.ts';
import type { Outputs } from '../runtime/onnx-session.ts';
import { feedsFromJson } from './health-check.ts';

export async function checkChainHealth(chain: Chain, modelIds: string[], run: (modelId: string, feeds: Record<string, ChainTensor>) => Promise<Outputs>): Promise<{ vectors: number }> {
  try {
    checkChain(chain, modelIds);
  } catch (err) {
    throw new UpdateRefused('MALFORMED', `chain: ${(err as Error).message}`);
  }
  const g = chain.golden;
  if (!g) return { vectors: 0 };
  for (const [i, v] of g.vectors.entries()) {
    let out: Outputs;
    try {
      out = await runChain(chain, feedsFromJson(v.inputs), run);
    } catch (err) {
      const why = err instanceof ChainError ? err.message : `inference failed: ${(err as Error).message}`;
      throw new UpdateRefused('HEALTH_CHECK_FAILED', `chain vector ${i}: ${why}`);
    }
    for (const [name, expectedJson] of Object.entries(v.outputs)) {
      const actual = out[name];
      if (!actual) throw new UpdateRefused('HEALTH_CHECK_FAILED', `chain vector ${i}: no output ${name}`);
      const expected = decodeTensor(expectedJson);
      if (actual.dims.join('x') !== expected.dims.join('x')) throw new UpdateRefused('HEALTH_CHECK_FAILED', `chain vector ${i}: output ${name} has shape ${actual.dims.join('x')}, expected ${expected.dims.join('x')}`);
      const excess = worstToleranceExcess(actual.data as ArrayLike<number>, expected.data as ArrayLike<number>, g.atol, g.rtol);
      if (excess > 0) throw new UpdateRefused('HEALTH_CHECK_FAILED', `chain vector ${i}: output ${name} off by ${excess.toExponential(2)} beyond tolerance (atol ${g.atol}, rtol ${g.rtol})`);
    }
  }
  return { vectors: g.vectors.length };
}
