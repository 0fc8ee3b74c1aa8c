/**
 * Segmentation metrics on plain arrays (no tfjs), so that training
 * validation, the CLI `eval` and the UI all score masks the same way.
 *
 * Four figures, because the literature mixes them (paper-protocol.md, Metrics):
 * - paper mIoU: the official code's torchmetrics 0.9.3
 *   JaccardIndex(num_classes=2, average='macro') computed on each batch's
 *   pooled confusion, then averaged over batches weighted by batch size;
 * - pooled mIoU: the same macro IoU on one confusion over the whole set;
 * - lesion IoU (Jaccard) and Dice, pooled over the set;
 * - ISIC 2018 thresholded Jaccard: per-image lesion Jaccard, zeroed below 0.65.
 */
import { LesionError } from '../errors.ts';

/** 2x2 confusion counts, lesion = positive class. */
export interface Confusion {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

export interface ImageScore {
  id: string;
  lesionIoU: number;
  dice: number;
  /** The image's own counts, from which a bootstrap recomputes the pooled figures of any resample. */
  confusion: Confusion;
  /** Which addBatch call (from 0) scored it: the paper's mIoU pools per batch. */
  batch: number;
}

export interface MetricReport {
  /** Macro IoU per batch, averaged weighted by batch size (the paper's "mIoU"). */
  paperMIoU: number;
  /** Macro IoU of one confusion pooled over every pixel of the set. */
  pooledMIoU: number;
  /** Lesion Jaccard pooled over every pixel of the set. */
  lesionIoU: number;
  /** Lesion Dice pooled over every pixel of the set. */
  dice: number;
  /** ISIC 2018 challenge score: mean over images of (J >= 0.65 ? J : 0). */
  thresholdedJaccard: number;
  perImage: ImageScore[];
  images: number;
}

/** The ISIC 2018 Task 1 cut-off below which an image's Jaccard counts as 0. */
export const ISIC_JACCARD_THRESHOLD = 0.65;

export function emptyConfusion(): Confusion {
  return { tp: 0, fp: 0, fn: 0, tn: 0 };
}

/** Any nonzero byte counts as lesion, so 0/255 masks score like 0/1 masks. */
export function confusion(pred: Uint8Array, target: Uint8Array): Confusion {
  if (pred.length !== target.length) {
    throw new RangeError(`prediction has ${pred.length} pixels, target ${target.length}`);
  }
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i] !== 0;
    const t = target[i] !== 0;
    if (p && t) tp++;
    else if (p) fp++;
    else if (t) fn++;
  }
  return { tp, fp, fn, tn: pred.length - tp - fp - fn };
}

/** Adds b into a, in place. */
export function accumulate(a: Confusion, b: Confusion): void {
  a.tp += b.tp;
  a.fp += b.fp;
  a.fn += b.fn;
  a.tn += b.tn;
}

/**
 * The official code thresholds RAW LOGITS at 0.5 (torchmetrics `preds >=
 * threshold` with no sigmoid), i.e. lesion iff probability >= sigmoid(0.5).
 */
export function binariseLogits(logits: Float32Array, threshold = 0.5): Uint8Array {
  const out = new Uint8Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] >= threshold ? 1 : 0;
  return out;
}

/**
 * torchmetrics 0.9.3 `_jaccard_from_confmat(average='macro', absent_score=0)`:
 * IoU of background and of lesion, a class absent from both prediction and
 * target scoring 0 (not 1, and not left out of the mean).
 */
export function macroIoU(c: Confusion): number {
  const lesionUnion = c.tp + c.fp + c.fn;
  const backgroundUnion = c.tn + c.fp + c.fn;
  const lesion = lesionUnion === 0 ? 0 : c.tp / lesionUnion;
  const background = backgroundUnion === 0 ? 0 : c.tn / backgroundUnion;
  return (lesion + background) / 2;
}

/** Lesion Jaccard; both masks empty scores 1, as the ISIC scorer does. */
export function lesionJaccard(c: Confusion): number {
  const union = c.tp + c.fp + c.fn;
  return union === 0 ? 1 : c.tp / union;
}

/** Lesion Dice; both masks empty scores 1, as the ISIC scorer does. */
export function lesionDice(c: Confusion): number {
  const denominator = 2 * c.tp + c.fp + c.fn;
  return denominator === 0 ? 1 : (2 * c.tp) / denominator;
}

export function thresholdJaccard(jaccard: number, threshold = ISIC_JACCARD_THRESHOLD): number {
  return jaccard < threshold ? 0 : jaccard;
}

/**
 * Collects predictions batch by batch. Each addBatch call is one batch of the
 * paper's mIoU, which therefore depends on how the caller batches (the
 * official validation uses batches of 10).
 */
export class MetricAccumulator {
  private readonly pooled = emptyConfusion();
  private weightedBatchIoU = 0;
  private thresholdedSum = 0;
  private batches = 0;
  private readonly scores: ImageScore[] = [];

  addBatch(preds: Uint8Array[], targets: Uint8Array[], ids?: string[]): void {
    if (preds.length !== targets.length || (ids && ids.length !== preds.length)) {
      throw new RangeError(
        `batch has ${preds.length} predictions, ${targets.length} targets` +
          (ids ? ` and ${ids.length} ids` : ''),
      );
    }
    if (preds.length === 0) return;
    const batch = emptyConfusion();
    for (let i = 0; i < preds.length; i++) {
      const id = ids?.[i] ?? String(this.scores.length);
      if (preds[i].length !== targets[i].length) {
        throw new LesionError(
          'dataset',
          `prediction has ${preds[i].length} pixels but the mask has ${targets[i].length}`,
          id,
        );
      }
      const c = confusion(preds[i], targets[i]);
      accumulate(batch, c);
      const lesionIoU = lesionJaccard(c);
      this.thresholdedSum += thresholdJaccard(lesionIoU);
      this.scores.push({ id, lesionIoU, dice: lesionDice(c), confusion: c, batch: this.batches });
    }
    this.batches++;
    accumulate(this.pooled, batch);
    this.weightedBatchIoU += macroIoU(batch) * preds.length;
  }

  /** Every figure is NaN while no image has been added. */
  report(): MetricReport {
    const images = this.scores.length;
    if (images === 0) {
      return {
        paperMIoU: NaN,
        pooledMIoU: NaN,
        lesionIoU: NaN,
        dice: NaN,
        thresholdedJaccard: NaN,
        perImage: [],
        images,
      };
    }
    return {
      paperMIoU: this.weightedBatchIoU / images,
      pooledMIoU: macroIoU(this.pooled),
      lesionIoU: lesionJaccard(this.pooled),
      dice: lesionDice(this.pooled),
      thresholdedJaccard: this.thresholdedSum / images,
      perImage: this.scores.map((s) => ({ ...s, confusion: { ...s.confusion } })),
      images,
    };
  }
}
