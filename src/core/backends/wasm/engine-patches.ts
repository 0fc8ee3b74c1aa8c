/**
 * Changes to tfjs itself, not kernels of ours: each works around a way the
 * engine or tfjs-backend-wasm spends or corrupts the wasm heap, which stops
 * at 4 GiB. They are installed with the wasm training kernels
 * (training.ts), once.
 */
import * as tf from '@tensorflow/tfjs';
import { registerKernelFor } from '../kernel-util.ts';
import type { EmscriptenHeap } from './simd.ts';

/**
 * The engine clones every tensor it saves for the backward pass; the
 * backend's Identity copies the bytes, which doubled a training step's
 * memory (the wasm heap stops at 4 GiB) and its copying time. Tensor data is
 * immutable (a variable's assign swaps its data id), so sharing is safe, as
 * the cpu backend does.
 */
export function shareIdentityData(): void {
  registerKernelFor('wasm', {
    kernelName: 'Identity',
    kernelFunc: ({ inputs, backend }) => {
      const { x } = inputs as { x: tf.TensorInfo };
      (backend as unknown as { incRef(dataId: object): void }).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  });
}

interface TapeNode {
  saved?: tf.Tensor[];
  gradient?: (dys: tf.Tensor[]) => unknown;
}

/**
 * tfjs keeps every tensor it saved for the backward pass until the whole
 * backward pass ends, though each is read by one tape node's gradient only:
 * at 256 px that is the activations of every layer beside the gradients of
 * every layer, past the 4 GiB heap at batch 4. The tape runs its nodes one
 * after another (a node's gradient, then its inputs' gradient thunks), so
 * when a node's gradient starts, the node before it is done with its saved
 * tensors: they are released then. Each node's saved tensors are its own
 * clones (shared data, their own reference), so nothing else loses a tensor.
 * The engine is shared by every backend, so this holds for all of them from
 * the moment the wasm kernels are registered.
 */
export function releaseSavedTensorsEarly(): void {
  const engine = tf.engine() as unknown as {
    addTapeNode(...args: unknown[]): void;
    state: { activeTape: TapeNode[] };
  };
  const addTapeNode = engine.addTapeNode.bind(engine);
  let done: tf.Tensor[] = [];
  engine.addTapeNode = (...args: unknown[]) => {
    addTapeNode(...args);
    const node = engine.state.activeTape.at(-1)!;
    const gradient = node.gradient;
    if (!gradient) return;
    node.gradient = (dys) => {
      tf.dispose(done);
      done = node.saved ?? [];
      return gradient(dys);
    };
  };
}

export interface GuardedModule extends EmscriptenHeap {
  asm: { malloc(n: number): number; memory?: WebAssembly.Memory };
  lesionGuarded?: boolean;
}

/**
 * tfjs-backend-wasm does not check its allocations: a failed malloc returns
 * address 0 and the kernel then writes over the bottom of the heap. Failing
 * loudly instead, before anything is written, lets the training loop halve
 * its batch and go on (train.ts treats "out of memory" as curable).
 */
export function guardMalloc(wasm: GuardedModule): void {
  if (wasm.lesionGuarded) return;
  // Emscripten's _malloc is a stub that replaces itself with asm.malloc on first use: wrap the real one.
  const malloc = wasm.asm.malloc;
  wasm._malloc = (bytes: number): number => {
    // The export returns a signed 32-bit address: above 2 GiB it reads negative.
    const address = malloc(bytes) >>> 0;
    // Near the top, Emscripten's allocator has handed out a block that ran past the 4 GiB end.
    if ((address === 0 && bytes > 0) || address + bytes > 2 ** 32) {
      throw new Error(`wasm out of memory: failed to allocate ${(bytes / 2 ** 20).toFixed(1)} MiB (the WebAssembly heap is limited to 4 GiB)`);
    }
    return address;
  };
  wasm.lesionGuarded = true;
}
