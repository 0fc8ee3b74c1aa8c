/**
 * The one place model and training code learn which of our own ops the
 * active backend has. A missing entry means the generic tf-op path, which
 * every backend runs; an op added for a backend is one entry here beside its
 * kernel file, and no model file names a backend.
 *
 * (Kernels that replace tfjs's own, and replaced gradients, need no entry:
 * they are registered when the backend starts, see wasm/training.ts and
 * webgpu/training.ts.)
 */
import * as tf from '@tensorflow/tfjs';
import { wasmBatchNorm } from './wasm/batchnorm.ts';
import { wasmSgdStep } from './wasm/sgd.ts';
import { atrousConv2dWebGpu } from './webgpu/atrous.ts';
import {
  batchNormApply,
  batchNormBackward,
  batchNormGradInput,
  batchNormGradSums,
  batchNormStats,
  batchNormStatsAndMoving,
} from './webgpu/batchnorm.ts';
import { diceLoss } from './webgpu/dice.ts';
import { DispatchCounter } from './webgpu/dispatches.ts';
import { leverOn } from './webgpu/levers.ts';
import { adamStep, optimizerStepBlock, sgdPairStep, sgdStep } from './webgpu/optimizer.ts';
import { StepReplay } from './webgpu/step-graph.ts';
import type { AdamOptions, SgdOptions } from './optimizer-options.ts';

export type { AdamOptions, SgdOptions };

/** A batch norm layer's running averages, moved by the batch it normalises. */
export interface Moving {
  mean: tf.Tensor;
  variance: tf.Tensor;
  momentum: number;
  /** M / (M - 1): the running variance is the unbiased estimate, as in PyTorch. */
  varianceFactor: number;
}

/** Batch norm's training arithmetic as a backend's own kernels. */
export interface FusedBatchNorm {
  /** [y, stats], or with `moving` [y, stats, running mean, running variance]; with `skip`, y + skip. */
  forward(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number, moving?: Moving, skip?: tf.Tensor): tf.Tensor[];
  /** [dx, dGamma, dBeta] from the saved input and statistics. */
  backward(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, epsilon: number): tf.Tensor[];
}

export interface BackendOps {
  batchNorm?: FusedBatchNorm;
  /** torch.optim.SGD without momentum on one variable. */
  sgdStep?(w: tf.Variable, g: tf.Tensor, o: SgdOptions): void;
  /** torch.optim.SGD with momentum on one variable and its buffer. */
  sgdMomentumStep?(w: tf.Variable, g: tf.Tensor, buf: tf.Variable, o: SgdOptions): void;
  /**
   * sgdMomentumStep on two variables at once, their buffers packed in one
   * (the first's values, then the second's): half the dispatches, where each
   * one costs more than its arithmetic. A backend with it has sgdMomentumStep too.
   */
  sgdMomentumPairStep?(w: [tf.Variable, tf.Variable], g: [tf.Tensor, tf.Tensor], packed: tf.Variable, o: SgdOptions): void;
  /** torch.optim.Adam on one variable and its two moments. */
  adamStep?(w: tf.Variable, g: tf.Tensor, m: tf.Variable, v: tf.Variable, o: AdamOptions): void;
  /** ReLU6 as one op, where its gradient is one kernel of ours. */
  relu6?(x: tf.Tensor): tf.Tensor;
  /** losses.ts's softDiceLoss, value and gradient, in the backend's own kernels. */
  diceLoss?(logits: tf.Tensor, targets: tf.Tensor, eps: number): tf.Scalar;
  /** 'same', stride-1 atrous convolution, NHWC, odd square kernel. */
  atrousConv2d?(x: tf.Tensor4D, kernel: tf.Tensor4D, rate: number): tf.Tensor4D;
  /** The optimiser kernels' per-step values (learning rate, bias corrections), as a replayed step writes them. */
  optimizerStepBlock?(o: SgdOptions | AdamOptions): number[];
  /** A stage's recorder and replayer of its training step (training/step.ts). */
  stepReplay?(log?: (message: string) => void): StepReplay;
  /** Counts the programs the backend dispatches from now until detached: a step event carries its step's count. */
  countDispatches?(): DispatchCounter | undefined;
  /**
   * The backend's memory is one WebAssembly heap that stops at 4 GiB: a step
   * that would outgrow it must recompute activations rather than fail.
   */
  heapLimited?: boolean;
}

interface BatchNormParts {
  stats(x: tf.Tensor): tf.Tensor;
  statsAndMoving(x: tf.Tensor, movingMean: tf.Tensor, movingVariance: tf.Tensor, momentum: number, varianceFactor: number): tf.Tensor[];
  /** Adds `skip` (a residual block's) in the same kernel where the backend can. */
  apply(x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number, skip?: tf.Tensor): tf.Tensor;
  gradSums(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, epsilon: number): [tf.Tensor, tf.Tensor];
  gradInput(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, sumDy: tf.Tensor, sumDyXhat: tf.Tensor, epsilon: number): tf.Tensor;
}

/** Statistics (with the running averages), normalisation; gradient sums, input gradient: four kernels. */
function fromParts(k: BatchNormParts): FusedBatchNorm {
  return {
    forward: (x, gamma, beta, eps, moving, skip) => {
      const [stats, ...moved] = moving ? k.statsAndMoving(x, moving.mean, moving.variance, moving.momentum, moving.varianceFactor) : [k.stats(x)];
      return [k.apply(x, stats, gamma, beta, eps, skip), stats, ...moved];
    },
    backward: (dy, x, stats, gamma, eps) => {
      const [sumDy, sumDyXhat] = k.gradSums(dy, x, stats, eps);
      return [k.gradInput(dy, x, stats, gamma, sumDy, sumDyXhat, eps), sumDyXhat, sumDy];
    },
  };
}

const WASM: BackendOps = {
  batchNorm: fromParts({
    ...wasmBatchNorm,
    // An addition costs wasm no launch: tfjs's, as the Add layer computes it (skip + y), keeps the sum identical to cpu's.
    apply: (x, stats, gamma, beta, eps, skip) => {
      const y = wasmBatchNorm.apply(x, stats, gamma, beta, eps);
      if (!skip) return y;
      const sum = tf.add(skip, y);
      y.dispose();
      return sum;
    },
  }),
  sgdMomentumStep: wasmSgdStep,
  heapLimited: true,
};

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

/** Each entry while its lever is on: the bench turns them off one by one to measure what each buys. */
function webGpuOps(): BackendOps {
  const optimizer = leverOn('optimizer');
  return {
    batchNorm: leverOn('batchnorm') ? (leverOn('batchnorm-one-pass') ? webGpuOnePass : webGpuBatchNorm) : undefined,
    sgdStep: optimizer ? (w, g, o) => sgdStep(w, g, undefined, o) : undefined,
    sgdMomentumStep: optimizer ? sgdStep : undefined,
    sgdMomentumPairStep: optimizer ? sgdPairStep : undefined,
    adamStep: optimizer ? adamStep : undefined,
    optimizerStepBlock: optimizer ? optimizerStepBlock : undefined,
    stepReplay: leverOn('replay') ? (log) => new StepReplay(log) : undefined,
    relu6: leverOn('activation-grad') ? (x) => tf.relu6(x) : undefined,
    atrousConv2d: leverOn('atrous') ? atrousConv2dWebGpu : undefined,
    diceLoss: leverOn('loss') ? diceLoss : undefined,
    countDispatches: DispatchCounter.attach,
  };
}

const NONE: BackendOps = {};

/** The active backend's own ops. */
export function backendOps(): BackendOps {
  switch (tf.getBackend()) {
    case 'wasm':
      return WASM;
    case 'webgpu':
      return webGpuOps();
    default:
      return NONE;
  }
}
