import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { bceWithLogitsLoss, lossByName, softDiceLoss } from '../src/core/training/losses.ts';
import { ConfigError } from '../src/core/errors.ts';
import { Rng } from '../src/core/random.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const softplus = (x: number) => Math.log1p(Math.exp(-Math.abs(x))) + Math.max(x, 0);

/** float64 references written from the smp / torch formulas, for finite differences. */
function referenceDice(x: number[], t: number[]): number {
  let intersection = 0;
  let cardinality = 0;
  let targetSum = 0;
  for (let i = 0; i < x.length; i++) {
    const p = sigmoid(x[i]);
    intersection += p * t[i];
    cardinality += p + t[i];
    targetSum += t[i];
  }
  return targetSum > 0 ? 1 - (2 * intersection) / Math.max(cardinality, 1e-7) : 0;
}

function referenceBce(x: number[], t: number[], pw: number): number {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += (1 - t[i]) * x[i] + (1 + (pw - 1) * t[i]) * softplus(-x[i]);
  return sum / x.length;
}

function finiteDifferences(f: (x: number[]) => number, x: number[], h = 1e-5): number[] {
  return x.map((_, i) => {
    const up = x.slice();
    const down = x.slice();
    up[i] += h;
    down[i] -= h;
    return (f(up) - f(down)) / (2 * h);
  });
}

const shape: [number, number, number, number] = [2, 3, 3, 1];

function randomCase(seed: number): { x: number[]; t: number[] } {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const x = Array.from({ length: n }, () => rng.uniform(-3, 3));
  const t = Array.from({ length: n }, () => (rng.chance(0.4) ? 1 : 0));
  x[4] = 0; // the kink where composing abs and relu would differentiate wrongly
  return { x, t };
}

function gradientOf(loss: (l: tf.Tensor, t: tf.Tensor) => tf.Scalar, x: number[], t: number[]): number[] {
  const targets = tf.tensor4d(t, shape);
  const g = tf.grad((l: tf.Tensor) => loss(l, targets))(tf.tensor4d(x, shape));
  const out = Array.from(g.dataSync());
  tf.dispose([targets, g]);
  return out;
}

const value = (s: tf.Scalar) => {
  const v = s.dataSync()[0];
  s.dispose();
  return v;
};

describe('softDiceLoss', () => {
  it('pools Dice over the whole batch (hand-computed)', () => {
    // sigmoid: 0 -> 1/2, ln 3 -> 3/4, -ln 3 -> 1/4. Image 1 all lesion, image 2 none.
    const logits = tf.tensor4d([0, Math.log(3), -Math.log(3), 0], [2, 2, 1, 1]);
    const targets = tf.tensor4d([1, 1, 0, 0], [2, 2, 1, 1]);
    // intersection 1/2 + 3/4 = 5/4; cardinality (1/2+3/4+1/4+1/2) + 2 = 4.
    // A per-image mean would give ((1 - 2.5/3.25) + 1) / 2 instead.
    expect(value(softDiceLoss(logits, targets))).toBeCloseTo(1 - 2.5 / 4, 6);
    tf.dispose([logits, targets]);
  });

  it('is 0 with zero gradient for a batch without lesion pixels, as smp masks it', () => {
    const { x } = randomCase(7);
    const zeros = x.map(() => 0);
    const logits = tf.tensor4d(x, shape);
    const targets = tf.tensor4d(zeros, shape);
    expect(value(softDiceLoss(logits, targets))).toBe(0);
    expect(gradientOf(softDiceLoss, x, zeros).every((g) => g === 0)).toBe(true);
    tf.dispose([logits, targets]);
  });

  it('matches the float64 reference and its finite-difference gradient', () => {
    const { x, t } = randomCase(2137);
    const logits = tf.tensor4d(x, shape);
    const targets = tf.tensor4d(t, shape);
    expect(value(softDiceLoss(logits, targets))).toBeCloseTo(referenceDice(x, t), 6);
    const expected = finiteDifferences((v) => referenceDice(v, t), x);
    const actual = gradientOf(softDiceLoss, x, t);
    actual.forEach((g, i) => expect(g).toBeCloseTo(expected[i], 5));
    expect(actual.some((g) => Math.abs(g) > 1e-3)).toBe(true);
    tf.dispose([logits, targets]);
  });
});

describe('bceWithLogitsLoss', () => {
  it('matches torch BCEWithLogitsLoss(pos_weight) by hand', () => {
    const logits = tf.tensor4d([0, Math.log(3), -Math.log(3), 2], [1, 2, 2, 1]);
    const targets = tf.tensor4d([1, 1, 0, 0], [1, 2, 2, 1]);
    const pw = 1.25;
    // t=1: pw*log(1+e^-x); t=0: log(1+e^x)
    const expected = (pw * Math.log(2) + pw * Math.log(4 / 3) + Math.log(4 / 3) + Math.log(1 + Math.exp(2))) / 4;
    expect(value(bceWithLogitsLoss(logits, targets, pw))).toBeCloseTo(expected, 6);
    const unweighted = (Math.log(2) + 2 * Math.log(4 / 3) + Math.log(1 + Math.exp(2))) / 4;
    expect(value(bceWithLogitsLoss(logits, targets))).toBeCloseTo(unweighted, 6);
    tf.dispose([logits, targets]);
  });

  it('stays finite for extreme logits', () => {
    const logits = tf.tensor4d([100, -100, 100, -100], [1, 2, 2, 1]);
    const targets = tf.tensor4d([0, 1, 1, 0], [1, 2, 2, 1]);
    // the two confident mistakes cost |x| (times pw for the missed lesion); the right ones ~0
    expect(value(bceWithLogitsLoss(logits, targets, 1.25))).toBeCloseTo((100 + 125) / 4, 3);
    tf.dispose([logits, targets]);
  });

  it('matches the float64 reference and its finite-difference gradient, also at x = 0', () => {
    const { x, t } = randomCase(11);
    const pw = 1.25;
    const logits = tf.tensor4d(x, shape);
    const targets = tf.tensor4d(t, shape);
    expect(value(bceWithLogitsLoss(logits, targets, pw))).toBeCloseTo(referenceBce(x, t, pw), 6);
    const loss = (l: tf.Tensor, tt: tf.Tensor) => bceWithLogitsLoss(l, tt, pw);
    const expected = finiteDifferences((v) => referenceBce(v, t, pw), x);
    const actual = gradientOf(loss, x, t);
    actual.forEach((g, i) => expect(g).toBeCloseTo(expected[i], 5));
    // analytic at the kink: ((1 - t) - (1 + (pw - 1) t) * sigmoid(0)) / N
    expect(actual[4]).toBeCloseTo((1 - t[4] - (1 + (pw - 1) * t[4]) * 0.5) / x.length, 6);
    tf.dispose([logits, targets]);
  });
});

describe('lossByName', () => {
  it('selects the loss with its options and rejects unknown names', () => {
    const { x, t } = randomCase(3);
    const logits = tf.tensor4d(x, shape);
    const targets = tf.tensor4d(t, shape);
    expect(value(lossByName('dice')(logits, targets))).toBeCloseTo(referenceDice(x, t), 6);
    expect(value(lossByName('bce', { posWeight: 2 })(logits, targets))).toBeCloseTo(referenceBce(x, t, 2), 6);
    expect(() => lossByName('focal' as never)).toThrow(ConfigError);
    tf.dispose([logits, targets]);
  });

  it('rejects mismatched shapes and leaks no tensors', () => {
    const logits = tf.zeros([1, 4, 4, 1]);
    const targets = tf.ones([1, 4, 4, 1]);
    expect(() => softDiceLoss(logits, tf.ones([1, 4, 4]))).toThrow(RangeError);
    const before = tf.memory().numTensors;
    value(softDiceLoss(logits, targets));
    value(bceWithLogitsLoss(logits, targets, 1.25));
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([logits, targets]);
  });
});

describe('dice+bce', () => {
  it('is the sum of the pooled soft Dice and BCE with the card\'s pos_weight', () => {
    const logits = tf.tensor4d([2, -1, 0.5, -3, 1, 0], [1, 2, 3, 1]);
    const targets = tf.tensor4d([1, 0, 1, 0, 0, 1], [1, 2, 3, 1]);
    const sum = lossByName('dice+bce', { posWeight: 1.5 })(logits, targets).dataSync()[0];
    const parts = softDiceLoss(logits, targets).dataSync()[0] + bceWithLogitsLoss(logits, targets, 1.5).dataSync()[0];
    expect(sum).toBeCloseTo(parts, 6);
    expect(sum).toBeGreaterThan(softDiceLoss(logits, targets).dataSync()[0]);
    tf.dispose([logits, targets]);
  });
});
