/**
 * Convolution geometries the model uses (stride 1 and 2, 'same', 'valid' and
 * Keras' explicit stride-2 padding, odd sizes, 1x1, 3x3, 7x7, depthwise), and
 * their gradients on one backend: the training kernels of each backend are
 * checked against cpu on the same cases.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../src/core/random.ts';

export type Padding = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

export interface ConvCase {
  kind: 'conv' | 'depthwise';
  input: [number, number, number, number];
  kernel: [number, number, number, number];
  stride: number;
  pad: Padding;
}

/** Keras' stride-2 padding in MobileNetV2: one extra row and column at the end. */
const keras: Padding = [[0, 0], [0, 1], [0, 1], [0, 0]];

export const convCases: ConvCase[] = [
  { kind: 'conv', input: [2, 9, 9, 3], kernel: [3, 3, 3, 5], stride: 1, pad: 'same' },
  { kind: 'conv', input: [2, 9, 9, 3], kernel: [3, 3, 3, 5], stride: 2, pad: 'same' },
  { kind: 'conv', input: [2, 10, 10, 3], kernel: [3, 3, 3, 5], stride: 2, pad: 'valid' },
  { kind: 'conv', input: [1, 9, 9, 3], kernel: [3, 3, 3, 4], stride: 2, pad: keras },
  { kind: 'conv', input: [1, 7, 8, 2], kernel: [3, 3, 2, 3], stride: 1, pad: [[0, 0], [1, 0], [0, 1], [0, 0]] },
  { kind: 'conv', input: [2, 8, 8, 4], kernel: [1, 1, 4, 6], stride: 1, pad: 'same' },
  { kind: 'conv', input: [2, 8, 8, 6], kernel: [1, 1, 6, 4], stride: 1, pad: 'same' },
  { kind: 'conv', input: [2, 8, 8, 4], kernel: [1, 1, 4, 6], stride: 2, pad: 'valid' },
  { kind: 'conv', input: [2, 16, 16, 3], kernel: [7, 7, 3, 4], stride: 2, pad: 'same' },
  { kind: 'conv', input: [1, 11, 11, 2], kernel: [7, 7, 2, 3], stride: 1, pad: 'valid' },
  { kind: 'depthwise', input: [2, 9, 9, 3], kernel: [3, 3, 3, 1], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [2, 7, 9, 6], kernel: [3, 3, 6, 1], stride: 2, pad: keras },
  { kind: 'depthwise', input: [2, 9, 9, 3], kernel: [3, 3, 3, 1], stride: 2, pad: 'same' },
  { kind: 'depthwise', input: [2, 9, 9, 3], kernel: [3, 3, 3, 1], stride: 2, pad: 'valid' },
  { kind: 'depthwise', input: [2, 8, 8, 3], kernel: [3, 3, 3, 1], stride: 2, pad: keras },
  { kind: 'depthwise', input: [2, 8, 8, 3], kernel: [1, 1, 3, 1], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [2, 8, 8, 3], kernel: [1, 1, 3, 1], stride: 2, pad: 'valid' },
  { kind: 'depthwise', input: [1, 12, 12, 2], kernel: [7, 7, 2, 1], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [1, 13, 13, 2], kernel: [7, 7, 2, 1], stride: 2, pad: 'valid' },
  // Channel counts that leave partial workgroups in the WebGPU kernels (4 channels each up to 256, 16 above).
  { kind: 'conv', input: [2, 9, 7, 19], kernel: [1, 1, 19, 24], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [2, 9, 7, 19], kernel: [3, 3, 19, 1], stride: 1, pad: 'same' },
  { kind: 'depthwise', input: [3, 16, 16, 32], kernel: [3, 3, 32, 1], stride: 2, pad: keras },
  { kind: 'depthwise', input: [1, 6, 5, 300], kernel: [3, 3, 300, 1], stride: 1, pad: 'same' },
];

function seededValues(shape: number[], rng: Rng): Float32Array {
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.uniform(-0.5, 0.5));
}

/**
 * dx and dW of a non-uniformly weighted sum of the output, on one backend,
 * from inputs seeded by the case's place in the list, read back
 * asynchronously (WebGPU in Node has no synchronous read).
 */
export async function convGradients(backend: string, c: ConvCase): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const rng = new Rng(convCases.indexOf(c) + 1);
  const x = seededValues(c.input, rng);
  const w = seededValues(c.kernel, rng);
  const grads = tf.tidy(() => {
    const loss = (xt: tf.Tensor4D, wt: tf.Tensor4D) => {
      const y = c.kind === 'depthwise' ? tf.depthwiseConv2d(xt, wt, c.stride, c.pad) : tf.conv2d(xt, wt, c.stride, c.pad);
      return tf.sum(tf.mul(y, tf.sin(tf.reshape(tf.range(0, y.size), y.shape))));
    };
    return tf.grads(loss as (...args: tf.Tensor[]) => tf.Tensor)([tf.tensor4d(x, c.input), tf.tensor4d(w, c.kernel)]);
  });
  const out = await Promise.all(grads.map(async (g) => (await g.data()) as Float32Array));
  tf.dispose(grads);
  return out;
}

