// The quantizer on the third-party corpus: exact counts of what it quantizes, the size it reaches,
// and outputs close to float in onnxruntime-web on each model's realistic input. The figures are
// bench/corpus.ts's (ARCHITECTURE.md "Quantization"); bounds leave a little margin, no more.
import { describe, it, expect } from 'vitest';
import { decodeModel, elemTypeOf, encodeModel, valueInfo } from '../../server/onnx/graph-builder.ts';
import { inspectModel } from '../../server/onnx/inspect-model.ts';
import { quantizeModel } from '../../server/quantize/quantize.ts';
import { createSession, runSession, type Feeds, type Outputs } from '../../runtime/onnx-session.ts';
import { CORPUS, corpusBytes, ctcRead, feedsOf, LINE_DIGITS } from '../corpus/corpus.ts';

interface Expected {
  /** quantized weights and constant weight slots of the quantized op types ("quantized X of Y"). */
  quantized: number; slots: number;
  sources: Partial<Record<'initializer' | 'graph-input-initializer' | 'constant-node', number>>;
  /** quantized bytes / float bytes at most. */
  maxRatio: number;
  /** SQNR of all float outputs together, dB, at least. */
  minSqnr: number;
}

const EXPECTED: Record<string, Expected> = {
  // LSTM weights reach the LSTM as Concat of Slices then Unsqueeze: quantized at their Constant sources.
  'silero-vad-v5': { quantized: 14, slots: 16, sources: { 'constant-node': 14 }, maxRatio: 0.32, minSqnr: 34 },
  // 43.0 dB on a mid-utterance chunk; the corpus's first sample (utterance onset, near silence) measures 32.9
  'silero-vad-v4': { quantized: 42, slots: 52, sources: { initializer: 42 }, maxRatio: 0.3, minSqnr: 31 },
  'ppocr-det': { quantized: 54, slots: 64, sources: { 'constant-node': 54 }, maxRatio: 0.28, minSqnr: 27 },
  'ppocr-rec': { quantized: 46, slots: 47, sources: { 'constant-node': 46 }, maxRatio: 0.27, minSqnr: 26 },
  'ppocr-cls': { quantized: 45, slots: 54, sources: { 'constant-node': 45 }, maxRatio: 0.41, minSqnr: 35 },
  'oww-melspectrogram': { quantized: 3, slots: 3, sources: { initializer: 3 }, maxRatio: 0.26, minSqnr: 50 },
  'oww-embedding': { quantized: 19, slots: 20, sources: { initializer: 19 }, maxRatio: 0.28, minSqnr: 32 },
  'oww-hey-jarvis': { quantized: 4, slots: 6, sources: { initializer: 4 }, maxRatio: 0.26, minSqnr: 33 },
};

async function run(bytes: Uint8Array, feeds: Feeds, config: Record<string, string>): Promise<Outputs> {
  const s = await createSession(bytes, { config });
  const out = await runSession(s, feeds);
  await s.release();
  return out;
}

function sqnr(f: Outputs, q: Outputs): number {
  let sig = 0, noise = 0;
  for (const [name, o] of Object.entries(f)) {
    if (o.type !== 'float32') continue;
    const a = o.data as Float32Array, b = q[name].data as Float32Array;
    for (let i = 0; i < a.length; i++) {
      sig += a[i] * a[i];
      noise += (b[i] - a[i]) ** 2;
    }
  }
  return 10 * Math.log10(sig / noise);
}

describe('quantizeModel on the third-party corpus', () => {
  for (const c of CORPUS) {
    it(`${c.id}: exact weights quantized, size and outputs close to float`, async () => {
      const e = EXPECTED[c.id];
      const floatBytes = corpusBytes(c);
      const { bytes, report } = quantizeModel(floatBytes);
      expect(report.quantized).toHaveLength(e.quantized);
      expect(report.summary).toMatch(new RegExp(`^quantized ${e.quantized} of ${e.slots} constant `));
      const sources: Record<string, number> = {};
      for (const q of report.quantized) sources[q.source] = (sources[q.source] ?? 0) + 1;
      expect(sources).toEqual(e.sources);
      expect(report.sizeRatio).toBeLessThanOrEqual(e.maxRatio);
      expect(report.quantizedWeightBytes + report.skippedWeightBytes).toBe(report.floatWeightBytes);
      const feeds = feedsOf((await c.samples(1))[0]);
      const [f, q] = [await run(floatBytes, feeds, {}), await run(bytes, feeds, report.sessionConfig)];
      expect(Object.keys(q)).toEqual(Object.keys(f));
      expect(sqnr(f, q)).toBeGreaterThan(e.minSqnr);
      if (c.id === 'ppocr-rec') {
        // What matters to its owner: the int8 recogniser reads the handwritten line as float does.
        const [name] = Object.keys(f);
        expect(ctcRead(f[name].data as Float32Array, f[name].dims)).toBe(LINE_DIGITS.join(''));
        expect(ctcRead(q[name].data as Float32Array, q[name].dims)).toBe(LINE_DIGITS.join(''));
      }
    }, 120_000);
  }
});

describe('an older exporter\'s form of a real model: initializers also listed as graph inputs', () => {
  // None of the npm-shipped models here lists its initializers among the graph inputs (paddle2onnx and
  // other pre-IR-4 tools did); this is openWakeWord's real embedding model rewritten into that form.
  it('oww-embedding with every initializer as a graph input: the same 19 weights quantized, no longer inputs, outputs close to float', async () => {
    const c = CORPUS.find((m) => m.id === 'oww-embedding')!;
    const m = decodeModel(corpusBytes(c));
    const g = m.graph!;
    const listed = (g.initializer ?? []).map((t) => t.name!);
    for (const t of g.initializer ?? []) g.input.push(valueInfo(t.name!, elemTypeOf(t.data_type) as 'float32', (t.dims ?? []).map(Number)));
    const older = encodeModel(m);
    expect(inspectModel(older).inputs.map((i) => i.name)).toEqual(['input_1']);

    const { bytes, report } = quantizeModel(older);
    expect(report.quantized).toHaveLength(19);
    expect(report.quantized.every((q) => q.source === 'graph-input-initializer')).toBe(true);
    expect([...report.removedGraphInputs].sort()).toEqual(report.quantized.map((q) => q.weight).sort());
    const after = decodeModel(bytes).graph!.input.map((v) => v.name);
    expect(after.filter((n) => report.removedGraphInputs.includes(n))).toEqual([]);
    expect(after.length).toBe(1 + listed.length - 19);
    const feeds = feedsOf((await c.samples(1))[0]);
    const [f, q] = [await run(older, feeds, {}), await run(bytes, feeds, report.sessionConfig)];
    expect(sqnr(f, q)).toBeGreaterThan(32);
  }, 120_000);
});
