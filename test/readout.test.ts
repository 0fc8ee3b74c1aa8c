/**
 * How logits become masks (scoring/readout.ts): nnU-Net's post-processing on
 * real expert masks with a speck and a hole added, and the flips TTA against
 * the same average worked out by hand.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSample } from '../src/core/dataset/loader.ts';
import { predictLogits } from '../src/core/scoring/predict.ts';
import { largestLesionFilled, readMask } from '../src/core/scoring/readout.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { datasetsRoot, requireDatasets } from './helpers/datasets.ts';

beforeAll(async () => {
  requireDatasets();
  await tf.setBackend('cpu');
  await tf.ready();
});

/** Lesion pixels of the mask's 8-connected components, largest first, and its holes. */
function components(mask: Uint8Array, width: number, height: number): number[] {
  const seen = new Uint8Array(mask.length);
  const sizes: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || seen[start]) continue;
    const stack = [start];
    seen[start] = 1;
    let size = 0;
    while (stack.length > 0) {
      const p = stack.pop()!;
      size++;
      const x = p % width;
      const y = Math.floor(p / width);
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const xx = x + dx;
        const yy = y + dy;
        const q = yy * width + xx;
        if (xx >= 0 && xx < width && yy >= 0 && yy < height && mask[q] && !seen[q]) {
          seen[q] = 1;
          stack.push(q);
        }
      }
    }
    sizes.push(size);
  }
  return sizes.sort((a, b) => b - a);
}

describe('largestLesionFilled', () => {
  it('removes a speck and fills a hole added to real expert masks, and leaves each as the expert drew its largest lesion', async () => {
    const root = path.join(datasetsRoot, 'ph2');
    const source = new FsFileSource([root]);
    const samples = (await source.index()).sets.flatMap((s) => s.labeled).slice(0, 4);
    expect(samples).toHaveLength(4);
    for (const sample of samples) {
      const { mask } = await loadSample(sample, source, new SharpDecoder(), { width: 128, height: 128 });
      const { width, height, data } = mask!;
      const clean = largestLesionFilled(data, width, height);
      // The expert's mask, post-processed, is its largest component: nothing else may change.
      const kept = components(clean, width, height);
      expect(kept).toHaveLength(1);
      const damaged = clean.slice();
      // A speck in a corner (PH2 lesions do not touch all four) and a hole at the lesion's centre of mass.
      const corner = [0, width - 1, (height - 1) * width, height * width - 1].find((p) => !clean[p])!;
      expect(corner).toBeDefined();
      damaged[corner] = 1;
      let sx = 0;
      let sy = 0;
      let n = 0;
      clean.forEach((v, p) => {
        if (v) {
          sx += p % width;
          sy += Math.floor(p / width);
          n++;
        }
      });
      const centre = Math.round(sy / n) * width + Math.round(sx / n);
      expect(clean[centre]).toBe(1);
      damaged[centre] = 0;
      expect(largestLesionFilled(damaged, width, height)).toEqual(clean);
    }
  });

  it('keeps an empty mask empty', () => {
    expect(largestLesionFilled(new Uint8Array(16), 4, 4)).toEqual(new Uint8Array(16));
  });

  it('readMask thresholds at the logit threshold and post-processes only when asked', () => {
    const logits = Float32Array.from([1, 1, -1, 1, -1, -1, -1, -1, 0.6]);
    expect([...readMask(logits, 3, 3, { logitThreshold: 0.5, postprocess: false })]).toEqual([1, 1, 0, 1, 0, 0, 0, 0, 1]);
    expect([...readMask(logits, 3, 3, { logitThreshold: 0.5, postprocess: true })]).toEqual([1, 1, 0, 1, 0, 0, 0, 0, 0]);
  });
});

describe('flips TTA', () => {
  it('is the mean lesion probability over the image and its three flips, back as a logit', async () => {
    // One 3x3 convolution with a lopsided kernel: no flip leaves its output unchanged, so the average must differ from the plain logits.
    const model = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [32, 32, 3], filters: 1, kernelSize: 3, padding: 'same', kernelInitializer: tf.initializers.randomNormal({ seed: 7 }) })] });
    const image = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) % 251) };
    const [plain] = await predictLogits(model as unknown as tf.LayersModel, [image], { batchSize: 1 });
    const [flipped] = await predictLogits(model as unknown as tf.LayersModel, [image], { batchSize: 1, tta: 'flips' });
    const expected = tf.tidy(() => {
      const x = tf.div(tf.tensor4d(Float32Array.from(image.data), [1, 32, 32, 3]), 255) as tf.Tensor4D;
      const p = [[], [2], [1], [1, 2]].map((axes) => {
        const flip = (t: tf.Tensor4D): tf.Tensor4D => (axes.length === 0 ? t : tf.reverse(t, axes));
        return tf.sigmoid(flip(model.predict(flip(x)) as tf.Tensor4D));
      });
      const mean = tf.div(tf.addN(p), 4);
      return tf.log(tf.div(mean, tf.sub(1, mean))).dataSync() as Float32Array;
    });
    for (let i = 0; i < expected.length; i++) expect(flipped[i]).toBeCloseTo(expected[i], 3);
    // A random model is not flip-equivariant: the average is not the plain prediction.
    expect(flipped.some((v, i) => Math.abs(v - plain[i]) > 1e-3)).toBe(true);
    model.dispose();
  });
});
