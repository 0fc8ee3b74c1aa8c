/**
 * Weight gradients that tfjs-webgpu computes with one serial loop per filter
 * element: a 1x1 convolution's as a matrix product, a depthwise one's as a
 * parallel reduction per (channel, tap). tfjs's own kernels run for the rest,
 * and whenever the 'filter-grad' lever is off.
 */
import * as tf from '@tensorflow/tfjs';
import { asKernel, type Attrs, geometry, type KernelSpec, registerKernelFor } from '../kernel-util.ts';
import { leverOn } from './levers.ts';
import { runOwn } from './own-dispatch.ts';
import { channelReduction } from './programs.ts';

/**
 * dW of a depthwise convolution (channel multiplier 1, any stride and padding,
 * undilated as tfjs's gradients require): one reduction per (channel, tap) over batch x output positions.
 * tfjs's own runs one thread per filter element looping over all of them
 * serially (288 threads for the first layer at 128 px, 16,384 steps each).
 */
function depthwiseFilterGrad(x: tf.TensorInfo, dy: tf.TensorInfo, filterShape: number[], g: ReturnType<typeof geometry>): tf.TensorInfo {
  const [kh, kw, c] = filterShape;
  const [n, h, w] = x.shape;
  const program = channelReduction(
    'lesion_depthwise_filter_grad',
    [['dw', filterShape]],
    ['x', 'dy'],
    (['M', 'C', 'H', 'W', 'outW', 'outHW', 'kw', 'strideH', 'strideW', 'padTop', 'padLeft'] as const).map((name) => [name, 'i32']),
    c,
    `
        let kr = tap / u.kw;
        let kc = tap % u.kw;
        var sum = 0.0;
        if (valid) {
          for (var r = lane; r < u.M; r = r + LANES) {
            let b = r / u.outHW;
            let p = r % u.outHW;
            let ih = (p / u.outW) * u.strideH - u.padTop + kr;
            let iw = (p % u.outW) * u.strideW - u.padLeft + kc;
            if (ih >= 0 && ih < u.H && iw >= 0 && iw < u.W) {
              sum = sum + x[((b * u.H + ih) * u.W + iw) * u.C + c] * dy[r * u.C + c];
            }
          }
        }
        let total = laneSum(lid, sum);
        if (valid && lane == 0) {
          dw[tap * u.C + c] = total;
        }`,
    kh * kw,
  );
  return runOwn(program, [x, dy], [n * g.outH * g.outW, c, h, w, g.outW, g.outH * g.outW, kw, g.strideH, g.strideW, g.padTop, g.padLeft])[0];
}

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [Number(v ?? 1), Number(v ?? 1)]);

type KernelParams = Parameters<KernelSpec['kernelFunc']>[0];

/** Registers `ours` under `name`; tfjs's own kernel runs where ours returns undefined or the lever is off. */
function replaceKernel(name: string, ours: (params: KernelParams) => tf.TensorInfo | undefined): void {
  const theirs = tf.getKernel(name, 'webgpu')!.kernelFunc as KernelSpec['kernelFunc'];
  registerKernelFor('webgpu', { kernelName: name, kernelFunc: (params) => (leverOn('filter-grad') ? ours(params) : undefined) ?? theirs(params) });
}

export function registerFilterGradients(): void {
  replaceKernel('Conv2DBackpropFilter', ({ inputs, attrs, backend }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as Attrs;
    const filterShape = a.filterShape as [number, number, number, number];
    const [sh, sw] = pair(a.strides);
    if (filterShape[0] !== 1 || filterShape[1] !== 1 || sh !== 1 || sw !== 1 || (a.dataFormat ?? 'NHWC') !== 'NHWC') return undefined;
    // A 1x1 convolution is a matrix product over batch x pixels: tfjs's
    // matmul (split-K where the output is small and the inner side long).
    const [ci, co] = [filterShape[2], filterShape[3]];
    return asKernel(backend, [x, dy], (xt, dyt) => tf.reshape(tf.matMul(tf.reshape(xt, [-1, ci]), tf.reshape(dyt, [-1, co]), true, false), filterShape));
  });

  replaceKernel('DepthwiseConv2dNativeBackpropFilter', ({ inputs, attrs }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as Attrs;
    const filterShape = a.filterShape as [number, number, number, number];
    const [dh, dw] = pair(a.dilations);
    if (filterShape[3] !== 1 || dh !== 1 || dw !== 1) return undefined;
    const g = geometry(x.shape as never, filterShape, a.strides as never, a.pad as never, a.dimRoundingMode as never, true);
    return depthwiseFilterGrad(x, dy, filterShape, g);
  });
}
