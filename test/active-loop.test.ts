/**
 * The simulated active-learning loop on the PH2 images with a tiny model:
 * one shared round 0, picks only from the hidden pool, the random strategy's
 * picks exactly the seeded draw, entropy's the images the round-0 model is
 * least sure of, and the table the CLI prints.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { randomScore } from '../src/core/active/acquisition.ts';
import { simulateActiveLearning, type SimulationResult } from '../src/core/active/active-loop.ts';
import { simulationTable, summariseSimulation } from '../src/core/active/simulation-summary.ts';
import { paperCard, parseRunCard } from '../src/core/config.ts';
import type { Sample } from '../src/core/dataset/layouts.ts';
import { PixelCache } from '../src/core/dataset/samples.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { deriveSeed, Rng } from '../src/core/random.ts';
import { meanEntropy, predictLogits } from '../src/core/scoring/predict.ts';
import { CheckpointStore } from '../src/core/training/checkpoint.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { datasetsRoot } from './helpers/datasets.ts';
import { MemoryStore } from './helpers/memory-store.ts';

const SEED = 3;
let samples: Sample[];
let source: FsFileSource;
let result: SimulationResult;
/** The simulation's store: round 0's model stays in it. */
const store = new MemoryStore();

const card = parseRunCard({
  ...paperCard(),
  name: 'simulate-test',
  seed: SEED,
  backend: 'wasm',
  model: { encoder: 'mobilenetv2', width: 0.25, outputStride: 16, atrousRates: [1, 2, 3], asppChannels: 16, dropout: 0.5, inputSize: 32, init: 'random', inputRange: 'symmetric' },
  train: { ...paperCard().train, epochs: 1, batchSize: 2, optimizer: { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 }, readEverySteps: 2, checkpointEverySteps: 100 },
});

beforeAll(async () => {
  await initNodeBackend('wasm');
  source = new FsFileSource([path.join(datasetsRoot, 'ph2')]);
  samples = (await source.index()).sets.flatMap((s) => s.labeled);
  const lines: string[] = [];
  result = await simulateActiveLearning(
    { card, samples, initial: 4, perRound: 3, rounds: 1, test: 6, fineTuneEpochs: 1, strategies: ['entropy', 'random'], seed: SEED, mcPasses: 2 },
    { source, decoder: new SharpDecoder(), store, emit: () => {}, log: (line) => lines.push(line) },
  );
}, 300_000);

describe('simulated active learning', () => {
  it('scores every strategy from one round-0 model on one test split, and reveals only hidden pool images', () => {
    expect(result.testIds).toHaveLength(6);
    const round0 = result.rows.filter((r) => r.round === 0);
    expect(round0.map((r) => r.strategy)).toEqual(['entropy', 'random']);
    expect(round0[0].lesionIoU).toBe(round0[1].lesionIoU);
    expect(round0[0].revealed).toEqual(round0[1].revealed);
    const initial = new Set(round0[0].revealed);
    for (const row of result.rows.filter((r) => r.round === 1)) {
      expect(row.labeled).toBe(7);
      expect(row.revealed).toHaveLength(3);
      for (const id of row.revealed) {
        expect(initial.has(id)).toBe(false);
        expect(result.testIds).not.toContain(id);
      }
      expect(row.lesionIoU).toBeGreaterThanOrEqual(0);
      expect(row.lesionIoU).toBeLessThanOrEqual(1);
    }
  });

  it('the random strategy reveals exactly the three highest seeded draws of the remaining pool', () => {
    const hidden = new Set([...result.testIds, ...result.rows[0].revealed]);
    const remaining = samples.filter((s) => !hidden.has(s.id));
    expect(remaining).toHaveLength(32 - 6 - 4);
    const roundSeed = deriveSeed(SEED, 'simulate/round1');
    const expected = [...remaining].sort((a, b) => randomScore(roundSeed, b.image) - randomScore(roundSeed, a.image)).slice(0, 3).map((s) => s.id);
    expect(result.rows.find((r) => r.strategy === 'random' && r.round === 1)!.revealed).toEqual(expected);
  });

  it("entropy reveals the three remaining images of highest mean entropy under round 0's model, most uncertain first", async () => {
    // The pool in the simulation's own order, so the predictions below batch the images as its pick did, to the bit.
    const shuffled = new Rng(deriveSeed(SEED, 'simulate/split')).shuffle([...samples].sort((a, b) => a.image.localeCompare(b.image)));
    expect(shuffled.slice(0, 6).map((s) => s.id)).toEqual(result.testIds);
    expect(shuffled.slice(6, 10).map((s) => s.id)).toEqual(result.rows[0].revealed);
    const remaining = shuffled.slice(10);
    const model = buildDeepLabV3(card.model, 'train', card.seed);
    try {
      await new CheckpointStore(store, `sim/${SEED}/round0`).load('best', model);
      const size = card.model.inputSize;
      const cache = new PixelCache(source, new SharpDecoder(), new MemoryStore(), { width: size, height: size }, () => {});
      const images = await Promise.all(remaining.map(async (s) => (await cache.image(s))!.image));
      const logits = await predictLogits(model, images, { batchSize: card.train.batchSize });
      const ranked = remaining.map((s, i) => ({ id: s.id, entropy: meanEntropy(logits[i]) })).sort((a, b) => b.entropy - a.entropy);
      // The three picks rest on their values, not on the order of ties, so a ranking turned around picks other images.
      expect(ranked[2].entropy).toBeGreaterThan(ranked[3].entropy);
      expect(result.rows.find((r) => r.strategy === 'entropy' && r.round === 1)!.revealed).toEqual(ranked.slice(0, 3).map((r) => r.id));
    } finally {
      model.dispose();
    }
  });

  it('prints rounds x strategies and each strategy minus random, with intervals over seeds when there are several', () => {
    const row = (seed: number, strategy: 'entropy' | 'random', round: number, lesionIoU: number) => ({ seed, strategy, round, labeled: 4 + 2 * round, lesionIoU, dice: 0, revealed: [] });
    expect(simulationTable({ rows: [row(1, 'entropy', 0, 0.5), row(1, 'random', 0, 0.5), row(1, 'entropy', 1, 0.7), row(1, 'random', 1, 0.6)] })).toBe(
      [
        '| round | labeled | entropy | random | entropy - random |',
        '| --- | --- | --- | --- | --- |',
        '| 0 | 4 | 0.500 | 0.500 | +0.000 |',
        '| 1 | 6 | 0.700 | 0.600 | +0.100 |',
      ].join('\n'),
    );
    // Two seeds: a resampled mean is one seed's value or their average, so the interval spans both seeds.
    expect(simulationTable({ rows: [row(1, 'entropy', 0, 0.5), row(2, 'entropy', 0, 0.6)] }).split('\n')[2]).toBe('| 0 | 4 | 0.550 [0.500, 0.600] |');
    // Paired by seed: entropy beats random by 0.1 on seed 1 and by 0.3 on seed 2, though seed 2 scores lower overall.
    const paired = summariseSimulation([row(1, 'entropy', 1, 0.8), row(1, 'random', 1, 0.7), row(2, 'entropy', 1, 0.5), row(2, 'random', 1, 0.2)]);
    expect(paired.rounds[0].vsRandom[0]).toEqual({ difference: expect.closeTo(0.2, 12), ci95: [expect.closeTo(0.1, 12), expect.closeTo(0.3, 12)], seeds: 2 });
    expect(paired.rounds[0].vsRandom[1]).toBeNull();
    expect(paired.rounds[0].ci95[1]).toEqual([expect.closeTo(0.2, 12), expect.closeTo(0.7, 12)]);
  });

  it('refuses a folder too small for the plan, saying how many images it needs', async () => {
    await expect(
      simulateActiveLearning(
        { card, samples: samples.slice(0, 10), initial: 4, perRound: 3, rounds: 2, test: 6, fineTuneEpochs: 1, strategies: ['random'], seed: 1, mcPasses: 2 },
        { source, decoder: new SharpDecoder(), store: new MemoryStore(), emit: () => {}, log: () => {} },
      ),
    ).rejects.toThrow('the simulation needs 16 labeled images (6 test + 4 initial + 2 rounds of 3); the folders hold 10');
  });
});
