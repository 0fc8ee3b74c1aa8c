/**
 * The page's handle on the trainer worker. Only comlink and types cross into
 * the page: TensorFlow.js loads in the worker alone.
 */
import * as Comlink from 'comlink';
import type { TrainerApi } from '../worker/api.ts';

export type Trainer = Comlink.Remote<TrainerApi>;

export function startTrainer(): Trainer {
  const worker = new Worker(new URL('../worker/trainer.worker.ts', import.meta.url), {
    type: 'module',
    name: 'lesion-studio-trainer',
  });
  return Comlink.wrap<TrainerApi>(worker);
}

export const { proxy, transfer } = Comlink;
