/**
 * Batch norm, the optimisers and the activation gradients run once on one backend, read back as typed
 * arrays: each backend's training kernels are checked against cpu on these.
 */
import * as tf from '@tensorflow/tfjs';
import type { OptimizerConfig } from '../../src/core/config.ts';
import { BatchNorm } from '../../src/core/model/batchnorm.ts';
import { createOptimizer } from '../../src/core/training/optim.ts';
import { Rng } from '../../src/core/random.ts';

export const batchNormCases = [
  { shape: [2, 5, 7, 19], seed: 11 },
  { shape: [3, 17, 13, 40], seed: 12 },
  { shape: [1, 1, 2, 3], seed: 13 },
  // Over 256 channels the WebGPU kernels take 16 a workgroup: 300 leaves a partial one.
  { shape: [2, 3, 5, 300], seed: 14 },
];

function values(size: number, seed: number, scale = 1, offset = 0): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => offset + scale * rng.normal());
}

export interface BatchNormResult {
  y: Float32Array;
  dx: Float32Array;
  dGamma: Float32Array;
  dBeta: Float32Array;
  movingMean: Float32Array;
  movingVariance: Float32Array;
}

/** One training-mode call of a BatchNorm layer and the gradients of sum(y * w) (w fixed, so that dy varies). */
export async function batchNorm(backend: string, shape: number[], seed: number): Promise<BatchNormResult> {
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

export async function optimiserRun(backend: string, config: OptimizerConfig): Promise<Float32Array[]> {
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

/** d sum(f(x) * w) / dx for ReLU and the clip that caps it in tf.layers.reLU({maxValue: 6}), at and around their kinks. */
export async function activationGrads(backend: string): Promise<number[][]> {
  await tf.setBackend(backend);
  const x = tf.tensor([-1, 0, 1e-7, 3, 6 - 1e-6, 6, 6.5, ...values(67, 41, 4, 3)], [2, 37]);
  const w = tf.tensor(values(74, 42), [2, 37]);
  const grads = [tf.relu, (t: tf.Tensor) => tf.clipByValue(t, 0, 6), tf.relu6].map((f) => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), w)))(x));
  // + 0 turns -0 (cpu multiplies a negative dy by 0) into 0, which it equals.
  const out = await Promise.all(grads.map(async (g) => Array.from(await g.data(), (v) => v + 0)));
  tf.dispose([x, w, ...grads]);
  return out;
}
