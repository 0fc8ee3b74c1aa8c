/**
 * The optimisers against torch.optim semantics, on a two-element parameter
 * with known gradients. Expected values were worked out by hand (in float64)
 * from PyTorch's update rules, quoted above each case. On cpu and on wasm,
 * whose SGD with momentum is one fused kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Adam, createOptimizer, learningRateScale, Sgd, type Optimizer, type Param } from '../src/core/training/optim.ts';
import { initNodeBackend } from '../src/node/backends.ts';

const W0 = [1, -2];
const GRADS = [
  [0.5, 0.25],
  [-1, 0.5],
  [0.2, 0.2],
];

function param(values = W0): Param {
  return { key: 'layer#0', variable: tf.variable(tf.tensor1d(values)) };
}

/** Applies the given gradients one step each; returns the weights after every step. */
function run(optimizer: Optimizer, p: Param, grads: number[][]): number[][] {
  return grads.map((g) => {
    optimizer.apply([p], [tf.tensor1d(g)]);
    return Array.from(p.variable.dataSync());
  });
}

function expectClose(actual: number[], expected: number[]): void {
  expect(actual).toHaveLength(expected.length);
  // float32 arithmetic against float64 expectations.
  actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
}

afterEach(() => {
  tf.disposeVariables();
});

describe.each(['cpu', 'wasm'] as const)('on %s', (backend) => {
  beforeAll(async () => {
    if (backend === 'wasm') await initNodeBackend('wasm');
    await tf.setBackend(backend);
  });

  describe('Sgd (torch.optim.SGD)', () => {
    it('adds weight decay to the gradient and starts the momentum buffer at the first gradient', () => {
      // lr 0.1, momentum 0.9, weight decay 0.01:
      //   d = g + 0.01 w;  buf = d (step 1), buf = 0.9 buf + d (later);  w -= 0.1 buf
      // step 1: d = [0.51, 0.23]                     -> w = [0.949, -2.023]
      // step 2: d = [-0.99051, 0.47977], buf = [-0.53151, 0.68677] -> w = [1.002151, -2.091677]
      // step 3: d = [0.21002151, 0.17908323], buf = [-0.268337490, 0.797176230] -> w = [1.028984749, -2.171394623]
      const steps = run(new Sgd({ kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0.01 }), param(), GRADS);
      expectClose(steps[0], [0.949, -2.023]);
      expectClose(steps[1], [1.002151, -2.091677]);
      expectClose(steps[2], [1.028984749, -2.171394623]);
    });

    it('without momentum or decay is plain gradient descent', () => {
      // w -= 0.5 g: [1, -2] -> [0.75, -2.125] -> [1.25, -2.375]
      const steps = run(new Sgd({ kind: 'sgd', lr: 0.5, momentum: 0, weightDecay: 0 }), param(), GRADS.slice(0, 2));
      expectClose(steps[0], [0.75, -2.125]);
      expectClose(steps[1], [1.25, -2.375]);
    });

    it('disposes the gradients it is given and leaks no tensors between steps', () => {
      const optimizer = new Sgd({ kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
      const p = param();
      const first = tf.tensor1d(GRADS[0]);
      optimizer.apply([p], [first]);
      expect(first.isDisposed).toBe(true);
      const after = tf.memory().numTensors;
      run(optimizer, p, GRADS.slice(1));
      expect(tf.memory().numTensors).toBe(after);
      optimizer.dispose();
    });
  });

  describe('Adam (torch.optim.Adam)', () => {
    it('bias-corrects both moments', () => {
      // lr 0.1, betas (0.9, 0.999), eps 1e-8, no decay:
      //   m = 0.9 m + 0.1 g;  v = 0.999 v + 0.001 g^2
      //   w -= 0.1 / (1 - 0.9^t) * m / (sqrt(v) / sqrt(1 - 0.999^t) + eps)
      // Step 1 corrects m and v back to g and g^2: w -= 0.1 sign(g).
      const steps = run(new Adam({ kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 }), param(), GRADS);
      expectClose(steps[0], [0.9, -2.1]);
      expectClose(steps[1], [0.936610354, -2.196518196]);
      expectClose(steps[2], [0.953212106, -2.288292280]);
    });

    it('adds weight decay to the gradient (L2, as Adam does; not decoupled as AdamW)', () => {
      // g' = g + 0.1 w; step 1 still moves by lr * sign(g'): w = [0.9, -2.1]
      // (AdamW would give 0.99 * 1 - 0.1 = 0.89 for the first element).
      const steps = run(new Adam({ kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1 }), param(), GRADS);
      expectClose(steps[0], [0.9, -2.1]);
      expectClose(steps[1], [0.925263519, -2.184711974]);
      expectClose(steps[2], [0.927555874, -2.246061983]);
    });
  });

  describe('state() and setState()', () => {
    const configs = [
      { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0.01 },
      { kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1 },
    ] as const;

    for (const config of configs) {
      it(`a fresh ${config.kind} optimiser given the state continues exactly`, () => {
        const straight = param();
        const reference = run(createOptimizer(config), straight, GRADS);

        const interrupted = param();
        const before = createOptimizer(config);
        run(before, interrupted, GRADS.slice(0, 1));
        const state = before.state();
        // What a checkpoint holds: plain values, not the live slots.
        const saved = state.map(({ name, tensor }) => ({ name, tensor: tf.tensor(tensor.dataSync(), tensor.shape) }));
        // Only the step count is a new tensor; the slots are the optimiser's own.
        tf.dispose(state.filter((s) => s.name === 'iterations').map((s) => s.tensor));
        before.dispose();

        const after = createOptimizer(config);
        after.setState(saved);
        tf.dispose(saved.map((s) => s.tensor));
        const resumed = run(after, interrupted, GRADS.slice(1));
        // Same float32 operations in the same order: bit-identical.
        expect(resumed).toEqual(reference.slice(1));
        after.dispose();
      });
    }

    it('the state names the step count and one slot per moment and parameter', () => {
      const adam = createOptimizer(configs[1]);
      run(adam, param(), GRADS.slice(0, 2));
      const state = adam.state();
      expect(state.map((s) => s.name).sort()).toEqual(['iterations', 'layer#0/m', 'layer#0/v']);
      const iterations = state.find((s) => s.name === 'iterations')!.tensor;
      expect(iterations.dataSync()[0]).toBe(2);
      iterations.dispose();
      adam.dispose();
    });
  });
});

describe('learningRateScale', () => {
  it('is 1 throughout for the paper\'s constant rate', () => {
    for (let step = 0; step < 30; step++) expect(learningRateScale({ lrSchedule: 'constant', warmupEpochs: 0 }, step, 30, 10)).toBe(1);
  });

  it('warms up linearly, then decays as (1 - t/T)^0.9, never reaching 0', () => {
    const scales = Array.from({ length: 30 }, (_, step) => learningRateScale({ lrSchedule: 'poly', warmupEpochs: 1 }, step, 30, 10));
    // Warm-up over the first epoch's 10 steps: 1/11 ... 10/11.
    scales.slice(0, 10).forEach((s, i) => expect(s).toBeCloseTo((i + 1) / 11, 12));
    // Then poly over the 20 steps left, from 1 at step 10.
    expect(scales[10]).toBe(1);
    expect(scales[20]).toBeCloseTo(0.5 ** 0.9, 12);
    expect(scales[29]).toBeCloseTo((1 / 20) ** 0.9, 12);
    for (let i = 11; i < 30; i++) expect(scales[i]).toBeLessThan(scales[i - 1]);
  });

  it('scales the step an optimiser takes (SGD: w -= lr * scale * g)', () => {
    const p = param();
    new Sgd({ kind: 'sgd', lr: 0.1, momentum: 0, weightDecay: 0 }).apply([p], [tf.tensor1d([1, -1])], 0.5);
    expectClose(Array.from(p.variable.dataSync()), [1 - 0.05, -2 + 0.05]);
  });
});
