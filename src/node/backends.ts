/**
 * Backends for the Node host. wasm gets the training kernels tfjs lacks
 * (src/core/backends/wasm/training.ts); WebGPU comes from Dawn (the `webgpu`
 * npm package), which on a machine without a GPU runs on Mesa's lavapipe:
 * auto then takes wasm, which is faster, and webgpu still gets lavapipe.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { autoSkipsAdapter } from '../core/backends/adapter.ts';
import { prepareWasmBackend, registerWasmTrainingKernels } from '../core/backends/wasm/training.ts';
import { prepareWebGpuBackend, registerWebGpuTrainingKernels } from '../core/backends/webgpu/training.ts';
import { ConfigError } from '../core/errors.ts';
import { activateThreadedWasm } from './wasm-threads.ts';

export type NodeBackendName = 'cpu' | 'wasm' | 'webgpu' | 'auto';

export interface ActiveBackend {
  name: string;
  detail: string;
}

const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';
const require = createRequire(import.meta.url);

export async function initNodeBackend(name: NodeBackendName): Promise<ActiveBackend> {
  switch (name) {
    case 'cpu':
      await activate('cpu');
      return { name: 'cpu', detail: 'tfjs cpu backend (pure JavaScript)' };
    case 'wasm':
      return initWasm();
    case 'webgpu': {
      const adapter = await findWebGpuAdapter();
      if (!adapter) throw new ConfigError('backend', 'webgpu: Dawn found no WebGPU adapter (no GPU, and no Vulkan driver such as lavapipe)');
      return initWebGpu(adapter);
    }
    case 'auto': {
      const adapter = await findWebGpuAdapter();
      if (!adapter) return initWasm();
      const skip = autoSkipsAdapter(adapter.info);
      if (skip === undefined) return initWebGpu(adapter);
      const wasm = await initWasm();
      return { ...wasm, detail: `${wasm.detail}; chosen automatically: ${skip}` };
    }
    default:
      throw new ConfigError('backend', `unknown backend ${String(name)}; use cpu, wasm, webgpu or auto`);
  }
}

async function activate(name: string): Promise<void> {
  if (!(await tf.setBackend(name))) throw new ConfigError('backend', `tfjs could not initialise the ${name} backend`);
  await tf.ready();
}

/** Threads for the wasm backend: LESION_STUDIO_WASM_THREADS, else every core. */
export function wasmThreads(): number {
  const asked = Number(process.env.LESION_STUDIO_WASM_THREADS);
  return Number.isInteger(asked) && asked >= 1 ? asked : os.cpus().length;
}

async function initWasm(): Promise<ActiveBackend> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // From the installed package, not the working directory: the CLI runs from anywhere.
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
  wasm.setWasmPaths(`${dist}${path.sep}`);
  registerWasmTrainingKernels();
  const threads = wasmThreads();
  if (threads > 1) {
    wasm.setThreadsCount(threads);
    await activateThreadedWasm(threads);
  }
  if (tf.getBackend() !== 'wasm') await activate('wasm');
  prepareWasmBackend();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const count = wasm.getThreadsCount();
  return {
    name: 'wasm',
    detail: `tfjs wasm backend (XNNPACK${simd ? ', SIMD' : ''}, ${count} thread${count === 1 ? '' : 's'}) with the training kernels for convolution gradients`,
  };
}

let gpu: GPU | undefined;

/** Linux's device nodes for GPUs: DRM render nodes (Intel, AMD, nouveau, virtio) and NVIDIA's own. */
function hasGpuDevice(): boolean {
  const nodes = (dir: string, prefix: string): boolean => existsSync(dir) && readdirSync(dir).some((name) => name.startsWith(prefix));
  return nodes('/dev/dri', 'renderD') || nodes('/dev', 'nvidia');
}

/** Installs Dawn's navigator.gpu once; undefined when it has no adapter to offer. */
async function findWebGpuAdapter(): Promise<GPUAdapter | undefined> {
  if (!gpu) {
    // Dawn reads these when it creates its Vulkan instance: point it at lavapipe
    // when the machine has it, no GPU and the user chose no other driver
    // (forcing it where a GPU exists would hide the GPU).
    if (process.env.VK_ICD_FILENAMES === undefined && existsSync(LAVAPIPE_ICD) && !hasGpuDevice()) process.env.VK_ICD_FILENAMES = LAVAPIPE_ICD;
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    gpu = create([]);
    // Node >= 21 has a read-only navigator without gpu: replace it, keeping what tfjs reads.
    const existing = (globalThis as { navigator?: Partial<Navigator> }).navigator;
    const navigator = { userAgent: existing?.userAgent, hardwareConcurrency: existing?.hardwareConcurrency, gpu };
    Object.defineProperty(globalThis, 'navigator', { value: navigator, configurable: true, writable: true });
  }
  return (await gpu.requestAdapter()) ?? undefined;
}

async function initWebGpu(adapter: GPUAdapter): Promise<ActiveBackend> {
  await import('@tensorflow/tfjs-backend-webgpu');
  registerWebGpuTrainingKernels();
  await activate('webgpu');
  prepareWebGpuBackend();
  const info = adapter.info;
  const described = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  return { name: 'webgpu', detail: `tfjs webgpu backend on Dawn, adapter: ${described || 'unnamed'}` };
}
