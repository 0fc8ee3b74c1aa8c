/**
 * Acquisition scores against values worked out by hand on tiny inputs, and on
 * a model whose logits are known: a dense layer over a 1x2 image.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { explainRank, flipDisagreement, mcDropoutVariance, median, mirror, randomScore, rankBy, scoreImages } from '../src/core/active/acquisition.ts';
import { SeededDropout } from '../src/core/model/dropout.ts';
import { meanEntropy } from '../src/core/scoring/predict.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { tinyConfig } from './helpers/tf-node.ts';

const LN3 = Math.log(3); // sigmoid(ln 3) = 0.75

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('scores on hand-made logits', () => {
  it('flip disagreement is the mean |p - p_mirrored_back|', () => {
    // p = [0.5, 0.75] against [0.75, 0.75]: (0.25 + 0) / 2.
    expect(flipDisagreement(Float32Array.from([0, LN3]), Float32Array.from([LN3, LN3]))).toBeCloseTo(0.125, 6);
    expect(flipDisagreement(Float32Array.from([2, -1]), Float32Array.from([2, -1]))).toBe(0);
  });

  it('MC-dropout variance is the mean over pixels of the population variance of p', () => {
    // Pixel 0: p = 0.5, 0.75 -> mean 0.625, variance 0.015625. Pixel 1: always 0.5 -> 0.
    const passes = [Float32Array.from([0, 0]), Float32Array.from([LN3, 0])];
    expect(mcDropoutVariance(passes)).toBeCloseTo(0.015625 / 2, 8);
    expect(() => mcDropoutVariance([passes[0]])).toThrow('at least two passes');
  });

  it('mirrors interleaved channels left to right', () => {
    const rgb = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]); // 2x2 pixels
    expect([...mirror(rgb, 2, 2, 3)]).toEqual([4, 5, 6, 1, 2, 3, 10, 11, 12, 7, 8, 9]);
    expect([...mirror(Float32Array.from([1, 2, 3]), 3, 1)]).toEqual([3, 2, 1]);
  });

  it('the random score is a seeded draw per image, independent of the others', () => {
    expect(randomScore(7, 'a.jpg')).toBe(randomScore(7, 'a.jpg'));
    expect(randomScore(7, 'a.jpg')).not.toBe(randomScore(8, 'a.jpg'));
    expect(randomScore(7, 'a.jpg')).not.toBe(randomScore(7, 'b.jpg'));
  });

  it('ranks highest first, ties in input order, and says why', () => {
    const ranked = rankBy(['a', 'b', 'c', 'd'], (s) => ({ a: 0.1, b: 0.4, c: 0.1, d: 0.2 })[s]!);
    expect(ranked.map((r) => `${r.rank}${r.item}`)).toEqual(['1b', '2d', '3a', '4c']);
    expect(median([0.1, 0.4, 0.1, 0.2])).toBeCloseTo(0.15, 10);
    expect(explainRank({ entropy: 0.3, flip: 0.05, random: 0.5 }, 'entropy', 1, 4, 0.15)).toBe(
      '#1 of 4: mean binary entropy (bits) 0.3000, 2.0× the median; the model is unsure of many pixels',
    );
  });
});

describe('scores from a model', () => {
  /** 1x2 RGB in, 1x2 logits out: logit 0 = ln3 * red of pixel 0 (in [0, 1]); logit 1 = 0. */
  function knownModel(dropout: boolean): tf.LayersModel {
    const input = tf.input({ shape: [1, 2, 3] });
    let x = tf.layers.flatten().apply(input) as tf.SymbolicTensor;
    if (dropout) x = new SeededDropout({ name: 'mc', rate: 0.5 }).apply(x) as tf.SymbolicTensor;
    const dense = tf.layers.dense({ units: 2, useBias: false, kernelInitializer: 'zeros' });
    x = dense.apply(x) as tf.SymbolicTensor;
    const out = tf.layers.reshape({ targetShape: [1, 2, 1] }).apply(x) as tf.SymbolicTensor;
    const kernel = tf.buffer([6, 2]);
    kernel.set(LN3, 0, 0);
    dense.setWeights([kernel.toTensor()]);
    return tf.model({ inputs: input, outputs: out });
  }

  const redLeft = { width: 2, height: 1, data: Uint8Array.from([255, 0, 0, 0, 0, 0]) };

  it('entropy and flip disagreement match the hand-computed values', async () => {
    const [scores] = await scoreImages(knownModel(false), [redLeft], ['x'], { batchSize: 2, seed: 1, mcPasses: 0 });
    // p = [0.75, 0.5]: entropy (H(0.75) + 1) / 2 with H(0.75) = 0.811278 bits.
    expect(scores.entropy).toBeCloseTo((0.8112781244591328 + 1) / 2, 5);
    expect(scores.entropy).toBeCloseTo(meanEntropy(Float32Array.from([LN3, 0])), 6);
    // Mirrored, the red pixel is on the right, where the model does not look: p' = [0.5, 0.5], mirrored back
    // the same; disagreement (0.25 + 0) / 2.
    expect(scores.flip).toBeCloseTo(0.125, 6);
    expect(scores.mcDropout).toBeUndefined();
    expect(scores.random).toBe(randomScore(1, 'x'));
    expect(scores.logits).toBeUndefined();
    const [kept] = await scoreImages(knownModel(false), [redLeft], ['x'], { batchSize: 2, seed: 1, mcPasses: 0, keepLogits: true });
    expect(kept.logits).toHaveLength(2);
    expect(kept.logits![0]).toBeCloseTo(LN3, 5);
    expect(kept.logits![1]).toBeCloseTo(0, 6);
  });

  it('MC-dropout passes vary with dropout on, repeat with the seed, and leave predict() deterministic after', async () => {
    const model = knownModel(true);
    const a = await scoreImages(model, [redLeft], ['x'], { batchSize: 1, seed: 3, mcPasses: 8 });
    const b = await scoreImages(model, [redLeft], ['x'], { batchSize: 1, seed: 3, mcPasses: 8 });
    // Pixel 0's logit is 0 or 2 ln3 (rate 0.5, kept units scaled by 2): p is 0.5 or 0.9; pixel 1 never moves.
    // With k of 8 passes kept: variance = 0.16 k (8 - k) / 64 over 2 pixels, at most 0.02.
    expect(a[0].mcDropout).toBe(b[0].mcDropout);
    const k = [...Array(9).keys()].map((kept) => (0.16 * kept * (8 - kept)) / 64 / 2);
    expect(k.some((v) => Math.abs(v - a[0].mcDropout!) < 1e-6)).toBe(true);
    const plain = await (model.predict(tf.tensor4d([1, 0, 0, 0, 0, 0], [1, 1, 2, 3])) as tf.Tensor).data();
    expect(plain[0]).toBeCloseTo(LN3, 5);
  });

  it('refuses MC-dropout on a model without a dropout layer, and with one pass', async () => {
    await expect(scoreImages(knownModel(false), [redLeft], ['x'], { batchSize: 1, seed: 1, mcPasses: 4 })).rejects.toThrow('needs a model with a dropout layer');
    await expect(scoreImages(knownModel(true), [redLeft], ['x'], { batchSize: 1, seed: 1, mcPasses: 1 })).rejects.toThrow('at least 2 passes');
  });

  it('DeepLabV3 in its training build gives MC-dropout variance only when its dropout rate is above 0', async () => {
    const image = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) % 256) };
    const scored = async (dropout: number) => {
      const model = buildDeepLabV3(tinyConfig('mobilenetv2', { inputSize: 32, outputStride: 16, atrousRates: [1, 2, 3], dropout }), 'train', 9);
      const [s] = await scoreImages(model, [image], ['img'], { batchSize: 1, seed: 2, mcPasses: 3 });
      model.dispose();
      return s;
    };
    // A random head gives logits near 1e-8, so p moves by ~1e-9 between passes (variance ~1e-18);
    // identical passes leave only the float rounding of their mean (~1e-32).
    expect((await scored(0)).mcDropout).toBeLessThan(1e-28);
    expect((await scored(0.5)).mcDropout).toBeGreaterThan(1e-24);
  });
});
