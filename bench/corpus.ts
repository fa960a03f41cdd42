// Third-party corpus (test/corpus/corpus.ts): per model, float vs INT8 bytes, the weight share the
// quantizer took and left, the push gate's figures on the model's own samples, and per-inference time
// of INT8 vs float in onnxruntime-web (WASM, 1 thread) on the same inputs in the same run, the two
// sessions interleaved so machine noise hits both alike.
// Targets: INT8 at most 30% of float bytes for weight-dominated models (weights >= 90% of the file),
// INT8 never slower than float (time ratio <= 1.05 allows for timer noise on this 2-core machine).
// Run alone: npx tsx bench/corpus.ts [--reps N] [--only id,id] [--representation cast-mul|dequantize-linear]
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createSession, runSession } from '../runtime/onnx-session.ts';
import { checkSamples } from '../server/bundles/samples.ts';
import { inspectModel } from '../server/onnx/inspect-model.ts';
import { labelOutput, runGate } from '../server/quantize/accuracy-gate.ts';
import { quantizeModel, type QuantizeOptions } from '../server/quantize/quantize.ts';
import { CORPUS, corpusBytes, feedsOf } from '../test/corpus/corpus.ts';

export const CORPUS_TARGETS = { maxSizeRatioWeightDominated: 0.3, maxTimeRatio: 1.05, weightDominatedShare: 0.9 } as const;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export async function benchCorpus(opts: { repetitions?: number; minMsPerRep?: number; only?: string[]; representation?: QuantizeOptions['representation'] } = {}) {
  const repetitions = opts.repetitions ?? 7;
  const minMsPerRep = opts.minMsPerRep ?? 150;
  const models: Record<string, object> = {};
  for (const m of CORPUS) {
    if (opts.only && !opts.only.includes(m.id)) continue;
    const floatBytes = corpusBytes(m);
    const samples = await m.samples();
    const q = quantizeModel(floatBytes, opts.representation ? { representation: opts.representation } : {});
    const report = q.report;
    // the gate a push runs: the model's own samples, each output judged by its kind
    const info = inspectModel(floatBytes);
    const kinds = m.gateOutputs ?? {};
    const checked = checkSamples(samples, info, labelOutput(info.outputs, kinds));
    const { floatOutputs: _f, quantOutputs: _q, ...gate } = await runGate(floatBytes, q.bytes, checked, info, {}, { kinds, quantSession: { config: report.sessionConfig } });

    const floatSession = await createSession(floatBytes);
    const quantSession = await createSession(q.bytes, { config: report.sessionConfig });
    try {
      const feeds = samples.slice(0, 4).map(feedsOf);
      const once = async (s: typeof floatSession) => { for (const f of feeds) await runSession(s, f); };
      // warm up, then size a repetition so it lasts at least minMsPerRep on the float model
      await once(floatSession); await once(quantSession);
      const t0 = performance.now(); await once(floatSession);
      const loops = Math.max(1, Math.ceil(minMsPerRep / Math.max(0.01, performance.now() - t0)));
      const timeIt = async (s: typeof floatSession) => {
        const start = performance.now();
        for (let i = 0; i < loops; i++) await once(s);
        return (performance.now() - start) / (loops * feeds.length);
      };
      const floatMs: number[] = [], quantMs: number[] = [];
      for (let r = 0; r < repetitions; r++) {
        if (r % 2 === 0) { floatMs.push(await timeIt(floatSession)); quantMs.push(await timeIt(quantSession)); }
        else { quantMs.push(await timeIt(quantSession)); floatMs.push(await timeIt(floatSession)); }
      }
      const weightBytes = report.floatWeightBytes;
      const weightShare = weightBytes / floatBytes.length;
      const sizeRatio = q.bytes.length / floatBytes.length;
      const timeRatio = median(quantMs) / median(floatMs);
      models[m.id] = {
        pkg: m.pkg, exporter: m.exporter,
        floatBytes: floatBytes.length, int8Bytes: q.bytes.length, sizeRatio,
        weightShareOfFile: weightShare,
        quantizedWeightShare: weightBytes ? report.quantizedWeightBytes / weightBytes : 0,
        skippedWeightShare: weightBytes ? report.skippedWeightBytes / weightBytes : 0,
        quantizedNodes: report.quantized.length, skippedEntries: report.skipped.length, summary: report.summary,
        representation: report.representation,
        gate: { passed: gate.passed, samples: gate.samples, failures: gate.failures, outputs: gate.outputs },
        floatMsPerInference: median(floatMs), int8MsPerInference: median(quantMs), timeRatio,
        weightDominated: weightShare >= CORPUS_TARGETS.weightDominatedShare,
        meetsSizeTarget: weightShare < CORPUS_TARGETS.weightDominatedShare || sizeRatio <= CORPUS_TARGETS.maxSizeRatioWeightDominated,
        meetsTimeTarget: timeRatio <= CORPUS_TARGETS.maxTimeRatio,
        runs: { repetitions, loops, samplesTimed: feeds.length, floatMs, quantMs },
      };
    } finally {
      await floatSession.release();
      await quantSession.release();
    }
  }
  return { targets: CORPUS_TARGETS, models };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { reps: { type: 'string' }, only: { type: 'string' }, representation: { type: 'string' } } });
  const result = await benchCorpus({
    repetitions: values.reps ? Number(values.reps) : undefined, only: values.only?.split(','),
    representation: values.representation as QuantizeOptions['representation'],
  });
  console.log(JSON.stringify(result, null, 2));
}
