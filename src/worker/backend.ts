/**
 * Picks the TensorFlow.js backend inside the worker and says why in plain
 * words: WebGPU when the browser has a hardware adapter, else wasm (with this
 * project's conv backprop kernels, SIMD, and threads where the page is
 * cross-origin isolated), else WebGL, else the pure-JavaScript CPU backend.
 * A run card can force one, a software WebGPU adapter included. The order
 * and the words are the core's (backends/choice.ts), the Node host's too.
 * Also reports what the machine offers, for the Configure view.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import wasmPlainUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimdUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreadedUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { autoSkipsAdapter, softwareAdapter } from '../core/backends/adapter.ts';
import { BACKEND_ORDER, backendReason, nextBackend, noBackendStarted, type BackendFailure, type BackendName } from '../core/backends/choice.ts';
import { prepareWasmBackend, registerWasmTrainingKernels } from '../core/backends/wasm/training.ts';
import { prepareWebGpuBackend, registerWebGpuTrainingKernels } from '../core/backends/webgpu/training.ts';
import type { BackendChoice, RunCard } from '../core/config.ts';
import { trainingMemory, type MemoryEstimate } from '../core/model/memory.ts';
import type { BackendReport, Capabilities } from './api.ts';
import { activateThreadedWasm, threadsUnavailable } from './wasm-threads.ts';

// The package's own factory would start its threaded build from the bundled
// factory's source text, which fails in this module worker ('e is not
// defined'); wasm-threads.ts starts that build itself. The package's factory
// stays the single-threaded fallback.
tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);

// Served by Vite from node_modules, so nothing is fetched from a CDN.
setWasmPaths({
  'tfjs-backend-wasm.wasm': wasmPlainUrl,
  'tfjs-backend-wasm-simd.wasm': wasmSimdUrl,
  'tfjs-backend-wasm-threaded-simd.wasm': wasmThreadedUrl,
});

/** The software renderer behind the started WebGPU or WebGL backend, if it is one: its title must not claim a graphics card. */
let softwareRenderer: string | undefined;

function title(name: BackendName): string {
  switch (name) {
    case 'webgpu':
      return softwareRenderer === undefined
        ? 'WebGPU: your graphics card trains the model'
        : `WebGPU on a software adapter (${softwareRenderer}): the CPU trains the model, slower than WebAssembly`;
    case 'webgl':
      return softwareRenderer === undefined
        ? 'WebGL on the graphics card (slower than WebGPU, no WebGPU here)'
        : `WebGL on a software renderer (${softwareRenderer}): the CPU trains the model, slower than WebAssembly`;
    case 'wasm':
      return wasmTitle();
    case 'cpu':
      return 'plain JavaScript on the CPU (slowest; for checking, not for real runs)';
  }
}

/** The adapter tfjs's WebGPU backend gets: it asks with the same preference. */
async function requestAdapter(): Promise<GPUAdapter | null> {
  return navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
}

/** The software renderer behind WebGL, from its renderer string (ANGLE's names SwiftShader), unmasked where the browser tells it. */
function webglSoftware(): string | undefined {
  const gl = new OffscreenCanvas(1, 1).getContext('webgl2');
  if (!gl) return undefined;
  const debug = gl.getExtension('WEBGL_debug_renderer_info');
  return softwareAdapter({ description: String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER)) });
}

/** How the wasm backend started: its thread count, and why only one when threads failed. */
let wasmThreads: { count: number; singleBecause?: string } | undefined;

/** The threaded build where the page allows it, once; the single-threaded one otherwise. */
async function prepareWasm(): Promise<void> {
  registerWasmTrainingKernels();
  if (wasmThreads !== undefined) return;
  const unavailable = threadsUnavailable();
  if (unavailable !== undefined) {
    wasmThreads = { count: 1, singleBecause: unavailable };
    return;
  }
  try {
    wasmThreads = { count: await activateThreadedWasm() };
  } catch (error) {
    wasmThreads = { count: 1, singleBecause: `its threaded build failed (${error instanceof Error ? error.message : String(error)})` };
  }
}

function wasmTitle(): string {
  const count = wasmThreads?.count ?? 1;
  return `WebAssembly on the CPU (SIMD, ${count === 1 ? 'one thread' : `${count} threads`})`;
}

async function tryBackend(name: BackendName): Promise<string | undefined> {
  try {
    if (name === 'wasm') await prepareWasm();
    if (name === 'webgpu') registerWebGpuTrainingKernels();
    const ok = await tf.setBackend(name);
    if (!ok) return 'it did not start';
    await tf.ready();
    if (name === 'wasm') prepareWasmBackend();
    if (name === 'webgpu') prepareWebGpuBackend();
    // A tiny op proves the kernels run (WebGL can register and still fail here).
    const probe = tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(1)));
    const value = (await probe.data())[0];
    probe.dispose();
    return value === 2 ? undefined : 'it computed 1 + 1 wrongly';
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * Starts a backend. `onDeviceLost` fires if the GPU goes away mid-run (driver
 * reset, laptop switching GPUs): tfjs registers no handler for it itself.
 */
export function chooseBackend(choice: BackendChoice, onDeviceLost: (message: string) => void): Promise<BackendReport> {
  // One switch at a time: a capability estimate and a run starting together must not race in tf.setBackend.
  const next = switching.then(() => switchTo(choice, onDeviceLost));
  switching = next.catch(() => undefined);
  return next;
}

let switching: Promise<unknown> = Promise.resolve();

async function switchTo(choice: BackendChoice, onDeviceLost: (message: string) => void): Promise<BackendReport> {
  deviceLost = onDeviceLost;
  const failed: BackendFailure[] = [];
  for (let name = nextBackend(choice, BACKEND_ORDER, failed); name !== undefined; name = nextBackend(choice, BACKEND_ORDER, failed)) {
    let adapter: GPUAdapterInfo | undefined;
    if (name === 'webgpu') {
      if (!('gpu' in navigator)) {
        failed.push({ backend: name, reason: 'this browser has none (Chrome or Edge 113+ has it)' });
        continue;
      }
      // Without an adapter, tryBackend below says why WebGPU does not start.
      adapter = (await requestAdapter().catch(() => null))?.info;
      const skip = choice === 'auto' && adapter ? autoSkipsAdapter(adapter) : undefined;
      if (skip !== undefined) {
        failed.push({ backend: name, reason: skip, skipped: true });
        continue;
      }
    }
    if (started === name) return report(name, choice, failed);
    const failure = await tryBackend(name);
    if (failure === undefined) {
      started = name;
      softwareRenderer = name === 'webgpu' ? adapter && softwareAdapter(adapter) : name === 'webgl' ? webglSoftware() : undefined;
      if (name === 'webgpu') watchDevice();
      return report(name, choice, failed);
    }
    failed.push({ backend: name, reason: failure });
  }
  throw noBackendStarted(failed);
}

function report(name: BackendName, choice: BackendChoice, failed: BackendFailure[]): BackendReport {
  return { name, title: title(name), reason: backendReason(choice, name, failed, { askedBy: 'the run card', singleThreadBecause: wasmThreads?.singleBecause }) };
}

/** The backend this worker started (tf.getBackend() would start one itself). */
let started: BackendName | undefined;
let watched: GPUDevice | undefined;
/** Whoever chose the backend last hears of a lost device: the running run, if any. */
let deviceLost: (message: string) => void = () => undefined;

function watchDevice(): void {
  const device = (tf.backend() as WebGPUBackend).device;
  if (watched === device) return;
  watched = device;
  void device.lost.then((info) => {
    started = undefined;
    if (info.reason === 'destroyed') return;
    deviceLost(`the GPU was lost (${info.message || info.reason}); the run stopped at its last checkpoint and can be resumed`);
  });
}

/**
 * For work beside a run (previews, exports, predictions): keeps whatever
 * backend is running, so it never switches under a training loop.
 */
export async function ensureBackend(choice: BackendChoice): Promise<void> {
  await switching;
  if (started === undefined) await chooseBackend(choice, deviceLost);
}

/** What the machine offers; asks for a WebGPU adapter but creates no device. */
export async function capabilities(): Promise<Capabilities> {
  const caps: Capabilities = {
    webgpu: { available: false },
    crossOriginIsolated: self.crossOriginIsolated,
    hardwareConcurrency: navigator.hardwareConcurrency,
    webgl: typeof OffscreenCanvas !== 'undefined' && new OffscreenCanvas(1, 1).getContext('webgl2') !== null,
    current: started,
  };
  if (!('gpu' in navigator)) {
    caps.webgpu.reason = 'this browser has no WebGPU';
    return caps;
  }
  try {
    const adapter = await requestAdapter();
    if (!adapter) {
      caps.webgpu.reason = 'the browser found no usable GPU adapter';
      return caps;
    }
    const info = adapter.info;
    caps.webgpu = {
      available: true,
      adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description },
      software: softwareAdapter(info),
      limits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: adapter.limits.maxBufferSize,
      },
    };
  } catch (error) {
    caps.webgpu.reason = error instanceof Error ? error.message : String(error);
  }
  return caps;
}

/** Memory one training step of the card needs (core/model/memory.ts), on the backend the run would use. */
export async function estimateMemory(card: RunCard): Promise<MemoryEstimate> {
  // Building the model makes its weights, which needs a backend.
  await ensureBackend(card.backend);
  return trainingMemory(card);
}
