/**
 * How much a figure owes to the choice of images: a seeded percentile
 * bootstrap over images, the same one in `eval`, the run's metrics files,
 * Compare and the studio's Results. Pooled figures are recomputed from the
 * resampled images' confusion counts (never by averaging per-image scores),
 * and the paper's batch-pooled mIoU keeps the scored batches' sizes, so an
 * unresampled draw gives back exactly the reported figures.
 *
 * Plain arrays only (no TensorFlow.js), so the page imports it.
 */
import { Rng } from '../random.ts';
import { accumulate, emptyConfusion, lesionDice, lesionJaccard, macroIoU, thresholdJaccard, type ImageScore, type MetricReport } from './metrics.ts';

/** The five figures every report carries (metrics.ts says what each is). */
export const METRIC_KEYS = ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice', 'thresholdedJaccard'] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];
export type MetricValues = Record<MetricKey, number>;
export type Interval = [lo: number, hi: number];
export type MetricIntervals = Record<MetricKey, Interval>;

/** Each figure's name as tables print it. */
export const METRIC_TITLES: Record<MetricKey, string> = {
  paperMIoU: 'paper mIoU',
  pooledMIoU: 'pooled mIoU',
  lesionIoU: 'lesion IoU',
  dice: 'Dice',
  thresholdedJaccard: 'thresholded Jaccard',
};

export const DEFAULT_RESAMPLES = 2000;
/** Fixed, so that the same scores always print the same interval. */
export const BOOTSTRAP_SEED = 1;
/** Below this many images a figure's interval is wide enough to say so beside it. */
export const FEW_IMAGES = 30;

export interface BootstrapOptions {
  /** 2,000 unless given. */
  resamples?: number;
  /** BOOTSTRAP_SEED unless given. */
  seed?: number;
}

/** What resampling needs of a scored image: its counts, and the batch the paper's mIoU pooled it in. */
export type ScoredImage = Pick<ImageScore, 'id' | 'confusion' | 'batch'>;

/** A figure's 95 % interval, and the few-images note when there is one. */
export interface Uncertainty {
  ci95: MetricIntervals;
  note?: string;
}

const nanValues = (): MetricValues => ({ paperMIoU: NaN, pooledMIoU: NaN, lesionIoU: NaN, dice: NaN, thresholdedJaccard: NaN });

/**
 * The five figures of the images at positions `pick` (all of them, in
 * order, without it). Position j belongs to the batch that position j of
 * `images` was scored in, so a resample keeps the batch sizes the paper's
 * mIoU was computed with.
 */
export function metricsOf(images: readonly ScoredImage[], pick?: ArrayLike<number>): MetricValues {
  const n = images.length;
  if (n === 0) return nanValues();
  const pooled = emptyConfusion();
  let batch = emptyConfusion();
  let inBatch = 0;
  let weightedBatchIoU = 0;
  let thresholded = 0;
  for (let j = 0; j < n; j++) {
    const c = images[pick ? pick[j] : j].confusion;
    accumulate(pooled, c);
    accumulate(batch, c);
    inBatch++;
    thresholded += thresholdJaccard(lesionJaccard(c));
    if (j === n - 1 || images[j + 1].batch !== images[j].batch) {
      weightedBatchIoU += macroIoU(batch) * inBatch;
      batch = emptyConfusion();
      inBatch = 0;
    }
  }
  return {
    paperMIoU: weightedBatchIoU / n,
    pooledMIoU: macroIoU(pooled),
    lesionIoU: lesionJaccard(pooled),
    dice: lesionDice(pooled),
    thresholdedJaccard: thresholded / n,
  };
}

/** One resample of n items: n draws of rng.int(0, n - 1), in order, into `out`. */
export function drawResample(rng: Rng, out: Int32Array): Int32Array {
  for (let j = 0; j < out.length; j++) out[j] = rng.int(0, out.length - 1);
  return out;
}

/** The p-quantile of sorted values, interpolated linearly between order statistics (numpy's default). */
export function quantile(sorted: ArrayLike<number>, p: number): number {
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** The 2.5 % and 97.5 % quantiles of the resampled values. */
export function percentileInterval(values: ArrayLike<number>): Interval {
  if (values.length === 0) return [NaN, NaN];
  const sorted = Float64Array.from(values).sort();
  return [quantile(sorted, 0.025), quantile(sorted, 0.975)];
}

/** Per figure, one value per resample, filled by the caller. */
export function resampleTable(resamples: number): Record<MetricKey, Float64Array> {
  return Object.fromEntries(METRIC_KEYS.map((k) => [k, new Float64Array(resamples)])) as Record<MetricKey, Float64Array>;
}

export function intervalsOf(table: Record<MetricKey, Float64Array>): MetricIntervals {
  return Object.fromEntries(METRIC_KEYS.map((k) => [k, percentileInterval(table[k])])) as MetricIntervals;
}

/**
 * Each figure's percentile 95 % interval over `resamples` resamples of the
 * images, drawn from new Rng(seed) one resample after another (drawResample).
 */
export function metricIntervals(images: readonly ScoredImage[], options: BootstrapOptions = {}): MetricIntervals {
  const resamples = options.resamples ?? DEFAULT_RESAMPLES;
  if (images.length === 0) return intervalsOf(resampleTable(0));
  const rng = new Rng(options.seed ?? BOOTSTRAP_SEED);
  const table = resampleTable(resamples);
  const pick = new Int32Array(images.length);
  for (let r = 0; r < resamples; r++) {
    const m = metricsOf(images, drawResample(rng, pick));
    for (const k of METRIC_KEYS) table[k][r] = m[k];
  }
  return intervalsOf(table);
}

/**
 * The words shown beside a figure scored on few images, e.g. "3 test
 * images: an interval of ±20 points" (half the lesion IoU interval's width,
 * in percentage points); undefined from FEW_IMAGES images on.
 */
export function fewImagesNote(images: number, lesionIoU: Interval, noun = 'test image'): string | undefined {
  if (images >= FEW_IMAGES) return undefined;
  const counted = `${images} ${noun}${images === 1 ? '' : 's'}`;
  if (images < 2) return `${counted}: no interval can be drawn from fewer than two images`;
  return `${counted}: an interval of ±${Math.round(50 * (lesionIoU[1] - lesionIoU[0]))} points`;
}

/** A report's intervals and note, to spread beside its figures (`{ ...summary, ...uncertainty(perImage) }`). */
export function uncertainty(images: readonly ScoredImage[], options: BootstrapOptions & { noun?: string } = {}): Uncertainty {
  const ci95 = metricIntervals(images, options);
  const note = fewImagesNote(images.length, ci95.lesionIoU, options.noun);
  return note === undefined ? { ci95 } : { ci95, note };
}

/** A report's figures with their intervals and note, without the per-image list: what runs store and show. */
export function withIntervals(report: MetricReport, options: BootstrapOptions & { noun?: string } = {}): Omit<MetricReport, 'perImage'> & Uncertainty {
  const { perImage, ...figures } = report;
  return { ...figures, ...uncertainty(perImage, options) };
}

/** The percentile 95 % interval of the mean of `values` (e.g. one per seed, or paired differences). */
export function meanInterval(values: readonly number[], options: BootstrapOptions = {}): Interval {
  const resamples = options.resamples ?? DEFAULT_RESAMPLES;
  if (values.length === 0) return [NaN, NaN];
  const rng = new Rng(options.seed ?? BOOTSTRAP_SEED);
  const pick = new Int32Array(values.length);
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    drawResample(rng, pick);
    let sum = 0;
    for (const i of pick) sum += values[i];
    means[r] = sum / values.length;
  }
  return percentileInterval(means);
}

/** Repeats of one figure: how many, their mean, sample standard deviation (NaN for one) and range. */
export interface Spread {
  n: number;
  mean: number;
  sd: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n < 2 ? NaN : Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
  return { n, mean, sd, min: Math.min(...values), max: Math.max(...values) };
}

/** Each figure's spread over repeats of one card (one MetricValues per seed). */
export function repeatSpread(perSeed: readonly MetricValues[]): Record<MetricKey, Spread> {
  return Object.fromEntries(METRIC_KEYS.map((k) => [k, spread(perSeed.map((m) => m[k]))])) as Record<MetricKey, Spread>;
}
