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
import { CheckpointStore } from '../core/training/checkpoint.ts';
import type { RunCard } from '../core/config.ts';
import { RunControl } from '../core/training/control.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import { evaluate, summary } from '../core/scoring/evaluate.ts';
import type { MetricSummary } from '../core/events.ts';
import type { KeyValueStore } from '../core/io.ts';
import { hasExpertLabel } from '../core/active/labels.ts';
import { buildDeepLabV3, copyWeights } from '../core/model/deeplab.ts';
import { RunStore, type RunState, type TrainingStage } from '../core/run/run-store.ts';
import { itemFromSample, PixelCache, type TrainItem } from '../core/dataset/samples.ts';
import { trainStage } from '../core/training/train.ts';
import { exportBuild, exportMetadata, type FineTuneResult } from '../core/run/pipeline.ts';
import { modelFiles } from '../core/run/products.ts';
import type { ExportedFile, TaskProgressSink } from './api.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder } from './decode.ts';
import { exported } from './exports.ts';
import { samplesByKey, withStageModel } from './results.ts';

const resultKey = (runId: string, stage: TrainingStage): string => `result/${runId}/${stage}`;
const checkpointsOf = (store: KeyValueStore, runId: string, stage: TrainingStage): CheckpointStore => new CheckpointStore(store, `${runId}/${stage}`);

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
      const checkpoints = checkpointsOf(store, state.runId, stage);
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

/** On the backend the caller started, like exportModel. Named `<run>-<stage>-finetuned/`, beside a stage's own export. */
export async function exportFineTunedModel(runs: KeyValueStore, store: KeyValueStore, runId: string, stage: TrainingStage): Promise<ExportedFile[]> {
  const result = await fineTuneResult(store, runId, stage);
  const card = await new RunStore(runs, runId).card();
  if (!result || !card) throw new LesionError('storage', `run ${runId} has no fine-tune of its ${stage}; fine-tune it in the Results view first`);
  const model = await exportBuild(card, checkpointsOf(store, runId, stage), 'best', `the fine-tune of run ${runId}'s ${stage} has no checkpoint`);
  try {
    const metadata = { ...exportMetadata(card, stage, null), fineTune: result };
    return (await modelFiles(model, metadata)).map((f) => exported(f, `${runId}-${stage}-finetuned/${f.name}`));
  } finally {
    model.dispose();
  }
}
