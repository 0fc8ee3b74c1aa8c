import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { isResourceExhausted } from '../src/core/training/train.ts';
import type { EncoderName } from '../src/core/model/deeplab.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { convCases, convGradients } from './helpers/conv-cases.ts';
import { activationGrads, batchNorm, type BatchNormResult, batchNormCases } from './helpers/training-kernels.ts';
import { expectStepMatchesCpu, relativeError } from './helpers/tf-node.ts';

beforeAll(async () => {
  await initNodeBackend('wasm');
});

describe('wasm convolution gradients (training kernels) against cpu', () => {
  it.each(convCases)('$kind $input * $kernel, stride $stride, padding $pad', async (c) => {
    const [cpuDx, cpuDw] = await convGradients('cpu', c);
    const [wasmDx, wasmDw] = await convGradients('wasm', c);
    expect(relativeError(wasmDx, cpuDx)).toBeLessThan(1e-4);
    expect(relativeError(wasmDw, cpuDw)).toBeLessThan(1e-4);
  });
});

describe('wasm fused training kernels against cpu', () => {
  it.each(batchNormCases)('batch norm $shape: output, running statistics and gradients', async ({ shape, seed }) => {
    const cpu = await batchNorm('cpu', shape, seed);
    const tensorsBefore = tf.memory().numTensors;
    const wasm = await batchNorm('wasm', shape, seed);
    expect(tf.memory().numTensors, 'no tensor leaked').toBe(tensorsBefore);
    for (const key of Object.keys(cpu) as (keyof BatchNormResult)[]) {
      expect(relativeError(wasm[key], cpu[key], 1e-6), key).toBeLessThan(1e-4);
    }
  });

  it('ReLU, its clip at 6 and ReLU6 pass the gradient exactly where cpu does', async () => {
    expect(await activationGrads('wasm')).toEqual(await activationGrads('cpu'));
  });

  it.each([
    { shape: [2, 9, 7, 5], begin: [0, 3, 1, 0], size: [2, 4, 5, 5], dtype: 'float32' },
    { shape: [2, 9, 7, 5], begin: [1, 0, 0, 2], size: [1, -1, 7, 3], dtype: 'float32' },
    { shape: [3, 3, 4, 6], begin: [1, 2, 0, 0], size: [1, 1, 4, 6], dtype: 'float32' },
    { shape: [4, 6, 5], begin: [1, 1, 1], size: [2, 0, 3], dtype: 'float32' },
    { shape: [5, 3, 2, 2, 3], begin: [1, 0, 1, 0, 1], size: [3, 2, 1, 2, 2], dtype: 'int32' },
    { shape: [7, 4], begin: [2, 1], size: [4, 2], dtype: 'bool' },
    { shape: [11], begin: [3], size: [6], dtype: 'float32' },
  ] as const)('Slice of $shape from $begin, size $size ($dtype) cuts what cpu cuts', async ({ shape, begin, size, dtype }) => {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const n = shape.reduce((a, b) => a * b, 1);
      const values = tf.tensor(Float32Array.from({ length: n }, (_, i) => (i * 7) % 13), [...shape]);
      // tfjs-wasm's cast to bool keeps the numbers: a comparison makes real booleans.
      const x = dtype === 'bool' ? tf.greater(values, 6) : tf.cast(values, dtype);
      values.dispose();
      const y = tf.slice(x, [...begin], [...size]);
      const out = { shape: y.shape, dtype: y.dtype, values: Array.from(await y.data()) };
      tf.dispose([x, y]);
      return out;
    };
    expect(await run('wasm')).toEqual(await run('cpu'));
  });

  it.each([
    { shape: [2, 5, 4, 9], sizes: [2, 3, 4], axis: 3 },
    { shape: [6, 4], sizes: 3, axis: 0 },
    { shape: [3, 7, 2], sizes: [1, -1, 2], axis: 1 },
  ])('SplitV of $shape into $sizes along axis $axis (a concatenation\'s gradient) gives the parts cpu gives', async ({ shape, sizes, axis }) => {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i), shape);
      const parts = tf.split(x, sizes, axis);
      const out = await Promise.all(parts.map(async (p) => ({ shape: p.shape, values: Array.from(await p.data()) })));
      tf.dispose([x, ...parts]);
      return out;
    };
    expect(await run('wasm')).toEqual(await run('cpu'));
  });

  it.each([
    { input: [2, 8, 6, 5], factor: 2 },
    { input: [8, 4, 4, 3], factor: 2, toSpace: true },
    { input: [1, 12, 12, 7], factor: 3 },
  ])('regridding $input by $factor (SpaceToBatchND, BatchToSpaceND) moves the values cpu moves', async ({ input, factor, toSpace }) => {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor(Float32Array.from({ length: input.reduce((a, b) => a * b, 1) }, (_, i) => i), input);
      const y = toSpace ? tf.batchToSpaceND(x, [factor, factor], [[0, 0], [0, 0]]) : tf.spaceToBatchND(x, [factor, factor], [[0, 0], [0, 0]]);
      const out = { shape: y.shape, values: Array.from(await y.data()) };
      tf.dispose([x, y]);
      return out;
    };
    expect(await run('wasm')).toEqual(await run('cpu'));
  });
});

describe('a whole DeepLabV3 training step on wasm against cpu', () => {
  // Seeds whose ReLU inputs all stay at least 1e-5 from a kink (checked below):
  // elsewhere either side of the kink is a right answer.
  const models: { encoder: EncoderName; seed: number }[] = [
    { encoder: 'mobilenetv2', seed: 8 },
    { encoder: 'resnet34', seed: 1 },
  ];

  it.each(models)('$encoder: same logits and the same gradient for every trainable weight', async ({ encoder, seed }) => {
    await expectStepMatchesCpu('wasm', encoder, seed);
  });
});

describe('the wasm heap', () => {
  it('an allocation it cannot hold fails as "out of memory" (which training cures by halving the batch), not by writing over memory', async () => {
    await tf.setBackend('wasm');
    const held: tf.Tensor[] = [];
    let error: unknown;
    try {
      // 1 GiB at a time until the 4 GiB heap is full.
      for (let i = 0; i < 8 && !error; i++) {
        try {
          held.push(tf.fill([256, 1024, 1024], i));
        } catch (e) {
          error = e;
        }
      }
    } finally {
      tf.dispose(held);
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/wasm out of memory: failed to allocate 1024\.0 MiB/);
    expect(isResourceExhausted(error)).toBe(true);
    // The heap is intact: what was held before the failure is freed and usable again.
    const after = tf.tidy(() => tf.sum(tf.fill([1000], 2)).dataSync()[0]);
    expect(after).toBe(2000);
  });
});
