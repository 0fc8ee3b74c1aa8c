/**
 * ReLU's and ReLU6's (a clip) gradients in one SIMD pass over the wasm heap,
 * where tfjs-wasm ran two and five element-wise kernels.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type KernelSpec, registerKernelFor, replaceGradient, runKernel } from '../kernel-util.ts';
import { onHeap } from './heap.ts';

const KERNEL: KernelSpec = {
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
};

/** ReLU's (no range) or a clip's gradient. */
function wasmActivationGrad(dy: tf.Tensor, x: tf.Tensor, range?: { lo: number; hi: number }): tf.Tensor {
  return runKernel('LesionActivationGrad', { dy, x }, range ?? { lo: 0, hi: Infinity }) as tf.Tensor;
}

/** The kernel, and the Relu and ClipByValue gradients through it while wasm is the active backend. */
export function registerActivationGrad(): void {
  registerKernelFor('wasm', KERNEL);
  const onWasm = () => tf.getBackend() === 'wasm';
  replaceGradient('Relu', onWasm, (dy, x) => wasmActivationGrad(dy, x));
  replaceGradient('ClipByValue', onWasm, (dy, x, a) => wasmActivationGrad(dy, x, { lo: a.clipValueMin as number, hi: a.clipValueMax as number }));
}
