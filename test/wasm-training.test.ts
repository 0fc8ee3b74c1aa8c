import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { isResourceExhausted } from '../src/core/train.ts';
import type { EncoderName } from '../src/core/model/deeplab.ts';
import { Rng } from '../src/core/random.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { expectStepMatchesCpu, relativeError } from './helpers/tf-node.ts';

beforeAll(async () => {
  await initNodeBackend('wasm');
});

type Padding = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

interface ConvCase {
  kind: 'conv' | 'depthwise';
  input: [number, number, number, number];
  kernel: [number, number, number, number];
  stride: number;
  pad: Padding;
}

/** Keras' stride-2 padding in MobileNetV2: one extra row and column at the end. */
const keras: Padding = [[0, 0], [0, 1], [0, 1], [0, 0]];

const cases: ConvCase[] = [
  { kind: 'conv', input: [2, 9, 9, 3], kernel: [3, 3, 3, 5], stride: 1, pad: 'same' },
  { kind: 'conv', input: [2, 9, 9, 3], kernel: [3, 3, 3, 5], stride: 2, pad: 'same' },
  { kind: 'conv', input: [2, 10, 10, 3], kernel: [3, 3, 3, 5], stride: 2, pad: 'valid' },
  { kind: 'conv', input: [1, 9, 9, 3], kernel: [3, 3, 3, 4], stride: 2, pad: keras },
  { kind: 'conv', input: [1, 7, 8, 2], kernel: [3, 3, 2, 3], stride: 1, pad: [[0, 0], [1, 0], [0, 1], [0, 0]] },
  { kind: 'conv', input: [2, 8, 8, 4], kernel: [1, 1, 4, 6], stride: 1, pad: 'same' },
  { kind: 'conv', input: [2, 8, 8, 4], kernel: [1, 1, 4, 6], stride: 2, pad: 'valid' },
  { kind: 'conv', input: [2, 16, 16, 3], kernel: [7, 7, 3, 4], stride: 2, pad: 'same' },
  { kind: 'conv', input: [1, 11, 11, 2], kernel: [7, 7, 2, 3], stride: 1, pad: 'valid' },
  { kind: 'depthwise', input: [2, 9, 9, 3], kernel: [3, 3, 3, 1], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [2, 9, 9, 3], kernel: [3, 3, 3, 1], stride: 2, pad: 'same' },
  { kind: 'depthwise', input: [2, 9, 9, 3], kernel: [3, 3, 3, 1], stride: 2, pad: 'valid' },
  { kind: 'depthwise', input: [2, 8, 8, 3], kernel: [3, 3, 3, 1], stride: 2, pad: keras },
  { kind: 'depthwise', input: [2, 8, 8, 3], kernel: [1, 1, 3, 1], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [2, 8, 8, 3], kernel: [1, 1, 3, 1], stride: 2, pad: 'valid' },
  { kind: 'depthwise', input: [1, 12, 12, 2], kernel: [7, 7, 2, 1], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [1, 13, 13, 2], kernel: [7, 7, 2, 1], stride: 2, pad: 'valid' },
];

function seededValues(shape: number[], rng: Rng): Float32Array {
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.uniform(-0.5, 0.5));
}

/** dx and dW of a non-uniformly weighted sum of the output, on one backend, read back as arrays. */
async function convGradients(backend: string, c: ConvCase, x: Float32Array, w: Float32Array): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const loss = (xt: tf.Tensor4D, wt: tf.Tensor4D) => {
      const y = c.kind === 'depthwise' ? tf.depthwiseConv2d(xt, wt, c.stride, c.pad) : tf.conv2d(xt, wt, c.stride, c.pad);
      return tf.sum(tf.mul(y, tf.sin(tf.reshape(tf.range(0, y.size), y.shape))));
    };
    const grads = tf.grads(loss as (...args: tf.Tensor[]) => tf.Tensor)([tf.tensor4d(x, c.input), tf.tensor4d(w, c.kernel)]);
    return grads.map((g) => g.dataSync() as Float32Array);
  });
}

describe('wasm convolution gradients (training kernels) against cpu', () => {
  it.each(cases)('$kind $input * $kernel, stride $stride, padding $pad', async (c) => {
    const rng = new Rng(cases.indexOf(c) + 1);
    const x = seededValues(c.input, rng);
    const w = seededValues(c.kernel, rng);
    const [cpuDx, cpuDw] = await convGradients('cpu', c, x, w);
    const [wasmDx, wasmDw] = await convGradients('wasm', c, x, w);
    expect(relativeError(wasmDx, cpuDx)).toBeLessThan(1e-4);
    expect(relativeError(wasmDw, cpuDw)).toBeLessThan(1e-4);
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
