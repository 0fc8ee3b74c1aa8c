/**
 * "Fine-tune with my new labels", with its control. From a stage's best
 * checkpoint, the same schedule (the card, its seed, `epochs` epochs, the
 * run's validation rule for the best epoch) runs twice:
 *
 * - with the labels: the run's training images plus the new labels;
 * - without them (the control): the run's training images alone. The new
 *   labels' images are left out, not kept with an empty or predicted mask:
 *   an empty mask teaches "no lesion here" and a predicted one teaches the
 *   model its own guess, either of which would make the labels look better
 *   or worse than they are. Each epoch is floor(images / batch) steps, so the
 *   control runs as many steps unless the labels fill another batch.
 *
 * Both arms and the stage before are scored on the run's test images
 * (validation when it has none), and the headline is the paired difference
 * with minus without (compareArms): more epochs alone move the figures too,
 * and only the control tells that apart from what the labels bought.
 *
 * New labels are labeled images the run's split does not name; labels of its
 * validation or test images are refused (they would be scored on). Checkpoints
 * and results live in a store apart from the run's, keyed by run and stage.
 */
import type * as tf from '@tensorflow/tfjs';
import type { RunCard } from '../config.ts';
import type { Sample } from '../dataset/layouts.ts';
import { itemFromSample, PixelCache, type TrainItem } from '../dataset/samples.ts';
import { LesionError } from '../errors.ts';
import type { EventSink } from '../events.ts';
import type { FileSource, KeyValueStore, PixelDecoder } from '../io.ts';
import { buildDeepLabV3, copyWeights } from '../model/deeplab.ts';
import { FINE_TUNE_ARMS, type FineTuneArmName } from '../run/display.ts';
import { exportBuild, exportMetadata, type FineTuneArm, type FineTuneResult } from '../run/pipeline.ts';
import { modelFiles, type ProductFile } from '../run/products.ts';
import { RunStore, type TrainingStage } from '../run/run-store.ts';
import { samplesByKey, withStageModel } from '../run/stage-model.ts';
import { modelName, scoredImages, type ModelScores } from '../run/compare-models.ts';
import { withIntervals } from '../scoring/bootstrap.ts';
import { compareArms } from '../scoring/compare.ts';
import { evaluate } from '../scoring/evaluate.ts';
import type { ImageScore } from '../scoring/metrics.ts';
import { CheckpointStore } from '../training/checkpoint.ts';
import { RunControl } from '../training/control.ts';
import { trainStage } from '../training/train.ts';

export type { FineTuneResult };


export interface FineTuneHost {
  source: FileSource;
  decoder: PixelDecoder;
  /** The runs' store: the stage's checkpoint, and the pixel cache. */
  runs: KeyValueStore;
  /** The fine-tunes' own store. */
  store: KeyValueStore;
  /** Warnings about unreadable files, as a run reports them. */
  emit?: EventSink;
}

export interface FineTuneRequest {
  runId: string;
  stage: TrainingStage;
  epochs: number;
  /** Root folders the run was trained on, named when its images are not open. */
  roots: string[];
  /** The labeled images of the open data, the run's own among them. */
  labeled: readonly Sample[];
  /** Labeled images offered as new labels; those the run's split names are not. */
  newLabels: readonly Sample[];
}

/** Steps of the arm running now, from 1. */
export type FineTuneProgress = (arm: FineTuneArmName, step: number, totalSteps: number) => void;

const resultKey = (runId: string, stage: TrainingStage): string => `result/${runId}/${stage}`;
const perImageKey = (runId: string, stage: TrainingStage, arm: FineTuneArmName): string => `per-image/${runId}/${stage}/${arm}`;
const checkpointsOf = (store: KeyValueStore, runId: string, stage: TrainingStage, arm: FineTuneArmName): CheckpointStore =>
  new CheckpointStore(store, arm === 'with' ? `${runId}/${stage}` : `${runId}/${stage}/control`);

/** The stored result; one kept before fine-tunes had a control is not shown as if it had one. */
export async function fineTuneResult(store: KeyValueStore, runId: string, stage: TrainingStage): Promise<FineTuneResult | undefined> {
  const result = await store.get<FineTuneResult>(resultKey(runId, stage));
  return result?.labels ? result : undefined;
}

/** An arm's score on each scored image, for Compare. */
export function fineTunePerImage(store: KeyValueStore, runId: string, stage: TrainingStage, arm: FineTuneArmName): Promise<ImageScore[] | undefined> {
  return store.get<ImageScore[]>(perImageKey(runId, stage, arm));
}

/** An arm of the stage's fine-tune as Compare reads a model (core/run/compare-models.ts). */
export async function fineTuneScores(runs: KeyValueStore, store: KeyValueStore, runId: string, stage: TrainingStage, arm: FineTuneArmName): Promise<ModelScores> {
  const [result, perImage, card] = await Promise.all([fineTuneResult(store, runId, stage), fineTunePerImage(store, runId, stage, arm), new RunStore(runs, runId).card()]);
  if (!result || !perImage || !card) throw new LesionError('storage', `run ${runId} has no fine-tune of its ${stage}`);
  const name = `${modelName(card, stage)}, fine-tuned ${FINE_TUNE_ARMS[arm]}`;
  const { curve } = arm === 'with' ? result.withLabels : result.withoutLabels;
  return { key: `${runId}/${stage}/${arm}`, name, runId, stage, card, images: scoredImages(perImage, name), curve };
}

/** Forgets a deleted run's fine-tunes. */
export async function deleteFineTunes(store: KeyValueStore, runId: string): Promise<void> {
  const prefixes = [`${runId}/`, `result/${runId}/`, `per-image/${runId}/`];
  for (const prefix of prefixes) for (const key of await store.keys(prefix)) await store.delete(key);
}

export async function fineTune(host: FineTuneHost, request: FineTuneRequest, onProgress: FineTuneProgress = () => {}): Promise<FineTuneResult> {
  const { runId, stage, epochs } = request;
  const run = new RunStore(host.runs, runId);
  const [state, card] = await Promise.all([run.state(), run.card()]);
  if (!state || !card) throw new LesionError('storage', `run ${runId} is not stored here`);
  const find = (keys: string[]): Sample[] => samplesByKey(request.labeled, keys, request.roots);
  const named = new Set([...state.split.train, ...state.split.val, ...state.split.test]);
  const expert = request.newLabels.filter((s) => s.mask !== undefined && !named.has(`${s.set}/${s.id}`));
  if (expert.length === 0) {
    throw new LesionError('dataset', 'no new label to fine-tune with: every labeled image given is already in the run\'s split (labels of its validation or test images are not trained on)');
  }
  const runTrain = find(state.split.train).map(itemFromSample);
  const val = find(state.split.val).map(itemFromSample);
  const split = state.split.test.length > 0 ? 'test' : 'val';
  const scored = find(state.split[split]).map(itemFromSample);
  const size = card.model.inputSize;
  const emit = host.emit ?? (() => {});
  const cache = new PixelCache(host.source, host.decoder, host.runs, { width: size, height: size }, emit);
  const schedule: RunCard = { ...card, train: { ...card.train, epochs } };

  return withStageModel(run, stage, 'best', async (start, readout) => {
    // Both arms are read as the stage they start from (the card's TTA and the stage's validated
    // post-processing decision): they validate no decision of their own, and before, without and
    // with must differ by their weights alone.
    const score = async (model: tf.LayersModel): Promise<{ figures: FineTuneResult['before']; perImage: ImageScore[] }> => {
      const { overall } = await evaluate(model, scored, cache, { ...readout, batchSize: card.train.batchSize });
      return { figures: withIntervals(overall), perImage: overall.perImage };
    };
    const before = await score(start);
    const arm = async (name: FineTuneArmName, train: TrainItem[]): Promise<{ arm: FineTuneArm; perImage: ImageScore[] }> => {
      const model = buildDeepLabV3(card.model, 'train', card.seed);
      try {
        copyWeights(start, model);
        const checkpoints = checkpointsOf(host.store, runId, stage, name);
        const curve: FineTuneArm['curve'] = [];
        const outcome = await trainStage({
          stage,
          card: schedule,
          model,
          train,
          val,
          cache,
          checkpoints,
          emit: (event) => {
            if (event.type === 'step') onProgress(name, event.step, event.totalSteps);
            else if (event.type === 'epoch') curve.push({ epoch: event.epoch, metrics: event.metrics });
            else if (event.type === 'warning') emit(event);
          },
          control: new RunControl(),
          resume: false,
        });
        // The arm's best epoch by the run's validation rule, as a stage exports it.
        await checkpoints.load('best', model);
        const { figures, perImage } = await score(model);
        return { arm: { train: train.length, bestEpoch: outcome.bestEpoch, curve, scores: figures }, perImage };
      } finally {
        model.dispose();
      }
    };
    const withLabels = await arm('with', [...runTrain, ...expert.map(itemFromSample)]);
    const withoutLabels = await arm('without', runTrain);
    const result: FineTuneResult = {
      runId,
      stage,
      epochs,
      split,
      expertLabels: expert.length,
      scored: before.perImage.length,
      before: before.figures,
      withLabels: withLabels.arm,
      withoutLabels: withoutLabels.arm,
      labels: compareArms([
        { name: FINE_TUNE_ARMS.without, runs: [{ name: 'control', images: withoutLabels.perImage }] },
        { name: FINE_TUNE_ARMS.with, runs: [{ name: 'fine-tune', images: withLabels.perImage }] },
      ]),
      finishedAt: new Date().toISOString(),
    };
    await host.store.set(perImageKey(runId, stage, 'with'), withLabels.perImage);
    await host.store.set(perImageKey(runId, stage, 'without'), withoutLabels.perImage);
    await host.store.set(resultKey(runId, stage), result);
    return result;
  });
}

/**
 * The with-labels arm's best epoch as a model export (the stage's own files,
 * with the fine-tune's result in metadata.json), on the caller's backend.
 */
export async function fineTunedModelFiles(runs: KeyValueStore, store: KeyValueStore, runId: string, stage: TrainingStage): Promise<ProductFile[]> {
  const run = new RunStore(runs, runId);
  const [result, card, state] = await Promise.all([fineTuneResult(store, runId, stage), run.card(), run.state()]);
  if (!result || !card) throw new LesionError('storage', `run ${runId} has no fine-tune of its ${stage}; fine-tune it first`);
  const model = await exportBuild(card, checkpointsOf(store, runId, stage, 'with'), 'best', `the fine-tune of run ${runId}'s ${stage} has no checkpoint`);
  // Its readout is the stage's, post-processing decision included, so eval and predict read the
  // weights as the fine-tune scored them; the stage's own results are not these weights'.
  const stageMetadata = exportMetadata(card, stage, state?.results.find((r) => r.stage === stage) ?? null);
  try {
    return await modelFiles(model, { ...stageMetadata, results: null, fineTune: result });
  } finally {
    model.dispose();
  }
}
