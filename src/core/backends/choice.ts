/**
 * Which TensorFlow.js backend a host tries next, and how it says why the one
 * it started runs: the one policy of the browser worker (src/worker/backend.ts)
 * and the Node host (src/node/backends.ts), so that a card falls back the same
 * way, in the same words, wherever it runs. Each host tries the backends it
 * offers (Node has no WebGL) and records every one it leaves behind.
 */
import type { BackendChoice } from '../config.ts';

export type BackendName = Exclude<BackendChoice, 'auto'>;

/**
 * Fastest first: a graphics card, then the CPU through WebAssembly (SIMD,
 * threads), then WebGL (where there is no WebGPU, often a software
 * renderer), then plain JavaScript, which always starts.
 */
export const BACKEND_ORDER: readonly BackendName[] = ['webgpu', 'wasm', 'webgl', 'cpu'];

/** A backend left behind, and why. */
export interface BackendFailure {
  backend: BackendName;
  /** In words after the backend's name ('Dawn found no adapter'). */
  reason: string;
  /**
   * Passed over by the automatic choice although it would start (a software
   * WebGPU adapter, slower than wasm): the reason is then a whole sentence.
   */
  skipped?: boolean;
}

/** Every backend the host offers, in the order tried: a forced one first, then the rest in the usual order. */
export function backendOrder(choice: BackendChoice, offered: readonly BackendName[]): BackendName[] {
  const usual = BACKEND_ORDER.filter((name) => offered.includes(name));
  return choice === 'auto' || !usual.includes(choice) ? usual : [choice, ...usual.filter((name) => name !== choice)];
}

/** The backend to try after those that failed (in order), or undefined when none is left. */
export function nextBackend(choice: BackendChoice, offered: readonly BackendName[], failed: readonly BackendFailure[]): BackendName | undefined {
  return backendOrder(choice, offered).find((name) => !failed.some((f) => f.backend === name));
}

function describeFailures(failed: readonly BackendFailure[]): string {
  return failed.map((f) => (f.skipped ? f.reason : `${f.backend}: ${f.reason}`)).join('; ');
}

export interface ReasonContext {
  /** Who forces a backend in this host, for 'chosen in the run card' ('the run card'). */
  askedBy: string;
  /** Why the wasm backend runs on one thread, when threads were wanted and could not be had. */
  singleThreadBecause?: string;
}

/** Why `chosen` runs: what it fell back from and why, and why wasm has one thread if it has. */
export function backendReason(choice: BackendChoice, chosen: BackendName, failed: readonly BackendFailure[], context: ReasonContext): string {
  const why = choice === 'auto'
    ? failed.length === 0 ? 'chosen automatically' : `chosen automatically; ${describeFailures(failed)}`
    : chosen === choice ? `chosen in ${context.askedBy}` : `${context.askedBy} asked for ${choice}, which failed (${describeFailures(failed)})`;
  const single = chosen === 'wasm' ? context.singleThreadBecause : undefined;
  return single === undefined ? why : `${why}; one thread because ${single}`;
}

/** When every backend the host offers failed: each one's reason. */
export function noBackendStarted(failed: readonly BackendFailure[]): Error {
  return new Error(`no TensorFlow.js backend could start: ${describeFailures(failed)}`);
}
