/**
 * Backends for the Node host. wasm gets the training kernels tfjs lacks
 * (src/core/backends/wasm/training.ts); WebGPU comes from Dawn (the `webgpu`
 * npm package), which on a machine without a GPU runs on Mesa's lavapipe:
 * auto then takes wasm, which is faster, and webgpu still gets lavapipe.
 * A backend that cannot start is left for the next one in the core's order
 * (src/core/backends/choice.ts, the studio's policy), saying which and why.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { autoSkipsAdapter } from '../core/backends/adapter.ts';
import { backendReason, nextBackend, noBackendStarted, type BackendFailure, type BackendName } from '../core/backends/choice.ts';
import { prepareWasmBackend, registerWasmTrainingKernels } from '../core/backends/wasm/training.ts';
import { prepareWebGpuBackend, registerWebGpuTrainingKernels } from '../core/backends/webgpu/training.ts';
import { ConfigError } from '../core/errors.ts';
import { activateThreadedWasm } from './wasm-threads.ts';

export type NodeBackendName = 'cpu' | 'wasm' | 'webgpu' | 'auto';

/** What the Node host offers, in the core's order (no WebGL: a run card's webgl means auto here). */
const OFFERED: BackendName[] = ['webgpu', 'wasm', 'cpu'];

export interface ActiveBackend {
  name: BackendName;
  detail: string;
  /** Why this one, in the studio's words: what it fell back from and why, and why wasm has one thread if it has. */
  reason: string;
}

const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';
const require = createRequire(import.meta.url);

export async function initNodeBackend(choice: NodeBackendName): Promise<ActiveBackend> {
  if (choice !== 'auto' && !OFFERED.includes(choice)) throw new ConfigError('backend', `unknown backend ${String(choice)}; use cpu, wasm, webgpu or auto`);
  const failed: BackendFailure[] = [];
  for (let name = nextBackend(choice, OFFERED, failed); name !== undefined; name = nextBackend(choice, OFFERED, failed)) {
    let detail: string;
    try {
      if (name === 'webgpu') {
        const adapter = await findWebGpuAdapter();
        if (!adapter) {
          failed.push({ backend: name, reason: 'Dawn found no WebGPU adapter (no GPU, and no Vulkan driver such as lavapipe)' });
          continue;
        }
        const skip = choice === 'auto' ? autoSkipsAdapter(adapter.info) : undefined;
        if (skip !== undefined) {
          failed.push({ backend: name, reason: skip, skipped: true });
          continue;
        }
        detail = await initWebGpu(adapter);
      } else if (name === 'wasm') {
        detail = await initWasm();
      } else {
        await activate('cpu');
        detail = 'tfjs cpu backend (pure JavaScript)';
      }
    } catch (error) {
      failed.push({ backend: name, reason: error instanceof Error ? error.message : String(error) });
      continue;
    }
    const singleThreadBecause = name === 'wasm' ? wasmSingleBecause : undefined;
    return { name, detail, reason: backendReason(choice, name, failed, { askedBy: 'the run card or --backend', singleThreadBecause }) };
  }
  throw noBackendStarted(failed);
}

/** The line each command prints before it computes: which backend, on what, and why. */
export function backendLine(backend: ActiveBackend): string {
  return `backend: ${backend.name} (${backend.detail}); ${backend.reason}`;
}

async function activate(name: string): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error('tfjs could not initialise it');
  await tf.ready();
}

/** Threads for the wasm backend: LESION_STUDIO_WASM_THREADS, else every core. */
export function wasmThreads(): number {
  const asked = Number(process.env.LESION_STUDIO_WASM_THREADS);
  return Number.isInteger(asked) && asked >= 1 ? asked : os.cpus().length;
}

/** Why the wasm backend last started runs on one thread, when it does. */
let wasmSingleBecause: string | undefined;

async function initWasm(): Promise<string> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // From the installed package, not the working directory: the CLI runs from anywhere.
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
  wasm.setWasmPaths(`${dist}${path.sep}`);
  registerWasmTrainingKernels();
  const threads = wasmThreads();
  wasmSingleBecause = threads > 1 ? undefined : Number(process.env.LESION_STUDIO_WASM_THREADS) === 1 ? 'LESION_STUDIO_WASM_THREADS asks for one' : 'this machine has one logical core';
  if (threads > 1) {
    wasm.setThreadsCount(threads);
    try {
      await activateThreadedWasm(threads);
    } catch (error) {
      wasmSingleBecause = `its threaded build failed (${error instanceof Error ? error.message : String(error)})`;
    }
  }
  if (tf.getBackend() !== 'wasm') await activate('wasm');
  prepareWasmBackend();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const count = wasm.getThreadsCount();
  return `tfjs wasm backend (XNNPACK${simd ? ', SIMD' : ''}, ${count} thread${count === 1 ? '' : 's'}) with the training kernels for convolution gradients`;
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

async function initWebGpu(adapter: GPUAdapter): Promise<string> {
  await import('@tensorflow/tfjs-backend-webgpu');
  registerWebGpuTrainingKernels();
  await activate('webgpu');
  prepareWebGpuBackend();
  const info = adapter.info;
  const described = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  return `tfjs webgpu backend on Dawn, adapter: ${described || 'unnamed'}`;
}
