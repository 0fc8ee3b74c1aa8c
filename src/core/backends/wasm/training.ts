/**
 * Training on the wasm backend: the kernels tfjs-wasm lacks or runs slowly,
 * one file per op (conv-grad.ts, batchnorm.ts, activation-grad.ts, sgd.ts,
 * slice.ts, regrid.ts), most of them SIMD loops (simd.ts) over the heap
 * (heap.ts); and the patches to tfjs that keep a step inside the 4 GiB heap
 * (engine-patches.ts). Ops that model code calls by name are looked up in
 * ../ops.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { registerActivationGrad } from './activation-grad.ts';
import { registerBatchNormKernels } from './batchnorm.ts';
import { registerConvGradients } from './conv-grad.ts';
import { guardMalloc, type GuardedModule, releaseSavedTensorsEarly, shareIdentityData } from './engine-patches.ts';
import { registerRegrid } from './regrid.ts';
import { registerSgdKernel } from './sgd.ts';
import { heapMemory, simdKernels } from './simd.ts';
import { registerSlice } from './slice.ts';

let registered = false;

/** Idempotent; call after the wasm backend module is imported, before training. */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  registerBatchNormKernels();
  registerActivationGrad();
  registerSgdKernel();
  registerSlice();
  registerRegrid();
  shareIdentityData();
  releaseSavedTensorsEarly();
  registerConvGradients();
}

/**
 * Call once the wasm backend is active. Starts the SIMD training kernels
 * (simd.ts) on its heap now, so that a browser without WebAssembly SIMD
 * is told before a run starts, not at its first batch norm; and guards the
 * heap's allocations (engine-patches.ts).
 */
export function prepareWasmBackend(): void {
  const wasm = (tf.findBackend('wasm') as unknown as { wasm?: GuardedModule } | undefined)?.wasm;
  if (!wasm) return;
  simdKernels(heapMemory(wasm));
  guardMalloc(wasm);
}

interface EmscriptenCwrap {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  tfjs?: Record<string, (...args: number[]) => number>;
}

/**
 * Gives a threaded tfjs wasm module started by hand (Node and the studio's
 * worker both start it themselves, see their wasm-threads.ts) the C entry
 * points BackendWasm calls, as tfjs-backend-wasm's own init does.
 */
export function bindTfjsEntryPoints(module: EmscriptenCwrap): void {
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
}
