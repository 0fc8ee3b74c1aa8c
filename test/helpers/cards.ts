import { paperCard, type RunCard } from '../../src/core/config.ts';

/**
 * A teacher only, without noise, on a quarter-wide MobileNetV2 at 32 px, on
 * wasm: seconds per epoch. Tests spread their own changes over it.
 */
export function tinyTestCard(name: string, seed: number): RunCard {
  const paper = paperCard();
  return {
    ...paper,
    name,
    seed,
    backend: 'wasm',
    model: { encoder: 'mobilenetv2', width: 0.25, outputStride: 16, atrousRates: [2, 3, 4], asppChannels: 8, dropout: 0, inputSize: 32, init: 'random', inputRange: 'unit' },
    train: {
      ...paper.train,
      epochs: 2,
      batchSize: 4,
      optimizer: { kind: 'adam', lr: 1e-2, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
      readEverySteps: 2,
      checkpointEverySteps: 5,
      emaSmoothing: 0.5,
    },
    noise: { preset: 'none', distortion: 'optical' },
    data: { split: { kind: 'fractions', val: 0.25, test: 0.2 }, unlabeledPerLabeled: 1, labeledFraction: 1 },
    pseudo: { ...paper.pseudo, flipTta: false },
    student: { init: 'same-as-teacher', rounds: 0 },
    eval: { logitThreshold: 0, tta: 'none', postprocess: 'none' },
  };
}
