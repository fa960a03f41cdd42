// openWakeWord's three models as one chain (melspectrogram -> embedding -> keyword classifier), as the
// release tests declare it, and speech-like test audio long enough for it.
import { speechLike } from './corpus.ts';

/** 2.08 s at 16 kHz: enough mel frames for 16 embedding windows */
export const OWW_AUDIO_SAMPLES = 1280 * 26;

export const OWW_STEPS = [
  { modelId: 'oww-mel', inputs: { input: { from: 'input', name: 'audio' } } },
  {
    modelId: 'oww-emb', inputs: {
      input_1: { from: 'oww-mel', name: 'output', transforms: [
        { op: 'affine' as const, mul: 0.1, add: 2 },
        { op: 'windows' as const, frame: 32, size: 76, stride: 8 },
        { op: 'reshape' as const, dims: [-1, 76, 32, 1] },
      ] },
    },
  },
  { modelId: 'oww-kws', inputs: { 'x.1': { from: 'oww-emb', name: 'conv2d_19', transforms: [{ op: 'last' as const, rows: 16 }, { op: 'reshape' as const, dims: [1, 16, 96] }] } } },
];

/** int16-scaled speech-like audio (the melspectrogram model's input scale) */
export function owwAudio(seed: number): Float32Array {
  return speechLike(seed, OWW_AUDIO_SAMPLES).map((v) => v * 32767);
}
