/**
 * tfjs's threaded wasm build in Node.
 *
 * tfjs-backend-wasm only starts its threaded build where a page is
 * cross-origin isolated, and hands Emscripten its worker script as a blob:
 * URL, which Node's worker_threads cannot load. Here the same build is
 * started with the worker script written to a file, and registered in place of
 * the single-threaded backend. Its C++ caps the thread pool at half the
 * logical cores (a guess at hyper-threading): on a 2-core machine that is one
 * thread, so the core count it reads is doubled while it starts.
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { bindTfjsEntryPoints } from '../core/backends/wasm/training.ts';

const require = createRequire(import.meta.url);

interface EmscriptenModule {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  PThread: { unusedWorkers: { unref(): void }[]; runningWorkers: { unref(): void }[] };
  tfjs: Record<string, (...args: number[]) => number>;
}

type Registry = { registryFactory: Record<string, { factory: () => Promise<tf.KernelBackend>; priority: number }> };

/**
 * Makes 'wasm' the threaded build and activates it. On any failure the
 * package's own single-threaded factory is put back and false returned.
 */
export async function activateThreadedWasm(threads: number): Promise<boolean> {
  const original = (tf.engine() as unknown as Registry).registryFactory.wasm;
  try {
    registerThreadedWasm(threads);
    if (await tf.setBackend('wasm')) return true;
  } catch {
    // Fall through to the single-threaded build.
  }
  tf.removeBackend('wasm');
  if (original) tf.registerBackend('wasm', original.factory, original.priority);
  return false;
}

function registerThreadedWasm(threads: number): void {
  const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js'));
  const mainScript = path.join(dir, 'tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require(path.join(dir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  // tfjs escapes newlines the same way before it makes its blob.
  const workerScript = path.join(os.tmpdir(), `lesion-studio-tfjs-wasm-worker-${tf.version_core}.cjs`);
  writeFileSync(workerScript, wasmWorkerContents.replace(/\n/g, '\\n'));
  const factory = require(mainScript) as (config: object) => Promise<EmscriptenModule>;

  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      const realCpus = os.cpus;
      os.cpus = () => Array.from({ length: 2 * threads }, () => realCpus()[0]);
      let module: EmscriptenModule;
      try {
        module = await factory({
          locateFile: (file: string, prefix: string) =>
            file.endsWith('.worker.js') ? workerScript : file.endsWith('.wasm') ? path.join(dir, 'tfjs-backend-wasm-threaded-simd.wasm') : prefix + file,
          mainScriptUrlOrBlob: mainScript,
        });
      } finally {
        os.cpus = realCpus;
      }
      bindTfjsEntryPoints(module);
      const backend = new BackendWasm(module as never);
      // Idle pool threads must not keep the process alive once the work is done.
      for (const worker of [...module.PThread.unusedWorkers, ...module.PThread.runningWorkers]) worker.unref();
      return backend;
    },
    2,
  );
}
