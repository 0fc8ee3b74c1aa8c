/**
 * The WebGPU kernels of src/core/backends/webgpu/ against the cpu
 * backend's arithmetic: batch norm forward (output and running statistics)
 * and backward, the optimisers' updates (SGD's pairs also across a resumed
 * state), the Dice loss and the convolution gradients, on shapes that leave
 * partial workgroups; and the dispatch count of a whole training step of the paper
 * card's model, which these kernels exist to cut.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { DispatchCounter } from '../src/core/backends/webgpu/dispatches.ts';
import { uniformBuffersCreated } from '../src/core/backends/webgpu/launch-cache.ts';
import { setWebGpuLevers, WEBGPU_LEVERS } from '../src/core/backends/webgpu/levers.ts';
import { trainableParams } from '../src/core/training/checkpoint.ts';
import { type LossName, paperCard, type OptimizerConfig } from '../src/core/config.ts';
import { lossByName } from '../src/core/training/losses.ts';
import { atrousConv2d } from '../src/core/model/atrous.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { createOptimizer } from '../src/core/training/optim.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { activationGrads, batchNorm, type BatchNormResult, batchNormCases, optimiserRun } from './helpers/training-kernels.ts';
import { convCases, convGradients } from './helpers/conv-cases.ts';
import { relativeError } from './helpers/tf-node.ts';
import { Rng } from '../src/core/random.ts';

// A webgpu that cannot start falls back to wasm, saying why.
const started = await initNodeBackend('webgpu');
const unavailable = started.name === 'webgpu' ? undefined : started.reason;

describe.skipIf(unavailable !== undefined)('WebGPU training kernels against cpu', () => {
  // Backward in two kernels (gradient sums, input gradient) or in one.
  const batchNormKernels = batchNormCases.flatMap((c) => [false, true].map((onePass) => ({ ...c, onePass })));
  it.each(batchNormKernels)('batch norm $shape, one pass $onePass: output, running statistics and gradients', async ({ shape, seed, onePass }) => {
    const cpu = await batchNorm('cpu', shape, seed);
    const tensorsBefore = tf.memory().numTensors;
    setWebGpuLevers(WEBGPU_LEVERS.filter((lever) => onePass || lever !== 'batchnorm-one-pass'));
    const gpu = await batchNorm('webgpu', shape, seed).finally(() => setWebGpuLevers(WEBGPU_LEVERS));
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

  it.each<{ what: string; loss: LossName; shape: number[]; lesion: number }>([
    { what: 'lesion pixels', loss: 'dice', shape: [2, 33, 29, 1], lesion: 0.3 },
    { what: 'no lesion pixel', loss: 'dice', shape: [1, 9, 7, 1], lesion: 0 },
    // Its Dice part in the two kernels, the cross-entropy in tfjs's ops.
    { what: 'lesion pixels', loss: 'dice+bce', shape: [2, 33, 29, 1], lesion: 0.3 },
  ])('the $loss loss and its gradient on $what, its Dice in two kernels, are cpu\'s', async ({ loss, shape, lesion }) => {
    const rng = new Rng(41);
    const size = shape.reduce((a, b) => a * b, 1);
    const logits = Float32Array.from({ length: size }, () => 3 * rng.normal());
    const targets = Float32Array.from({ length: size }, () => (rng.next() < lesion ? 1 : 0));
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const before = tf.memory().numTensors;
      const [x, t] = [tf.tensor(logits, shape), tf.tensor(targets, shape)];
      const { value, grad } = tf.valueAndGrad((l: tf.Tensor) => lossByName(loss)(l, t))(x);
      const out = [await value.data(), await grad.data()] as Float32Array[];
      tf.dispose([x, t, value, grad]);
      expect(tf.memory().numTensors, `${backend}: no tensor leaked`).toBe(before);
      return out;
    };
    const [cpuLoss, cpuGrad] = await run('cpu');
    const [gpuLoss, gpuGrad] = await run('webgpu');
    expect(relativeError(gpuLoss, cpuLoss, 1e-6)).toBeLessThan(1e-5);
    expect(relativeError(gpuGrad, cpuGrad, 1e-6)).toBeLessThan(1e-5);
    if (lesion === 0) expect(Array.from(gpuGrad).every((g) => g === 0)).toBe(true);
  });

  it('SGD with momentum, two parameters a kernel: a state saved and given to a fresh optimiser continues bit-identically', async () => {
    await tf.setBackend('webgpu');
    const config: OptimizerConfig = { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 1e-2 };
    const rng = new Rng(31);
    const draw = (shape: number[]) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()), shape);
    // Three: one pair and one alone.
    const shapes = [[3, 5], [7], [2, 2, 3]];
    const initial = shapes.map(draw);
    const grads = [0, 1, 2].map(() => shapes.map(draw));
    const tensorsBefore = tf.memory().numTensors;
    const run = async (optimizer: ReturnType<typeof createOptimizer>, params: { key: string; variable: tf.Variable }[], steps: tf.Tensor[][]) => {
      for (const g of steps) optimizer.apply(params, g.map((t) => t.clone()));
      return Promise.all(params.map(async (p) => Array.from(await p.variable.data())));
    };
    const fresh = () => tf.tidy(() => initial.map((t, i) => ({ key: `p${i}#0`, variable: tf.variable(t.clone()) })));

    const straight = fresh();
    const reference = createOptimizer(config);
    const expected = await run(reference, straight, grads);

    const interrupted = fresh();
    const before = createOptimizer(config);
    await run(before, interrupted, grads.slice(0, 1));
    const state = before.state();
    expect(state.map((s) => s.name).sort()).toEqual(['iterations', 'p0#0/momentum', 'p1#0/momentum', 'p2#0/momentum']);
    // What a checkpoint holds: plain values.
    const saved = await Promise.all(state.map(async ({ name, tensor }) => ({ name, tensor: tf.tensor(await tensor.data(), tensor.shape) })));
    tf.dispose(state.filter((s) => s.name === 'iterations').map((s) => s.tensor));
    before.dispose();
    const after = createOptimizer(config);
    after.setState(saved);
    tf.dispose(saved.map((s) => s.tensor));
    expect(await run(after, interrupted, grads.slice(1))).toEqual(expected);

    after.dispose();
    reference.dispose();
    tf.dispose([...straight, ...interrupted].map((p) => p.variable));
    expect(tf.memory().numTensors, 'no tensor leaked').toBe(tensorsBefore);
    tf.dispose([...initial, ...grads.flat()]);
  });

  it('a training step of the paper card\'s model dispatches at most 600 programs', { timeout: 900_000 }, async () => {
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
    // With tfjs's kernels alone: 4,206 at 128 px; 1,411 with those of this repo before the ASPP, optimiser and batch norm kernels of own-dispatch.ts, 718 after;
    // 592 here (batch 1) with SGD two parameters a kernel, the Dice loss in two and the residual additions in batch norm's.
    expect(counts[1]).toBeGreaterThan(0);
    expect(counts[1]).toBeLessThanOrEqual(600);
  });
});

describe.skipIf(unavailable !== undefined)('WebGPU activation gradients against cpu', () => {
  it('ReLU, its clip at 6 and ReLU6 pass the gradient exactly where cpu does', async () => {
    const cpu = await activationGrads('cpu');
    const gpu = await activationGrads('webgpu');
    expect(gpu).toEqual(cpu);
  });
});

describe.skipIf(unavailable !== undefined)('WebGPU Sum and Mean gradients against cpu', () => {
  it('spread dy over the reduced axes as cpu does, with no tensor left behind', async () => {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const before = tf.memory().numTensors;
      const out = tf.tidy(() => {
        const rng = new Rng(5);
        const x = tf.tensor4d(Float32Array.from({ length: 2 * 3 * 5 * 7 }, () => rng.uniform(-1, 1)), [2, 3, 5, 7]);
        const w = tf.tensor(Float32Array.from({ length: 2 * 7 }, () => rng.uniform(-1, 1)), [2, 1, 1, 7]);
        const loss = (t: tf.Tensor) => tf.add(tf.sum(tf.mul(tf.mean(t, [1, 2], true), w)), tf.sum(tf.square(tf.sum(t, 3))));
        return tf.grad(loss)(x);
      });
      const values = Array.from(await out.data());
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
      return values;
    };
    const cpu = await run('cpu');
    const gpu = await run('webgpu');
    expect(relativeError(Float32Array.from(gpu), Float32Array.from(cpu))).toBeLessThan(1e-6);
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

/** The atrous convolution's value and the gradients of sum(out * weighting), on one backend (WebGPU takes its own kernels). */
async function atrousRun(backend: string, input: number[], kernel: number[], rate: number): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const seeded = (shape: number[], seed: number): tf.Tensor4D => {
    const rng = new Rng(seed);
    return tf.tensor4d(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.uniform(-1, 1)), shape as [number, number, number, number]);
  };
  const x = seeded(input, rate);
  const k = seeded(kernel, rate + 1);
  const weighting = seeded([...input.slice(0, 3), kernel[3]], rate + 2);
  const value = atrousConv2d(x, k, rate);
  const [dx, dk] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(atrousConv2d(a as tf.Tensor4D, b as tf.Tensor4D, rate), weighting)))([x, k]);
  const out = await Promise.all([value, dx, dk].map((t) => t.data() as Promise<Float32Array>));
  tf.dispose([x, k, weighting, value, dx, dk]);
  return out;
}

describe.skipIf(unavailable !== undefined)('WebGPU atrous convolution against cpu', () => {
  // Channel and pixel counts that leave partial 16x16 tiles; rate 6 on 5x7 and
  // rate 12 on 6x6 leave taps that reach only padding (skipped); a 5x5 kernel.
  const cases = [
    { rate: 2, input: [2, 5, 7, 19], kernel: [3, 3, 19, 21] },
    { rate: 6, input: [2, 5, 7, 3], kernel: [3, 3, 3, 2] },
    { rate: 12, input: [1, 6, 6, 17], kernel: [3, 3, 17, 33] },
    { rate: 3, input: [3, 9, 10, 40], kernel: [3, 3, 40, 18] },
    { rate: 2, input: [1, 9, 9, 2], kernel: [5, 5, 2, 2] },
  ];

  it.each(cases)('rate $rate, $input * $kernel: value, input and filter gradients', async ({ rate, input, kernel }) => {
    const cpu = await atrousRun('cpu', input, kernel, rate);
    const tensorsBefore = tf.memory().numTensors;
    const gpu = await atrousRun('webgpu', input, kernel, rate);
    expect(tf.memory().numTensors, 'no tensor leaked').toBe(tensorsBefore);
    ['value', 'dx', 'dk'].forEach((name, i) => expect(relativeError(gpu[i], cpu[i]), name).toBeLessThan(1e-4));
  });

  it('takes three dispatches of ours for a forward and backward pass', async () => {
    await tf.setBackend('webgpu');
    const counter = DispatchCounter.attach()!;
    try {
      const x = tf.randomUniform([1, 8, 8, 4]) as tf.Tensor4D;
      const k = tf.randomUniform([3, 3, 4, 5]) as tf.Tensor4D;
      counter.take();
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => atrousConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2))([x, k]);
      const counts = counter.take().byProgram;
      expect(counts).toMatchObject({ lesion_atrous_conv: 1, lesion_atrous_input_grad: 1, lesion_atrous_filter_grad: 1 });
      tf.dispose([x, k, ...grads]);
    } finally {
      counter.detach();
    }
  });
});

describe.skipIf(unavailable !== undefined)('WebGPU uniform cache', () => {
  it('writes a uniform block once and reuses it for a repeated launch of the same shapes', async () => {
    await tf.setBackend('webgpu');
    const x = tf.tensor2d([[-1, 0.5, 7], [3, -2, 6]]);
    const w = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
    const run = async () => {
      const y = tf.tidy(() => tf.mul(tf.relu6(tf.add(x, 0.25)), w));
      const values = Array.from(await y.data());
      y.dispose();
      return values;
    };
    const first = await run();
    const created = uniformBuffersCreated();
    const second = await run();
    expect(uniformBuffersCreated(), 'no new uniform buffer').toBe(created);
    expect(second).toEqual(first);
    expect(first).toEqual([0, 0.75 * 2, 6 * 3, 3.25 * 4, 0, 6 * 6]);
    tf.dispose([x, w]);
  });
});
