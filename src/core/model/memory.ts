/**
 * Memory one training step needs, from the model's own layer shapes: every
 * layer's output is kept for the backward pass and gets a gradient of the
 * same size; weights carry a gradient and the optimizer's state. A rough
 * upper bound (tfjs frees some intermediates early), good enough to warn
 * before a batch cannot fit. Builds the model, so a backend must be running.
 */
import type { RunCard } from '../config.ts';
import { buildDeepLabV3, countParameters } from './deeplab.ts';

export interface MemoryEstimate {
  parameters: number;
  parameterBytes: number;
  activationBytes: number;
  totalBytes: number;
  /** The biggest single activation: one WebGPU buffer must hold it. */
  largestTensorBytes: number;
}

const FLOAT = 4;

export function trainingMemory(card: RunCard): MemoryEstimate {
  const { model, train } = card;
  const batchSize = train.batchSize;
  const net = buildDeepLabV3({ ...model, init: 'random' }, 'train', card.seed);
  try {
    let activations = 0;
    let largest = 0;
    for (const layer of net.layers) {
      const shapes = (Array.isArray(layer.outputShape[0]) ? layer.outputShape : [layer.outputShape]) as (number | null)[][];
      for (const shape of shapes) {
        const elements = shape.reduce<number>((n, d) => n * (d ?? batchSize), 1);
        activations += elements;
        largest = Math.max(largest, elements);
      }
    }
    const parameters = countParameters(net);
    const optimizerCopies = train.optimizer.kind === 'adam' ? 2 : 1;
    const parameterBytes = parameters * FLOAT * (2 + optimizerCopies);
    const activationBytes = activations * FLOAT * 2;
    return {
      parameters,
      parameterBytes,
      activationBytes,
      totalBytes: parameterBytes + activationBytes,
      largestTensorBytes: largest * FLOAT,
    };
  } finally {
    net.dispose();
  }
}
