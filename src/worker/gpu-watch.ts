/**
 * Watches the WebGPU device a run trains on. WebGPU reports some failures
 * only as events: an allocation that failed yields zeros instead of
 * throwing (uncapturederror), and a lost device makes every later call a
 * silent no-op. Both reach the core through PipelineHost.deviceError, which
 * it checks before reading losses and so before any checkpoint: nothing
 * computed on a broken device is ever saved.
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';

export class DeviceWatch {
  /** Set once the device is gone: what happened, in plain words. */
  lost: string | undefined;
  private readonly gone: Promise<string>;
  private errors: string[] = [];

  private readonly onError = (event: Event): void => {
    const error = (event as GPUUncapturedErrorEvent).error;
    // The core halves the batch on errors that say "out of memory"; other ones stop the run.
    const kind = error instanceof GPUOutOfMemoryError ? 'out of memory' : error instanceof GPUValidationError ? 'validation error' : 'internal error';
    this.errors.push(`WebGPU ${kind}: ${error.message}`);
  };

  constructor(private readonly device: GPUDevice) {
    device.addEventListener('uncapturederror', this.onError);
    this.gone = device.lost.then((info) => (this.lost = `the GPU device was lost (${info.message || info.reason})`));
  }

  /**
   * Whether the device is lost, waiting a little: a read pending when the
   * device goes away fails at once, and the lost promise settles after it.
   */
  lostWithin(ms: number): Promise<string | undefined> {
    return Promise.race([this.gone, new Promise<undefined>((resolve) => setTimeout(resolve, ms))]);
  }

  /** For PipelineHost.deviceError: errors since the last call, then forever the loss once there is one. */
  readonly deviceError = (): Error | undefined => {
    // Kept apart from the loss's own message, which could read like an out-of-memory error the core would retry.
    if (this.lost) return new Error('WebGPU: the GPU device was lost');
    if (this.errors.length === 0) return undefined;
    const [first, ...more] = this.errors;
    this.errors = [];
    return new Error(more.length > 0 ? `${first} (and ${more.length} more device errors)` : first);
  };

  stop(): void {
    this.device.removeEventListener('uncapturederror', this.onError);
  }
}

/** The device of the running WebGPU backend, without starting a backend when none runs. */
export function webgpuDevice(): GPUDevice | undefined {
  return tf.engine().backendName === 'webgpu' ? (tf.backend() as WebGPUBackend).device : undefined;
}

/** Test hook (README, Reliability): keeps WebGPU from starting again, to exercise the fallback to wasm. */
let refuseRestart = false;

/**
 * Forgets the dead WebGPU backend, so the next tf.setBackend('webgpu') asks
 * the browser for a new device instead of reusing the lost one.
 */
export function forgetWebGPU(): void {
  if (!('gpu' in navigator)) return;
  let factory: ReturnType<typeof tf.findBackendFactory> | undefined;
  try {
    factory = tf.findBackendFactory('webgpu');
    tf.removeBackend('webgpu');
  } catch {
    // Already forgotten (a second loss before a restart).
  }
  // Priority 3, as tfjs-backend-webgpu registers it.
  if (factory && !refuseRestart) tf.registerBackend('webgpu', factory, 3);
}

/** Test hooks: lose the device as a driver reset would, or report an error WebGPU raises only as an event. */
export function injectDeviceFault(fault: { kind: 'lose'; refuseRestart?: boolean } | { kind: 'out-of-memory' }): void {
  const device = webgpuDevice();
  if (!device) throw new Error('no WebGPU device is running');
  if (fault.kind === 'lose') {
    refuseRestart = fault.refuseRestart ?? false;
    device.destroy();
  } else {
    const error = new GPUOutOfMemoryError('injected by the fault test hook');
    device.dispatchEvent(new GPUUncapturedErrorEvent('uncapturederror', { error }));
  }
}
