/**
 * Looking at what a run produced: per-image scores with overlays, the
 * pseudo-labels for review, and predictions on any image, drawn as bitmaps
 * around the core's stage model (core/run/stage-model.ts).
 */
import type { RunCard } from '../core/config.ts';
import { loadSample, type LoadedSample } from '../core/dataset/loader.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import type { BinaryMask } from '../core/io.ts';
import { confusion, lesionDice, lesionJaccard, type ImageScore } from '../core/scoring/metrics.ts';
import { readMask } from '../core/scoring/readout.ts';
import type { TrainingStage } from '../core/run/pipeline.ts';
import { predictUpload, samplesByKey, withStageModel } from '../core/run/stage-model.ts';
import { predictLogits } from '../core/scoring/predict.ts';
import { predictionMask } from '../core/run/products.ts';
import type { PseudoStage, RunState, RunStore } from '../core/run/run-store.ts';
import type { GalleryItem, PredictionView, PseudoLabelView, TaskProgressSink } from './api.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder, decodeBitmap } from './decode.ts';
import { exported } from './exports.ts';
import { comparisonOverlay, errorOverlay, fitWithin, maskOverlay, rgbBitmap } from './imaging.ts';

const decoder = new BitmapDecoder();

/**
 * The held-out images with their prediction and ground truth. The test part
 * was scored when the stage ended: its stored predictions and per-image
 * scores are drawn as they are, without the model. Validation images (a run
 * without a test part) and runs stored before predictions were kept are
 * predicted here.
 */
export async function gallery(
  store: RunStore,
  dataset: OpenDataset | undefined,
  run: { state: RunState; card: RunCard; roots: string[] },
  stage: TrainingStage,
  onProgress: TaskProgressSink,
): Promise<GalleryItem[]> {
  const { state, card } = run;
  const split = state.split.test.length > 0 ? 'test' : 'val';
  const samples = samplesByKey(dataset?.inputs().labeled ?? [], state.split[split], run.roots);
  const size = { width: card.model.inputSize, height: card.model.inputSize };
  const batch = card.train.batchSize;
  const [scores, predictions] = split === 'test' ? await Promise.all([store.perImage(stage), store.testPredictions(stage)]) : [];
  const items: GalleryItem[] = [];
  const add = (sample: Sample, loaded: LoadedSample, prediction: BinaryMask, score: Pick<ImageScore, 'lesionIoU' | 'dice'>): void => {
    const truth = loaded.mask!;
    items.push({
      id: sample.id,
      set: sample.set,
      image: sample.image,
      split,
      lesionIoU: score.lesionIoU,
      dice: score.dice,
      bitmap: rgbBitmap(loaded.image),
      overlay: comparisonOverlay(prediction, truth),
      errors: errorOverlay(prediction, truth),
    });
  };
  const chunk = (start: number): Sample[] => samples.slice(start, start + batch);
  const leftOut = (error: unknown): undefined => {
    if (error instanceof LesionError) return undefined;
    throw error;
  };
  const each = async (scoreChunk: (chunk: Sample[], loaded: LoadedSample[]) => Promise<void>): Promise<GalleryItem[]> => {
    for (let start = 0; start < samples.length; start += batch) {
      // A pair the stage left out (an unreadable file, a mask of another aspect than its image) is not shown either.
      const got = await Promise.all(chunk(start).map((sample) => loadSample(sample, dataset!.source, decoder, size).catch(leftOut)));
      const kept = chunk(start).filter((_, i) => got[i] !== undefined);
      if (kept.length > 0) await scoreChunk(kept, got.filter((l): l is LoadedSample => l !== undefined));
      onProgress(Math.min(samples.length, start + batch), samples.length);
    }
    return items;
  };
  if (scores && predictions) {
    const scoreOf = new Map(scores.map((s) => [s.id, s]));
    return each(async (chunk, loaded) => {
      chunk.forEach((sample, i) => {
        const prediction = predictions.get(sample.id);
        const score = scoreOf.get(sample.id);
        // An image the stage could not read when it was tested has no score: it is not shown.
        if (prediction && score) add(sample, loaded[i], prediction, score);
      });
    });
  }
  return withStageModel(store, stage, 'best', (model, readout) =>
    each(async (chunk, loaded) => {
      const logits = await predictLogits(model, loaded.map((l) => l.image), { batchSize: batch, tta: readout.tta });
      chunk.forEach((sample, i) => {
        const prediction: BinaryMask = { ...size, data: readMask(logits[i], size.width, size.height, readout) };
        const c = confusion(prediction.data, loaded[i].mask!.data);
        add(sample, loaded[i], prediction, { lesionIoU: lesionJaccard(c), dice: lesionDice(c) });
      });
    }),
  );
}

export async function pseudoLabelViews(
  run: RunStore,
  dataset: OpenDataset | undefined,
  stage: PseudoStage,
  limit: number,
): Promise<PseudoLabelView[]> {
  const records = await run.pseudoLabels(stage);
  const rejected = new Set(await run.rejected());
  const sorted = [...records].sort((a, b) => b.uncertainty - a.uncertainty).slice(0, limit);
  const canShow = dataset !== undefined && new Set(dataset.files).has(sorted[0]?.image ?? '');
  return Promise.all(
    sorted.map(async (record): Promise<PseudoLabelView> => {
      const view: PseudoLabelView = { ...record, rejected: rejected.has(record.image) };
      if (!canShow) return view;
      const mask = await run.mask(record.key);
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

/**
 * Any image, any size: the model sees it resized to its input, and the mask
 * comes back at the image's own size by the core's prediction product, the
 * one `lesion-studio predict` writes.
 */
export async function predictFile(run: RunStore, card: RunCard, stage: TrainingStage, name: string, bytes: Uint8Array, displaySize: number): Promise<PredictionView> {
  const side = card.model.inputSize;
  const { prediction, readout, width, height, warnings } = await predictUpload(run, card, stage, name, bytes, decoder);
  const fit = fitWithin(width, height, displaySize);
  const original = await decodeBitmap(name, bytes);
  const bitmap = await createImageBitmap(original, { resizeWidth: fit.width, resizeHeight: fit.height, resizeQuality: 'high' });
  original.close();
  const { name: maskName, bytes: maskPng } = exported(prediction.file);
  return {
    name,
    bitmap,
    overlay: maskOverlay(predictionMask(prediction.logits, side, fit.width, fit.height, readout)),
    lesionFraction: prediction.lesionFraction,
    maskPng,
    maskName,
    warnings: warnings.map((w) => w.message),
  };
}
