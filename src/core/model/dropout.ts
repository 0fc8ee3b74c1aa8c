/**
 * Dropout whose masks come from a seed the training loop sets before every
 * step, so that a run resumed from a checkpoint draws the same masks as one
 * that never stopped. (tf.layers.dropout draws from an unseeded generator, or
 * with a fixed seed the same mask at every step.) Export builds use
 * tf.layers.dropout, identical at inference.
 */
import * as tf from '@tensorflow/tfjs';
import { deriveSeed } from '../random.ts';

interface SeededDropoutArgs extends tf.serialization.ConfigDict {
  name: string;
  rate: number;
}

export class SeededDropout extends tf.layers.Layer {
  static readonly className = 'SeededDropout';
  /** Set by the training loop before each step. */
  stepSeed = 0;
  /** Drops units at inference too: Monte Carlo dropout's passes (core/active/acquisition.ts). */
  atInference = false;

  constructor(private readonly args: SeededDropoutArgs) {
    super({ name: args.name });
  }

  computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return inputShape as tf.Shape;
  }

  call(inputs: tf.Tensor | tf.Tensor[], kwargs: tf.serialization.ConfigDict): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const rate = this.args.rate;
    if ((!kwargs.training && !this.atInference) || rate === 0) return tf.clone(x);
    const keep = tf.cast(tf.greaterEqual(tf.randomUniform(x.shape, 0, 1, 'float32', deriveSeed(this.stepSeed, this.name)), rate), 'float32');
    return tf.mul(x, tf.mul(keep, 1 / (1 - rate)));
  }

  getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.args };
  }
}

tf.serialization.registerClass(SeededDropout);

export function setDropoutSeed(model: tf.LayersModel, seed: number): void {
  for (const layer of model.layers) {
    if (layer instanceof SeededDropout) layer.stepSeed = seed;
  }
}

/** Monte Carlo dropout: every predict() draws a mask from the layer's seed until this is turned off again. */
export function setDropoutAtInference(model: tf.LayersModel, on: boolean): number {
  let layers = 0;
  for (const layer of model.layers) {
    if (layer instanceof SeededDropout) {
      layer.atInference = on;
      layers++;
    }
  }
  return layers;
}
