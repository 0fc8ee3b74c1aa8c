/**
 * Acquisition scores for active learning: which unlabeled images an expert
 * should draw first. Each is computed from the current best model's lesion
 * probabilities p = sigmoid(logit) at the training size:
 *
 * - entropy: the mean binary entropy of p in bits (predict.ts's meanEntropy,
 *   the uncertainty the pseudo-label review already shows);
 * - flip: the mean absolute difference |p - mirror(p')| where p' is the
 *   prediction on the horizontally mirrored image: a lesion's mask does not
 *   depend on which way the camera faced, so disagreement means guessing;
 * - mc-dropout: the mean over pixels of the variance of p across passes with
 *   dropout on at inference (population variance, divided by the pass count);
 * - random: a seeded uniform draw per image, the baseline a ranking must beat.
 *
 * Higher is "label this first" for every score.
 */
import type * as tf from '@tensorflow/tfjs';
import { LesionError } from '../errors.ts';
import type { RgbImage } from '../io.ts';
import { setDropoutAtInference, setDropoutSeed } from '../model/dropout.ts';
import { meanEntropy, predictLogits, sigmoid } from '../scoring/predict.ts';
import { deriveSeed, Rng } from '../random.ts';

export type AcquisitionScore = 'entropy' | 'flip' | 'mc-dropout' | 'random';

export const ACQUISITION_SCORES: readonly AcquisitionScore[] = ['entropy', 'flip', 'mc-dropout', 'random'];

export const SCORE_TITLES: Record<AcquisitionScore, string> = {
  entropy: 'mean binary entropy (bits)',
  flip: 'flip disagreement (mean |p − mirror(p of mirrored image)|)',
  'mc-dropout': 'MC-dropout variance of p',
  random: 'random order (seeded)',
};

export interface ImageScores {
  entropy: number;
  flip: number;
  /** Present when Monte Carlo passes were asked for. */
  mcDropout?: number;
  random: number;
  /** The plain prediction's logits, when ScoreOptions.keepLogits asked for them (the queue's mask, when its stage reads without TTA). */
  logits?: Float32Array;
}

export function scoreOf(scores: ImageScores, score: AcquisitionScore): number {
  if (score === 'mc-dropout') {
    if (scores.mcDropout === undefined) throw new LesionError('config', 'MC-dropout variance was not computed for these images');
    return scores.mcDropout;
  }
  return scores[score];
}

/** Mean |sigmoid(a) - sigmoid(b)| over pixels; `b` must already be mirrored back onto `a`'s grid. */
export function flipDisagreement(logits: Float32Array, mirroredBack: Float32Array): number {
  if (logits.length !== mirroredBack.length) throw new Error(`flip disagreement of ${logits.length} and ${mirroredBack.length} pixels`);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.abs(sigmoid(logits[i]) - sigmoid(mirroredBack[i]));
  return sum / logits.length;
}

/** Mean over pixels of the population variance of sigmoid(logit) across passes. */
export function mcDropoutVariance(passes: Float32Array[]): number {
  if (passes.length < 2) throw new Error('MC-dropout variance needs at least two passes');
  const n = passes[0].length;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let mean = 0;
    for (const pass of passes) mean += sigmoid(pass[i]);
    mean /= passes.length;
    let variance = 0;
    for (const pass of passes) variance += (sigmoid(pass[i]) - mean) ** 2;
    sum += variance / passes.length;
  }
  return sum / n;
}

/** Left-right mirror of a plane of `channels` interleaved values per pixel. */
export function mirror<T extends Uint8Array | Float32Array>(values: T, width: number, height: number, channels = 1): T {
  const out = new (values.constructor as new (n: number) => T)(values.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (y * width + x) * channels;
      const to = (y * width + (width - 1 - x)) * channels;
      for (let c = 0; c < channels; c++) out[to + c] = values[from + c];
    }
  }
  return out;
}

/** A draw in [0, 1) fixed by the seed and the image, so the random order is reproducible. */
export function randomScore(seed: number, key: string): number {
  return new Rng(deriveSeed(seed, `acquisition/${key}`)).next();
}

export interface ScoreOptions {
  batchSize: number;
  /** Seeds the random order and the dropout masks. */
  seed: number;
  /** Monte Carlo dropout passes; 0 skips the score. The model must be a training build (it holds the seeded dropout layer). */
  mcPasses: number;
  keepLogits?: boolean;
}

/**
 * Every score for each image (all at the model's input size). `keys` name the
 * images for the random draw (e.g. their paths), so the order does not depend
 * on which other images are scored alongside.
 */
export async function scoreImages(model: tf.LayersModel, images: RgbImage[], keys: string[], options: ScoreOptions): Promise<ImageScores[]> {
  if (images.length === 0) return [];
  const { width, height } = images[0];
  const plain = await predictLogits(model, images, { batchSize: options.batchSize });
  const mirroredImages = images.map((image) => ({ width, height, data: mirror(image.data, width, height, 3) }));
  const mirrored = await predictLogits(model, mirroredImages, { batchSize: options.batchSize });
  let passes: Float32Array[][] | undefined;
  if (options.mcPasses > 0) {
    if (options.mcPasses < 2) throw new LesionError('config', `MC-dropout needs at least 2 passes, got ${options.mcPasses}`);
    if (setDropoutAtInference(model, true) === 0) throw new LesionError('model', 'MC-dropout needs a model with a dropout layer (the training build)');
    try {
      passes = [];
      for (let pass = 0; pass < options.mcPasses; pass++) {
        setDropoutSeed(model, deriveSeed(options.seed, `mc-dropout/${pass}`));
        passes.push(await predictLogits(model, images, { batchSize: options.batchSize }));
      }
    } finally {
      setDropoutAtInference(model, false);
    }
  }
  return images.map((_, i) => ({
    entropy: meanEntropy(plain[i]),
    flip: flipDisagreement(plain[i], mirror(mirrored[i], width, height)),
    mcDropout: passes && mcDropoutVariance(passes.map((p) => p[i])),
    random: randomScore(options.seed, keys[i]),
    ...(options.keepLogits && { logits: plain[i] }),
  }));
}

export interface Ranked<T> {
  item: T;
  rank: number;
  value: number;
}

/** Highest score first; ties keep the input order, so the ranking is deterministic. */
export function rankBy<T>(items: T[], value: (item: T) => number): Ranked<T>[] {
  return items
    .map((item, i) => ({ item, i, value: value(item) }))
    .sort((a, b) => b.value - a.value || a.i - b.i)
    .map(({ item, value: v }, rank) => ({ item, rank: rank + 1, value: v }));
}

/** Why an image sits where it does, in words the queue shows under it. */
export function explainRank(scores: ImageScores, score: AcquisitionScore, rank: number, total: number, median: number): string {
  if (score === 'random') return `#${rank} of ${total} in the seeded random order (the baseline; the score says nothing about the image)`;
  const value = scoreOf(scores, score);
  const ratio = median > 0 ? value / median : Number.POSITIVE_INFINITY;
  const relative = Number.isFinite(ratio) ? `${ratio.toFixed(1)}× the median` : 'above a median of 0';
  const what = score === 'entropy'
    ? 'the model is unsure of many pixels'
    : score === 'flip'
      ? 'the prediction changes when the image is mirrored'
      : 'the prediction changes from one dropout pass to the next';
  return `#${rank} of ${total}: ${SCORE_TITLES[score]} ${value.toFixed(4)}, ${relative}; ${what}`;
}

export function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
