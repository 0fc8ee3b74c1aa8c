/**
 * Active learning in the worker: the acquisition queue (the core's ranking,
 * rankPool, with thumbnails and overlays), the editor's task (the image at
 * its own resolution with the model's mask or the saved label), saving expert
 * labels, and exporting them in the ISIC layout.
 */
import { rankPool } from '../core/active/rank.ts';
import type { RunCard } from '../core/config.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import type { KeyValueStore } from '../core/io.ts';
import { ExpertLabelSource, type ExpertLabel, type LabelStore } from '../core/active/labels.ts';
import { resizeMask } from '../core/image/resize.ts';
import { expertLabelFiles, predictionMask } from '../core/run/products.ts';
import { RunStore } from '../core/run/run-store.ts';
import { predictUpload } from '../core/run/stage-model.ts';
import type { ExportedFile, LabelSave, LabelTask, QueueItem, QueueRequest, TaskProgressSink, TrainingStage } from './api.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder, decodeBitmap } from './decode.ts';
import { exported } from './exports.ts';
import { maskOverlay } from './imaging.ts';

const decoder = new BitmapDecoder();

/** The data set as runs see it: with the expert labels among the labeled images. */
export async function labeledDataset(dataset: OpenDataset, labels: LabelStore): Promise<OpenDataset> {
  const images = await labels.images();
  return images.size === 0 ? dataset : dataset.withLabels(new ExpertLabelSource(dataset.source, labels, images), images);
}

/** Pool images: the unlabeled images of the open data set, before any expert label moves them. */
function pool(dataset: OpenDataset): Sample[] {
  return dataset.inputs().unlabeled;
}

export async function acquisitionQueue(
  runs: KeyValueStore,
  labels: LabelStore,
  dataset: OpenDataset,
  request: QueueRequest,
  onProgress: TaskProgressSink,
): Promise<QueueItem[]> {
  const samples = pool(dataset);
  if (samples.length === 0) throw new LesionError('dataset', 'the open data set has no unlabeled images to rank; mark a folder as an unlabeled pool in the Dataset view');
  const { ranked } = await rankPool({ source: dataset.source, decoder, runs }, samples, request, onProgress);
  const labeled = await labels.images();
  return Promise.all(
    ranked.slice(0, request.limit).map(async ({ sample, rank, value, why, scores, mask, lesionFraction }) => {
      const thumb = await dataset.thumbnail({ ...sample, mask: undefined }, request.size);
      return {
        id: sample.id,
        set: sample.set,
        image: sample.image,
        rank,
        value,
        why,
        scores,
        lesionFraction,
        labeled: labeled.has(sample.image),
        bitmap: thumb.bitmap,
        overlay: thumb.error ? undefined : maskOverlay(resizeMask(mask, thumb.bitmap.width, thumb.bitmap.height)),
      } satisfies QueueItem;
    }),
  );
}

/**
 * The image at its own resolution, with what the editor may start from: the
 * stage's prediction (nearest-resized to the image) and the saved label.
 */
export async function labelTask(
  runs: KeyValueStore,
  labels: LabelStore,
  dataset: OpenDataset,
  image: string,
  model: { runId: string; stage: TrainingStage; card: RunCard } | undefined,
): Promise<LabelTask> {
  const sample = pool(dataset).find((s) => s.image === image);
  if (!sample) throw new LesionError('dataset', 'is not an unlabeled image of the open data set', image);
  const bytes = await dataset.source.read(image);
  const bitmap = await decodeBitmap(image, bytes);
  const { width, height } = bitmap;
  let prediction: ArrayBuffer | undefined;
  if (model) {
    const { card } = model;
    const { prediction: predicted, readout } = await predictUpload(new RunStore(runs, model.runId), card, model.stage, image, bytes, decoder);
    prediction = predictionMask(predicted.logits, card.model.inputSize, width, height, readout).data.slice().buffer;
  }
  const saved = await labels.get(image);
  if (saved && (saved.width !== width || saved.height !== height)) {
    throw new LesionError('dataset', `its saved expert label is ${saved.width}x${saved.height} but the image is ${width}x${height}; was the file replaced?`, image);
  }
  return {
    id: sample.id,
    set: sample.set,
    image,
    width,
    height,
    bitmap,
    prediction,
    label: saved && { data: saved.data.slice().buffer, author: saved.author, note: saved.note, savedAt: saved.savedAt, startedFrom: saved.startedFrom },
  };
}

export async function saveLabel(labels: LabelStore, dataset: OpenDataset, save: LabelSave): Promise<void> {
  const sample = pool(dataset).find((s) => s.image === save.image);
  if (!sample) throw new LesionError('dataset', 'is not an unlabeled image of the open data set', save.image);
  const label: ExpertLabel = {
    image: save.image,
    id: sample.id,
    set: sample.set,
    width: save.width,
    height: save.height,
    data: new Uint8Array(save.data),
    author: save.author,
    note: save.note,
    savedAt: new Date().toISOString(),
    startedFrom: save.startedFrom,
  };
  await labels.save(label);
}

/** The core's expert-label files (core/run/products.ts) under `expert-labels/`. */
export async function exportExpertLabels(labels: LabelStore): Promise<ExportedFile[]> {
  const all = await labels.all();
  if (all.length === 0) throw new LesionError('storage', 'no expert label is saved in this browser yet');
  return expertLabelFiles(all).map((f) => exported(f, `expert-labels/${f.name}`));
}
