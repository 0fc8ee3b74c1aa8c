/**
 * Is the difference real? Two or more arms scored on the same images, the
 * one function behind `lesion-studio compare` and the studio's Compare.
 *
 * An arm is one recipe: a single trained model, or several (the seeds of one
 * card). Each figure and each difference to the first arm gets a two-level
 * percentile bootstrap: every resample first draws runs with replacement
 * within each arm, then images, the same images for every arm (paired), so
 * with several seeds the interval covers training noise as well as the
 * choice of images (comparing-runs.md). With one run per arm it covers the
 * images only, and the difference says so.
 *
 * The paired test is a two-sided paired permutation test over images: under
 * "no difference" each image's two scores are exchangeable, so the arms'
 * counts are swapped image by image (every one of the 2^n swaps up to
 * EXACT_PERMUTATION_IMAGES images, random swaps beyond) and the figure's
 * difference recomputed. It answers "do these models differ on these
 * images", not "is this recipe better"; for arms of several runs it tests
 * their per-image counts averaged over runs, and P(A > B) over paired
 * repeats (Bouthillier et al. 2021) speaks to the recipe.
 */
import { LesionError } from '../errors.ts';
import { deriveSeed, Rng } from '../random.ts';
import {
  BOOTSTRAP_SEED,
  DEFAULT_RESAMPLES,
  drawResample,
  fewImagesNote,
  intervalsOf,
  METRIC_KEYS,
  metricsOf,
  repeatSpread,
  resampleTable,
  type BootstrapOptions,
  type MetricIntervals,
  type MetricKey,
  type MetricValues,
  type ScoredImage,
  type Spread,
} from './bootstrap.ts';
import { accumulate, emptyConfusion, lesionJaccard, type Confusion } from './metrics.ts';

/** One trained model's scores on the compared images. */
export interface CompareRun {
  name: string;
  images: readonly ScoredImage[];
  /** The run's seed, where known: arms whose runs have the same seeds are paired by seed. */
  seed?: number;
}

/** One recipe: a single run, or the seeds of one card. */
export interface CompareArm {
  name: string;
  runs: readonly CompareRun[];
}

export interface CompareOptions extends BootstrapOptions {
  /** Random swaps of the permutation test when it is not exact; 10,000 unless given. */
  permutations?: number;
}

/** Fewer seeds than this in an arm and a comparison does not cover training noise. */
export const MIN_SEEDS = 3;
/** Up to this many images the permutation test enumerates every swap (2^16 = 65,536). */
export const EXACT_PERMUTATION_IMAGES = 16;
export const DEFAULT_PERMUTATIONS = 10_000;

export interface ArmFigures {
  name: string;
  runs: string[];
  /** Each figure, averaged over the arm's runs. */
  value: MetricValues;
  /** Over resampled runs and images. */
  ci95: MetricIntervals;
  /** Each run's figures, in the order given. */
  perRun: MetricValues[];
  /** Mean, sd and range over the runs (sd NaN for one run). */
  spread: Record<MetricKey, Spread>;
}

/** One image's lesion IoU (averaged over each arm's runs) in the reference arm and in the other. */
export interface ImageOutcome {
  id: string;
  reference: number;
  arm: number;
  /** arm - reference: above 0 a win for the arm. */
  difference: number;
}

export interface ArmDifference {
  arm: string;
  reference: string;
  /** Each figure of the arm minus the reference's, on the same images. */
  difference: MetricValues;
  /** Two-level paired bootstrap interval of the difference. */
  ci95: MetricIntervals;
  /** The paired permutation test's two-sided p-value, per figure. */
  pValue: MetricValues;
  /** The share of paired repeats (run i of each arm) where the arm beats the reference, ties counting half; null under two pairs. */
  probabilityBetter: MetricValues | null;
  pairs: number;
  /** Per-image lesion IoU wins, losses and ties of the arm, and every image in the compared order. */
  wins: number;
  losses: number;
  ties: number;
  perImage: ImageOutcome[];
  /** Said whenever an arm has fewer than MIN_SEEDS runs. */
  warning?: string;
}

export interface Comparison {
  images: number;
  /**
   * Whether every arm's runs had the same seeds and were paired by them: each
   * resample then draws the same seeds for every arm, as it draws the same
   * images, and P(A > B) pairs the runs of one seed.
   */
  pairedBySeed: boolean;
  ids: string[];
  resamples: number;
  seed: number;
  /** Which paired test gave the p-values, in words. */
  test: string;
  /** The few-images note (fewImagesNote) of the first arm's lesion IoU interval. */
  note?: string;
  arms: ArmFigures[];
  /** Each arm after the first against the first. */
  differences: ArmDifference[];
}

/**
 * Each run's images in the first run's order, with the first run's batches
 * (the paper's mIoU is pooled per batch). Images are matched by id, a
 * repeated id by its occurrence.
 */
function align(arms: readonly CompareArm[]): ScoredImage[][][] {
  const reference = arms[0].runs[0];
  const keyed = (images: readonly ScoredImage[]): string[] => {
    const seen = new Map<string, number>();
    return images.map((s) => {
      const n = seen.get(s.id) ?? 0;
      seen.set(s.id, n + 1);
      return `${s.id}#${n}`;
    });
  };
  const referenceKeys = keyed(reference.images);
  return arms.map((arm) =>
    arm.runs.map((run) => {
      const byKey = new Map<string, Confusion>();
      keyed(run.images).forEach((key, i) => byKey.set(key, run.images[i].confusion));
      const missing = referenceKeys.filter((k) => !byKey.has(k));
      if (missing.length > 0 || run.images.length !== reference.images.length) {
        const example = missing.length > 0 ? ` (${missing[0].replace(/#\d+$/, '')} is missing)` : '';
        throw new LesionError(
          'dataset',
          `${run.name} was scored on ${run.images.length} images and ${reference.name} on ${reference.images.length}${example}: a paired comparison needs the same images`,
        );
      }
      return reference.images.map((s, i) => ({ id: s.id, batch: s.batch, confusion: byKey.get(referenceKeys[i])! }));
    }),
  );
}

const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;

function meanValues(values: readonly MetricValues[]): MetricValues {
  return Object.fromEntries(METRIC_KEYS.map((k) => [k, mean(values.map((v) => v[k]))])) as MetricValues;
}

/**
 * Per image, the counts averaged over an arm's runs: the figures' ratios are
 * unchanged by the scale. Summed as integers first, so that the same runs in
 * another order give the same counts to the last bit.
 */
function averagedCounts(runs: readonly ScoredImage[][]): ScoredImage[] {
  return runs[0].map((s, i) => {
    const c = emptyConfusion();
    for (const run of runs) accumulate(c, run[i].confusion);
    return { id: s.id, batch: s.batch, confusion: { tp: c.tp / runs.length, fp: c.fp / runs.length, fn: c.fn / runs.length, tn: c.tn / runs.length } };
  });
}

/**
 * Two-sided paired permutation p-values of metricsOf(arm) - metricsOf(reference),
 * one per figure: exact (every swap, the observed one included) up to
 * EXACT_PERMUTATION_IMAGES images, else (1 + hits) / (1 + permutations) over
 * random swaps drawn from `rng`.
 */
function permutationTest(reference: ScoredImage[], arm: ScoredImage[], permutations: number, rng: Rng): MetricValues {
  const n = reference.length;
  const observed = metricsOf(arm);
  const base = metricsOf(reference);
  // Scores within a rounding error of the observed difference count as reaching it.
  const reach = Object.fromEntries(METRIC_KEYS.map((k) => [k, Math.abs(observed[k] - base[k]) - 1e-12])) as MetricValues;
  const hits = Object.fromEntries(METRIC_KEYS.map((k) => [k, 0])) as MetricValues;
  const a = reference.slice();
  const b = arm.slice();
  const tryOne = (swapped: (i: number) => boolean): void => {
    for (let i = 0; i < n; i++) {
      const s = swapped(i);
      a[i] = s ? arm[i] : reference[i];
      b[i] = s ? reference[i] : arm[i];
    }
    const ma = metricsOf(a);
    const mb = metricsOf(b);
    for (const k of METRIC_KEYS) if (Math.abs(mb[k] - ma[k]) >= reach[k]) hits[k]++;
  };
  if (n <= EXACT_PERMUTATION_IMAGES) {
    const total = 2 ** n;
    for (let mask = 0; mask < total; mask++) tryOne((i) => ((mask >>> i) & 1) === 1);
    return Object.fromEntries(METRIC_KEYS.map((k) => [k, hits[k] / total])) as MetricValues;
  }
  for (let p = 0; p < permutations; p++) tryOne(() => rng.chance(0.5));
  return Object.fromEntries(METRIC_KEYS.map((k) => [k, (1 + hits[k]) / (1 + permutations)])) as MetricValues;
}

function probabilityBetter(arm: readonly MetricValues[], reference: readonly MetricValues[]): { pairs: number; p: MetricValues | null } {
  const pairs = Math.min(arm.length, reference.length);
  if (pairs < 2) return { pairs, p: null };
  const share = (k: MetricKey): number => {
    let wins = 0;
    for (let i = 0; i < pairs; i++) wins += arm[i][k] > reference[i][k] ? 1 : arm[i][k] === reference[i][k] ? 0.5 : 0;
    return wins / pairs;
  };
  return { pairs, p: Object.fromEntries(METRIC_KEYS.map((k) => [k, share(k)])) as MetricValues };
}

function trainingNoiseWarning(arms: readonly CompareArm[]): string | undefined {
  const short = arms.filter((a) => a.runs.length < MIN_SEEDS);
  if (short.length === 0) return undefined;
  const which = short.map((a) => `${a.name} has ${a.runs.length === 1 ? 'one run' : `${a.runs.length} seeds`}`).join(', ');
  return `training noise is not covered (${which}): the interval covers only the choice of images, and two runs of the same card can differ by more; repeat each arm with ${MIN_SEEDS} or more seeds`;
}

/** Whether every arm has two runs or more, each with a seed, and the same seeds, each once. */
function seedsPair(arms: readonly CompareArm[]): boolean {
  const key = (arm: CompareArm): string | undefined => {
    const seeds = arm.runs.map((r) => r.seed);
    if (seeds.length < 2 || seeds.some((s) => s === undefined) || new Set(seeds).size !== seeds.length) return undefined;
    return [...(seeds as number[])].sort((a, b) => a - b).join(',');
  };
  const first = key(arms[0]);
  return first !== undefined && arms.every((arm) => key(arm) === first);
}

/**
 * Compares every arm with the first on the same images: each arm's figures
 * with their intervals, and each difference with its paired interval, paired
 * test, P(A > B) over paired repeats, and per-image wins and losses. Throws a
 * LesionError when the runs were not scored on the same images.
 */
export function compareArms(arms: readonly CompareArm[], options: CompareOptions = {}): Comparison {
  if (arms.length < 2) throw new RangeError(`a comparison needs two arms or more, got ${arms.length}`);
  const empty = arms.find((a) => a.runs.length === 0);
  if (empty) throw new RangeError(`arm ${empty.name} has no runs`);
  const resamples = options.resamples ?? DEFAULT_RESAMPLES;
  const seed = options.seed ?? BOOTSTRAP_SEED;
  const permutations = options.permutations ?? DEFAULT_PERMUTATIONS;
  const pairedBySeed = seedsPair(arms);
  // Paired arms list their runs in the first arm's seed order, so run i of each arm is one seed.
  const ordered = pairedBySeed ? arms.map((arm) => ({ ...arm, runs: arms[0].runs.map((r) => arm.runs.find((x) => x.seed === r.seed)!) })) : arms;
  const aligned = align(ordered);
  const n = aligned[0][0].length;
  if (n === 0) throw new LesionError('dataset', 'no image was scored (none could be read): nothing to compare');

  const perRun = aligned.map((runs) => runs.map((images) => metricsOf(images)));
  const values = perRun.map(meanValues);

  // Two levels per resample: each arm's runs (no draw for a single run, so such an
  // arm's interval is exactly eval's; one draw for all arms when they are paired
  // by seed), then the images, shared by every arm.
  const rng = new Rng(seed);
  const armTables = arms.map(() => resampleTable(resamples));
  const differenceTables = arms.slice(1).map(() => resampleTable(resamples));
  const pick = new Int32Array(n);
  for (let r = 0; r < resamples; r++) {
    const shared = pairedBySeed ? aligned[0].map(() => rng.int(0, aligned[0].length - 1)) : undefined;
    const chosen = aligned.map((runs) => shared ?? (runs.length === 1 ? [0] : runs.map(() => rng.int(0, runs.length - 1))));
    drawResample(rng, pick);
    const resampled = aligned.map((runs, a) => {
      const cache = new Map<number, MetricValues>();
      return meanValues(chosen[a].map((s) => cache.get(s) ?? cache.set(s, metricsOf(runs[s], pick)).get(s)!));
    });
    for (const k of METRIC_KEYS) {
      resampled.forEach((m, a) => (armTables[a][k][r] = m[k]));
      for (let a = 1; a < arms.length; a++) differenceTables[a - 1][k][r] = resampled[a][k] - resampled[0][k];
    }
  }

  const averaged = aligned.map(averagedCounts);
  const perImageIoU = averaged.map((images) => images.map((s) => lesionJaccard(s.confusion)));
  const figures: ArmFigures[] = ordered.map((arm, a) => ({
    name: arm.name,
    runs: arm.runs.map((r) => r.name),
    value: values[a],
    ci95: intervalsOf(armTables[a]),
    perRun: perRun[a],
    spread: repeatSpread(perRun[a]),
  }));
  const differences: ArmDifference[] = arms.slice(1).map((arm, i) => {
    const a = i + 1;
    const perImage = averaged[0].map((s, j) => ({ id: s.id, reference: perImageIoU[0][j], arm: perImageIoU[a][j], difference: perImageIoU[a][j] - perImageIoU[0][j] }));
    const better = probabilityBetter(perRun[a], perRun[0]);
    const warning = trainingNoiseWarning([arms[0], arm]);
    return {
      arm: arm.name,
      reference: arms[0].name,
      difference: Object.fromEntries(METRIC_KEYS.map((k) => [k, values[a][k] - values[0][k]])) as MetricValues,
      ci95: intervalsOf(differenceTables[i]),
      pValue: permutationTest(averaged[0], averaged[a], permutations, new Rng(deriveSeed(seed, `permutation/${a}`))),
      probabilityBetter: better.p,
      pairs: better.pairs,
      wins: perImage.filter((o) => o.difference > 0).length,
      losses: perImage.filter((o) => o.difference < 0).length,
      ties: perImage.filter((o) => o.difference === 0).length,
      perImage,
      ...(warning && { warning }),
    };
  });
  const note = fewImagesNote(n, figures[0].ci95.lesionIoU, 'compared image');
  return {
    images: n,
    pairedBySeed,
    ids: aligned[0][0].map((s) => s.id),
    resamples,
    seed,
    test:
      n <= EXACT_PERMUTATION_IMAGES
        ? `paired permutation test over images, two-sided, exact (all 2^${n} swaps)`
        : `paired permutation test over images, two-sided, ${permutations.toLocaleString('en')} random swaps`,
    ...(note && { note }),
    arms: figures,
    differences,
  };
}
