// Builds the fleet's reference model: a 784-128-10 MLP trained on the mnist package's digits,
// exported to ONNX, with a held-out reference set that ships alongside it (the accuracy gate and
// devices' self-checks run on it). Results are cached on disk by seed and code version, so tests
// and the demo pay the ~15 s training only once.
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { CLASSES, PIXELS, loadMnistDigits, subset } from './digits-data.ts';
import { accuracy, trainMlp, type MlpWeights } from './mlp.ts';
import { mulberry32, shuffleInPlace } from './prng.ts';
import { encodeModel, graph, model, node, tensor, valueInfo } from '../onnx/graph-builder.ts';

/** Bump when training or export changes, so stale cache entries are not reused. */
export const DIGITS_MODEL_VERSION = 1;
export const DIGITS_HELD_OUT = 2000;
export const DIGITS_REFERENCE_SIZE = 500;
export const DIGITS_INPUT = 'input';
export const DIGITS_OUTPUT = 'probabilities';
export const DEFAULT_DIGITS_CACHE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'digits');

const TRAINING = { hidden: 128, epochs: 15, batchSize: 64, learningRate: 0.002, weightDecay: 1e-4, shiftPixels: 1, side: 28 };

export interface ReferenceSet {
  /** n*784 pixels in [0,1]. */
  inputs: Float32Array;
  shape: [number, number];
  labels: number[];
}

export interface DigitsModel {
  onnx: Uint8Array;
  reference: ReferenceSet;
  /** accuracy of the trained weights on all DIGITS_HELD_OUT held-out digits. */
  heldOutAccuracy: number;
  trainSeconds: number;
  cached: boolean;
  paths: { onnx: string; reference: string; meta: string };
}

const Meta = z.object({
  version: z.literal(DIGITS_MODEL_VERSION),
  seed: z.number().int(),
  heldOutAccuracy: z.number(),
  trainSeconds: z.number(),
  referenceShape: z.tuple([z.number().int().positive(), z.number().int().positive()]),
  referenceLabels: z.array(z.number().int().min(0).max(CLASSES - 1)),
});

export async function buildDigitsModel(opts: { seed?: number; cacheDir?: string; onEpoch?: (epoch: number, loss: number) => void } = {}): Promise<DigitsModel> {
  const seed = opts.seed ?? 1;
  const dir = opts.cacheDir ?? DEFAULT_DIGITS_CACHE_DIR;
  const stem = join(dir, `digits-mlp-seed${seed}-v${DIGITS_MODEL_VERSION}`);
  const paths = { onnx: `${stem}.onnx`, reference: `${stem}.reference.f32`, meta: `${stem}.json` };

  const hit = readCache(paths);
  if (hit) return { ...hit, cached: true, paths };

  const all = loadMnistDigits();
  // Fixed split from the seed: the held-out digits are never seen in training.
  const order = Int32Array.from({ length: all.count }, (_, i) => i);
  shuffleInPlace(order, mulberry32(seed * 7919 + 17));
  const heldOut = subset(all, order.subarray(0, DIGITS_HELD_OUT));
  const train = subset(all, order.subarray(DIGITS_HELD_OUT));

  const t0 = performance.now();
  const weights = trainMlp(train, PIXELS, CLASSES, { seed, ...TRAINING, onEpoch: opts.onEpoch });
  const trainSeconds = (performance.now() - t0) / 1000;
  const heldOutAccuracy = accuracy(weights, heldOut);

  const onnx = exportMlpToOnnx(weights, { seed, heldOutAccuracy });
  const reference: ReferenceSet = {
    inputs: heldOut.images.slice(0, DIGITS_REFERENCE_SIZE * PIXELS),
    shape: [DIGITS_REFERENCE_SIZE, PIXELS],
    labels: Array.from(heldOut.labels.subarray(0, DIGITS_REFERENCE_SIZE)),
  };

  mkdirSync(dir, { recursive: true });
  const meta: z.infer<typeof Meta> = {
    version: DIGITS_MODEL_VERSION, seed, heldOutAccuracy, trainSeconds,
    referenceShape: reference.shape, referenceLabels: reference.labels,
  };
  // Meta last: its presence marks a complete entry. Each file is renamed into place so a
  // concurrent reader (parallel test workers) never sees a half-written file.
  writeAtomic(paths.onnx, onnx);
  writeAtomic(paths.reference, new Uint8Array(reference.inputs.buffer, reference.inputs.byteOffset, reference.inputs.byteLength));
  writeAtomic(paths.meta, new TextEncoder().encode(JSON.stringify(meta)));
  return { onnx, reference, heldOutAccuracy, trainSeconds, cached: false, paths };
}

/**
 * ONNX export in the PyTorch-exporter style: Gemm with transB=1 and weights as [out, in],
 * dynamic batch dim 'N', softmax over the class axis. Opset 13 (per-axis DequantizeLinear
 * for the quantized variant needs 13 anyway).
 */
export function exportMlpToOnnx(w: MlpWeights, meta: { seed: number; heldOutAccuracy: number }): Uint8Array {
  const w1t = transpose(w.w1, w.inputs, w.hidden);
  const w2t = transpose(w.w2, w.hidden, w.outputs);
  const g = graph({
    name: 'digits_mlp',
    nodes: [
      node('Gemm', [DIGITS_INPUT, 'fc1.weight', 'fc1.bias'], ['fc1.out'], { transB: 1 }, { name: 'fc1' }),
      node('Relu', ['fc1.out'], ['relu1.out'], {}, { name: 'relu1' }),
      node('Gemm', ['relu1.out', 'fc2.weight', 'fc2.bias'], ['logits'], { transB: 1 }, { name: 'fc2' }),
      node('Softmax', ['logits'], [DIGITS_OUTPUT], { axis: -1 }, { name: 'softmax' }),
    ],
    inputs: [valueInfo(DIGITS_INPUT, 'float32', ['N', w.inputs])],
    outputs: [valueInfo(DIGITS_OUTPUT, 'float32', ['N', w.outputs])],
    initializers: [
      tensor('fc1.weight', w1t, [w.hidden, w.inputs]), tensor('fc1.bias', w.b1),
      tensor('fc2.weight', w2t, [w.outputs, w.hidden]), tensor('fc2.bias', w.b2),
    ],
  });
  return encodeModel(model(g, {
    opset: 13, producer: 'edge-fleet-digits', producerVersion: String(DIGITS_MODEL_VERSION),
    metadata: { seed: String(meta.seed), held_out_accuracy: meta.heldOutAccuracy.toFixed(4) },
  }));
}

/** [rows][cols] -> [cols][rows] */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

function readCache(paths: DigitsModel['paths']): Omit<DigitsModel, 'cached' | 'paths'> | null {
  if (!existsSync(paths.meta) || !existsSync(paths.onnx) || !existsSync(paths.reference)) return null;
  try {
    const meta = Meta.parse(JSON.parse(readFileSync(paths.meta, 'utf8')));
    const onnx = new Uint8Array(readFileSync(paths.onnx));
    const raw = readFileSync(paths.reference);
    const [n, d] = meta.referenceShape;
    if (d !== PIXELS || raw.byteLength !== n * d * 4 || meta.referenceLabels.length !== n) return null;
    const inputs = new Float32Array(new Uint8Array(raw).buffer);
    return {
      onnx, heldOutAccuracy: meta.heldOutAccuracy, trainSeconds: meta.trainSeconds,
      reference: { inputs, shape: [n, d], labels: meta.referenceLabels },
    };
  } catch {
    return null; // unreadable or from another version: retrain
  }
}

function writeAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}
