/**
 * A trained stage's model at work outside its run: loaded from its best (or
 * latest) checkpoint in the export build, the network the exported files
 * hold, used and freed. Both hosts call these on the backend they started.
 */
import type * as tf from '@tensorflow/tfjs';
import type { RunCard } from '../config.ts';
import { loadImage, type SampleWarning } from '../dataset/loader.ts';
import type { Sample } from '../dataset/layouts.ts';
import { LesionError } from '../errors.ts';
import type { PixelDecoder } from '../io.ts';
import { loadStageModel } from './pipeline.ts';
import { predictions, type Prediction } from './products.ts';
import type { RunStore, TrainingStage } from './run-store.ts';
import { readoutOf, type Readout } from '../scoring/readout.ts';

/** Runs `use` with the stage's model and how its masks are read, and frees the model after. */
export async function withStageModel<T>(
  run: RunStore,
  stage: TrainingStage,
  kind: 'best' | 'latest',
  use: (model: tf.LayersModel, readout: Readout) => Promise<T>,
): Promise<T> {
  const { model, metadata } = await loadStageModel(run.kv, run.runId, stage, kind);
  try {
    return await use(model, readoutOf(metadata.card, metadata.postprocess));
  } finally {
    model.dispose();
  }
}

/** A run's labeled images by the keys its split stored (`set/id`); `roots` names what to open when some are missing. */
export function samplesByKey(labeled: readonly Sample[], keys: readonly string[], roots: readonly string[]): Sample[] {
  const byKey = new Map(labeled.map((s) => [`${s.set}/${s.id}`, s]));
  const found = keys.map((key) => byKey.get(key));
  const missing = found.filter((s) => s === undefined).length;
  if (missing > 0) {
    throw new LesionError('dataset', `${missing} of this run's images are not in the open data set; open ${roots.join(', ') || 'the folders it was trained on'} first`);
  }
  return found as Sample[];
}

/**
 * The mask file for one image handed over as bytes (the Predict view's
 * upload), read like every sample (loadImage) and predicted by the core's
 * prediction product, the one `lesion-studio predict` writes.
 */
export async function predictUpload(
  run: RunStore,
  card: RunCard,
  stage: TrainingStage,
  name: string,
  bytes: Uint8Array,
  decoder: PixelDecoder,
): Promise<{ prediction: Prediction; readout: Readout; width: number; height: number; warnings: SampleWarning[] }> {
  const side = card.model.inputSize;
  const loaded = await loadImage(name, bytes, decoder, { width: side, height: side });
  const stem = name.replace(/^.*\//, '').replace(/\.[^.]+$/, '');
  const input = { id: stem, image: loaded.image, width: loaded.sourceWidth, height: loaded.sourceHeight };
  const [prediction, readout] = await withStageModel(run, stage, 'best', async (model, readout) =>
    [(await predictions(model, [input], { inputSize: side, readout, batchSize: 1 }))[0], readout] as const,
  );
  return { prediction, readout, width: loaded.sourceWidth, height: loaded.sourceHeight, warnings: loaded.warnings };
}
