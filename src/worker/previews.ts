/**
 * Previews for the Dataset and Configure views, computed with the very
 * functions a run uses: the pipeline's split and the core's noise chain.
 */
import { presetCard, type RunCard } from '../core/config.ts';
import { loadSample } from '../core/dataset/loader.ts';
import { kFolds, labeledUnlabeledRatio } from '../core/dataset/splits.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import { applyNoise } from '../core/noise.ts';
import { splitLabeled } from '../core/pipeline.ts';
import { Rng, deriveSeed } from '../core/random.ts';
import type { AugmentationPreview, AugmentationRequest, SplitPreview, SplitPreviewRequest } from './api.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder } from './decode.ts';
import { maskOverlay, rgbBitmap } from './imaging.ts';

const EXAMPLES = 4;

export function previewSplit(dataset: OpenDataset, request: SplitPreviewRequest): SplitPreview {
  const { labeled, unlabeled } = dataset.inputs();
  const card: RunCard = { ...presetCard('quick'), seed: request.seed };
  card.data = { ...card.data, split: request.split, unlabeledPerLabeled: request.unlabeledPerLabeled };
  const unique = [...new Map(labeled.map((s) => [s.id, s])).values()];
  const parts = splitLabeled(card, unique);
  const used = request.unlabeledPerLabeled > 0 ? labeledUnlabeledRatio(parts.train, unlabeled, request.unlabeledPerLabeled, request.seed) : [];
  const sets = [...new Set(unique.map((s) => s.set))].sort();
  const count = (samples: Sample[], set: string): number => samples.filter((s) => s.set === set).length;
  return {
    train: parts.train.length,
    val: parts.val.length,
    test: parts.test.length,
    unlabeledUsed: used.length,
    unlabeledAvailable: unlabeled.length,
    bySet: sets.map((set) => ({ set, train: count(parts.train, set), val: count(parts.val, set), test: count(parts.test, set) })),
    examples: {
      train: parts.train.slice(0, EXAMPLES).map((s) => s.id),
      val: parts.val.slice(0, EXAMPLES).map((s) => s.id),
      test: parts.test.slice(0, EXAMPLES).map((s) => s.id),
    },
    folds: request.folds
      ? kFolds(parts.train.concat(parts.val), request.folds, request.seed).map((f, fold) => ({ fold, train: f.train.length, val: f.val.length }))
      : undefined,
  };
}

export async function previewAugmentation(dataset: OpenDataset, request: AugmentationRequest): Promise<AugmentationPreview> {
  const { labeled } = dataset.inputs();
  if (labeled.length === 0) throw new LesionError('dataset', 'the open data set has no labeled pairs to preview the noise on');
  const sample = labeled[((request.sample % labeled.length) + labeled.length) % labeled.length];
  const size = { width: request.size, height: request.size };
  const loaded = await loadSample(sample, dataset.source, new BitmapDecoder(), size);
  const draws = Array.from({ length: request.draws }, (_, i) => {
    const rng = new Rng(deriveSeed(request.seed, `preview/${sample.id}/${i}`));
    const noisy = applyNoise(loaded.image, loaded.mask, request.noise, rng, size);
    return { bitmap: rgbBitmap(noisy.image), overlay: noisy.mask && maskOverlay(noisy.mask), applied: noisy.applied };
  });
  return { sampleId: sample.id, original: rgbBitmap(loaded.image), draws };
}
