/**
 * The simulated active-learning loop: what an expert's labels buy when they
 * go to the images an acquisition score ranks first, against the same number
 * of images drawn at random. Ground truth exists for every image; the loop
 * hides it, starts from k revealed images, and each round reveals the masks of
 * the N highest-scoring remaining images, fine-tunes the current model on
 * everything revealed so far, and scores lesion IoU on a fixed test split.
 *
 * Every strategy starts from the same round-0 model (trained once on the same
 * k images) and is scored on the same test images, so the rows differ only by
 * which images were revealed. The split, the k images and every training draw
 * come from the seed.
 */
import type * as tf from '@tensorflow/tfjs';
import { randomScore, rankBy, scoreImages, scoreOf, type AcquisitionScore } from './acquisition.ts';
import { CheckpointStore } from '../training/checkpoint.ts';
import type { RunCard } from '../config.ts';
import { RunControl } from '../training/control.ts';
import type { Sample } from '../dataset/layouts.ts';
import { LesionError } from '../errors.ts';
import { evaluate, summary } from '../scoring/evaluate.ts';
import { readoutOf } from '../scoring/readout.ts';
import type { EventSink } from '../events.ts';
import type { FileSource, KeyValueStore, PixelDecoder, RgbImage } from '../io.ts';
import { buildDeepLabV3 } from '../model/deeplab.ts';
import { initialiseEncoder } from '../run/pipeline.ts';
import { deriveSeed, Rng } from '../random.ts';
import { itemFromSample, PixelCache } from '../dataset/samples.ts';
import type { SimulationRow } from './simulation-summary.ts';
import { trainStage } from '../training/train.ts';

export type { SimulationRow };

export interface SimulationSpec {
  /** Model, training settings and input size; `card.train.epochs` is the round-0 training. */
  card: RunCard;
  /** Images with ground truth; the loop hides it until a strategy reveals it. */
  samples: Sample[];
  /** Images revealed before round 1. */
  initial: number;
  /** Images revealed per round. */
  perRound: number;
  rounds: number;
  /** Images held out for scoring. */
  test: number;
  fineTuneEpochs: number;
  strategies: AcquisitionScore[];
  seed: number;
  /** MC-dropout passes, for the 'mc-dropout' strategy. */
  mcPasses: number;
}

export interface SimulationHost {
  source: FileSource;
  decoder: PixelDecoder;
  /** Scratch space for checkpoints; the caller removes it. */
  store: KeyValueStore;
  emit: EventSink;
  /** Progress in words, one line per step of the loop. */
  log: (line: string) => void;
}

export interface SimulationResult {
  format: 'lesion-studio-al-simulation/1';
  card: RunCard;
  spec: Omit<SimulationSpec, 'card' | 'samples'>;
  /** Ids of the fixed test split. */
  testIds: string[];
  rows: SimulationRow[];
}

export async function simulateActiveLearning(spec: SimulationSpec, host: SimulationHost): Promise<SimulationResult> {
  const { card, initial, perRound, rounds } = spec;
  const needed = spec.test + initial + perRound * rounds;
  if (spec.samples.length < needed) {
    throw new LesionError('dataset', `the simulation needs ${needed} labeled images (${spec.test} test + ${initial} initial + ${rounds} rounds of ${perRound}); the folders hold ${spec.samples.length}`);
  }
  const shuffled = new Rng(deriveSeed(spec.seed, 'simulate/split')).shuffle([...spec.samples].sort((a, b) => a.image.localeCompare(b.image)));
  const test = shuffled.slice(0, spec.test);
  const pool = shuffled.slice(spec.test);
  const start = pool.slice(0, initial);
  const size = card.model.inputSize;
  const cache = new PixelCache(host.source, host.decoder, host.store, { width: size, height: size }, host.emit);
  const testItems = test.map(itemFromSample);
  const control = new RunControl();
  const rows: SimulationRow[] = [];

  // The loop validates nothing, so no post-processing decision: its models are read with the card's threshold and TTA.
  const readout = readoutOf(card);
  const score = async (model: tf.LayersModel): Promise<{ lesionIoU: number; dice: number }> => {
    const m = summary((await evaluate(model, testItems, cache, { ...readout, batchSize: card.train.batchSize })).overall);
    return { lesionIoU: m.lesionIoU, dice: m.dice };
  };
  const train = async (model: tf.LayersModel, labeled: Sample[], epochs: number, prefix: string): Promise<void> => {
    await trainStage({
      stage: 'teacher',
      card: { ...card, train: { ...card.train, epochs } },
      model,
      train: labeled.map(itemFromSample),
      // No validation split: the final epoch's weights go on, as a short fine-tune in the studio does.
      val: [],
      cache,
      checkpoints: new CheckpointStore(host.store, prefix),
      emit: host.emit,
      control,
      resume: false,
    });
  };

  const round0 = new CheckpointStore(host.store, `sim/${spec.seed}/round0`);
  {
    const model = await initialModel(card);
    await train(model, start, card.train.epochs, `sim/${spec.seed}/round0-train`);
    await round0.save('best', model, [], { epoch: 0, stepInEpoch: 0, step: 0, ema: null, bestEma: null, bestEpoch: null, skipped: [] });
    const m = await score(model);
    model.dispose();
    host.log(`seed ${spec.seed}, round 0: ${initial} labeled, lesion IoU ${m.lesionIoU.toFixed(4)}`);
    for (const strategy of spec.strategies) rows.push({ seed: spec.seed, strategy, round: 0, labeled: initial, ...m, revealed: start.map((s) => s.id) });
  }

  for (const strategy of spec.strategies) {
    const model = buildDeepLabV3(card.model, 'train', card.seed);
    await round0.load('best', model);
    const labeled = [...start];
    let remaining = pool.slice(initial);
    for (let round = 1; round <= rounds; round++) {
      const picked = await pick(model, remaining, strategy, perRound, cache, { batchSize: card.train.batchSize, seed: deriveSeed(spec.seed, `simulate/round${round}`), mcPasses: strategy === 'mc-dropout' ? spec.mcPasses : 0 });
      labeled.push(...picked);
      remaining = remaining.filter((s) => !picked.includes(s));
      await train(model, labeled, spec.fineTuneEpochs, `sim/${spec.seed}/${strategy}/round${round}`);
      const m = await score(model);
      host.log(`seed ${spec.seed}, ${strategy}, round ${round}: +${picked.map((s) => s.id).join(', ')} -> ${labeled.length} labeled, lesion IoU ${m.lesionIoU.toFixed(4)}`);
      rows.push({ seed: spec.seed, strategy, round, labeled: labeled.length, ...m, revealed: picked.map((s) => s.id) });
    }
    model.dispose();
  }
  const { card: _card, samples: _samples, ...rest } = spec;
  return { format: 'lesion-studio-al-simulation/1', card, spec: rest, testIds: test.map((s) => s.id), rows };
}

/** The card's initial weights, as a run of the card starts from them. */
async function initialModel(card: RunCard): Promise<tf.LayersModel> {
  if (card.model.init === 'user') {
    throw new LesionError('config', 'the simulation starts from built-in or random weights; model.init "user" is not supported');
  }
  const model = buildDeepLabV3(card.model, 'train', card.seed);
  await initialiseEncoder(card, model, undefined, () => {});
  return model;
}

/** The N images the strategy ranks first (the random one needs no model pass). */
async function pick(
  model: tf.LayersModel,
  remaining: Sample[],
  strategy: AcquisitionScore,
  n: number,
  cache: PixelCache,
  options: { batchSize: number; seed: number; mcPasses: number },
): Promise<Sample[]> {
  const images: RgbImage[] = [];
  const kept: Sample[] = [];
  for (const sample of remaining) {
    const loaded = await cache.image(sample);
    if (loaded) {
      images.push(loaded.image);
      kept.push(sample);
    }
  }
  const scores = strategy === 'random' ? [] : await scoreImages(model, images, kept.map((s) => s.image), options);
  const value = (i: number): number => (strategy === 'random' ? randomScore(options.seed, kept[i].image) : scoreOf(scores[i], strategy));
  return rankBy(kept.map((_, i) => i), value)
    .slice(0, n)
    .map((ranked) => kept[ranked.item]);
}
