/**
 * Batch normalisation written with broadcasting ops. tfjs's batchNorm
 * gradient tiles its per-channel factors to the full activation size in every
 * layer (a quarter of a training step on wasm); broadcasting gradients reduce
 * instead. Weights and their names match tf.layers.batchNormalization, so the
 * export build uses that layer and plain tfjs loads the result.
 */
import * as tf from '@tensorflow/tfjs';
import { backendOps, type FusedBatchNorm } from '../backends/ops.ts';
import { RECOMPUTING } from './recompute.ts';

interface BatchNormArgs extends tf.serialization.ConfigDict {
  name: string;
  epsilon: number;
  /** Keras convention: moving = moving * momentum + batch * (1 - momentum). */
  momentum: number;
}

/**
 * In training builds a residual block's addition is the BatchNorm's second
 * input (y = bn(x) + skip), so that a backend can add it in the
 * normalisation's kernel: on WebGPU one dispatch per residual block fewer.
 * Export builds keep tfjs's Add layer; the weights are the same.
 */
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
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const c = [shape[shape.length - 1] as number];
    this.gamma = this.addWeight('gamma', c, 'float32', tf.initializers.ones());
    this.beta = this.addWeight('beta', c, 'float32', tf.initializers.zeros());
    this.movingMean = this.addWeight('moving_mean', c, 'float32', tf.initializers.zeros(), undefined, false);
    this.movingVariance = this.addWeight('moving_variance', c, 'float32', tf.initializers.ones(), undefined, false);
    this.built = true;
  }

  computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
  }

  call(inputs: tf.Tensor | tf.Tensor[], kwargs: tf.serialization.ConfigDict): tf.Tensor {
    const [x, skip] = Array.isArray(inputs) ? inputs : [inputs];
    // tfjs's Add layer computes skip + y: the same sum, in the same order.
    const added = (y: tf.Tensor) => (skip ? tf.add(skip, y) : y);
    const gamma = this.gamma.read();
    const beta = this.beta.read();
    const eps = this.args.epsilon;
    if (!kwargs.training) {
      const scale = tf.mul(gamma, tf.rsqrt(tf.add(this.movingVariance.read(), eps)));
      return added(tf.add(tf.mul(tf.sub(x, this.movingMean.read()), scale), beta));
    }
    // A block re-run for its gradient sees the same batch: the step already counted it.
    const updateMoving = !kwargs[RECOMPUTING];
    const fused = backendOps().batchNorm;
    if (fused) return this.fusedTraining(fused, x, gamma, beta, updateMoving, skip);
    const axes = [0, 1, 2];
    const mean = tf.mean(x, axes);
    const centred = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centred), axes);
    if (updateMoving) this.updateMovingStatistics(mean, variance, x.size / mean.size);
    return added(tf.add(tf.mul(centred, tf.mul(gamma, tf.rsqrt(tf.add(variance, eps)))), beta));
  }

  /**
   * The same arithmetic in a backend's own kernels (statistics, normalisation;
   * the gradient sums and the input gradient) and one per running average,
   * instead of about forty element-wise kernels, transposes and reductions.
   */
  private fusedTraining(k: FusedBatchNorm, x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, updateMoving: boolean, skip?: tf.Tensor): tf.Tensor {
    const eps = this.args.epsilon;
    const n = x.size / gamma.size;
    const moving = updateMoving
      ? { mean: this.movingMean.read(), variance: this.movingVariance.read(), momentum: this.args.momentum, varianceFactor: n / Math.max(1, n - 1) }
      : undefined;
    let moved: tf.Tensor[] = [];
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const save = args.pop() as tf.GradSaveFunc;
      const [input, scale, shift, residual] = args as tf.Tensor[];
      const [value, stats, ...averages] = k.forward(input, scale, shift, eps, moving, residual);
      // Kept past customGrad's own scope, for the variables below.
      moved = averages.map((t) => tf.keep(t));
      save([input, scale, stats]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xs, g, s] = saved;
          // The sum passes dy to the skip unchanged.
          return [...k.backward(dy, xs, s, g, eps), ...(residual ? [dy.clone()] : [])];
        },
      };
    });
    const y = skip ? op(x, gamma, beta, skip) : op(x, gamma, beta);
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
