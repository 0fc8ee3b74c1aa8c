/**
 * The image bootstrap and the paired comparison (src/core/scoring/bootstrap.ts,
 * compare.ts). Expected values come from closed forms, hand-worked cases or the
 * straightforward reference loops written here, never from the code under test.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/core/random.ts';
import { LesionError } from '../src/core/errors.ts';
import { MetricAccumulator, type Confusion } from '../src/core/scoring/metrics.ts';
import {
  fewImagesNote,
  meanInterval,
  metricIntervals,
  metricsOf,
  repeatSpread,
  spread,
  uncertainty,
  type ScoredImage,
} from '../src/core/scoring/bootstrap.ts';
import { compareArms } from '../src/core/scoring/compare.ts';
import { formatSpread, summariseRepeats } from '../src/core/run/repeats.ts';
import type { StageResult } from '../src/core/run/run-store.ts';

const image = (id: string, tp: number, fp: number, fn: number, tn = 100, batch = 0): ScoredImage => ({ id, batch, confusion: { tp, fp, fn, tn } });

/** Per-image Jaccard j (two decimals) as counts: tp = 100 j, the rest false negatives. */
const withJaccard = (j: number, id: string, batch = 0): ScoredImage => image(id, Math.round(100 * j), 0, 100 - Math.round(100 * j), 100, batch);

/** numpy's default quantile, written out. */
function referenceQuantile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  const h = (s.length - 1) * p;
  return s[Math.floor(h)] + (h - Math.floor(h)) * (s[Math.ceil(h)] - s[Math.floor(h)]);
}

/** Pooled lesion Jaccard and mean thresholded Jaccard of resampled images, by plain sums. */
function referenceBootstrap(images: ScoredImage[], resamples: number, seed: number) {
  const rng = new Rng(seed);
  const pooled: number[] = [];
  const averaged: number[] = [];
  const thresholded: number[] = [];
  for (let r = 0; r < resamples; r++) {
    let tp = 0;
    let union = 0;
    let perImage = 0;
    let cut = 0;
    for (let j = 0; j < images.length; j++) {
      const c = images[rng.int(0, images.length - 1)].confusion;
      tp += c.tp;
      union += c.tp + c.fp + c.fn;
      const jac = c.tp / (c.tp + c.fp + c.fn);
      perImage += jac;
      cut += jac >= 0.65 ? jac : 0;
    }
    pooled.push(tp / union);
    averaged.push(perImage / images.length);
    thresholded.push(cut / images.length);
  }
  const interval = (v: number[]) => [referenceQuantile(v, 0.025), referenceQuantile(v, 0.975)];
  return { pooled: interval(pooled), averaged: interval(averaged), thresholded: interval(thresholded) };
}

describe('image bootstrap', () => {
  it('gives the closed-form interval of two images, one perfect and one missed', () => {
    // A resample's thresholded Jaccard is 0, 1/2 or 1 with probability 1/4, 1/2, 1/4.
    const ci = metricIntervals([withJaccard(1, 'hit'), withJaccard(0, 'miss')]).thresholdedJaccard;
    expect(ci).toEqual([0, 1]);
  });

  it('matches a reference bootstrap of a fixed per-image vector and seed', () => {
    const js = [0.91, 0.42, 0.77, 0.66, 0.88, 0.12, 0.73, 0.95, 0.81, 0.59, 0.7, 0.84];
    // Big and small lesions by turns, so pooling weighs some images far more than averaging does.
    const images = js.map((j, i) => image(`i${i}`, Math.round(j * (i % 2 ? 400 : 10)), 0, Math.round((1 - j) * (i % 2 ? 400 : 10))));
    const ours = metricIntervals(images, { resamples: 500, seed: 42 });
    const ref = referenceBootstrap(images, 500, 42);
    expect(ours.lesionIoU[0]).toBeCloseTo(ref.pooled[0], 12);
    expect(ours.lesionIoU[1]).toBeCloseTo(ref.pooled[1], 12);
    expect(ours.thresholdedJaccard[0]).toBeCloseTo(ref.thresholded[0], 12);
    expect(ours.thresholdedJaccard[1]).toBeCloseTo(ref.thresholded[1], 12);
    // Pooled figures are recomputed from counts, not averaged per image.
    expect(Math.abs(ours.lesionIoU[0] - ref.averaged[0])).toBeGreaterThan(0.01);
    // The same seed, the same interval; another seed, another one.
    expect(metricIntervals(images, { resamples: 500, seed: 42 })).toEqual(ours);
    expect(metricIntervals(images, { resamples: 500, seed: 43 }).lesionIoU).not.toEqual(ours.lesionIoU);
  });

  it('pools resampled images by their counts: a big hit and a small miss', () => {
    // Resamples {big, big}, {big, small} and {small, small}: pooled 1, 1000/1010 and 0.
    const images = [image('big', 1000, 0, 0), image('small', 0, 0, 10)];
    const ci = metricIntervals(images, { resamples: 4000 });
    expect(ci.lesionIoU).toEqual([0, 1]);
    expect(metricsOf(images, [0, 1]).lesionIoU).toBeCloseTo(1000 / 1010, 12);
    expect(metricsOf(images, [1, 1]).lesionIoU).toBe(0);
  });

  it('gives back the reported figures on an unresampled draw, batches and all, and keeps batch sizes when resampling', () => {
    const rng = new Rng(7);
    const mask = (p: number) => Uint8Array.from({ length: 64 }, () => (rng.chance(p) ? 1 : 0));
    const acc = new MetricAccumulator();
    for (const size of [3, 3, 2]) acc.addBatch(Array.from({ length: size }, () => mask(0.4)), Array.from({ length: size }, () => mask(0.5)));
    const report = acc.report();
    expect(report.perImage.map((s) => s.batch)).toEqual([0, 0, 0, 1, 1, 1, 2, 2]);
    const { perImage: _, images: __, ...figures } = report;
    expect(metricsOf(report.perImage)).toEqual(figures);
    // Positions 0-2, 3-5 and 6-7 stay batches whatever images fill them.
    const pick = [7, 7, 0, 1, 2, 3, 4, 4];
    const macro = (c: Confusion) => (c.tp / (c.tp + c.fp + c.fn) + c.tn / (c.tn + c.fp + c.fn)) / 2;
    const pooledOf = (ids: number[]) =>
      ids.map((i) => report.perImage[i].confusion).reduce((a, c) => ({ tp: a.tp + c.tp, fp: a.fp + c.fp, fn: a.fn + c.fn, tn: a.tn + c.tn }));
    const expected = (3 * macro(pooledOf(pick.slice(0, 3))) + 3 * macro(pooledOf(pick.slice(3, 6))) + 2 * macro(pooledOf(pick.slice(6)))) / 8;
    expect(metricsOf(report.perImage, pick).paperMIoU).toBeCloseTo(expected, 12);
  });

  it('narrows as images are added, about as 1/sqrt(n), around the normal approximation', () => {
    const rng = new Rng(3);
    const all = Array.from({ length: 640 }, (_, i) => withJaccard(Math.min(1, Math.max(0.66, 0.8 + 0.1 * rng.normal())), `i${i}`));
    const widths = [40, 160, 640].map((n) => {
      const images = all.slice(0, n);
      const [lo, hi] = metricIntervals(images).thresholdedJaccard;
      const js = images.map((s) => s.confusion.tp / 100);
      const m = js.reduce((a, b) => a + b, 0) / n;
      const sd = Math.sqrt(js.reduce((a, v) => a + (v - m) ** 2, 0) / n);
      expect(hi - lo).toBeGreaterThan(0.8 * 2 * 1.96 * (sd / Math.sqrt(n)));
      expect(hi - lo).toBeLessThan(1.2 * 2 * 1.96 * (sd / Math.sqrt(n)));
      return hi - lo;
    });
    expect(widths[1]).toBeLessThan(0.65 * widths[0]);
    expect(widths[2]).toBeLessThan(0.65 * widths[1]);
  });

  it('says beside a figure from few images how wide its interval is', () => {
    expect(fewImagesNote(3, [0.41, 0.81])).toBe('3 test images: an interval of ±20 points');
    expect(fewImagesNote(1, [0.5, 0.5])).toBe('1 test image: no interval can be drawn from fewer than two images');
    expect(fewImagesNote(30, [0.4, 0.8])).toBeUndefined();
    const few = uncertainty([withJaccard(0.9, 'a'), withJaccard(0.5, 'b'), withJaccard(0.7, 'c')], { noun: 'image' });
    expect(few.note).toMatch(/^3 images: an interval of ±\d+ points$/);
  });

  it('bootstraps a mean, and summarises repeats by mean, sample sd and range', () => {
    expect(meanInterval([0.5, 0.5, 0.5])).toEqual([0.5, 0.5]);
    expect(meanInterval([0, 1])).toEqual([0, 1]);
    expect(spread([0.767, 0.8, 0.78])).toEqual({ n: 3, mean: expect.closeTo(0.782333, 5), sd: expect.closeTo(0.016623, 5), min: 0.767, max: 0.8 });
    const figures = (x: number) => ({ paperMIoU: x, pooledMIoU: x, lesionIoU: x, dice: x, thresholdedJaccard: x });
    expect(repeatSpread([figures(1), figures(3)]).dice).toEqual({ n: 2, mean: 2, sd: Math.SQRT2, min: 1, max: 3 });
  });
});

describe('compareArms', () => {
  const rng = new Rng(11);
  const scored = (n: number, quality: number, name: string) => ({
    name,
    images: Array.from({ length: n }, (_, i) => withJaccard(Math.min(0.9, Math.max(0, quality + 0.15 * rng.normal())), `img${i}`, i >> 3)),
  });

  it('finds exactly no difference between a model and itself', () => {
    const run = scored(40, 0.75, 'a');
    const c = compareArms([{ name: 'a', runs: [run] }, { name: 'again', runs: [run] }]);
    const [d] = c.differences;
    for (const k of ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice', 'thresholdedJaccard'] as const) {
      expect(d.difference[k]).toBe(0);
      expect(d.ci95[k]).toEqual([0, 0]);
      expect(d.pValue[k]).toBe(1);
    }
    expect([d.wins, d.losses, d.ties]).toEqual([0, 0, 40]);
    expect(d.warning).toMatch(/training noise is not covered/);
    // A single-run arm's interval is the image bootstrap's, as eval prints it.
    expect(c.arms[0].ci95).toEqual(metricIntervals(run.images));
    expect(c.test).toMatch(/paired permutation test.*10,000 random swaps/);
  });

  it('gives the hand-worked exact permutation p-value of three images', () => {
    // Per-image Jaccard A 0.7, 0.7, 0.9 and B 0.8, 0.9, 0.8: differences +0.1, +0.2, -0.1, sum +0.2.
    // Of the 8 sign flips, |sum| >= 0.2 for +++, ++-, +-+, -+-, --+, ---: p = 6/8.
    const a = { name: 'A', images: [image('x', 7, 3, 0), image('y', 7, 0, 3), image('z', 9, 1, 0)] };
    const b = { name: 'B', images: [image('x', 8, 2, 0), image('y', 9, 0, 1), image('z', 8, 0, 2)] };
    const c = compareArms([{ name: 'A', runs: [a] }, { name: 'B', runs: [b] }]);
    const [d] = c.differences;
    expect(c.test).toBe('paired permutation test over images, two-sided, exact (all 2^3 swaps)');
    expect(d.difference.thresholdedJaccard).toBeCloseTo(0.2 / 3, 12);
    expect(d.pValue.thresholdedJaccard).toBe(0.75);
    expect([d.wins, d.losses, d.ties]).toEqual([2, 1, 0]);
    expect(d.perImage.map((o) => o.difference)).toEqual([expect.closeTo(0.1, 12), expect.closeTo(0.2, 12), expect.closeTo(-0.1, 12)]);
    // Images are paired by id, whatever order a run lists them in.
    const shuffled = { name: 'B', images: [b.images[2], b.images[0], b.images[1]] };
    expect(compareArms([{ name: 'A', runs: [a] }, { name: 'B', runs: [shuffled] }]).differences[0].pValue).toEqual(d.pValue);
  });

  it('calls a consistent gain on many images significant', () => {
    const a = scored(40, 0.7, 'a');
    const b = { name: 'b', images: a.images.map((s) => image(s.id, s.confusion.tp + 5, 0, Math.max(0, s.confusion.fn - 5), 100, s.batch)) };
    const [d] = compareArms([{ name: 'a', runs: [a] }, { name: 'b', runs: [b] }]).differences;
    expect(d.pValue.lesionIoU).toBeLessThan(0.001);
    expect(d.ci95.lesionIoU[0]).toBeGreaterThan(0);
    expect(d.wins).toBe(40);
  });

  it('pairs arms by seed: the same seeds drawn for every arm, so a shift shared by a seed cancels', () => {
    // Each seed moves every image of both arms alike (its own luck); arm B is one point better on every image of every seed.
    const quality = [0.55, 0.8, 0.68];
    const armA = quality.map((q, s) => ({ ...scored(40, q, `a${s}`), seed: [2137, 2, 3][s] }));
    const armB = armA.map((run) => ({ name: run.name.replace('a', 'b'), seed: run.seed, images: run.images.map((x) => image(x.id, x.confusion.tp + 1, x.confusion.fp, Math.max(0, x.confusion.fn - 1), 100, x.batch)) }));
    // Listed in another seed order: pairing goes by seed, not by position.
    const paired = compareArms([{ name: 'A', runs: armA }, { name: 'B', runs: [armB[2], armB[0], armB[1]] }]);
    expect(paired.pairedBySeed).toBe(true);
    const [d] = paired.differences;
    expect(d.ci95.lesionIoU[0]).toBeGreaterThan(0);
    expect(d.probabilityBetter!.lesionIoU).toBe(1);
    expect(paired.arms[1].runs).toEqual(['b0', 'b1', 'b2']);
    // The same runs without seeds are resampled arm by arm: the seeds' spread swamps the shared one-point gain.
    const unseeded = (runs: typeof armA) => runs.map(({ name, images }) => ({ name, images }));
    const unpaired = compareArms([{ name: 'A', runs: unseeded(armA) }, { name: 'B', runs: unseeded(armB) }]);
    expect(unpaired.pairedBySeed).toBe(false);
    expect(unpaired.differences[0].ci95.lesionIoU[0]).toBeLessThan(0);
    // Different seeds in the two arms are not paired.
    expect(compareArms([{ name: 'A', runs: armA }, { name: 'B', runs: armB.map((r) => ({ ...r, seed: r.seed + 100 })) }]).pairedBySeed).toBe(false);
  });

  it('widens the interval by training noise over seeds, and reports P(A > B) over paired repeats', () => {
    // Three seeds per arm, whose quality varies from seed to seed far more than the arms differ.
    const seedsA = [0.6, 0.8, 0.7].map((q, s) => scored(60, q, `a${s}`));
    const seedsB = [0.75, 0.65, 0.72].map((q, s) => scored(60, q, `b${s}`));
    const c = compareArms([{ name: 'A', runs: seedsA }, { name: 'B', runs: seedsB }]);
    const [d] = c.differences;
    const single = compareArms([{ name: 'A', runs: [seedsA[1]] }, { name: 'B', runs: [seedsB[1]] }]).differences[0];
    const width = (i: [number, number]) => i[1] - i[0];
    expect(width(d.ci95.lesionIoU)).toBeGreaterThan(2 * width(single.ci95.lesionIoU));
    expect(d.warning).toBeUndefined();
    expect(single.warning).toMatch(/A has one run, B has one run/);
    // B beats A on the pairs (a0, b0) and (a2, b2), not (a1, b1).
    const wins = [0, 1, 2].filter((i) => c.arms[1].perRun[i].lesionIoU > c.arms[0].perRun[i].lesionIoU).length;
    expect(d.pairs).toBe(3);
    expect(d.probabilityBetter!.lesionIoU).toBe(wins / 3);
    expect(c.arms[0].spread.lesionIoU.n).toBe(3);
  });

  it('refuses runs scored on different images, naming them', () => {
    const a = scored(5, 0.7, 'a');
    const b = { name: 'b', images: a.images.slice(1) };
    expect(() => compareArms([{ name: 'a', runs: [a] }, { name: 'b', runs: [b] }])).toThrow(LesionError);
    expect(() => compareArms([{ name: 'a', runs: [a] }, { name: 'b', runs: [b] }])).toThrow('b was scored on 4 images and a on 5 (img0 is missing): a paired comparison needs the same images');
  });
});

describe('summariseRepeats', () => {
  const figures = (lesionIoU: number) => ({ paperMIoU: 0.5, pooledMIoU: 0.5, lesionIoU, dice: 0.6, thresholdedJaccard: 0.4, images: 6 });
  const result = (stage: 'teacher' | 'student', test: number | null, val: number): StageResult => ({
    stage,
    best: { epoch: 2, val: figures(val) },
    last: { epoch: 3, val: figures(val) },
    test: test === null ? null : { overall: figures(test), bySet: {} },
  });

  it('gives each stage its seeds\' test figures, mean and spread, and falls back to validation when a seed has no test split', () => {
    const stages = summariseRepeats([
      { seed: 1, results: [result('teacher', 0.767, 0.7), result('student', null, 0.71)] },
      { seed: 2, results: [result('teacher', 0.8, 0.7), result('student', 0.8, 0.75)] },
      { seed: 3, results: [result('teacher', 0.78, 0.7)] },
    ]);
    expect(stages.map((s) => [s.stage, s.split, s.seeds])).toEqual([['teacher', 'test', [1, 2, 3]], ['student', 'val', [1, 2]]]);
    expect(stages[0].spread.lesionIoU).toEqual({ n: 3, mean: expect.closeTo(0.782333, 5), sd: expect.closeTo(0.016623, 5), min: 0.767, max: 0.8 });
    expect(formatSpread(stages[0].spread.lesionIoU)).toBe('78.2 ± 1.7 (76.7-80.0)');
    expect(stages[1].perSeed.map((m) => m.lesionIoU)).toEqual([0.71, 0.75]);
  });
});
