/**
 * Looking at what a run produced: per-image scores with overlays, the
 * pseudo-labels for review, and predictions on any image. The stage's model
 * is loaded from its best checkpoint in the export build, the same network
 * the exported files hold.
 */
import type * as tf from '@tensorflow/tfjs';
import type { RunCard } from '../core/config.ts';
import { loadSample } from '../core/dataset/loader.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import type { PseudoLabelRecord } from '../core/events.ts';
import type { BinaryMask, KeyValueStore } from '../core/io.ts';
import { binariseLogits, confusion, lesionDice, lesionJaccard } from '../core/metrics.ts';
import { loadStageModel, runKey, type RunState, type TrainingStage } from '../core/pipeline.ts';
import { predictLogits } from '../core/predict.ts';
import type { StoredMask } from '../core/samples.ts';
import type { GalleryItem, PredictionView, PseudoLabelView, TaskProgressSink } from './api.ts';
import { ensureBackend } from './backend.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder, decodeBitmap } from './decode.ts';
import { comparisonOverlay, errorOverlay, fitWithin, maskOverlay, maskPng, rgbBitmap } from './imaging.ts';

const decoder = new BitmapDecoder();

/** Runs `use` with the stage's best model on a started backend, and frees the model after. */
export async function withStageModel<T>(
  store: KeyValueStore,
  card: RunCard,
  runId: string,
  stage: TrainingStage,
  kind: 'best' | 'latest',
  use: (model: tf.LayersModel) => Promise<T>,
): Promise<T> {
  await ensureBackend(card.backend);
  const { model } = await loadStageModel(store, runId, stage, kind);
  try {
    return await use(model);
  } finally {
    model.dispose();
  }
}

/** The run's labeled samples by the key the pipeline stored them under. */
function samplesByKey(dataset: OpenDataset | undefined, keys: string[], roots: string[]): Sample[] {
  const byKey = new Map((dataset?.inputs().labeled ?? []).map((s) => [`${s.set}/${s.id}`, s]));
  const found = keys.map((key) => byKey.get(key));
  const missing = found.filter((s) => s === undefined).length;
  if (missing > 0) {
    throw new LesionError('dataset', `${missing} of this run's images are not in the open data set; open ${roots.join(', ') || 'the folders it was trained on'} first`);
  }
  return found as Sample[];
}

export async function gallery(
  store: KeyValueStore,
  dataset: OpenDataset | undefined,
  run: { state: RunState; card: RunCard; roots: string[] },
  stage: TrainingStage,
  onProgress: TaskProgressSink,
): Promise<GalleryItem[]> {
  const { state, card } = run;
  const split = state.split.test.length > 0 ? 'test' : 'val';
  const samples = samplesByKey(dataset, state.split[split], run.roots);
  const size = { width: card.model.inputSize, height: card.model.inputSize };
  const batch = card.train.batchSize;
  return withStageModel(store, card, state.runId, stage, 'best', async (model) => {
    const items: GalleryItem[] = [];
    for (let start = 0; start < samples.length; start += batch) {
      const chunk = samples.slice(start, start + batch);
      const loaded = await Promise.all(chunk.map((sample) => loadSample(sample, dataset!.source, decoder, size)));
      const logits = await predictLogits(model, loaded.map((l) => l.image), { batchSize: batch });
      chunk.forEach((sample, i) => {
        const truth = loaded[i].mask!;
        const prediction: BinaryMask = { ...size, data: binariseLogits(logits[i], card.eval.logitThreshold) };
        const c = confusion(prediction.data, truth.data);
        items.push({
          id: sample.id,
          set: sample.set,
          image: sample.image,
          split,
          lesionIoU: lesionJaccard(c),
          dice: lesionDice(c),
          bitmap: rgbBitmap(loaded[i].image),
          overlay: comparisonOverlay(prediction, truth),
          errors: errorOverlay(prediction, truth),
        });
      });
      onProgress(Math.min(samples.length, start + batch), samples.length);
    }
    return items;
  });
}

export async function pseudoLabelViews(
  store: KeyValueStore,
  dataset: OpenDataset | undefined,
  runId: string,
  stage: 'pseudo-teacher' | 'pseudo-student',
  limit: number,
): Promise<PseudoLabelView[]> {
  const records = (await store.get<PseudoLabelRecord[]>(runKey(runId, `pseudo/${stage}`))) ?? [];
  const rejected = new Set(await rejectedImages(store, runId));
  const sorted = [...records].sort((a, b) => b.uncertainty - a.uncertainty).slice(0, limit);
  const canShow = dataset !== undefined && new Set(dataset.files).has(sorted[0]?.image ?? '');
  return Promise.all(
    sorted.map(async (record): Promise<PseudoLabelView> => {
      const view: PseudoLabelView = { ...record, rejected: rejected.has(record.image) };
      if (!canShow) return view;
      const mask = await store.get<StoredMask>(record.key);
      if (!mask) return view;
      const { image } = await loadSample(
        { id: record.id, set: '', layout: 'unlabeled', split: 'unspecified', image: record.image },
        dataset.source,
        decoder,
        { width: mask.width, height: mask.height },
      );
      return { ...view, bitmap: rgbBitmap(image), overlay: maskOverlay(mask) };
    }),
  );
}

export async function rejectedImages(store: KeyValueStore, runId: string): Promise<string[]> {
  return (await store.get<string[]>(runKey(runId, 'rejected'))) ?? [];
}

export async function setRejected(store: KeyValueStore, runId: string, image: string, rejected: boolean): Promise<void> {
  const current = new Set(await rejectedImages(store, runId));
  if (rejected) current.add(image);
  else current.delete(image);
  await store.set(runKey(runId, 'rejected'), [...current].sort());
}

/** Any image, any size: the model sees it resized to its input; the mask comes back at the image's own size. */
export async function predictFile(
  store: KeyValueStore,
  card: RunCard,
  runId: string,
  stage: TrainingStage,
  name: string,
  bytes: Uint8Array,
  displaySize: number,
): Promise<PredictionView> {
  const side = card.model.inputSize;
  const decoded = await decoder.decode({ path: name, bytes, resize: { width: side, height: side, filter: 'bilinear' } });
  const rgb = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) rgb.set(decoded.pixels.data.subarray(i * 4, i * 4 + 3), i * 3);
  const [logits] = await withStageModel(store, card, runId, stage, 'best', (model) =>
    predictLogits(model, [{ width: side, height: side, data: rgb }], { batchSize: 1 }),
  );
  const small: BinaryMask = { width: side, height: side, data: binariseLogits(logits, card.eval.logitThreshold) };
  const lesion = small.data.reduce((n, v) => n + v, 0);

  const full = resizeMask(small, decoded.sourceWidth, decoded.sourceHeight);
  const fit = fitWithin(decoded.sourceWidth, decoded.sourceHeight, displaySize);
  const original = await decodeBitmap(name, bytes);
  const bitmap = await createImageBitmap(original, { resizeWidth: fit.width, resizeHeight: fit.height, resizeQuality: 'high' });
  original.close();
  const stem = name.replace(/^.*\//, '').replace(/\.[^.]+$/, '');
  return {
    name,
    bitmap,
    overlay: maskOverlay(resizeMask(small, fit.width, fit.height)),
    lesionFraction: lesion / (side * side),
    maskPng: await maskPng(full),
    maskName: `${stem}_segmentation.png`,
  };
}

/** Nearest-neighbour resize, so a mask stays exactly 0/1. */
export function resizeMask(mask: BinaryMask, width: number, height: number): BinaryMask {
  if (mask.width === width && mask.height === height) return mask;
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(mask.height - 1, Math.floor(((y + 0.5) * mask.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(mask.width - 1, Math.floor(((x + 0.5) * mask.width) / width));
      data[y * width + x] = mask.data[sy * mask.width + sx];
    }
  }
  return { width, height, data };
}
