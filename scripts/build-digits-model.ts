// Trains (or loads from cache) the digits MLP and prints its held-out accuracy and file paths.
// Usage: npx tsx scripts/build-digits-model.ts [--seed N] [--cache-dir DIR]
import { parseArgs } from 'node:util';
import { buildDigitsModel } from '../server/training/digits.ts';
import { inspectModel } from '../server/onnx/inspect-model.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seed: { type: 'string' }, 'cache-dir': { type: 'string' } } });
  const seed = values.seed !== undefined ? Number(values.seed) : undefined;
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const result = await buildDigitsModel({
    seed, cacheDir: values['cache-dir'],
    onEpoch: (epoch, loss) => console.error(`epoch ${epoch + 1}: loss ${loss.toFixed(4)}`),
  });
  const info = inspectModel(result.onnx);
  console.log(JSON.stringify({
    heldOutAccuracy: result.heldOutAccuracy,
    trainSeconds: Number(result.trainSeconds.toFixed(1)),
    cached: result.cached,
    onnxBytes: result.onnx.length,
    referenceSamples: result.reference.shape[0],
    opTypes: info.opTypes,
    inputs: info.inputs,
    outputs: info.outputs,
    paths: result.paths,
  }, null, 2));
}

await main();
