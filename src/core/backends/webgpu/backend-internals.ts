/**
 * The parts of tfjs 4.22's webgpu backend that our launches (launch-cache.ts,
 * own-dispatch.ts) and the step graph (step-graph.ts) drive: public in its
 * JavaScript, not in its typings.
 */
export interface BackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  tensorMap: { get(dataId: object): { resource?: GPUBuffer | GPUTexture } };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}
