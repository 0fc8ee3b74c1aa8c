/**
 * tfjs-wasm runs SpaceToBatchND and BatchToSpaceND as a six-dimensional
 * transpose on its slow generic path (a quarter of a second per call at 128
 * px); the dilated stages regrid every step.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Attrs, type KernelSpec, registerKernelFor } from '../kernel-util.ts';
import { heap } from './heap.ts';

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

/** Ours where they apply, tfjs-wasm's for the rest. */
export function registerRegrid(): void {
  for (const [name, toBatch] of [['SpaceToBatchND', true], ['BatchToSpaceND', false]] as const) {
    const theirs = tf.getKernel(name, 'wasm')!.kernelFunc as KernelSpec['kernelFunc'];
    registerKernelFor('wasm', { kernelName: name, kernelFunc: regrid(toBatch, theirs) });
  }
}
