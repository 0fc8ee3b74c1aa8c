/**
 * Seeded train/validation/test splits. Every function sorts its input by id
 * first, so the same seed gives the same split whatever order the files were
 * listed in, on any machine.
 */
import { ConfigError } from '../errors.ts';
import { Rng, deriveSeed } from '../random.ts';
import { compareText } from './layouts.ts';

/** Anything with a stable id; `image` breaks ties between equal ids of different sets. */
export interface Identified {
  id: string;
  image?: string;
}

export interface SplitFractions {
  seed: number;
  /** Fraction of the samples for validation, in [0, 1]. */
  val: number;
  /** Fraction of the samples for test, in [0, 1]; val + test <= 1. */
  test: number;
}

export interface TrainValTest<T> {
  train: T[];
  val: T[];
  test: T[];
}

export interface TrainVal<T> {
  train: T[];
  val: T[];
}

/** The paper's protocol: 5 folds, drawn from the row index modulo 15. */
export const PAPER_FOLDS = 5;

export function splitSamples<T extends Identified>(samples: readonly T[], options: SplitFractions): TrainValTest<T> {
  const { seed, val, test } = options;
  checkFraction('val', val);
  checkFraction('test', test);
  if (val + test > 1) throw new ConfigError('val + test', `must be at most 1 (got ${val + test})`);
  const shuffled = new Rng(deriveSeed(seed, 'split')).shuffle(sortById(samples));
  const valCount = Math.round(samples.length * val);
  const testCount = Math.min(Math.round(samples.length * test), samples.length - valCount);
  return {
    val: sortById(shuffled.slice(0, valCount)),
    test: sortById(shuffled.slice(valCount, valCount + testCount)),
    train: sortById(shuffled.slice(valCount + testCount)),
  };
}

/** k disjoint validation folds covering every sample once; fold sizes differ by at most 1. */
export function kFolds<T extends Identified>(samples: readonly T[], k: number, seed: number): TrainVal<T>[] {
  if (!Number.isInteger(k) || k < 2 || k > samples.length) {
    throw new ConfigError('k', `must be an integer from 2 to the number of samples (${samples.length}), got ${k}`);
  }
  const shuffled = new Rng(deriveSeed(seed, 'kfold')).shuffle(sortById(samples));
  return Array.from({ length: k }, (_, fold) => {
    const inFold = (_: T, i: number) => i % k === fold;
    return {
      val: sortById(shuffled.filter(inFold)),
      train: sortById(shuffled.filter((sample, i) => !inFold(sample, i))),
    };
  });
}

/** Row index to fold as the official code does it: floor((index mod 15) / 3). */
export function paperFold(index: number): number {
  if (!Number.isInteger(index) || index < 0) throw new ConfigError('index', `must be a non-negative integer, got ${index}`);
  return Math.floor((index % 15) / 3);
}

/** Validation = the rows (in id order) whose paperFold is valFold; the rest trains. */
export function paperSplit<T extends Identified>(samples: readonly T[], valFold: number): TrainVal<T> {
  if (!Number.isInteger(valFold) || valFold < 0 || valFold >= PAPER_FOLDS) {
    throw new ConfigError('valFold', `must be an integer from 0 to ${PAPER_FOLDS - 1}, got ${valFold}`);
  }
  const sorted = sortById(samples);
  return {
    train: sorted.filter((_, i) => paperFold(i) !== valFold),
    val: sorted.filter((_, i) => paperFold(i) === valFold),
  };
}

/**
 * The unlabeled subset used next to `labeled` at m unlabeled images per
 * labeled one (the paper's ratio 1/m): round(m * labeled.length) of them,
 * drawn with the seed, or all of them when there are fewer.
 */
export function labeledUnlabeledRatio<T extends Identified>(
  labeled: readonly Identified[],
  unlabeled: readonly T[],
  m: number,
  seed: number,
): T[] {
  if (!Number.isFinite(m) || m <= 0) throw new ConfigError('m', `must be a positive number, got ${m}`);
  const wanted = Math.round(m * labeled.length);
  if (wanted >= unlabeled.length) return sortById(unlabeled);
  const shuffled = new Rng(deriveSeed(seed, 'unlabeled-ratio')).shuffle(sortById(unlabeled));
  return sortById(shuffled.slice(0, wanted));
}

function sortById<T extends Identified>(samples: readonly T[]): T[] {
  return [...samples].sort((a, b) => compareText(a.id, b.id) || compareText(a.image ?? '', b.image ?? ''));
}

function checkFraction(field: string, value: number): void {
  if (!(value >= 0 && value <= 1)) throw new ConfigError(field, `must be a fraction in [0, 1], got ${value}`);
}
