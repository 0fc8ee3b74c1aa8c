/**
 * The WebGPU kernels of src/core/backends/webgpu-training.ts against the cpu
 * backend's arithmetic: batch norm forward (output and running statistics)
 * and backward, the optimisers' updates and the convolution gradients, on
 * shapes that leave partial workgroups; and the dispatch count of a whole training step of the paper
 * card's model, which these kernels exist to cut.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { DispatchCounter } from '../src/core/backends/webgpu-dispatches.ts';
import { trainableParams } from '../src/core/checkpoint.ts';
import { paperCard, type OptimizerConfig } from '../src/core/config.ts';
import { lossByName } from '../src/core/losses.ts';
import { BatchNorm } from '../src/core/model/batchnorm.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { createOptimizer } from '../src/core/optim.ts';
import { Rng } from '../src/core/random.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { convCases, convGradients } from './helpers/conv-cases.ts';
import { relativeError } from './helpers/tf-node.ts';

const unavailable = await initNodeBackend('webgpu').then(
  () => undefined,
  (error: unknown) => (error instanceof Error ? error.message : String(error)),
);

function values(size: number, seed: number, scale = 1, offset = 0): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => offset + scale * rng.normal());
}

interface BatchNormResult {
  y: Float32Array;
  dx: Float32Array;
  dGamma: Float32Array;
  dBeta: Float32Array;
  movingMean: Float32Array;
  movingVariance: Float32Array;
}

/** One training-mode call of a BatchNorm layer and the gradients of sum(y * w) (w fixed, so that dy varies). */
async function batchNorm(backend: string, shape: number[], seed: number): Promise<BatchNormResult> {
  await tf.setBackend(backend);
  const c = shape[3];
  const size = shape.reduce((a, b) => a * b, 1);
  const layer = new BatchNorm({ name: `bn_${seed}`, epsilon: 1e-3, momentum: 0.9 });
  layer.build(shape);
  tf.tidy(() =>
    layer.setWeights([
      tf.tensor1d(values(c, seed + 1, 0.3, 1)),
      tf.tensor1d(values(c, seed + 2, 0.2)),
      tf.tensor1d(values(c, seed + 3, 0.1)),
      tf.tensor1d(values(c, seed + 4, 0.1, 1).map(Math.abs)),
    ]),
  );
  // An offset mean, as activations after a convolution have: the variance must not cancel.
  const x = tf.tensor(values(size, seed, 2, 3), shape);
  const w = tf.tensor(values(size, seed + 5), shape);
  const [gamma, beta] = layer.trainableWeights.map((v) => v.read());
  let y: tf.Tensor | undefined;
  const grads = tf.grads((xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    void g;
    void b;
    y = tf.keep(layer.apply(xs, { training: true }) as tf.Tensor);
    return tf.sum(tf.mul(y, w));
  })([x, gamma, beta]);
  const read = async (t: tf.Tensor) => (await t.data()) as Float32Array;
  const result = {
    y: await read(y!),
    dx: await read(grads[0]),
    dGamma: await read(grads[1]),
    dBeta: await read(grads[2]),
    movingMean: await read(layer.weights[2].read()),
    movingVariance: await read(layer.weights[3].read()),
  };
  tf.dispose([x, w, y!, ...grads]);
  tf.disposeVariables();
  return result;
}

async function optimiserRun(backend: string, config: OptimizerConfig): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const params = tf.tidy(() => [
    { key: 'a#0', variable: tf.variable(tf.tensor(values(300, 1), [3, 100])) },
    { key: 'b#0', variable: tf.variable(tf.tensor(values(7, 2), [7])) },
  ]);
  const optimizer = createOptimizer(config);
  for (let step = 0; step < 3; step++) {
    optimizer.apply(params, [tf.tensor(values(300, 10 + step), [3, 100]), tf.tensor(values(7, 20 + step), [7])]);
  }
  const state = optimizer.state();
  const out = await Promise.all([...params.map((p) => p.variable), ...state.map((s) => s.tensor)].map(async (t) => (await t.data()) as Float32Array));
  state.find((s) => s.name === 'iterations')!.tensor.dispose();
  optimizer.dispose();
  params.forEach((p) => p.variable.dispose());
  return out;
}

describe.skipIf(unavailable !== undefined)('WebGPU training kernels against cpu', () => {
  it.each([
    { shape: [2, 5, 7, 19], seed: 11 },
    { shape: [3, 17, 13, 40], seed: 12 },
    { shape: [1, 1, 2, 3], seed: 13 },
    // Over 256 channels the kernels take 16 a workgroup: 300 leaves a partial one.
    { shape: [2, 3, 5, 300], seed: 14 },
  ])('batch norm $shape: output, running statistics and gradients', async ({ shape, seed }) => {
    const cpu = await batchNorm('cpu', shape, seed);
    const tensorsBefore = tf.memory().numTensors;
    const gpu = await batchNorm('webgpu', shape, seed);
    expect(tf.memory().numTensors, 'no tensor leaked').toBe(tensorsBefore);
    for (const key of Object.keys(cpu) as (keyof BatchNormResult)[]) {
      expect(relativeError(gpu[key], cpu[key], 1e-6), key).toBeLessThan(1e-4);
    }
  });

  it.each<OptimizerConfig>([
    { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 1e-2 },
    { kind: 'sgd', lr: 0.05, momentum: 0, weightDecay: 1e-3 },
    { kind: 'adam', lr: 1e-2, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 1e-2 },
  ])('$kind (momentum $momentum): three steps give cpu\'s weights and state', async (config) => {
    const cpu = await optimiserRun('cpu', config);
    const tensorsBefore = tf.memory().numTensors;
    const gpu = await optimiserRun('webgpu', config);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(gpu).toHaveLength(cpu.length);
    cpu.forEach((expected, i) => expect(relativeError(gpu[i], expected, 1e-6), `tensor ${i}`).toBeLessThan(1e-5));
  });

  it('a training step of the paper card\'s model dispatches at most 1,500 programs', { timeout: 300_000 }, async () => {
    await tf.setBackend('webgpu');
    const card = paperCard();
    // At the card's own size (256 px): at smaller ones the ASPP's outer taps fall on padding only and are skipped.
    const size = card.model.inputSize;
    const model = buildDeepLabV3({ ...card.model, init: 'random' }, 'train', card.seed);
    const params = trainableParams(model);
    const variables = params.map((p) => p.variable);
    const optimizer = createOptimizer(card.train.optimizer);
    const loss = lossByName(card.train.loss);
    const x = tf.randomUniform([1, size, size, 3]);
    const y = tf.cast(tf.greater(tf.randomUniform([1, size, size, 1]), 0.5), 'float32');
    const counter = DispatchCounter.attach()!;
    const counts: number[] = [];
    try {
      // The second step is the steady one: the first starts the momentum buffers.
      for (let step = 0; step < 2; step++) {
        counter.take();
        const value = tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => loss(model.apply(x, { training: true }) as tf.Tensor, y), variables);
          optimizer.apply(params, variables.map((v) => grads[v.name]));
          return value;
        });
        expect(Number.isFinite((await value.data())[0])).toBe(true);
        value.dispose();
        counts.push(counter.take().total);
      }
    } finally {
      counter.detach();
      optimizer.dispose();
      tf.dispose([x, y]);
      model.dispose();
    }
    // With tfjs's kernels alone: 4,206 at 128 px.
    expect(counts[1]).toBeGreaterThan(0);
    expect(counts[1]).toBeLessThanOrEqual(1500);
  });
});

/** d sum(f(x) * w) / dx for ReLU and the clip that caps it in tf.layers.reLU({maxValue: 6}), at and around their kinks. */
async function activationGrads(backend: string): Promise<number[][]> {
  await tf.setBackend(backend);
  const x = tf.tensor([-1, 0, 1e-7, 3, 6 - 1e-6, 6, 6.5, ...values(67, 41, 4, 3)], [2, 37]);
  const w = tf.tensor(values(74, 42), [2, 37]);
  const grads = [tf.relu, (t: tf.Tensor) => tf.clipByValue(t, 0, 6)].map((f) => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), w)))(x));
  // + 0 turns -0 (cpu multiplies a negative dy by 0) into 0, which it equals.
  const out = await Promise.all(grads.map(async (g) => Array.from(await g.data(), (v) => v + 0)));
  tf.dispose([x, w, ...grads]);
  return out;
}

describe.skipIf(unavailable !== undefined)('WebGPU activation gradients against cpu', () => {
  it('ReLU and its clip at 6 pass the gradient exactly where cpu does', async () => {
    const cpu = await activationGrads('cpu');
    const gpu = await activationGrads('webgpu');
    expect(gpu).toEqual(cpu);
  });
});

describe.skipIf(unavailable !== undefined)('WebGPU convolution gradients against cpu', () => {
  it.each(convCases)('$kind $input * $kernel, stride $stride, padding $pad', async (c) => {
    const [cpuDx, cpuDw] = await convGradients('cpu', c);
    const [gpuDx, gpuDw] = await convGradients('webgpu', c);
    expect(relativeError(gpuDx, cpuDx)).toBeLessThan(1e-4);
    expect(relativeError(gpuDw, cpuDw)).toBeLessThan(1e-4);
  });
});
