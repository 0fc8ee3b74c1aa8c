/**
 * Measures a WebGPU step's host cost: the time from calling it until it
 * returns with its work enqueued, without the device's time.
 *
 * On a graphics card queue.submit returns at once and the two are apart. On
 * lavapipe (Mesa's Vulkan on the CPU) it is not so: vkQueueSubmit runs the
 * command buffer in the calling thread before returning, so a step timed
 * around its calls would include the arithmetic of every batch tfjs submits.
 * While the clock runs, the queue's operations are therefore held back, in
 * order, and replayed when it stops: writes to uniform buffers that tfjs
 * recycles at each submit stay ordered against the command buffers that read
 * them, and buffers tfjs destroys once a submit is out (its upload staging
 * buffers) are destroyed only after the replay. Everything the host does to
 * encode the step (tfjs's JavaScript, uniform packing, bind groups, Dawn's
 * encoding calls) is inside the measure; the submits' own driver work is not.
 */
import * as tf from '@tensorflow/tfjs';

interface BackendParts {
  queue: GPUQueue;
  bufferManager: { releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void };
}

export interface HostCost {
  /** Wall-clock milliseconds from the call until it returned. */
  wallMs: number;
  /** CPU milliseconds the process spent meanwhile (every thread: tfjs's, Dawn's, the GC's); Node only. */
  cpuMs?: number;
}

function copyOf(data: BufferSource): BufferSource {
  if (data instanceof ArrayBuffer) return data.slice(0);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  const Kind = data.constructor as new (buffer: ArrayBuffer) => ArrayBufferView<ArrayBuffer>;
  return data instanceof DataView ? new DataView(bytes.buffer) : new Kind(bytes.buffer);
}

/**
 * Runs `issue` (which must not wait on the device) with the queue held, then
 * lets the held work go; returns its result and its host cost. On another
 * backend it only times `issue`.
 */
export function timeHostCost<T>(issue: () => T): { value: T; cost: HostCost } {
  const parts = tf.getBackend() === 'webgpu' ? (tf.backend() as unknown as BackendParts) : undefined;
  const held: (() => void)[] = [];
  const destroyed: (() => void)[] = [];
  const originals = parts && { submit: parts.queue.submit, writeBuffer: parts.queue.writeBuffer, release: parts.bufferManager.releaseBuffer };
  if (parts && originals) {
    const { queue, bufferManager } = parts;
    queue.submit = (buffers: Iterable<GPUCommandBuffer>) => void held.push(() => originals.submit.call(queue, [...buffers]));
    queue.writeBuffer = ((buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset?: number, size?: number) => {
      const copy = copyOf(data);
      held.push(() => originals.writeBuffer.call(queue, buffer, offset, copy, dataOffset, size));
    }) as GPUQueue['writeBuffer'];
    bufferManager.releaseBuffer = (buffer, reuse = true) =>
      reuse ? originals.release.call(bufferManager, buffer, true) : void destroyed.push(() => originals.release.call(bufferManager, buffer, false));
  }
  // The browser has no process clock: there the wall clock alone is kept.
  const cpu = typeof process === 'undefined' ? undefined : process.cpuUsage();
  const started = performance.now();
  try {
    const value = issue();
    const used = cpu && process.cpuUsage(cpu);
    return { value, cost: { wallMs: performance.now() - started, cpuMs: used ? (used.user + used.system) / 1000 : undefined } };
  } finally {
    if (parts && originals) {
      parts.queue.submit = originals.submit;
      parts.queue.writeBuffer = originals.writeBuffer;
      parts.bufferManager.releaseBuffer = originals.release;
    }
    for (const op of held) op();
    for (const op of destroyed) op();
  }
}
