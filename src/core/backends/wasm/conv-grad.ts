/**
 * The convolution gradients on the wasm backend.
 *
 * tfjs-backend-wasm 4.22 ships no Conv2DBackpropFilter and no depthwise
 * backprop kernels (tensorflow/tfjs#8474), and its Conv2DBackpropInput is a
 * naive loop ten times slower than its XNNPACK forward convolution. Every one of
 * these gradients is itself a convolution (or a matrix product, or a few
 * elementwise products), so we register kernels that rewrite them in terms of
 * the fast forward ops the backend does have, the data rearranged between
 * them by small kernels over the heap; the depthwise filter gradient is a
 * SIMD loop over the heap itself (simd.ts). Registering at the kernel level, not
 * the gradient level, also covers the fused convolutions that tfjs-layers
 * uses, whose gradients call these kernels directly.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { asKernel, type Attrs, type ConvGeometry, geometry, type KernelSpec, registerKernelFor, runKernel } from '../kernel-util.ts';
import { heap, onHeap } from './heap.ts';

type Pad4 = [[number, number], [number, number], [number, number], [number, number]];
type Shape4 = [number, number, number, number];

/**
 * Pads (or crops, for a negative amount) the spatial dims of an NHWC tensor:
 * the rewritten gradients need both, depending on how the forward pass rounded.
 */
function padOrCrop(x: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
  const [, h, w] = x.shape;
  const cropTop = Math.max(0, -top);
  const cropBottom = Math.max(0, -bottom);
  const cropLeft = Math.max(0, -left);
  const cropRight = Math.max(0, -right);
  let y = x;
  if (cropTop || cropBottom || cropLeft || cropRight) {
    y = tf.slice(y, [0, cropTop, cropLeft, 0], [-1, h - cropTop - cropBottom, w - cropLeft - cropRight, -1]);
  }
  const padding: Pad4 = [[0, 0], [Math.max(0, top), Math.max(0, bottom)], [Math.max(0, left), Math.max(0, right)], [0, 0]];
  return padding[1][0] || padding[1][1] || padding[2][0] || padding[2][1] ? (tf.pad(y, padding) as tf.Tensor4D) : y;
}

/** Places a transpose reads per pass: the rows it reads and the columns it writes stay in cache. */
const BLOCK = 64;

/**
 * dst[at + c * stride + p] = src[from[p] + c] for p < n, c < channels: n
 * places of src, `channels` values each, become columns; from[p] < 0 is padding, zero.
 */
function gatherColumns(src: Float32Array, from: Int32Array, n: number, channels: number, dst: Float32Array, at: number, stride: number): void {
  for (let c = 0; c < channels; c++) {
    const o = at + c * stride;
    for (let p = 0; p < n; p++) {
      const f = from[p];
      dst[o + p] = f < 0 ? 0 : src[f + c];
    }
  }
}

/**
 * Layout kernels over the heap for the convolution gradients, where
 * tfjs-wasm's own are slow: its Reverse took 30 ms for a 1x1x320x1280 filter
 * (more than the convolution it fed, and a no-op in space), and the per-tap
 * StridedSlices of x and the 6-D Pad that spread a strided gradient were
 * passes of their own. Its Transpose stays where it beat a loop in TypeScript.
 */
const LAYOUT_KERNELS: KernelSpec[] = [
  {
    // A filter flipped in space: tap (i, j) takes tap (kh - 1 - i, kw - 1 - j), each tap's [ci, co] block one copy.
    kernelName: 'LesionReverseTaps',
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as BackendWasm;
      const { filter } = inputs as { filter: tf.TensorInfo };
      const [kh, kw, ci, co] = filter.shape;
      const out = b.makeOutput(filter.shape, 'float32');
      const [src, dst] = [filter, out].map((t) => heap(b, t));
      const block = ci * co;
      for (let tap = 0; tap < kh * kw; tap++) {
        const mirror = kh * kw - 1 - tap;
        dst.set(src.subarray(mirror * block, (mirror + 1) * block), tap * block);
      }
      return out;
    },
  },
  {
    // x's patches channels first, [kh * kw * ci, b * outH * outW]: row (i * kw + j) * ci + c
    // holds, for each output pixel in turn, channel c of the pixel its tap (i, j) reads.
    kernelName: 'LesionPatches',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { x } = inputs as { x: tf.TensorInfo };
      const g = attrs as unknown as ConvGeometry;
      const [batch, h, w, ci] = x.shape;
      const pixels = g.outH * g.outW;
      const rows = batch * pixels;
      const out = b.makeOutput([g.kh * g.kw * ci, rows], 'float32');
      const [src, dst] = [x, out].map((t) => heap(b, t));
      const from = new Int32Array(BLOCK);
      for (let i = 0; i < g.kh; i++) {
        for (let j = 0; j < g.kw; j++) {
          for (let r0 = 0; r0 < rows; r0 += BLOCK) {
            const n = Math.min(BLOCK, rows - r0);
            for (let p = 0; p < n; p++) {
              const r = r0 + p;
              const img = Math.floor(r / pixels);
              const oh = Math.floor((r - img * pixels) / g.outW);
              const y = oh * g.strideH + i - g.padTop;
              const xx = (r - img * pixels - oh * g.outW) * g.strideW + j - g.padLeft;
              from[p] = y >= 0 && y < h && xx >= 0 && xx < w ? ((img * h + y) * w + xx) * ci : -1;
            }
            gatherColumns(src, from, n, ci, dst, (i * g.kw + j) * ci * rows + r0, rows);
          }
        }
      }
      return out;
    },
  },
  {
    // The output gradient as a transposed convolution reads it: out[n, top + r * strideH, left + q * strideW] = x[n, r, q],
    // zero between and around; a negative top or left, or a smaller out, crops.
    kernelName: 'LesionSpread',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as BackendWasm;
      const { x } = inputs as { x: tf.TensorInfo };
      const { strideH, strideW, top, left, height, width } = attrs as Record<string, number>;
      const [batch, h, w, c] = x.shape;
      const out = b.makeOutput([batch, height, width, c], 'float32');
      const [src, dst] = [x, out].map((t) => heap(b, t));
      dst.fill(0);
      // The columns that land inside.
      const qLo = Math.max(0, Math.ceil(-left / strideW));
      const qHi = Math.min(w, Math.floor((width - 1 - left) / strideW) + 1);
      for (let n = 0; n < batch; n++) {
        for (let r = 0; r < h; r++) {
          const y = top + r * strideH;
          if (y < 0 || y >= height || qLo >= qHi) continue;
          const s = ((n * h + r) * w + qLo) * c;
          const d = ((n * height + y) * width + left + qLo * strideW) * c;
          for (let q = 0; q < qHi - qLo; q++) {
            for (let k = 0; k < c; k++) dst[d + q * strideW * c + k] = src[s + q * c + k];
          }
        }
      }
      return out;
    },
  },
];

/**
 * The output gradient laid out so that a 'valid', stride-1 convolution with
 * the flipped filter gives the input gradient: zero-dilated by the stride and
 * padded (or cropped) by what the forward padding leaves of the kernel.
 */
function transposedInput(dy: tf.Tensor4D, inputShape: Shape4, g: ConvGeometry): tf.Tensor4D {
  const [, h, w] = inputShape;
  const attrs = { strideH: g.strideH, strideW: g.strideW, top: g.kh - 1 - g.padTop, left: g.kw - 1 - g.padLeft, height: h + g.kh - 1, width: w + g.kw - 1 };
  if (g.strideH > 1 || g.strideW > 1) return runKernel('LesionSpread', { x: dy }, attrs) as tf.Tensor4D;
  // Nothing to spread: the backend's Pad was faster than the loop.
  return padOrCrop(dy, attrs.top, attrs.height - attrs.top - dy.shape[1], attrs.left, attrs.width - attrs.left - dy.shape[2]);
}

/**
 * dx of a convolution: a stride-1 convolution of the zero-dilated output gradient
 * with the filter flipped in space and transposed in channels.
 */
function convBackpropInput(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  inputShape: Shape4,
  g: ConvGeometry,
): tf.Tensor4D {
  const flipped = g.kh * g.kw === 1 ? filter : (runKernel('LesionReverseTaps', { filter }) as tf.Tensor4D);
  return tf.conv2d(transposedInput(dy, inputShape, g), tf.transpose(flipped, [0, 1, 3, 2]) as tf.Tensor4D, 1, 'valid');
}

/**
 * dW of a convolution: one matrix product of x's patches, channels first,
 * with the output gradient, [kh * kw * ci, rows] x [rows, co]. The patches
 * are kh * kw times x, as many values as the per-tap windows they replace.
 */
function convBackpropFilter(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: Shape4,
  g: ConvGeometry,
): tf.Tensor4D {
  const [kh, kw, ci, co] = filterShape;
  const rows = dy.shape[0] * g.outH * g.outW;
  // Where the patches are x itself, the backend's Transpose was faster than the gather.
  const pointwise = kh === 1 && kw === 1 && g.strideH === 1 && g.strideW === 1 && g.outH === x.shape[1] && g.outW === x.shape[2];
  const channelsFirst = pointwise ? tf.transpose(x, [3, 0, 1, 2]) : (runKernel('LesionPatches', { x }, { ...g }) as tf.Tensor);
  const patches = tf.reshape(channelsFirst, [kh * kw * ci, 1, 1, rows]) as tf.Tensor4D;
  // A 1x1 convolution is the backend's fastest matrix product (XNNPACK), the
  // output gradient its filter as it lies (packed again for every call, as
  // in training, where it is new each step; and freed with dy); its
  // BatchMatMul with a transposed operand was twenty times slower. Making x
  // the filter instead, to transpose the narrower dy, was slower with fresh
  // tensors (4x64x64, 96 -> 24: 16.0 ms against 13.9) and kept XNNPACK's
  // packed copy of x alive as long as x (0.24 GiB more heap at 256 px batch 6).
  return tf.reshape(tf.conv2d(patches, tf.reshape(dy, [1, 1, rows, co]) as tf.Tensor4D, 1, 'valid'), filterShape);
}

/**
 * dW of a depthwise convolution (channel multiplier 1) over the heap, x [b, h, w, c]:
 * dW[i, j, c] = sum over n, oh, ow of x[n, oh * s + i - padTop, ow * s + j - padLeft, c] * dy[n, oh, ow, c].
 * Per tap and row of output pixels, the SIMD loop sums each channel's
 * products in a register and adds them to a double-precision total, in a
 * fixed order. It took a sixth to a tenth of the time of a depthwise
 * convolution of the input by the output gradient with batch folded into
 * channels (XNNPACK, two threads, after two transposes) on the model's maps.
 */
function depthwiseBackpropFilter(b: BackendWasm, x: tf.TensorInfo, dy: tf.TensorInfo, g: ConvGeometry, out: tf.TensorInfo): void {
  const [batch, h, w, c] = x.shape;
  const { kh, kw, strideH, strideW, padTop, padLeft, outH, outW } = g;
  onHeap(b, (m) => {
    const acc = m.scratch64(kh * kw * c);
    const [xAt, dyAt] = [m.at(x), m.at(dy)];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const tapAcc = acc + (i * kw + j) * c * 8;
        // The output columns whose tap j reads inside the row.
        const owLo = Math.max(0, Math.ceil((padLeft - j) / strideW));
        const owHi = Math.min(outW, Math.floor((w - 1 + padLeft - j) / strideW) + 1);
        if (owLo >= owHi) continue;
        for (let n = 0; n < batch; n++) {
          for (let oh = 0; oh < outH; oh++) {
            const y = oh * strideH + i - padTop;
            if (y < 0 || y >= h) continue;
            const xRow = xAt + ((n * h + y) * w + owLo * strideW + j - padLeft) * c * 4;
            const dyRow = dyAt + ((n * outH + oh) * outW + owLo) * c * 4;
            m.simd.channelDots(owHi - owLo, c, xRow, strideW * c * 4, dyRow, c * 4, tapAcc);
          }
        }
      }
    }
    heap(b, out).set(m.f64(acc, kh * kw * c));
  });
}

/** dx of a depthwise convolution: the same transposition as for a full one. */
function depthwiseBackpropInput(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  inputShape: Shape4,
  g: ConvGeometry,
): tf.Tensor4D {
  const flipped = g.kh * g.kw === 1 ? filter : (runKernel('LesionReverseTaps', { filter }) as tf.Tensor4D);
  return tf.depthwiseConv2d(transposedInput(dy, inputShape, g), flipped, 1, 'valid');
}

/**
 * The geometry of gradient kernel `kernel` from its attributes, refusing
 * what these kernels do not compute: another layout, dilation, a depthwise
 * channel multiplier other than 1.
 */
function gradientGeometry(kernel: string, attrs: Attrs, xShape: Shape4, filterShape: Shape4, depthwise: boolean): ConvGeometry {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(`${kernel} on wasm: only NHWC is supported, got ${String(attrs.dataFormat)}`);
  }
  const d = attrs.dilations as number | [number, number] | undefined;
  if (d !== undefined && (Array.isArray(d) ? d[0] !== 1 || d[1] !== 1 : d !== 1)) {
    throw new Error(`${kernel} on wasm: dilated gradients are computed by the atrous layers, got dilations ${String(d)}`);
  }
  if (depthwise && filterShape[3] !== 1) throw new Error(`${kernel} on wasm: channel multiplier must be 1`);
  return geometry(xShape, filterShape, attrs.strides as never, attrs.pad as never, attrs.dimRoundingMode as never, depthwise);
}

const register = (config: KernelSpec): void => registerKernelFor('wasm', config);

export function registerConvGradients(): void {
  for (const kernel of LAYOUT_KERNELS) register(kernel);
  register({
    kernelName: 'Conv2DBackpropFilter',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const filterShape = (attrs as Attrs).filterShape as Shape4;
      const g = gradientGeometry('Conv2DBackpropFilter', attrs as Attrs, x.shape as Shape4, filterShape, false);
      return asKernel(backend, [x, dy], (xt, dyt) => convBackpropFilter(xt, dyt, filterShape, g));
    },
  });

  // Replaces the backend's own, a naive loop.
  register({
    kernelName: 'Conv2DBackpropInput',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
      const inputShape = (attrs as Attrs).inputShape as Shape4;
      const g = gradientGeometry('Conv2DBackpropInput', attrs as Attrs, inputShape, filter.shape as Shape4, false);
      return asKernel(backend, [dy, filter], (dyt, ft) => convBackpropInput(dyt, ft, inputShape, g));
    },
  });

  register({
    kernelName: 'DepthwiseConv2dNativeBackpropFilter',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const filterShape = (attrs as Attrs).filterShape as Shape4;
      const g = gradientGeometry('DepthwiseConv2dNativeBackpropFilter', attrs as Attrs, x.shape as Shape4, filterShape, true);
      const b = backend as BackendWasm;
      const out = b.makeOutput(filterShape, 'float32');
      depthwiseBackpropFilter(b, x, dy, g, out);
      return out;
    },
  });

  register({
    kernelName: 'DepthwiseConv2dNativeBackpropInput',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
      const inputShape = (attrs as Attrs).inputShape as Shape4;
      const g = gradientGeometry('DepthwiseConv2dNativeBackpropInput', attrs as Attrs, inputShape, filter.shape as Shape4, true);
      return asKernel(backend, [dy, filter], (dyt, ft) => depthwiseBackpropInput(dyt, ft, inputShape, g));
    },
  });
}
