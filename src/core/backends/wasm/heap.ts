/**
 * Our wasm kernels' access to tfjs-wasm's heap: tensors as typed-array views,
 * and the SIMD loops (simd.ts) with scratch space of their own. Kernels work
 * over the heap in place because every tfjs-wasm op is its own
 * single-threaded pass with a JavaScript call around it.
 */
import type * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type EmscriptenHeap, heapMemory, type SimdKernels, simdKernels } from './simd.ts';

/** A Float32Array over a tensor's bytes on the heap; take views only after the last allocation (the heap may grow and move). */
export function heap(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
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
