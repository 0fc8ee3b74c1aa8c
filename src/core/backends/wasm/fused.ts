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
import { type Attrs, type KernelSpec, registerKernelFor } from '../kernel-util.ts';
import { type EmscriptenHeap, heapMemory, type SimdKernels, simdKernels } from './simd.ts';

/** A Float32Array over a tensor's bytes on the heap; take views only after the last allocation (the heap may grow and move). */
export function heap(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

function channels(info: tf.TensorInfo): number {
  return info.shape[info.shape.length - 1];
}

/**
 * A kernel's access to the SIMD loops: tensors' addresses, and per-channel
 * scratch vectors on the heap, freed when the kernel ends.
 */
export function onHeap<T>(b: BackendWasm, body: (h: {
  simd: SimdKernels;
  at(info: tf.TensorInfo): number;
  /** A zeroed float64 vector of `n` on the heap: its address. */
  scratch64(n: number): number;
  /** A float32 vector on the heap holding `values`: its address. */
  scratch32(values: ArrayLike<number>): number;
  f64(address: number, n: number): Float64Array;
}) => T): T {
  const module = b.wasm as unknown as EmscriptenHeap;
  const memory = heapMemory(module);
  const taken: number[] = [];
  const take = (bytes: number) => {
    const address = module._malloc(bytes);
    taken.push(address);
    return address;
  };
  try {
    return body({
      simd: simdKernels(memory),
      at: (info) => b.getMemoryOffset(info.dataId),
      scratch64: (n) => {
        const address = take(8 * n);
        new Float64Array(memory.buffer, address, n).fill(0);
        return address;
      },
      scratch32: (values) => {
        const address = take(4 * values.length);
        new Float32Array(memory.buffer, address, values.length).set(values);
        return address;
      },
      f64: (address, n) => new Float64Array(memory.buffer, address, n),
    });
  } finally {
    for (const address of taken) module._free(address);
  }
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
  {
    // ReLU passes dy where x > 0; a clip (ReLU6) where lo <= x <= hi.
    kernelName: 'LesionActivationGrad',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { dy, x } = inputs as Record<string, tf.TensorInfo>;
      const { lo, hi } = attrs as { lo: number; hi: number };
      const out = b.makeOutput(x.shape, 'float32');
      const n = tf.util.sizeFromShape(x.shape);
      onHeap(b, (h) => {
        if (hi === Infinity) h.simd.reluGrad(1, n, h.at(dy), h.at(x), h.at(out), lo);
        else h.simd.clipGrad(1, n, h.at(dy), h.at(x), h.at(out), lo, hi);
      });
      return out;
    },
  },
  {
    // One pass per variable for torch.optim.SGD with momentum, where tfjs ran six element-wise kernels.
    kernelName: 'LesionSgdMomentum',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { g, w, buf } = inputs as Record<string, tf.TensorInfo>;
      const { lr, momentum, weightDecay } = attrs as { lr: number; momentum: number; weightDecay: number };
      const [nextW, nextBuf] = [b.makeOutput(w.shape, 'float32'), b.makeOutput(w.shape, 'float32')];
      const n = tf.util.sizeFromShape(w.shape);
      onHeap(b, (h) => h.simd.sgdMomentum(1, n, h.at(g), h.at(w), h.at(buf), h.at(nextW), h.at(nextBuf), lr, momentum, weightDecay));
      return [nextW, nextBuf];
    },
  },
];

/**
 * Slice over heap views. tfjs-wasm's own first copies the whole input out of
 * the heap (readSync), so cutting an atrous tap's window, or cropping a
 * gradient, cost a copy of the entire feature map each time.
 */
function slice(fallback: KernelSpec['kernelFunc']): KernelSpec['kernelFunc'] {
  return (params) => {
    const { inputs, backend, attrs } = params;
    const { x } = inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return fallback(params);
    const b = backend as BackendWasm;
    const a = attrs as Attrs;
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, a.begin as number[], a.size as number[]);
    const out = b.makeOutput(size, x.dtype);
    const count = tf.util.sizeFromShape(size);
    if (count === 0) return out;
    const src = b.typedArrayFromHeap(x);
    const dst = b.typedArrayFromHeap(out);
    const strides = tf.util.computeStrides(x.shape);
    if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
      const start = tf.slice_util.computeFlatOffset(begin, strides);
      dst.set(src.subarray(start, start + count));
      return out;
    }
    // Copies each innermost run; the odometer walks the outer indices.
    const rank = x.shape.length;
    const run = size[rank - 1];
    const index = new Array<number>(rank - 1).fill(0);
    for (let o = 0; o < count; o += run) {
      let start = begin[rank - 1];
      for (let d = 0; d < rank - 1; d++) start += (begin[d] + index[d]) * strides[d];
      dst.set(src.subarray(start, start + run), o);
      for (let d = rank - 2; d >= 0 && ++index[d] === size[d]; d--) index[d] = 0;
    }
    return out;
  };
}

/** SplitV (the gradient of a concatenation) through the Slice above: tfjs-wasm's calls its own. */
function splitV(slicer: KernelSpec['kernelFunc']): KernelSpec['kernelFunc'] {
  return ({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const a = attrs as Attrs;
    const axis = tf.util.parseAxisParam(a.axis as number, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, a.numOrSizeSplits as number | number[], axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[axis] = s;
      const part = slicer({ inputs: { x }, backend, attrs: { begin: [...begin], size } }) as tf.TensorInfo;
      begin[axis] += s;
      return part;
    });
  };
}

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

const statsOf = (x: tf.Tensor) => run('LesionBatchNormStats', { x }) as tf.Tensor;

const movingAverage = (moving: tf.Tensor, stats: tf.Tensor, row: 0 | 1, momentum: number, factor: number) =>
  run('LesionMovingAverage', { moving, stats }, { row, momentum, weight: factor * (1 - momentum) }) as tf.Tensor;

/** Batch norm's training kernels, as batchnorm.ts's customGrad calls them (the WebGPU ones have the same signatures). */
export const wasmBatchNorm = {
  stats: statsOf,
  statsAndMoving: (x: tf.Tensor, movingMean: tf.Tensor, movingVariance: tf.Tensor, momentum: number, varianceFactor: number) => {
    const s = statsOf(x);
    return [s, movingAverage(movingMean, s, 0, momentum, 1), movingAverage(movingVariance, s, 1, momentum, varianceFactor)];
  },
  apply: (x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number) =>
    run('LesionBatchNormApply', { x, stats, gamma, beta }, { epsilon }) as tf.Tensor,
  gradSums: (dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, epsilon: number) =>
    run('LesionBatchNormGradSums', { dy, x, stats }, { epsilon }) as [tf.Tensor, tf.Tensor],
  gradInput: (dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, sumDy: tf.Tensor, sumDyXhat: tf.Tensor, epsilon: number) =>
    run('LesionBatchNormGradInput', { dy, x, stats, gamma, sumDy, sumDyXhat }, { epsilon }) as tf.Tensor,
};

/**
 * torch.optim.SGD's update of one variable and its momentum buffer; PyTorch's
 * first step starts the buffer at the gradient (momentum 0 here).
 */
export function wasmSgdStep(w: tf.Variable, g: tf.Tensor, buf: tf.Variable, o: { lr: number; momentum: number; weightDecay: number; first: boolean }): void {
  const [nextW, nextBuf] = run('LesionSgdMomentum', { g, w, buf }, { lr: o.lr, momentum: o.first ? 0 : o.momentum, weightDecay: o.weightDecay }) as tf.Tensor[];
  buf.assign(nextBuf);
  w.assign(nextW);
}

/** ReLU's (no range) or a clip's gradient. */
export function wasmActivationGrad(dy: tf.Tensor, x: tf.Tensor, range?: { lo: number; hi: number }): tf.Tensor {
  return run('LesionActivationGrad', { dy, x }, range ?? { lo: 0, hi: Infinity }) as tf.Tensor;
}

export function registerWasmFusedKernels(): void {
  for (const kernel of KERNELS) registerKernelFor('wasm', kernel);
  const ourSlice = slice(tf.getKernel('Slice', 'wasm')!.kernelFunc as KernelSpec['kernelFunc']);
  registerKernelFor('wasm', { kernelName: 'Slice', kernelFunc: ourSlice });
  registerKernelFor('wasm', { kernelName: 'SplitV', kernelFunc: splitV(ourSlice) });
  for (const [name, toBatch] of [['SpaceToBatchND', true], ['BatchToSpaceND', false]] as const) {
    const theirs = tf.getKernel(name, 'wasm')!.kernelFunc as KernelSpec['kernelFunc'];
    registerKernelFor('wasm', { kernelName: name, kernelFunc: regrid(toBatch, theirs) });
  }
}
