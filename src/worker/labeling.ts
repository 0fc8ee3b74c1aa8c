/**
 * Active learning in the worker: the acquisition queue (pool images ranked
 * by a score from a run's best checkpoint), the editor's task (the image at
 * its own resolution with the model's mask or the saved label), saving expert
 * labels, and exporting them in the ISIC layout.
 */
import { explainRank, median, rankBy, scoreImages, scoreOf, type ImageScores } from '../core/active/acquisition.ts';
import type { RunCard } from '../core/config.ts';
import { loadSample } from '../core/dataset/loader.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import type { BinaryMask, KeyValueStore, RgbImage } from '../core/io.ts';
import { ExpertLabelSource, type ExpertLabel, type LabelStore } from '../core/active/labels.ts';
import { binariseLogits } from '../core/scoring/metrics.ts';
import { buildDeepLabV3, copyWeights } from '../core/model/deeplab.ts';
import { predictLogits } from '../core/scoring/predict.ts';
import { resizeMask } from '../core/image/resize.ts';
import { expertLabelFiles, predictionMask } from '../core/run/products.ts';
import { RunStore } from '../core/run/run-store.ts';
import type { ExportedFile, LabelSave, LabelTask, QueueItem, QueueRequest, TaskProgressSink, TrainingStage } from './api.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder, decodeBitmap } from './decode.ts';
import { exported } from './exports.ts';
import { maskOverlay } from './imaging.ts';
import { withStageModel } from './results.ts';

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
  card: RunCard,
  request: QueueRequest,
  onProgress: TaskProgressSink,
): Promise<QueueItem[]> {
  const samples = pool(dataset);
  if (samples.length === 0) throw new LesionError('dataset', 'the open data set has no unlabeled images to rank; mark a folder as an unlabeled pool in the Dataset view');
  const size = { width: card.model.inputSize, height: card.model.inputSize };
  const batch = card.train.batchSize;
  const labeled = await labels.images();
  const scored = await withStageModel(new RunStore(runs, request.runId), request.stage, 'best', async (exportModel) => {
    // MC-dropout needs the training build: it holds the seeded dropout layer (the export build's is tfjs's own).
    const mc = request.score === 'mc-dropout' ? buildDeepLabV3(card.model, 'train', card.seed) : undefined;
    if (mc) copyWeights(exportModel, mc);
    const model = mc ?? exportModel;
    try {
      const out: { sample: Sample; scores: ImageScores; mask: BinaryMask }[] = [];
      for (let start = 0; start < samples.length; start += batch) {
        const chunk = samples.slice(start, start + batch);
        const loaded: { sample: Sample; image: RgbImage }[] = [];
        for (const sample of chunk) {
          // An unreadable image is left out of the queue; its thumbnail in the Dataset view says why.
          const got = await loadSample(sample, dataset.source, decoder, size).catch(() => undefined);
          if (got) loaded.push({ sample, image: got.image });
        }
        if (loaded.length === 0) continue;
        const images = loaded.map((l) => l.image);
        const scores = await scoreImages(model, images, loaded.map((l) => l.sample.image), { batchSize: batch, seed: card.seed, mcPasses: mc ? request.mcPasses : 0, keepLogits: true });
        loaded.forEach((l, i) => {
          const { logits, ...kept } = scores[i];
          out.push({ sample: l.sample, scores: kept, mask: { ...size, data: binariseLogits(logits!, card.eval.logitThreshold) } });
        });
        onProgress(Math.min(start + batch, samples.length), samples.length);
      }
      return out;
    } finally {
      mc?.dispose();
    }
  });
  const ranked = rankBy(scored, (s) => scoreOf(s.scores, request.score));
  const mid = median(ranked.map((r) => r.value));
  const shown = ranked.slice(0, request.limit);
  return Promise.all(
    shown.map(async ({ item, rank, value }) => {
      const thumb = await dataset.thumbnail({ ...item.sample, mask: undefined }, request.size);
      const lesion = item.mask.data.reduce((n, v) => n + v, 0);
      return {
        id: item.sample.id,
        set: item.sample.set,
        image: item.sample.image,
        rank,
        value,
        why: explainRank(item.scores, request.score, rank, ranked.length, mid),
        scores: item.scores,
        lesionFraction: lesion / item.mask.data.length,
        labeled: labeled.has(item.sample.image),
        bitmap: thumb.bitmap,
        overlay: thumb.error ? undefined : maskOverlay(resizeMask(item.mask, thumb.bitmap.width, thumb.bitmap.height)),
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
  const bitmap = await decodeBitmap(image, await dataset.source.read(image));
  const { width, height } = bitmap;
  let prediction: ArrayBuffer | undefined;
  if (model) {
    const { card } = model;
    const size = { width: card.model.inputSize, height: card.model.inputSize };
    const loaded = await loadSample(sample, dataset.source, decoder, size);
    const [logits] = await withStageModel(new RunStore(runs, model.runId), model.stage, 'best', (m) => predictLogits(m, [loaded.image], { batchSize: 1 }));
    prediction = predictionMask(logits, card.model.inputSize, width, height, card.eval.logitThreshold).data.slice().buffer;
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
