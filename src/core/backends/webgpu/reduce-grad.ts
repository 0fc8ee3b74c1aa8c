import * as tf from '@tensorflow/tfjs';
import { type Attrs, replaceGradient } from '../kernel-util.ts';
import { onWebGpu } from './levers.ts';

/**
 * The gradients of Sum and Mean spread dy back over the reduced axes. tfjs
 * multiplies it by ones(x.shape), an array it fills in JavaScript and uploads
 * at every step: for the ASPP's image pooling (a mean over a 1280-channel
 * map) 1.3 M values at 128 px batch 4 and 13 M at 256 px batch 10, the
 * largest part of a step's host cost in the profile. Broadcasting instead
 * stays on the GPU and gives the same values (dy * 1 is dy).
 */
function spreadGrad(dy: tf.Tensor, x: tf.Tensor, attrs: Attrs, mean: boolean): tf.Tensor {
  const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
  const spread = tf.broadcastTo(tf.reshape(dy, x.shape.map((d, i) => (axes.includes(i) ? 1 : d))), x.shape);
  return mean ? tf.div(spread, axes.reduce((n, i) => n * x.shape[i], 1)) : spread;
}

/** While webgpu is active and the 'reduce-grad' lever is on. */
export function registerReduceGradients(): void {
  const spreads = onWebGpu('reduce-grad');
  replaceGradient('Sum', spreads, (dy, x, a) => spreadGrad(dy, x, a, false));
  replaceGradient('Mean', spreads, (dy, x, a) => spreadGrad(dy, x, a, true));
}
