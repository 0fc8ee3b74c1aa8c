/**
 * Pseudo-labels: the teacher (or student) predicts every unlabeled image; each
 * prediction becomes a hard mask at the card's threshold, masks with almost no
 * lesion are dropped (the paper's "masks not created or too small"), and each
 * keeps its mean binary entropy so a person can review the least certain.
 *
 * Masks are stored (RunStore.maskKey) by producing checkpoint, image content
 * hash and size, so a rerun or a resumed run reuses them instead of predicting again.
 */
import type * as tf from '@tensorflow/tfjs';
import type { RunCard } from '../config.ts';
import type { RunControl } from '../training/control.ts';
import type { Sample } from '../dataset/layouts.ts';
import type { EventSink, PseudoLabelRecord, StageName } from '../events.ts';
import type { FileSource, RgbImage } from '../io.ts';
import { meanEntropy, predictLogits } from '../scoring/predict.ts';
import { readMask } from '../scoring/readout.ts';
import type { MaskStats, RunStore, TrainingStage } from './run-store.ts';
import type { PixelCache } from '../dataset/samples.ts';

export async function contentHash(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export interface PseudoLabelJob {
  stage: StageName;
  /** The producing checkpoint; part of every mask's key. */
  producer: { stage: TrainingStage; checkpoint: string };
  model: tf.LayersModel;
  /** The producer's validated post-processing decision (readout.ts). */
  postprocess: boolean;
  samples: Sample[];
  card: RunCard;
  cache: PixelCache;
  source: FileSource;
  run: RunStore;
  emit: EventSink;
  control: RunControl;
}

export async function generatePseudoLabels(job: PseudoLabelJob): Promise<PseudoLabelRecord[]> {
  const { card, run, emit, stage } = job;
  const size = card.model.inputSize;
  const B = card.train.batchSize;
  // The threshold is on the probability; the model emits logits.
  const logitThreshold = Math.log(card.pseudo.threshold / (1 - card.pseudo.threshold));
  const records: PseudoLabelRecord[] = [];
  let kept = 0;
  let dropped = 0;
  const started = performance.now();
  const record = (sample: Sample, key: string, r: MaskStats): void => {
    const isDropped = r.lesionFraction < card.pseudo.minLesionFraction;
    if (isDropped) dropped++;
    else kept++;
    records.push({ id: sample.id, image: sample.image, key, lesionFraction: r.lesionFraction, uncertainty: r.uncertainty, dropped: isDropped });
  };

  let queue: { sample: Sample; key: string; image: RgbImage }[] = [];
  const predictQueue = async (): Promise<void> => {
    if (queue.length === 0) return;
    const logits = await predictLogits(job.model, queue.map((q) => q.image), { batchSize: B, tta: card.pseudo.flipTta ? 'hflip' : 'none' });
    for (let i = 0; i < queue.length; i++) {
      const l = logits[i];
      const data = readMask(l, size, size, { logitThreshold, postprocess: job.postprocess });
      const lesion = data.reduce((n, v) => n + v, 0);
      const stats: MaskStats = { lesionFraction: lesion / l.length, uncertainty: meanEntropy(l) };
      await run.setMask(queue[i].key, { width: size, height: size, data }, stats);
      record(queue[i].sample, queue[i].key, stats);
    }
    queue = [];
  };

  for (let i = 0; i < job.samples.length; i++) {
    await job.control.checkpoint();
    const sample = job.samples[i];
    let bytes: Uint8Array;
    try {
      bytes = await job.source.read(sample.image);
    } catch (error) {
      emit({ type: 'warning', file: sample.image, message: `skipped: ${error instanceof Error ? error.message : String(error)}` });
      continue;
    }
    const key = run.maskKey(job.producer, await contentHash(bytes), size);
    const reused = await run.maskStats(key);
    if (reused) {
      record(sample, key, reused);
    } else {
      const loaded = await job.cache.image(sample);
      if (loaded) queue.push({ sample, key, image: loaded.image });
      if (queue.length === B) await predictQueue();
    }
    if ((i + 1) % B === 0 || i === job.samples.length - 1) {
      await predictQueue();
      emit({
        type: 'pseudo',
        stage,
        done: i + 1,
        total: job.samples.length,
        kept,
        dropped,
        imagesPerSecond: (i + 1) / ((performance.now() - started) / 1000),
      });
    }
  }
  await predictQueue();
  return records;
}
