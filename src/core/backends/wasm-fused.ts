/**
 * Fused training kernels for tfjs's wasm backend, written in TypeScript over
 * the WebAssembly heap. tfjs-wasm runs every element-wise op and reduction as
 * its own single-threaded pass with a JavaScript call around it: batch norm in
 * training was about thirty of them per layer, forward and backward, ReLU6's
 * gradient five, and its SpaceToBatchND / BatchToSpaceND a six-dimensional
 * transpose on its slow generic path (a quarter of a second per call at 128
 * px). Here each is one or two passes. Sums are accumulated in double
 * precision, in a fixed order, so that a resumed run repeats its steps exactly.
 *
 * The kernels take the same roles as the WebGPU ones (webgpu-training.ts):
 * batch norm's customGrad in batchnorm.ts and the activation gradients
 * dispatch to whichever backend is active.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Attrs, type KernelSpec, registerKernelFor } from './kernel-util.ts';

/** A Float32Array over a tensor's bytes on the heap; take views only after the last allocation (the heap may grow and move). */
export function heap(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

function channels(info: tf.TensorInfo): number {
  return info.shape[info.shape.length - 1];
}

/** Per channel of x seen as [M, C]: row 0 the mean, row 1 the biased variance, in two passes as the cpu path. */
function bnStats(x: Float32Array, c: number, out: Float32Array): void {
  const m = x.length / c;
  const acc = new Float64Array(c);
  for (let i = 0; i < x.length; i += c) for (let k = 0; k < c; k++) acc[k] += x[i + k];
  const mean = acc.map((s) => s / m);
  acc.fill(0);
  for (let i = 0; i < x.length; i += c) {
    for (let k = 0; k < c; k++) {
      const d = x[i + k] - mean[k];
      acc[k] += d * d;
    }
  }
  for (let k = 0; k < c; k++) {
    out[k] = mean[k];
    out[c + k] = acc[k] / m;
  }
}

function rstd(stats: Float32Array, c: number, eps: number): Float64Array {
  return Float64Array.from({ length: c }, (_, k) => 1 / Math.sqrt(stats[c + k] + eps));
}

const KERNELS: KernelSpec[] = [
  {
    kernelName: 'LesionBatchNormStats',
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as BackendWasm;
      const { x } = inputs as { x: tf.TensorInfo };
      const c = channels(x);
      const out = b.makeOutput([2, c], 'float32');
      bnStats(heap(b, x), c, heap(b, out));
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
      const [xs, s, g, be, y] = [x, stats, gamma, beta, out].map((t) => heap(b, t));
      const r = rstd(s, c, (attrs as Attrs).epsilon as number);
      const scale = Float32Array.from({ length: c }, (_, k) => r[k] * g[k]);
      for (let i = 0; i < xs.length; i += c) for (let k = 0; k < c; k++) y[i + k] = (xs[i + k] - s[k]) * scale[k] + be[k];
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
      const [d, xs, s] = [dy, x, stats].map((t) => heap(b, t));
      const a0 = new Float64Array(c);
      const a1 = new Float64Array(c);
      for (let i = 0; i < xs.length; i += c) {
        for (let k = 0; k < c; k++) {
          const g = d[i + k];
          a0[k] += g;
          a1[k] += g * (xs[i + k] - s[k]);
        }
      }
      const r = rstd(s, c, (attrs as Attrs).epsilon as number);
      heap(b, sumDy).set(a0);
      heap(b, sumDyXhat).set(a1.map((v, k) => v * r[k]));
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
      const [d, xs, s, g, s0, s1, dx] = [dy, x, stats, gamma, sumDy, sumDyXhat, out].map((t) => heap(b, t));
      const m = xs.length / c;
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
      for (let i = 0; i < xs.length; i += c) {
        for (let k = 0; k < c; k++) dx[i + k] = scale[k] * d[i + k] - slope[k] * (xs[i + k] - s[k]) - offset[k];
      }
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
  {
    // ReLU passes dy where x > 0; a clip (ReLU6) where lo <= x <= hi.
    kernelName: 'LesionActivationGrad',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { dy, x } = inputs as Record<string, tf.TensorInfo>;
      const { lo, hi } = attrs as { lo: number; hi: number };
      const out = b.makeOutput(x.shape, 'float32');
      const [d, xs, dx] = [dy, x, out].map((t) => heap(b, t));
      // Multiplying by the mask, not branching: signs are random, and a mispredicted branch per element doubled the time.
      if (hi === Infinity) for (let i = 0; i < xs.length; i++) dx[i] = d[i] * +(xs[i] > lo);
      else {
        for (let i = 0; i < xs.length; i++) {
          const v = xs[i];
          dx[i] = d[i] * (+(v >= lo) & +(v <= hi));
        }
      }
      return out;
    },
  },
];

/**
 * SpaceToBatchND and BatchToSpaceND for the regridding of dilated stages (4D,
 * no padding or crop): output batch (i * f + j) * B + n holds the input pixels
 * (y * f + i, x * f + j) of image n; each pixel's channels are one copy.
 */
function regrid(toBatch: boolean, fallback: KernelSpec['kernelFunc']): KernelSpec['kernelFunc'] {
  return (params) => {
    const { inputs, backend, attrs } = params;
    const { x } = inputs as { x: tf.TensorInfo };
    const a = attrs as Attrs;
    const block = a.blockShape as number[];
    const margins = (toBatch ? a.paddings : a.crops) as number[][];
    if (x.shape.length !== 4 || x.dtype !== 'float32' || block.length !== 2 || block[0] !== block[1] || margins.flat().some((v) => v !== 0)) {
      return fallback(params);
    }
    const b = backend as BackendWasm;
    const f = block[0];
    const [n0, h0, w0, c] = x.shape;
    // The grid of whole images: [n, h, w] on the fine side, [n * f * f, h / f, w / f] on the coarse.
    const [n, h, w] = toBatch ? [n0, h0, w0] : [n0 / (f * f), h0 * f, w0 * f];
    const out = b.makeOutput(toBatch ? [n * f * f, h / f, w / f, c] : [n, h, w, c], 'float32');
    const src = heap(b, x);
    const dst = heap(b, out);
    const [hs, ws] = [h / f, w / f];
    for (let img = 0; img < n; img++) {
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          const fine = ((img * h + y) * w + xx) * c;
          const coarse = (((((y % f) * f + (xx % f)) * n + img) * hs + Math.floor(y / f)) * ws + Math.floor(xx / f)) * c;
          if (toBatch) dst.set(src.subarray(fine, fine + c), coarse);
          else dst.set(src.subarray(coarse, coarse + c), fine);
        }
      }
    }
    return out;
  };
}

const run = (name: string, inputs: tf.NamedTensorMap, attrs: Attrs = {}) => tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap);

/** Batch norm's training kernels, as batchnorm.ts's customGrad calls them (the WebGPU ones have the same signatures). */
export const wasmBatchNorm = {
  stats: (x: tf.Tensor) => run('LesionBatchNormStats', { x }) as tf.Tensor,
  apply: (x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number) =>
    run('LesionBatchNormApply', { x, stats, gamma, beta }, { epsilon }) as tf.Tensor,
  gradSums: (dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, epsilon: number) =>
    run('LesionBatchNormGradSums', { dy, x, stats }, { epsilon }) as [tf.Tensor, tf.Tensor],
  gradInput: (dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, sumDy: tf.Tensor, sumDyXhat: tf.Tensor, epsilon: number) =>
    run('LesionBatchNormGradInput', { dy, x, stats, gamma, sumDy, sumDyXhat }, { epsilon }) as tf.Tensor,
  movingAverage: (moving: tf.Tensor, stats: tf.Tensor, row: 0 | 1, momentum: number, factor: number) =>
    run('LesionMovingAverage', { moving, stats }, { row, momentum, weight: factor * (1 - momentum) }) as tf.Tensor,
};

/** ReLU's (no range) or a clip's gradient. */
export function wasmActivationGrad(dy: tf.Tensor, x: tf.Tensor, range?: { lo: number; hi: number }): tf.Tensor {
  return run('LesionActivationGrad', { dy, x }, range ?? { lo: 0, hi: Infinity }) as tf.Tensor;
}

export function registerWasmFusedKernels(): void {
  for (const kernel of KERNELS) registerKernelFor('wasm', kernel);
  for (const [name, toBatch] of [['SpaceToBatchND', true], ['BatchToSpaceND', false]] as const) {
    const theirs = tf.getKernel(name, 'wasm')!.kernelFunc as KernelSpec['kernelFunc'];
    registerKernelFor('wasm', { kernelName: name, kernelFunc: regrid(toBatch, theirs) });
  }
}
