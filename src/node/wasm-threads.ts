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
 * Makes 'wasm' the threaded build and activates it. On failure the
 * package's own single-threaded factory is put back (not started) and the
 * reason thrown, for the backend's report to name, as the studio does
 * (src/worker/wasm-threads.ts).
 */
export async function activateThreadedWasm(threads: number): Promise<void> {
  const original = (tf.engine() as unknown as Registry).registryFactory.wasm;
  let failure: unknown = 'it did not start';
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    () =>
      startThreaded(threads).catch((error: unknown) => {
        failure = error;
        throw error;
      }),
    2,
  );
  // tf.setBackend reports a failed factory only as `false` (and a console warning).
  if (await tf.setBackend('wasm')) return;
  tf.removeBackend('wasm');
  if (original) tf.registerBackend('wasm', original.factory, original.priority);
  throw failure instanceof Error ? failure : new Error(String(failure));
}

async function startThreaded(threads: number): Promise<tf.KernelBackend> {
  const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js'));
  const mainScript = path.join(dir, 'tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require(path.join(dir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  // tfjs escapes newlines the same way before it makes its blob.
  const workerScript = path.join(os.tmpdir(), `lesion-studio-tfjs-wasm-worker-${tf.version_core}.cjs`);
  writeFileSync(workerScript, wasmWorkerContents.replace(/\n/g, '\\n'));
  const factory = require(mainScript) as (config: object) => Promise<EmscriptenModule>;
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
}
