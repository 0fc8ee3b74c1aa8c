import { describe, expect, it } from 'vitest';
import {
  kFolds,
  labeledUnlabeledRatio,
  paperFold,
  paperSplit,
  splitSamples,
} from '../src/core/dataset/splits.ts';
import { parseRunCard, quickCard } from '../src/core/config.ts';
import type { Sample } from '../src/core/dataset/layouts.ts';
import { ConfigError } from '../src/core/errors.ts';
import type { TrainerEvent } from '../src/core/events.ts';
import { planSplit } from '../src/core/run/pipeline.ts';
import { Rng } from '../src/core/random.ts';

const samples = Array.from({ length: 100 }, (_, i) => ({ id: `ISIC_${String(i).padStart(7, '0')}`, image: `${i}.jpg` }));
const ids = (items: { id: string }[]) => items.map((item) => item.id);

describe('splitSamples', () => {
  it('is disjoint, covers everything and has the asked sizes', () => {
    const { train, val, test } = splitSamples(samples, { seed: 2137, val: 0.2, test: 0.1 });
    expect([train.length, val.length, test.length]).toEqual([70, 20, 10]);
    const all = [...ids(train), ...ids(val), ...ids(test)];
    expect(new Set(all).size).toBe(100);
    expect(new Set(all)).toEqual(new Set(ids(samples)));
  });

  it('gives the same split for the same seed whatever the input order, another for another seed', () => {
    const a = splitSamples(samples, { seed: 7, val: 0.2, test: 0.2 });
    const shuffled = new Rng(99).shuffle([...samples]);
    expect(splitSamples(shuffled, { seed: 7, val: 0.2, test: 0.2 })).toEqual(a);
    expect(ids(splitSamples(samples, { seed: 8, val: 0.2, test: 0.2 }).val)).not.toEqual(ids(a.val));
  });

  it('is not simply the first ids in order', () => {
    const { val } = splitSamples(samples, { seed: 1, val: 0.2, test: 0 });
    expect(ids(val)).not.toEqual(ids(samples.slice(0, 20)));
  });

  it('rejects fractions that do not fit', () => {
    expect(() => splitSamples(samples, { seed: 1, val: 0.6, test: 0.6 })).toThrow(ConfigError);
    expect(() => splitSamples(samples, { seed: 1, val: -0.1, test: 0 })).toThrow(ConfigError);
  });
});

describe('kFolds', () => {
  it('puts every sample in exactly one validation fold and the rest in training', () => {
    const folds = kFolds(samples.slice(0, 23), 5, 3);
    expect(folds.map((fold) => fold.val.length).sort()).toEqual([4, 4, 5, 5, 5]);
    const seen = folds.flatMap((fold) => ids(fold.val));
    expect(new Set(seen).size).toBe(23);
    for (const fold of folds) {
      expect(fold.train.length + fold.val.length).toBe(23);
      const trainIds = new Set(ids(fold.train));
      expect(fold.val.some((sample) => trainIds.has(sample.id))).toBe(false);
    }
    expect(kFolds([...samples.slice(0, 23)].reverse(), 5, 3)).toEqual(folds);
  });
});

describe("the paper's folds", () => {
  it('maps index mod 15 to folds of three consecutive rows', () => {
    expect(Array.from({ length: 30 }, (_, i) => paperFold(i))).toEqual([
      0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4,
    ]);
  });

  it('validates on one fold in id order and trains on the rest', () => {
    const reversed = [...samples].reverse();
    const { train, val } = paperSplit(reversed, 1);
    expect(ids(val).slice(0, 6)).toEqual(['ISIC_0000003', 'ISIC_0000004', 'ISIC_0000005', 'ISIC_0000018', 'ISIC_0000019', 'ISIC_0000020']);
    expect(train.length + val.length).toBe(100);
    const folds = [0, 1, 2, 3, 4].map((fold) => ids(paperSplit(samples, fold).val));
    // 100 = 6 * 15 + 10: the last 10 rows fill folds 0-2 and one row of fold 3.
    expect(folds.map((fold) => fold.length)).toEqual([21, 21, 21, 19, 18]);
    expect(new Set(folds.flat()).size).toBe(100);
    expect(() => paperSplit(samples, 5)).toThrow(ConfigError);
  });
});

describe('labeledUnlabeledRatio', () => {
  const unlabeled = Array.from({ length: 50 }, (_, i) => ({ id: `U${String(i).padStart(3, '0')}` }));

  it('draws m unlabeled per labeled, seeded and order independent', () => {
    const subset = labeledUnlabeledRatio(samples.slice(0, 10), unlabeled, 4, 2137);
    expect(subset).toHaveLength(40);
    expect(new Set(ids(subset)).size).toBe(40);
    expect(labeledUnlabeledRatio(samples.slice(0, 10), [...unlabeled].reverse(), 4, 2137)).toEqual(subset);
    expect(labeledUnlabeledRatio(samples.slice(0, 10), unlabeled, 4, 1)).not.toEqual(subset);
  });

  it('takes all when there are fewer than asked, and rejects m <= 0', () => {
    expect(labeledUnlabeledRatio(samples.slice(0, 20), unlabeled, 4, 2137)).toHaveLength(50);
    expect(() => labeledUnlabeledRatio(samples, unlabeled, 0, 1)).toThrow(ConfigError);
  });
});

describe('planSplit', () => {
  it('uses an image once when two sets hold it under ids that differ only in case, and says so', () => {
    const sample = (set: string, id: string): Sample => ({ id, set, layout: 'images-masks', split: 'unspecified', image: `${set}/images/${id}.jpg`, mask: `${set}/masks/${id}.png` });
    const labeled = [sample('a', 'ISIC_0000001'), sample('b', 'isic_0000001'), ...samples.slice(2, 20).map((s) => sample('a', s.id))];
    const events: TrainerEvent[] = [];
    const plan = planSplit(quickCard(), { labeled, unlabeled: [] }, (e) => events.push(e));
    const planned = [...plan.train, ...plan.val, ...plan.test].map((s) => s.image);
    expect(planned).toHaveLength(19);
    expect(planned).toContain('a/images/ISIC_0000001.jpg');
    expect(events).toEqual([{ type: 'warning', file: 'b/images/isic_0000001.jpg', message: 'image id isic_0000001 differs only in case from a/images/ISIC_0000001.jpg; used once, from a' }]);
    expect(plan.labelsHidden).toBe(0);
    const card = quickCard();
    const half = planSplit({ ...card, data: { ...card.data, labeledFraction: 0.5 } }, { labeled, unlabeled: [] });
    expect(half.labelsHidden).toBeGreaterThan(0);
    expect(half.train.length + half.labelsHidden).toBe(plan.train.length);
  });

  it('holds out by the split seed when the card has one: repeats with other seeds keep their test images', () => {
    const labeled = samples.slice(0, 40).map((s): Sample => ({ id: s.id, set: 'a', layout: 'images-masks', split: 'unspecified', image: `a/images/${s.id}.jpg`, mask: `a/masks/${s.id}.png` }));
    const card = quickCard();
    const first = planSplit(card, { labeled, unlabeled: [] });
    const repeat = parseRunCard({ ...card, seed: card.seed + 1, data: { ...card.data, splitSeed: card.seed } });
    expect(repeat.data.splitSeed).toBe(card.seed);
    const repeated = planSplit(repeat, { labeled, unlabeled: [] });
    expect(ids(repeated.test)).toEqual(ids(first.test));
    expect(ids(repeated.val)).toEqual(ids(first.val));
    // Without it, the other seed draws another split.
    expect(ids(planSplit({ ...card, seed: card.seed + 1 }, { labeled, unlabeled: [] }).test)).not.toEqual(ids(first.test));
    expect(() => parseRunCard({ ...card, data: { ...card.data, splitSeed: -1 } })).toThrow(ConfigError);
  });
});
