// Float vs INT8 bundle: size and per-inference time in onnxruntime-web (WASM, 1 thread), both
// models on the same inputs in the same process. Batch 1 is the device case. Each repetition
// times `iterations` back-to-back runs; the figure reported is the median over repetitions,
// with the two models interleaved so drift (thermal, other load) hits both alike.
// Run alone: npx tsx bench/bundle.ts [--batch N] [--reps N] [--iterations N] [--without-config]
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createSession, ort } from '../runtime/onnx-session.ts';
import { buildDigitsModel, DIGITS_INPUT } from '../server/training/digits.ts';
import { quantizeModel } from '../server/quantize/quantize.ts';

export interface BenchBundleOptions {
  batch?: number;
  repetitions?: number;
  iterations?: number;
  warmup?: number;
  cacheDir?: string;
  /** also time the quantized model in a session without report.sessionConfig (shows what a config buys; nothing for cast-mul). */
  withoutConfig?: boolean;
}

export interface BenchBundleResult {
  floatBytes: number;
  quantBytes: number;
  sizeRatio: number;
  /** median ms per session.run of `batch` samples (batch 1 = per inference on a device). */
  floatMsPerInference: number;
  quantMsPerInference: number;
  timeRatio: number;
  runs: {
    batch: number; repetitions: number; iterations: number; warmup: number;
    floatMs: number[]; quantMs: number[]; sessionConfig: Record<string, string>;
    /** median ms/inference of the quantized model with a default session (only with withoutConfig). */
    quantWithoutConfigMsPerInference?: number;
  };
}

export async function benchBundle(opts: BenchBundleOptions = {}): Promise<BenchBundleResult> {
  const batch = opts.batch ?? 1;
  const repetitions = opts.repetitions ?? 9;
  const iterations = opts.iterations ?? 2000;
  const warmup = opts.warmup ?? 200;

  const digits = await buildDigitsModel({ cacheDir: opts.cacheDir });
  const { bytes: quantBytes, report } = quantizeModel(digits.onnx);
  const floatSession = await createSession(digits.onnx);
  // what the quantized model needs ({} for the default int8 -> Cast -> Mul; see server/quantize/quantize.ts)
  const quantSession = await createSession(quantBytes, { config: report.sessionConfig });
  try {
    const [n, d] = digits.reference.shape;
    // Real digits, cycling through the reference set, identical for both models.
    const inputs = Array.from({ length: 16 }, (_, k) => {
      const data = new Float32Array(batch * d);
      for (let b = 0; b < batch; b++) {
        const s = (k * batch + b) % n;
        data.set(digits.reference.inputs.subarray(s * d, (s + 1) * d), b * d);
      }
      return { [DIGITS_INPUT]: new ort.Tensor('float32', data, [batch, d]) };
    });
    const timeRuns = async (session: ort.InferenceSession, count: number): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < count; i++) await session.run(inputs[i % inputs.length]);
      return (performance.now() - t0) / count;
    };
    await timeRuns(floatSession, warmup);
    await timeRuns(quantSession, warmup);
    const floatMs: number[] = [];
    const quantMs: number[] = [];
    for (let r = 0; r < repetitions; r++) {
      // Alternate which model goes first so neither always gets the warmer slot.
      if (r % 2 === 0) {
        floatMs.push(await timeRuns(floatSession, iterations));
        quantMs.push(await timeRuns(quantSession, iterations));
      } else {
        quantMs.push(await timeRuns(quantSession, iterations));
        floatMs.push(await timeRuns(floatSession, iterations));
      }
    }
    let quantWithoutConfigMsPerInference: number | undefined;
    if (opts.withoutConfig) {
      const plain = await createSession(quantBytes);
      await timeRuns(plain, warmup);
      const ms: number[] = [];
      for (let r = 0; r < repetitions; r++) ms.push(await timeRuns(plain, iterations));
      await plain.release();
      quantWithoutConfigMsPerInference = median(ms);
    }
    const floatMsPerInference = median(floatMs);
    const quantMsPerInference = median(quantMs);
    return {
      floatBytes: digits.onnx.length,
      quantBytes: quantBytes.length,
      sizeRatio: quantBytes.length / digits.onnx.length,
      floatMsPerInference,
      quantMsPerInference,
      timeRatio: quantMsPerInference / floatMsPerInference,
      runs: {
        batch, repetitions, iterations, warmup, floatMs, quantMs, sessionConfig: report.sessionConfig,
        ...(quantWithoutConfigMsPerInference !== undefined ? { quantWithoutConfigMsPerInference } : {}),
      },
    };
  } finally {
    await floatSession.release();
    await quantSession.release();
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: { batch: { type: 'string' }, reps: { type: 'string' }, iterations: { type: 'string' }, 'without-config': { type: 'boolean' } },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const result = await benchBundle({
    batch: num(values.batch), repetitions: num(values.reps), iterations: num(values.iterations),
    withoutConfig: values['without-config'] ?? false,
  });
  console.log(JSON.stringify(result, null, 2));
}
