import * as tf from '@tensorflow/tfjs';

/** Each replacement can be turned off, so the bench measures what each one buys. */
export const WEBGPU_LEVERS = ['batchnorm', 'optimizer', 'filter-grad', 'activation-grad', 'atrous', 'reduce-grad', 'uniform-cache', 'batchnorm-one-pass', 'loss', 'replay'] as const;
export type WebGpuLever = (typeof WEBGPU_LEVERS)[number];
const enabled = new Set<WebGpuLever>(WEBGPU_LEVERS);

export function setWebGpuLevers(levers: Iterable<WebGpuLever>): void {
  enabled.clear();
  for (const lever of levers) enabled.add(lever);
}

/** Whether `lever`'s kernels are on (they run only while webgpu is the active backend). */
export function leverOn(lever: WebGpuLever): boolean {
  return enabled.has(lever);
}

/** Gradients are replaced for every backend at once: ours apply only while webgpu is active. */
export const onWebGpu = (lever: WebGpuLever) => () => leverOn(lever) && tf.getBackend() === 'webgpu';
