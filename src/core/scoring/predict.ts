/**
 * Inference in fixed-shape batches (the last one padded: webgpu's buffer
 * pool reuses only exact sizes), read back asynchronously once per batch.
 */
import * as tf from '@tensorflow/tfjs';
import type { RgbImage } from '../io.ts';
import { imagesToBatch } from '../dataset/samples.ts';
import type { TtaKind } from './readout.ts';

export interface PredictOptions {
  batchSize: number;
  /** Average the lesion probability over flipped copies of the image (none when absent). */
  tta?: TtaKind;
}

/** The flips each TTA averages over, as [vertical, horizontal] axes of an NHWC batch. */
const FLIPS: Record<TtaKind, number[][]> = { none: [[]], hflip: [[], [2]], flips: [[], [2], [1], [1, 2]] };

/** Per image, the lesion logits at the model's input size (H*W floats). */
export async function predictLogits(model: tf.LayersModel, images: RgbImage[], options: PredictOptions): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  const { batchSize } = options;
  const [h, w] = [images[0]?.height, images[0]?.width];
  for (let start = 0; start < images.length; start += batchSize) {
    const chunk = images.slice(start, start + batchSize);
    const padded = chunk.length < batchSize
      ? [...chunk, ...Array.from({ length: batchSize - chunk.length }, () => ({ width: w, height: h, data: new Uint8Array(w * h * 3) }))]
      : chunk;
    const logits = tf.tidy(() => {
      const x = tf.tensor4d(imagesToBatch(padded), [batchSize, h, w, 3]);
      const flips = FLIPS[options.tta ?? 'none'];
      if (flips.length === 1) return model.predict(x) as tf.Tensor4D;
      const probabilities = flips.map((axes) => {
        const flip = (t: tf.Tensor4D): tf.Tensor4D => (axes.length === 0 ? t : tf.reverse(t, axes));
        return tf.sigmoid(flip(model.predict(flip(x)) as tf.Tensor4D));
      });
      const p = tf.div(tf.addN(probabilities), flips.length);
      // Back to logits so every consumer thresholds the same quantity.
      const eps = 1e-6;
      const clipped = tf.clipByValue(p, eps, 1 - eps);
      return tf.log(tf.div(clipped, tf.sub(1, clipped)));
    });
    const data = (await logits.data()) as Float32Array;
    logits.dispose();
    const per = h * w;
    for (let i = 0; i < chunk.length; i++) out.push(data.slice(i * per, (i + 1) * per));
  }
  return out;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Mean binary entropy (bits) of the lesion probability: 0 when the model is certain everywhere. */
export function meanEntropy(logits: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const p = sigmoid(logits[i]);
    if (p > 0 && p < 1) sum -= p * Math.log2(p) + (1 - p) * Math.log2(1 - p);
  }
  return sum / logits.length;
}
