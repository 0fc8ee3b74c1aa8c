/**
 * Batch normalisation written with broadcasting ops. tfjs's batchNorm
 * gradient tiles its per-channel factors to the full activation size in every
 * layer (a quarter of a training step on wasm); broadcasting gradients reduce
 * instead. Weights and their names match tf.layers.batchNormalization, so the
 * export build uses that layer and plain tfjs loads the result.
 */
import * as tf from '@tensorflow/tfjs';
import { wasmBatchNorm } from '../backends/wasm/fused.ts';
import {
  batchNormApply,
  batchNormBackward,
  batchNormGradInput,
  batchNormGradSums,
  batchNormStats,
  batchNormStatsAndMoving,
  useLever,
} from '../backends/webgpu/training.ts';
import { RECOMPUTING } from './recompute.ts';

interface Moving {
  mean: tf.Tensor;
  variance: tf.Tensor;
  momentum: number;
  /** M / (M - 1): the running variance is the unbiased estimate, as in PyTorch. */
  varianceFactor: number;
}

/** Batch norm's training arithmetic as a backend's own kernels. */
interface FusedBatchNorm {
  /** [y, stats], or with `moving` [y, stats, running mean, running variance]. */
  forward(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number, moving?: Moving): tf.Tensor[];
  /** [dx, dGamma, dBeta] from the saved input and statistics. */
  backward(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, epsilon: number): tf.Tensor[];
}

interface BatchNormParts {
  stats(x: tf.Tensor): tf.Tensor;
  statsAndMoving(x: tf.Tensor, movingMean: tf.Tensor, movingVariance: tf.Tensor, momentum: number, varianceFactor: number): tf.Tensor[];
  apply(x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): tf.Tensor;
  gradSums(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, epsilon: number): [tf.Tensor, tf.Tensor];
  gradInput(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, sumDy: tf.Tensor, sumDyXhat: tf.Tensor, epsilon: number): tf.Tensor;
}

/** Statistics (with the running averages), normalisation; gradient sums, input gradient: four kernels. */
function fromParts(k: BatchNormParts): FusedBatchNorm {
  return {
    forward: (x, gamma, beta, eps, moving) => {
      const [stats, ...moved] = moving ? k.statsAndMoving(x, moving.mean, moving.variance, moving.momentum, moving.varianceFactor) : [k.stats(x)];
      return [k.apply(x, stats, gamma, beta, eps), stats, ...moved];
    },
    backward: (dy, x, stats, gamma, eps) => {
      const [sumDy, sumDyXhat] = k.gradSums(dy, x, stats, eps);
      return [k.gradInput(dy, x, stats, gamma, sumDy, sumDyXhat, eps), sumDyXhat, sumDy];
    },
  };
}

/** WebGPU moves the running averages in the statistics' kernel, one dispatch for the three tensors. */
const webGpuBatchNorm = fromParts({
  stats: batchNormStats,
  statsAndMoving: batchNormStatsAndMoving,
  apply: batchNormApply,
  gradSums: batchNormGradSums,
  gradInput: batchNormGradInput,
});

/** And with the 'batchnorm-one-pass' lever, the backward pass in one kernel. */
const webGpuOnePass: FusedBatchNorm = { ...webGpuBatchNorm, backward: batchNormBackward };

const wasmFused = fromParts({
  ...wasmBatchNorm,
  statsAndMoving: (x, movingMean, movingVariance, momentum, varianceFactor) => {
    const stats = wasmBatchNorm.stats(x);
    return [stats, wasmBatchNorm.movingAverage(movingMean, stats, 0, momentum, 1), wasmBatchNorm.movingAverage(movingVariance, stats, 1, momentum, varianceFactor)];
  },
});

/** The active backend's batch norm kernels, if it has them (and, on WebGPU, while its lever is on). */
function fusedBatchNorm(): FusedBatchNorm | undefined {
  if (useLever('batchnorm')) return useLever('batchnorm-one-pass') ? webGpuOnePass : webGpuBatchNorm;
  return tf.getBackend() === 'wasm' ? wasmFused : undefined;
}

interface BatchNormArgs extends tf.serialization.ConfigDict {
  name: string;
  epsilon: number;
  /** Keras convention: moving = moving * momentum + batch * (1 - momentum). */
  momentum: number;
}

export class BatchNorm extends tf.layers.Layer {
  static readonly className = 'BatchNorm';
  private gamma!: tf.LayerVariable;
  private beta!: tf.LayerVariable;
  private movingMean!: tf.LayerVariable;
  private movingVariance!: tf.LayerVariable;

  constructor(private readonly args: BatchNormArgs) {
    super({ name: args.name });
  }

  build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = inputShape as tf.Shape;
    const c = [shape[shape.length - 1] as number];
    this.gamma = this.addWeight('gamma', c, 'float32', tf.initializers.ones());
    this.beta = this.addWeight('beta', c, 'float32', tf.initializers.zeros());
    this.movingMean = this.addWeight('moving_mean', c, 'float32', tf.initializers.zeros(), undefined, false);
    this.movingVariance = this.addWeight('moving_variance', c, 'float32', tf.initializers.ones(), undefined, false);
    this.built = true;
  }

  computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return inputShape as tf.Shape;
  }

  call(inputs: tf.Tensor | tf.Tensor[], kwargs: tf.serialization.ConfigDict): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const gamma = this.gamma.read();
    const beta = this.beta.read();
    const eps = this.args.epsilon;
    if (!kwargs.training) {
      const scale = tf.mul(gamma, tf.rsqrt(tf.add(this.movingVariance.read(), eps)));
      return tf.add(tf.mul(tf.sub(x, this.movingMean.read()), scale), beta);
    }
    // A block re-run for its gradient sees the same batch: the step already counted it.
    const updateMoving = !kwargs[RECOMPUTING];
    const fused = fusedBatchNorm();
    if (fused) return this.fusedTraining(fused, x, gamma, beta, updateMoving);
    const axes = [0, 1, 2];
    const mean = tf.mean(x, axes);
    const centred = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centred), axes);
    if (updateMoving) this.updateMovingStatistics(mean, variance, x.size / mean.size);
    return tf.add(tf.mul(centred, tf.mul(gamma, tf.rsqrt(tf.add(variance, eps)))), beta);
  }

  /**
   * The same arithmetic in a backend's own kernels (statistics, normalisation;
   * the gradient sums and the input gradient) and one per running average,
   * instead of about forty element-wise kernels, transposes and reductions.
   */
  private fusedTraining(k: FusedBatchNorm, x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, updateMoving: boolean): tf.Tensor {
    const eps = this.args.epsilon;
    const n = x.size / gamma.size;
    const moving = updateMoving
      ? { mean: this.movingMean.read(), variance: this.movingVariance.read(), momentum: this.args.momentum, varianceFactor: n / Math.max(1, n - 1) }
      : undefined;
    let moved: tf.Tensor[] = [];
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [input, scale, shift, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
      const [value, stats, ...averages] = k.forward(input, scale, shift, eps, moving);
      // Kept past customGrad's own scope, for the variables below.
      moved = averages.map((t) => tf.keep(t));
      save([input, scale, stats]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xs, g, s] = saved;
          return k.backward(dy, xs, s, g, eps);
        },
      };
    });
    const y = op(x, gamma, beta);
    if (moved.length > 0) {
      this.movingMean.write(moved[0]);
      this.movingVariance.write(moved[1]);
      tf.dispose(moved);
    }
    return y;
  }

  private updateMovingStatistics(mean: tf.Tensor, variance: tf.Tensor, n: number): void {
    const m = this.args.momentum;
    tf.tidy(() => {
      // Like PyTorch, the running variance is the unbiased estimate.
      const unbiased = tf.mul(variance, n / Math.max(1, n - 1));
      this.movingMean.write(tf.add(tf.mul(this.movingMean.read(), m), tf.mul(mean, 1 - m)));
      this.movingVariance.write(tf.add(tf.mul(this.movingVariance.read(), m), tf.mul(unbiased, 1 - m)));
    });
  }

  getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.args };
  }
}

tf.serialization.registerClass(BatchNorm);
