/**
 * Scores a model on labeled items with every metric, overall and per source
 * set (ISIC 2017, ISIC 2018, PH2, ...), at the training size as the paper does.
 */
import type * as tf from '@tensorflow/tfjs';
import { MetricAccumulator, type MetricReport } from './metrics.ts';
import { predictLogits } from './predict.ts';
import { largestLesionFilled, readMask, type Readout } from './readout.ts';
import type { PixelCache, Pixels, TrainItem } from '../dataset/samples.ts';

export interface Evaluation {
  overall: MetricReport;
  bySet: Record<string, MetricReport>;
  /** With `alsoPostprocessed`: the same predictions post-processed, to decide whether post-processing helps. */
  postprocessed?: MetricReport;
}

export async function evaluate(
  model: tf.LayersModel,
  items: TrainItem[],
  cache: PixelCache,
  options: Partial<Readout> & {
    batchSize: number;
    logitThreshold: number;
    alsoPostprocessed?: boolean;
    /** Hears each item's 0/1 prediction, as scored. */
    onPrediction?: (id: string, mask: Uint8Array) => void;
  },
): Promise<Evaluation> {
  const overall = new MetricAccumulator();
  const postprocessed = options.alsoPostprocessed ? new MetricAccumulator() : undefined;
  const bySet = new Map<string, MetricAccumulator>();
  for (let start = 0; start < items.length; start += options.batchSize) {
    const loaded: { item: TrainItem; pixels: Pixels }[] = [];
    for (const item of items.slice(start, start + options.batchSize)) {
      const pixels = await cache.get(item);
      if (pixels) loaded.push({ item, pixels });
    }
    if (loaded.length === 0) continue;
    const logits = await predictLogits(model, loaded.map((l) => l.pixels.image), options);
    const { width, height } = loaded[0].pixels.image;
    const readout = { logitThreshold: options.logitThreshold, postprocess: options.postprocess ?? false };
    const preds = logits.map((l) => readMask(l, width, height, readout));
    preds.forEach((mask, i) => options.onPrediction?.(loaded[i].item.id, mask));
    overall.addBatch(preds, loaded.map((l) => l.pixels.mask.data), loaded.map((l) => l.item.id));
    // Post-processing is idempotent: already post-processed predictions are scored as they are.
    postprocessed?.addBatch(readout.postprocess ? preds : preds.map((p) => largestLesionFilled(p, width, height)), loaded.map((l) => l.pixels.mask.data), loaded.map((l) => l.item.id));
    // Each set sees its own part of the batch as one batch, like the paper's per-batch mIoU.
    const sets = new Set(loaded.map((l) => l.item.set));
    for (const set of sets) {
      const idx = loaded.map((l, i) => (l.item.set === set ? i : -1)).filter((i) => i >= 0);
      let acc = bySet.get(set);
      if (!acc) bySet.set(set, (acc = new MetricAccumulator()));
      acc.addBatch(idx.map((i) => preds[i]), idx.map((i) => loaded[i].pixels.mask.data), idx.map((i) => loaded[i].item.id));
    }
  }
  return {
    overall: overall.report(),
    ...(postprocessed && { postprocessed: postprocessed.report() }),
    bySet: Object.fromEntries([...bySet].map(([set, acc]) => [set, acc.report()])),
  };
}

export function summary(report: MetricReport): Omit<MetricReport, 'perImage'> {
  const { perImage: _omit, ...rest } = report;
  return rest;
}
