/**
 * Training kernels of our own for tfjs's webgpu backend. tfjs-webgpu pays a
 * uniform write, a bind group and a dispatch for every element-wise op, and a
 * training step of the paper's model made about 4,200 of them: batch norm
 * alone (moments through transposes and reductions, the running averages,
 * and about twenty element-wise kernels in its gradient) and the optimiser
 * (four to eight kernels per variable) were three quarters of them. Here batch
 * norm takes two kernels forward, three backward and one per running average,
 * the optimisers one kernel per tensor written, ReLU and clip gradients one
 * each; and the weight gradients that tfjs computes with one serial loop per
 * filter element become a matrix product (1x1) or a parallel reduction
 * (depthwise).
 *
 * One file per op (batchnorm.ts, optimizer.ts, filter-grad.ts,
 * activation-grad.ts, reduce-grad.ts, atrous.ts, dice.ts) over what their programs
 * share (programs.ts, own-dispatch.ts); each can be turned off by its lever
 * (levers.ts). Ops that model code calls by name are looked up in ../ops.ts;
 * this file registers the ones that replace tfjs's kernels and gradients.
 */
import * as tf from '@tensorflow/tfjs';
import { registerActivationGradients } from './activation-grad.ts';
import { registerFilterGradients } from './filter-grad.ts';
import { installLaunchCache } from './launch-cache.ts';
import { leverOn } from './levers.ts';
import { registerReduceGradients } from './reduce-grad.ts';

/** Call once the webgpu backend is active: its launches then take cached uniform buffers (launch-cache.ts) while that lever is on. */
export function prepareWebGpuBackend(): void {
  installLaunchCache(tf.backend(), () => leverOn('uniform-cache'));
}

let registered = false;

/**
 * Replaces tfjs-webgpu's weight-gradient kernels where ours apply, keeping
 * theirs for the rest (and whenever the 'filter-grad' lever is off), and the
 * activations' gradients.
 * Idempotent; call once the webgpu backend module is imported.
 */
export function registerWebGpuTrainingKernels(): void {
  if (registered) return;
  registered = true;
  registerFilterGradients();
  registerActivationGradients();
  registerReduceGradients();
}
