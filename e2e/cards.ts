/** Run cards the end-to-end specs train with. */
import { presetCard, type BackendChoice, type RunCard } from '../src/core/config.ts';

export interface Tiny {
  backend?: BackendChoice;
  epochs?: number;
  batchSize?: number;
  checkpointEverySteps?: number;
  labeledFraction?: number;
  lr?: number;
  /** Instead of Adam at `lr`. */
  optimizer?: RunCard['train']['optimizer'];
}

/** Teacher only, on a 32-pixel model a quarter wide: seconds per epoch on the demo. */
export function tinyCard(name: string, tiny: Tiny = {}): RunCard {
  const card = presetCard('quick');
  return {
    ...card,
    name,
    backend: tiny.backend ?? 'wasm',
    model: { ...card.model, width: 0.25, inputSize: 32, asppChannels: 16, init: 'random', outputStride: 16, atrousRates: [1, 2, 3] },
    train: {
      ...card.train,
      epochs: tiny.epochs ?? 1,
      batchSize: tiny.batchSize ?? 2,
      readEverySteps: 1,
      checkpointEverySteps: tiny.checkpointEverySteps ?? 2,
      optimizer: tiny.optimizer ?? { kind: 'adam', lr: tiny.lr ?? 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
    },
    data: { split: { kind: 'fractions', val: 0.2, test: 0.2 }, unlabeledPerLabeled: 0.5, labeledFraction: tiny.labeledFraction ?? 1 },
    student: { ...card.student, rounds: 0 },
  };
}

/** The tiny card with the quick card's own optimizer, in batches of 4. */
export function tinyTeacher(name: string): RunCard {
  return tinyCard(name, { batchSize: 4, checkpointEverySteps: 4, optimizer: presetCard('quick').train.optimizer });
}
