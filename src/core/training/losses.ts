/**
 * The paper's training losses, as the official code runs them
 * (paper-protocol.md, Optimisation). Inputs: logits [B,H,W,1] float32 and
 * targets [B,H,W,1] float32 in {0,1}. Each returns a differentiable scalar.
 */
import * as tf from '@tensorflow/tfjs';
import { backendOps } from '../backends/ops.ts';
import { LOSS_NAMES, type LossName } from '../config.ts';
import { ConfigError } from '../errors.ts';

export type LossFn = (logits: tf.Tensor, targets: tf.Tensor) => tf.Scalar;

export interface LossOptions {
  /** BCE weight of the lesion class; the paper's alternative run uses 1.25. */
  posWeight?: number;
  /** Dice denominator floor; segmentation_models_pytorch's default 1e-7. */
  eps?: number;
}


/** Broadcasting [B,H,W,1] against [B,H,W] would silently score garbage. */
function assertSameShape(logits: tf.Tensor, targets: tf.Tensor): void {
  if (!tf.util.arraysEqual(logits.shape, targets.shape)) {
    throw new RangeError(`logits shape [${logits.shape}] differs from targets shape [${targets.shape}]`);
  }
}

/**
 * segmentation_models_pytorch 0.2.1 DiceLoss(mode='binary', from_logits=True,
 * smooth=0, eps=1e-7): with dims=(0,2) over the [B,1,H*W] view, the one
 * class's intersection and cardinality are summed over the whole batch, so
 * the Dice is POOLED, not a mean of per-image Dice:
 *   score = 2 * sum(p*t) / max(sum(p) + sum(t), eps),  p = sigmoid(logits)
 *   loss  = (1 - score) * [sum(t) > 0]
 * The indicator is smp's: a batch without any lesion pixel contributes 0
 * (and no gradient) instead of pushing every prediction to zero.
 */
export function softDiceLoss(logits: tf.Tensor, targets: tf.Tensor, eps = 1e-7): tf.Scalar {
  assertSameShape(logits, targets);
  const fused = backendOps().diceLoss;
  if (fused) return fused(logits, targets, eps);
  return tf.tidy(() => {
    const p = tf.sigmoid(logits);
    const intersection = tf.sum(tf.mul(p, targets));
    const targetSum = tf.sum(targets);
    const cardinality = tf.add(tf.sum(p), targetSum);
    const score = tf.div(tf.mul(2, intersection), tf.maximum(cardinality, eps));
    const hasLesion = tf.cast(tf.greater(targetSum, 0), 'float32');
    return tf.mul(tf.sub(1, score), hasLesion) as tf.Scalar;
  });
}

/**
 * torch.nn.BCEWithLogitsLoss(pos_weight), mean reduction:
 *   loss = (1 - t) * x + (1 + (pw - 1) * t) * (log(1 + exp(-|x|)) + max(-x, 0))
 * The last factor is softplus(-x); tf.softplus computes it stably and its
 * registered gradient is exact everywhere, whereas composing abs and relu
 * would give a wrong derivative at x = 0 (tfjs takes abs'(0) = -1).
 */
export function bceWithLogitsLoss(logits: tf.Tensor, targets: tf.Tensor, posWeight = 1): tf.Scalar {
  assertSameShape(logits, targets);
  return tf.tidy(() => {
    const logWeight = tf.add(1, tf.mul(posWeight - 1, targets));
    const perPixel = tf.add(
      tf.mul(tf.sub(1, targets), logits),
      tf.mul(logWeight, tf.softplus(tf.neg(logits))),
    );
    return tf.mean(perPixel) as tf.Scalar;
  });
}

export function lossByName(name: LossName, opts: LossOptions = {}): LossFn {
  switch (name) {
    case 'dice':
      return (logits, targets) => softDiceLoss(logits, targets, opts.eps);
    case 'bce':
      return (logits, targets) => bceWithLogitsLoss(logits, targets, opts.posWeight);
    case 'dice+bce':
      // Dice alone is flat for confident wrong pixels; the cross-entropy term keeps them pulled (nnU-Net's default pairing).
      return (logits, targets) => tf.tidy(() => tf.add(softDiceLoss(logits, targets, opts.eps), bceWithLogitsLoss(logits, targets, opts.posWeight)) as tf.Scalar);
    default:
      throw new ConfigError('loss', `unknown loss "${String(name)}"; expected one of ${LOSS_NAMES.join(', ')}`);
  }
}
