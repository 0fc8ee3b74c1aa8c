/**
 * Dropout whose masks come from a seed the training loop sets before every
 * step, so that a run resumed from a checkpoint draws the same masks as one
 * that never stopped. (tf.layers.dropout draws from an unseeded generator, or
 * with a fixed seed the same mask at every step.) Export builds use
 * tf.layers.dropout, identical at inference.
 */
import * as tf from '@tensorflow/tfjs';
import { markStepInput } from '../backends/webgpu/step-graph.ts';
import { deriveSeed, Rng } from '../random.ts';

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
  /** The shape of the last input dropped in training: the shape of a replayed step's mask. */
  private maskShape: number[] | undefined;

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
    // The scaled keep mask is made on the CPU as one tensor, the step's input: a replayed training step
    // (backends/webgpu/step-graph.ts) writes the next step's mask in its place.
    const mask = tf.tensor(this.mask(x.shape), x.shape, 'float32');
    markStepInput(mask, this.stepInputKey());
    if (kwargs.training) this.maskShape = x.shape;
    return tf.mul(x, mask);
  }

  /**
   * Keep (1 / (1 - rate), as float32) or drop (0) per unit, from the project's
   * mulberry32 stream of this layer and step: a few nanoseconds a unit, where
   * tf.randomUniform's took tens, and a replayed step draws it on the host.
   */
  private mask(shape: number[]): Float32Array {
    const rate = this.args.rate;
    const scale = Math.fround(1 / (1 - rate));
    const rng = new Rng(deriveSeed(this.stepSeed, this.name));
    const mask = new Float32Array(tf.util.sizeFromShape(shape));
    for (let i = 0; i < mask.length; i++) mask[i] = rng.next() >= rate ? scale : 0;
    return mask;
  }

  stepInputKey(): string {
    return `dropout:${this.name}`;
  }

  /** This step's scaled mask as call() makes it, for a replayed step; undefined before a training call. */
  maskForReplay(): Float32Array | undefined {
    return this.maskShape && this.args.rate > 0 ? this.mask(this.maskShape) : undefined;
  }

  getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.args };
  }
}

tf.serialization.registerClass(SeededDropout);

/** The step inputs of the model's dropout layers (their masks for the current seeds), by key. */
export function dropoutStepInputs(model: tf.LayersModel): Map<string, () => Float32Array | undefined> {
  return new Map(model.layers.filter((l): l is SeededDropout => l instanceof SeededDropout).map((l) => [l.stepInputKey(), () => l.maskForReplay()]));
}

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
