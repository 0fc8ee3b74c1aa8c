/**
 * Batch norm in training as four kernels over the wasm heap (statistics,
 * normalisation; gradient sums, input gradient) and one per running average,
 * where tfjs-wasm ran about thirty element-wise passes per layer, forward and
 * backward. Sums are accumulated in double precision, in a fixed order, so
 * that a resumed run repeats its steps exactly.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Attrs, type KernelSpec, registerKernelFor, runKernel } from '../kernel-util.ts';
import { heap, onHeap } from './heap.ts';

function channels(info: tf.TensorInfo): number {
  return info.shape[info.shape.length - 1];
}

function rstd(stats: Float32Array, c: number, eps: number): Float64Array {
  return Float64Array.from({ length: c }, (_, k) => 1 / Math.sqrt(stats[c + k] + eps));
}

const KERNELS: KernelSpec[] = [
  {
    // Per channel of x seen as [M, C]: row 0 the mean, row 1 the biased variance, in two passes as the cpu path.
    kernelName: 'LesionBatchNormStats',
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as BackendWasm;
      const { x } = inputs as { x: tf.TensorInfo };
      const c = channels(x);
      const m = tf.util.sizeFromShape(x.shape) / c;
      const out = b.makeOutput([2, c], 'float32');
      onHeap(b, (h) => {
        const [sums, squares] = [h.scratch64(c), h.scratch64(c)];
        h.simd.sumRows(m, c, h.at(x), sums);
        const mean = h.f64(sums, c);
        for (let k = 0; k < c; k++) mean[k] /= m;
        h.simd.sumSquaredDeviations(m, c, h.at(x), sums, squares);
        const stats = heap(b, out);
        stats.set(mean);
        stats.set(h.f64(squares, c).map((v) => v / m), c);
      });
      return out;
    },
  },
  {
    // y = (x - mean) * rstd * gamma + beta.
    kernelName: 'LesionBatchNormApply',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { x, stats, gamma, beta } = inputs as Record<string, tf.TensorInfo>;
      const c = channels(x);
      const out = b.makeOutput(x.shape, 'float32');
      const [s, g] = [stats, gamma].map((t) => heap(b, t));
      const r = rstd(s, c, (attrs as Attrs).epsilon as number);
      const scale = Float32Array.from({ length: c }, (_, k) => r[k] * g[k]);
      onHeap(b, (h) => h.simd.normalize(tf.util.sizeFromShape(x.shape) / c, c, h.at(x), h.at(out), h.at(stats), h.scratch32(scale), h.at(beta)));
      return out;
    },
  },
  {
    // sum(dy) and sum(dy * xhat) per channel in one pass: the gradients of beta and gamma.
    kernelName: 'LesionBatchNormGradSums',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { dy, x, stats } = inputs as Record<string, tf.TensorInfo>;
      const c = channels(x);
      const sumDy = b.makeOutput([c], 'float32');
      const sumDyXhat = b.makeOutput([c], 'float32');
      onHeap(b, (h) => {
        const mean = h.scratch64(c);
        const [s0, s1] = [h.scratch64(c), h.scratch64(c)];
        const s = heap(b, stats);
        h.f64(mean, c).set(s.subarray(0, c));
        h.simd.gradSums(tf.util.sizeFromShape(x.shape) / c, c, h.at(dy), h.at(x), mean, s0, s1);
        const r = rstd(s, c, (attrs as Attrs).epsilon as number);
        heap(b, sumDy).set(h.f64(s0, c));
        heap(b, sumDyXhat).set(h.f64(s1, c).map((v, k) => v * r[k]));
      });
      return [sumDy, sumDyXhat];
    },
  },
  {
    // dx = gamma * rstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M).
    kernelName: 'LesionBatchNormGradInput',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { dy, x, stats, gamma, sumDy, sumDyXhat } = inputs as Record<string, tf.TensorInfo>;
      const c = channels(x);
      const out = b.makeOutput(x.shape, 'float32');
      const [s, g, s0, s1] = [stats, gamma, sumDy, sumDyXhat].map((t) => heap(b, t));
      const m = tf.util.sizeFromShape(x.shape) / c;
      const r = rstd(s, c, (attrs as Attrs).epsilon as number);
      // Per channel: dx = scale * dy - slope * (x - mean) - offset.
      const scale = new Float32Array(c);
      const slope = new Float32Array(c);
      const offset = new Float32Array(c);
      for (let k = 0; k < c; k++) {
        scale[k] = g[k] * r[k];
        slope[k] = (g[k] * r[k] * r[k] * s1[k]) / m;
        offset[k] = (g[k] * r[k] * s0[k]) / m;
      }
      onHeap(b, (h) => h.simd.gradInput(m, c, h.at(dy), h.at(x), h.at(out), h.at(stats), h.scratch32(scale), h.scratch32(slope), h.scratch32(offset)));
      return out;
    },
  },
  {
    // moving * momentum + stats[row] * weight.
    kernelName: 'LesionMovingAverage',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { moving, stats } = inputs as Record<string, tf.TensorInfo>;
      const { row, momentum, weight } = attrs as { row: number; momentum: number; weight: number };
      const c = moving.shape[0];
      const out = b.makeOutput(moving.shape, 'float32');
      const [mv, s, o] = [moving, stats, out].map((t) => heap(b, t));
      for (let k = 0; k < c; k++) o[k] = mv[k] * momentum + s[row * c + k] * weight;
      return out;
    },
  },
];

export function registerBatchNormKernels(): void {
  for (const kernel of KERNELS) registerKernelFor('wasm', kernel);
}

const statsOf = (x: tf.Tensor) => runKernel('LesionBatchNormStats', { x }) as tf.Tensor;

const movingAverage = (moving: tf.Tensor, stats: tf.Tensor, row: 0 | 1, momentum: number, factor: number) =>
  runKernel('LesionMovingAverage', { moving, stats }, { row, momentum, weight: factor * (1 - momentum) }) as tf.Tensor;

/** Batch norm's training kernels, the parts ../ops.ts assembles for batch norm's customGrad (the WebGPU ones have the same signatures). */
export const wasmBatchNorm = {
  stats: statsOf,
  statsAndMoving: (x: tf.Tensor, movingMean: tf.Tensor, movingVariance: tf.Tensor, momentum: number, varianceFactor: number) => {
    const s = statsOf(x);
    return [s, movingAverage(movingMean, s, 0, momentum, 1), movingAverage(movingVariance, s, 1, momentum, varianceFactor)];
  },
  apply: (x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number) =>
    runKernel('LesionBatchNormApply', { x, stats, gamma, beta }, { epsilon }) as tf.Tensor,
  gradSums: (dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, epsilon: number) =>
    runKernel('LesionBatchNormGradSums', { dy, x, stats }, { epsilon }) as [tf.Tensor, tf.Tensor],
  gradInput: (dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, sumDy: tf.Tensor, sumDyXhat: tf.Tensor, epsilon: number) =>
    runKernel('LesionBatchNormGradInput', { dy, x, stats, gamma, sumDy, sumDyXhat }, { epsilon }) as tf.Tensor,
};
