/**
 * What run.ts (the parent) and step.ts (one task per child process) agree
 * on: the models measured, where the data sets are, and what a child reports.
 */
import path from 'node:path';
import { paperCard } from '../src/core/config.ts';
import type { DispatchCount } from '../src/core/backends/webgpu/dispatches.ts';
import type { HostCost } from '../src/core/backends/webgpu/host-clock.ts';
import type { ModelConfig } from '../src/core/model/deeplab.ts';
import { datasetsRoot } from '../test/helpers/datasets.ts';


export const DATASETS = {
  isic2018: path.join(datasetsRoot, 'isic2018'),
  isic2017: path.join(datasetsRoot, 'isic2017'),
  ph2: path.join(datasetsRoot, 'ph2'),
};

/** Weights do not change the arithmetic: random init spares loading the ImageNet ones. */
export const MODELS = {
  /** The paper card's model: MobileNetV2 width 1, output stride 8, ASPP 256. */
  default: { ...paperCard().model, init: 'random' },
  /** The kind of model a CPU-only user can afford: width 0.35, output stride 16, ASPP 64. */
  small: { ...paperCard().model, width: 0.35, outputStride: 16, atrousRates: [6, 12, 18], asppChannels: 64, init: 'random' },
} satisfies Record<string, ModelConfig>;

export type ModelName = keyof typeof MODELS;

export type TaskName = 'train' | 'predict' | 'memory';

export interface TaskResult {
  task: TaskName;
  model: ModelName;
  size: number;
  batch: number;
  parameters: number;
  /** Timed repetitions after the warm-up; empty when the warm-up used the budget up. */
  timesMs: number[];
  warmupMs: number[];
  memory?: { before: { tensors: number; bytes: number }; after: { tensors: number; bytes: number } };
  /** train: per timed step, its host cost: from calling the step until it returned with its work enqueued, the device's time left out. */
  host?: HostCost[];
  /** WebGPU programs dispatched by the latest training step, in all and per program. */
  dispatches?: DispatchCount;
  backend?: string;
  backendDetail?: string;
  /** wasm: the WebAssembly heap's size after the latest run; it grows to the peak the steps needed and never shrinks. */
  heapBytes?: number;
}
