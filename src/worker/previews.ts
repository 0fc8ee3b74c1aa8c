/**
 * Previews for the Dataset and Configure views, computed with the very
 * functions a run uses: the pipeline's split plan (held-out parts, labeled
 * fraction, unlabeled ratio, one copy per image id) and the core's noise chain.
 */
import { presetCard, type RunCard } from '../core/config.ts';
import { loadSample } from '../core/dataset/loader.ts';
import { kFolds } from '../core/dataset/splits.ts';
import type { Sample } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import { hasExpertLabel } from '../core/active/labels.ts';
import { applyNoise } from '../core/noise/chain.ts';
import { planSplit } from '../core/run/pipeline.ts';
import { Rng, deriveSeed } from '../core/random.ts';
import type { AugmentationPreview, AugmentationRequest, SplitPreview, SplitPreviewRequest } from './api.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder } from './decode.ts';
import { maskOverlay, rgbBitmap } from './imaging.ts';

const EXAMPLES = 4;

export function previewSplit(dataset: OpenDataset, request: SplitPreviewRequest): SplitPreview {
  const inputs = dataset.inputs();
  const card: RunCard = { ...presetCard('quick'), seed: request.seed };
  card.data = { split: request.split, unlabeledPerLabeled: request.unlabeledPerLabeled, labeledFraction: request.labeledFraction };
  const plan = planSplit(card, inputs);
  const { labelsHidden } = plan;
  const sets = [...new Set([...plan.train, ...plan.val, ...plan.test].map((s) => s.set))].sort();
  const count = (samples: Sample[], set: string): number => samples.filter((s) => s.set === set).length;
  return {
    train: plan.train.length,
    val: plan.val.length,
    test: plan.test.length,
    unlabeledUsed: plan.unlabeled.length,
    unlabeledAvailable: inputs.unlabeled.length + labelsHidden,
    labelsHidden,
    expert: {
      train: plan.train.filter(hasExpertLabel).length,
      val: plan.val.filter(hasExpertLabel).length,
      test: plan.test.filter(hasExpertLabel).length,
    },
    bySet: sets.map((set) => ({ set, train: count(plan.train, set), val: count(plan.val, set), test: count(plan.test, set) })),
    examples: {
      train: plan.train.slice(0, EXAMPLES).map((s) => s.id),
      val: plan.val.slice(0, EXAMPLES).map((s) => s.id),
      test: plan.test.slice(0, EXAMPLES).map((s) => s.id),
    },
    folds: request.folds
      ? kFolds(plan.train.concat(plan.val), request.folds, request.seed).map((f, fold) => ({ fold, train: f.train.length, val: f.val.length }))
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
