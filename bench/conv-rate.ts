/**
 * `npx tsx bench/conv-rate.ts`: the arithmetic rate of one pointwise
 * convolution on the wasm backend (XNNPACK), the kind that holds most of
 * MobileNetV2's work; bench/torch.ts sets PyTorch's rate for the same
 * convolution beside it. Prints one JSON line.
 */
import * as tf from '@tensorflow/tfjs';
import { initNodeBackend } from '../src/node/backends.ts';
import { median } from './report.ts';

// bench/torch_step.py --conv-rate times the same shape.
const [batch, size, channelsIn, channelsOut] = [4, 32, 256, 256];

await initNodeBackend('wasm');
const x = tf.randomNormal([batch, size, size, channelsIn]) as tf.Tensor4D;
const w = tf.randomNormal([1, 1, channelsIn, channelsOut]) as tf.Tensor4D;
const flops = 2 * batch * size * size * channelsIn * channelsOut;
const times: number[] = [];
for (let i = 0; i < 23; i++) {
  const t = performance.now();
  // wasm kernels run synchronously: the output exists when conv2d returns.
  const y = tf.conv2d(x, w, 1, 'same');
  if (i >= 3) times.push(performance.now() - t);
  y.dispose();
}
const ms = median(times);
process.stdout.write(`${JSON.stringify({ ms, gflops: flops / 1e6 / ms })}\n`);
