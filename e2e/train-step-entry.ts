/**
 * One seeded training step, the same code in both hosts (e2e/train-step.spec.ts
 * runs it in Node and, bundled, in a worker of Chromium): real pairs decoded
 * through the host's decoder and the core's loader, a DeepLabV3 built from a
 * seed, the Dice loss before one SGD step and after it, on tfjs's cpu backend
 * in both so that only the pixels could make the figures differ.
 */
import * as tf from '@tensorflow/tfjs';
import { loadSample } from '../src/core/dataset/loader.ts';
import type { Sample } from '../src/core/dataset/layouts.ts';
import { imagesToBatch, masksToBatch } from '../src/core/dataset/samples.ts';
import type { FileSource, PixelDecoder } from '../src/core/io.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { lossByName } from '../src/core/training/losses.ts';

export { BitmapDecoder } from '../src/worker/decode.ts';

const SIZE = 64;

export async function seededStepLosses(decoder: PixelDecoder, files: Record<string, Uint8Array>, samples: Sample[]): Promise<number[]> {
  await tf.setBackend('cpu');
  const source: FileSource = { list: async () => Object.keys(files), read: async (path) => files[path] };
  const loaded = await Promise.all(samples.map((sample) => loadSample(sample, source, decoder, { width: SIZE, height: SIZE })));
  const model = buildDeepLabV3(
    { encoder: 'mobilenetv2', width: 0.25, outputStride: 8, atrousRates: [2, 4, 12], asppChannels: 16, dropout: 0, inputSize: SIZE, init: 'random', inputRange: 'unit' },
    'train',
    2024,
  );
  const x = tf.tensor4d(imagesToBatch(loaded.map((l) => l.image)), [samples.length, SIZE, SIZE, 3]);
  const y = tf.tensor4d(masksToBatch(loaded.map((l) => l.mask!)), [samples.length, SIZE, SIZE, 1]);
  const dice = lossByName('dice');
  const loss = () => dice(model.apply(x, { training: true }) as tf.Tensor, y);
  const before = tf.tidy(loss).dataSync()[0];
  tf.train.sgd(0.5).minimize(loss);
  const after = tf.tidy(loss).dataSync()[0];
  tf.dispose([x, y]);
  model.dispose();
  return [before, after];
}
