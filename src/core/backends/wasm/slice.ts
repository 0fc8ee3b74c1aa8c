import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Attrs, type KernelSpec, registerKernelFor } from '../kernel-util.ts';

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

/** Slice, and SplitV through it, wrapping tfjs-wasm's Slice for strings. */
export function registerSlice(): void {
  const ourSlice = slice(tf.getKernel('Slice', 'wasm')!.kernelFunc as KernelSpec['kernelFunc']);
  registerKernelFor('wasm', { kernelName: 'Slice', kernelFunc: ourSlice });
  registerKernelFor('wasm', { kernelName: 'SplitV', kernelFunc: splitV(ourSlice) });
}
