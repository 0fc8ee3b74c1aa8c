import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { paperCard, quickCard } from '../src/core/config.ts';
import { softDiceLoss } from '../src/core/training/losses.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { setDropoutSeed } from '../src/core/model/dropout.ts';
import { canRecompute, outgrowsWasmHeap, trainingForward } from '../src/core/model/recompute.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { relativeError, seededBatch, seededWeights, setWeightValues, tinyConfig } from './helpers/tf-node.ts';

interface Step {
  loss: number;
  grads: Float32Array[];
  /** Every weight after the step, the running averages included. */
  weights: Float32Array[];
  /** Bytes the step holds when its forward pass ends: activations kept for the backward pass. */
  forwardBytes: number;
}

describe('recomputing the encoder blocks in the backward pass', () => {
  beforeAll(async () => {
    await initNodeBackend('cpu');
  });

  // wasm: its own batch norm kernels (backends/wasm/batchnorm.ts) and gradient kernels run inside the re-run blocks.
  it.each(['cpu', 'wasm'] as const)('%s: gives the gradients, loss and running averages of the plain step while holding less after the forward pass', async (backend) => {
    await initNodeBackend(backend);
    try {
      await expectRecomputedStepIsPlain();
    } finally {
      await initNodeBackend('cpu');
    }
  });
  it('is chosen on wasm only where the step would not fit the heap: the paper card at 256 px from batch 8, as measured', () => {
    const paper = buildDeepLabV3({ ...paperCard().model, init: 'random' }, 'train', 1);
    const quick = buildDeepLabV3({ ...quickCard().model, init: 'random' }, 'train', 1);
    // Measured on wasm without recomputation: batch 6 fits (3.42 GiB), batch 8 and 10 ran out.
    expect([6, 8, 10].map((b) => outgrowsWasmHeap(paper, b))).toEqual([false, true, true]);
    expect(outgrowsWasmHeap(quick, quickCard().train.batchSize)).toBe(false);
    paper.dispose();
    quick.dispose();
  });
});

async function expectRecomputedStepIsPlain(): Promise<void> {
  // Stride 8 at 64 px regrids the later stages (SpaceToBatch inside blocks); dropout runs in the head.
  const config = tinyConfig('mobilenetv2', { dropout: 0.3 });
  const model = buildDeepLabV3(config, 'train', 7);
  expect(canRecompute(model)).toBe(true);
  const initial = seededWeights(model, 11);
  const { x, y } = seededBatch(config, 2, 5);
  const xs = tf.tensor4d(x, [2, 64, 64, 3]);
  const ys = tf.tensor4d(y, [2, 64, 64, 1]);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);

  const step = async (recompute: boolean): Promise<Step> => {
    setWeightValues(model, initial);
    setDropoutSeed(model, 3);
    let forwardBytes = 0;
    const before = tf.memory().numTensors;
    const startBytes = tf.memory().numBytes;
    const { value, grads } = tf.tidy(() =>
      tf.variableGrads(() => {
        const loss = softDiceLoss(trainingForward(model, xs, recompute), ys);
        forwardBytes = tf.memory().numBytes - startBytes;
        return loss;
      }, variables),
    );
    const result = {
      loss: (await value.data())[0],
      grads: await Promise.all(variables.map(async (v) => (await grads[v.name].data()) as Float32Array)),
      weights: await Promise.all(model.weights.map(async (w) => (await w.read().data()) as Float32Array)),
      forwardBytes,
    };
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    return result;
  };

  const plain = await step(false);
  const recomputed = await step(true);
  expect(recomputed.loss).toBe(plain.loss);
  // The blocks' running averages moved once, in the forward pass, not again when re-run.
  recomputed.weights.forEach((w, i) => expect(Array.from(w), model.weights[i].name).toEqual(Array.from(plain.weights[i])));
  // Not bit for bit: the re-run block's tape sums some gradients in another order (float rounding, ~1e-6).
  // Each project_BN's beta gradient is zero in exact arithmetic (the next batch norm removes any shift)
  // and float noise in both steps: those are compared against the largest gradient instead.
  const largest = plain.grads.reduce((m, g) => g.reduce((n, v) => Math.max(n, Math.abs(v)), m), 0);
  const errors = variables.map((v, i) => {
    const g = plain.grads[i];
    const scale = g.reduce((n, x) => Math.max(n, Math.abs(x)), 0);
    return { name: v.name, error: relativeError(recomputed.grads[i], g, scale < 1e-6 * largest ? largest : 0) };
  });
  const worst = errors.reduce((w, e) => (e.error > w.error ? e : w));
  expect(worst.error, worst.name).toBeLessThan(1e-5);
  // At 64 px the head weighs more than at 256 px, where it is 0.42 (README, "Speed").
  expect(recomputed.forwardBytes).toBeLessThan(0.7 * plain.forwardBytes);
  tf.dispose([xs, ys]);
  model.dispose();
}
