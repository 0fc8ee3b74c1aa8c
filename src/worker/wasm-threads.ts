/**
 * tfjs's threaded wasm build inside the bundled trainer worker.
 *
 * tfjs starts its threaded build by handing Emscripten's pthread workers a
 * blob made of the factory's own source text (`toString()`), which breaks
 * once the factory is bundled and minified into this module worker ('e is
 * not defined'). Here the pthread workers import the factory's raw script,
 * served as a same-origin file (so the CSP and COEP admit it), and the
 * module is wrapped in tfjs's own backend class and registered as 'wasm' in
 * place of the single-threaded build.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendWasm, getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import threadedFactory from '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js';
import threadedScriptUrl from '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js?url';
import { wasmWorkerContents } from '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js';
import threadedWasmUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { bindTfjsEntryPoints } from '../core/backends/wasm/training.ts';

interface EmscriptenModule {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  tfjs: Record<string, (...args: number[]) => number>;
}

/** Emscripten writes its runtime into the config object it is given, PThread included. */
type FactoryConfig = Parameters<typeof threadedFactory>[0] & { PThread?: { terminateAllThreads(): void } };

type Registry = { registryFactory: Record<string, { factory: () => Promise<tf.KernelBackend>; priority: number }> };

/** Emscripten waits without end for a helper thread that never reports back. */
const START_DEADLINE_MS = 30_000;

/** Why threads cannot be used here, or undefined when they can. */
export function threadsUnavailable(): string | undefined {
  if (!self.crossOriginIsolated) return 'the page is not cross-origin isolated';
  if (typeof SharedArrayBuffer === 'undefined') return 'this browser has no SharedArrayBuffer';
  if (navigator.hardwareConcurrency < 2) return 'this machine has one logical core';
  return undefined;
}

/**
 * Makes 'wasm' the threaded build, one thread per logical core, starts it
 * and returns its thread count. On failure the package's single-threaded
 * build is registered again (not started) and the reason thrown.
 */
export async function activateThreadedWasm(): Promise<number> {
  const original = (tf.engine() as unknown as Registry).registryFactory.wasm;
  let failure: unknown = 'it did not start';
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    () =>
      startThreaded().catch((error: unknown) => {
        failure = error;
        throw error;
      }),
    original?.priority ?? 2,
  );
  // tf.setBackend reports a failed factory only as `false` (and a console warning).
  if (await tf.setBackend('wasm')) return getThreadsCount();
  tf.removeBackend('wasm');
  if (original) tf.registerBackend('wasm', original.factory, original.priority);
  throw failure instanceof Error ? failure : new Error(String(failure));
}

async function startThreaded(): Promise<tf.KernelBackend> {
  // Absolute: the pthread workers run from blob: URLs, against which a root-relative path does not resolve.
  const mainScript = new URL(threadedScriptUrl, self.location.href).href;
  const wasmBinary = new URL(threadedWasmUrl, self.location.href).href;
  // Escaped as tfjs does before it makes the same blob: a Blob would turn '\n' inside string literals into newlines.
  const workerScript = URL.createObjectURL(new Blob([wasmWorkerContents.replace(/\n/g, '\\n')], { type: 'text/javascript' }));
  const config: FactoryConfig = {
    locateFile: (file, prefix) => (file.endsWith('.worker.js') ? workerScript : file.endsWith('.wasm') ? wasmBinary : prefix + file),
    mainScriptUrlOrBlob: mainScript,
  };
  const cores = navigator.hardwareConcurrency;
  const module = await withDoubledCoreCount(() => startEmscripten(config, workerScript));
  bindTfjsEntryPoints(module);
  setThreadsCount(cores);
  return new BackendWasm(module as never);
}

/**
 * The threaded module, with every way its start can fail made a rejection:
 * an abort, no answer by the deadline, or a helper thread that cannot load
 * its script. Such a thread's error reaches this worker's global scope
 * (Emscripten rethrows it, and an unhandled nested worker error climbs to
 * its parent) and would crash the whole trainer; after a failed start the
 * remaining threads' errors are swallowed for good, since they are dead.
 */
function startEmscripten(config: FactoryConfig, workerScript: string): Promise<EmscriptenModule> {
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let fail: (error: Error) => void = () => undefined;
  const onThreadError = (event: ErrorEvent): void => {
    const fromThread = event.filename === workerScript || (event.error instanceof ErrorEvent && event.error.filename === workerScript);
    if (!fromThread) return;
    event.preventDefault();
    fail(new Error(`a helper thread failed: ${event.error instanceof ErrorEvent ? event.error.message : event.message}`));
  };
  self.addEventListener('error', onThreadError);
  return new Promise<EmscriptenModule>((resolve, reject) => {
    fail = reject;
    deadline = setTimeout(() => reject(new Error(`its threads did not start within ${START_DEADLINE_MS / 1000} s`)), START_DEADLINE_MS);
    config.onAbort = (message) => reject(new Error(`it aborted: ${message}`));
    threadedFactory(config).then((module) => resolve(module as unknown as EmscriptenModule), reject);
  }).then(
    (module) => {
      clearTimeout(deadline);
      self.removeEventListener('error', onThreadError);
      return module;
    },
    (error: unknown) => {
      clearTimeout(deadline);
      config.PThread?.terminateAllThreads();
      throw error;
    },
  );
}

/**
 * tfjs's C++ caps its thread pool at half the logical cores (a guess at
 * hyper-threading; on two cores, one thread), whatever count it is asked
 * for. It reads the count once, while the module starts: only then does
 * this worker's navigator report twice the cores.
 */
async function withDoubledCoreCount<T>(start: () => Promise<T>): Promise<T> {
  Object.defineProperty(navigator, 'hardwareConcurrency', { value: 2 * navigator.hardwareConcurrency, configurable: true });
  try {
    return await start();
  } finally {
    // Deleting the own property uncovers the browser's getter again.
    delete (navigator as { hardwareConcurrency?: number }).hardwareConcurrency;
  }
}
