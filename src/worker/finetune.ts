/**
 * "Fine-tune with my new labels": a short schedule that continues from a
 * run's best checkpoint on the run's own training images plus the expert
 * labels drawn since (those not in the run's validation or test parts), and
 * scores the model before and after on the run's test split (validation when
 * it has none), with the same code, so the two figures compare.
 *
 * Its checkpoints and result live in the `finetunes` database, keyed by run
 * and stage: the run's own records stay as the run left them.
 */
import type * as tf from '@tensorflow/tfjs';
import { CheckpointStore } from '../core/checkpoint.ts';
import type { RunCard } from '../core/config.ts';
import { RunControl } from '../core/control.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import { evaluate, summary } from '../core/evaluate.ts';
import type { MetricSummary } from '../core/events.ts';
import type { KeyValueStore } from '../core/io.ts';
import { hasExpertLabel } from '../core/labels.ts';
import { buildDeepLabV3, copyWeights } from '../core/model/deeplab.ts';
import { RunStore, type RunState, type TrainingStage } from '../core/run-store.ts';
import { itemFromSample, PixelCache, type TrainItem } from '../core/samples.ts';
import { trainStage } from '../core/train.ts';
import type { FineTuneResult, TaskProgressSink } from './api.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder } from './decode.ts';
import { samplesByKey, withStageModel } from './results.ts';

const resultKey = (runId: string, stage: TrainingStage): string => `result/${runId}/${stage}`;

export function fineTuneResult(store: KeyValueStore, runId: string, stage: TrainingStage): Promise<FineTuneResult | undefined> {
  return store.get<FineTuneResult>(resultKey(runId, stage));
}

/** Forgets a deleted run's fine-tunes. */
export async function deleteFineTunes(store: KeyValueStore, runId: string): Promise<void> {
  for (const key of [...(await store.keys(`${runId}/`)), ...(await store.keys(`result/${runId}/`))]) await store.delete(key);
}

export async function fineTune(
  runs: KeyValueStore,
  store: KeyValueStore,
  dataset: OpenDataset,
  run: { state: RunState; card: RunCard; roots: string[] },
  stage: TrainingStage,
  epochs: number,
  onProgress: TaskProgressSink,
): Promise<FineTuneResult> {
  const { state, card } = run;
  const labeled = dataset.inputs().labeled;
  const find = (keys: string[]): Sample[] => samplesByKey(dataset, keys, run.roots);
  const heldOut = new Set([...state.split.val, ...state.split.test]);
  const known = new Set(state.split.train);
  const expert = labeled.filter((s) => hasExpertLabel(s) && !heldOut.has(`${s.set}/${s.id}`) && !known.has(`${s.set}/${s.id}`));
  if (expert.length === 0) {
    throw new LesionError('dataset', 'no new expert label to fine-tune with: draw masks in the Label view first (labels of the run\'s validation or test images are not trained on)');
  }
  const train: TrainItem[] = [...find(state.split.train), ...expert].map(itemFromSample);
  const val = find(state.split.val).map(itemFromSample);
  const split = state.split.test.length > 0 ? 'test' : 'val';
  const scored = find(state.split[split]).map(itemFromSample);
  const size = card.model.inputSize;
  const cache = new PixelCache(dataset.source, new BitmapDecoder(), runs, { width: size, height: size }, () => {});
  const score = async (model: tf.LayersModel): Promise<MetricSummary> =>
    summary((await evaluate(model, scored, cache, { batchSize: card.train.batchSize, logitThreshold: card.eval.logitThreshold })).overall);

  return withStageModel(new RunStore(runs, state.runId), stage, 'best', async (exported) => {
    const before = await score(exported);
    const model = buildDeepLabV3(card.model, 'train', card.seed);
    try {
      copyWeights(exported, model);
      const checkpoints = new CheckpointStore(store, `${state.runId}/${stage}`);
      await trainStage({
        stage,
        card: { ...card, train: { ...card.train, epochs } },
        model,
        train,
        val,
        cache,
        checkpoints,
        emit: (event) => {
          if (event.type === 'step') onProgress(event.step, event.totalSteps);
        },
        control: new RunControl(),
        resume: false,
      });
      // The fine-tune's best epoch by the run's validation rule, as a stage exports it.
      await checkpoints.load('best', model);
      const result: FineTuneResult = {
        runId: state.runId,
        stage,
        epochs,
        split,
        expertLabels: expert.length,
        train: train.length,
        scored: scored.length,
        before,
        after: await score(model),
        finishedAt: new Date().toISOString(),
      };
      await store.set(resultKey(state.runId, stage), result);
      return result;
    } finally {
      model.dispose();
    }
  });
}
