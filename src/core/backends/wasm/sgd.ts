/** torch.optim.SGD with momentum as one SIMD pass per variable, where tfjs ran six element-wise kernels. */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type KernelSpec, registerKernelFor, runKernel } from '../kernel-util.ts';
import { onHeap } from './heap.ts';

const KERNEL: KernelSpec = {
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
};

export function registerSgdKernel(): void {
  registerKernelFor('wasm', KERNEL);
}

/**
 * torch.optim.SGD's update of one variable and its momentum buffer; PyTorch's
 * first step starts the buffer at the gradient (momentum 0 here).
 */
export function wasmSgdStep(w: tf.Variable, g: tf.Tensor, buf: tf.Variable, o: { lr: number; momentum: number; weightDecay: number; first: boolean }): void {
  const [nextW, nextBuf] = runKernel('LesionSgdMomentum', { g, w, buf }, { lr: o.lr, momentum: o.first ? 0 : o.momentum, weightDecay: o.weightDecay }) as tf.Tensor[];
  buf.assign(nextBuf);
  w.assign(nextW);
}
