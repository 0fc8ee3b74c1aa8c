import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { atrousConv2d } from '../src/core/model/atrous.ts';
import { buildDeepLabV3, copyWeights, type EncoderName } from '../src/core/model/deeplab.ts';
import { Rng } from '../src/core/random.ts';
import { relativeError, seededWeights, setWeightValues, tinyConfig } from './helpers/tf-node.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function seeded(shape: number[], seed: number): tf.Tensor {
  const rng = new Rng(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.uniform(-1, 1)), shape);
}

describe('atrousConv2d', () => {
  // Maps of 5x7 and 6x6: rate 6 leaves only some taps, rate 12 only the centre one.
  const cases: { rate: number; input: [number, number, number, number]; kernel: [number, number, number, number] }[] = [
    { rate: 2, input: [2, 5, 7, 3], kernel: [3, 3, 3, 4] },
    { rate: 3, input: [1, 6, 6, 2], kernel: [3, 3, 2, 3] },
    { rate: 6, input: [2, 5, 7, 3], kernel: [3, 3, 3, 2] },
    { rate: 12, input: [1, 6, 6, 2], kernel: [3, 3, 2, 3] },
    { rate: 2, input: [1, 9, 9, 2], kernel: [5, 5, 2, 2] },
  ];

  it.each(cases)('equals tf.conv2d dilated by $rate on $input with kernel $kernel', ({ rate, input, kernel }) => {
    tf.tidy(() => {
      const x = seeded(input, rate) as tf.Tensor4D;
      const k = seeded(kernel, rate + 100) as tf.Tensor4D;
      const ours = atrousConv2d(x, k, rate);
      const reference = tf.conv2d(x, k, 1, 'same', 'NHWC', rate);
      expect(ours.shape).toEqual(reference.shape);
      expect(relativeError(ours.dataSync(), reference.dataSync())).toBeLessThan(1e-5);
    });
  });

  it.each(cases.slice(0, 4))('has the gradients of central finite differences at rate $rate', ({ rate, input, kernel }) => {
    tf.tidy(() => {
      const x = seeded(input, rate + 200) as tf.Tensor4D;
      const k = seeded(kernel, rate + 300) as tf.Tensor4D;
      // A fixed, non-uniform weighting of the output: the loss is linear in x
      // and in k separately, so central differences are exact up to rounding.
      const weighting = seeded([...input.slice(0, 3), kernel[3]], rate + 400);
      const loss = (a: tf.Tensor4D, b: tf.Tensor4D) => tf.sum(tf.mul(atrousConv2d(a, b, rate), weighting));
      const [dx, dk] = tf.grads(loss as (...args: tf.Tensor[]) => tf.Tensor)([x, k]);

      const eps = 0.5;
      const numeric = (which: 0 | 1): Float32Array => {
        const base = [x.dataSync(), k.dataSync()][which];
        const out = new Float32Array(base.length);
        for (let i = 0; i < base.length; i++) {
          const at = (delta: number) =>
            tf.tidy(() => {
              const moved = Float32Array.from(base);
              moved[i] += delta;
              const args = [x, k];
              args[which] = tf.tensor4d(moved, args[which].shape);
              return loss(args[0], args[1]).dataSync()[0];
            });
          out[i] = (at(eps) - at(-eps)) / (2 * eps);
        }
        return out;
      };
      expect(relativeError(dx.dataSync(), numeric(0))).toBeLessThan(1e-4);
      expect(relativeError(dk.dataSync(), numeric(1))).toBeLessThan(1e-4);
    });
  });
});

function isDilated(layer: tf.layers.Layer): boolean {
  const rate = layer.getConfig().dilationRate as number | number[] | undefined;
  return [rate ?? 1].flat().some((r) => r > 1);
}

describe('dilated stages regridded with SpaceToBatch/BatchToSpace', () => {
  const combos: { encoder: EncoderName; outputStride: 8 | 16 }[] = [
    { encoder: 'mobilenetv2', outputStride: 8 },
    { encoder: 'mobilenetv2', outputStride: 16 },
    { encoder: 'resnet34', outputStride: 8 },
    { encoder: 'resnet34', outputStride: 16 },
  ];

  it.each(combos)('train build = export build for $encoder at output stride $outputStride', ({ encoder, outputStride }) => {
    const config = tinyConfig(encoder, { outputStride, atrousRates: outputStride === 8 ? [2, 4, 12] : [1, 2, 6] });
    const train = buildDeepLabV3(config, 'train', 11);
    const exported = buildDeepLabV3(config, 'export', 11);
    try {
      // The export build really dilates; the train build regrids instead.
      expect(train.layers.some((l) => l.getClassName() === 'SpaceToBatch')).toBe(true);
      expect(exported.layers.some(isDilated)).toBe(true);
      expect(train.layers.some(isDilated)).toBe(false);
      setWeightValues(train, seededWeights(train, 11));
      copyWeights(train, exported);
      const [a, b] = tf.tidy(() => {
        const x = seeded([2, config.inputSize, config.inputSize, 3], 12).abs();
        return [train, exported].map((m) => (m.predict(x) as tf.Tensor).dataSync() as Float32Array);
      });
      expect(relativeError(a, b)).toBeLessThan(1e-4);
    } finally {
      train.dispose();
      exported.dispose();
    }
  });
});
