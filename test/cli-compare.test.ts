/**
 * Is the difference real, through the real CLI (child processes) on PH2:
 * `train --seeds` repeats a tiny card, `eval --json` gives every figure its
 * interval, and `compare` sets the trained seeds side by side, refusing
 * models of different input sizes and data without masks. Expected figures
 * come from the other commands' own outputs, never from compare's.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunCard } from '../src/core/config.ts';
import { tinyTestCard } from './helpers/cards.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { saveLayersModel } from '../src/node/model-files.ts';
import { cli, type Outcome } from './helpers/cli.ts';
import { datasetsRoot, tinyConfig } from './helpers/tf-node.ts';

const PH2 = path.join(datasetsRoot, 'ph2');
const ISIC_IMAGES = path.join(datasetsRoot, 'isic2018', 'ISIC2018_Task1-2_Training_Input');
const FIGURES = ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice', 'thresholdedJaccard'] as const;

/** A teacher only, without noise, at 32 px: seconds per epoch. */
function tinyCard(): RunCard {
  const card = tinyTestCard('cli-compare-test', 3);
  return { ...card, data: { ...card.data, unlabeledPerLabeled: 4 } };
}

type Figures = Record<(typeof FIGURES)[number], number> & { images: number; ci95: Record<(typeof FIGURES)[number], [number, number]>; note?: string };

let work: string;
let series: string;
let trained: Outcome;
const model = (seed: number): string => path.join(series, `seed-${seed}`, 'teacher', 'model');

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'lesion-cli-compare-'));
  series = path.join(work, 'repeat');
  const card = path.join(work, 'card.json');
  writeFileSync(card, JSON.stringify(tinyCard()));
  trained = await cli('train', '--config', card, '--labeled', PH2, '--out', series, '--seeds', '1,2', '--backend', 'wasm');
}, 600_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('lesion-studio train --seeds', () => {
  it('runs the card once per seed in its own folder and prints each seed, the mean and the spread', () => {
    expect(trained.code, trained.stderr).toBe(0);
    expect(trained.stderr).toContain(`seed 1 (1 of 2): running in ${path.join(series, 'seed-1')}`);
    expect(trained.stderr).toContain(`seed 2 (2 of 2): running in ${path.join(series, 'seed-2')}`);
    const tested = [1, 2].map((seed) => JSON.parse(readFileSync(path.join(series, `seed-${seed}`, 'teacher', 'metrics.json'), 'utf8')).test.overall as Figures);
    const [a, b] = tested.map((t) => t.lesionIoU);
    const mean = (a + b) / 2;
    const sd = Math.abs(a - b) / Math.SQRT2;
    const lines = trained.stdout.split('\n');
    expect(lines[0]).toBe('cli-compare-test over seeds 1, 2, in percent (each seed draws its own split, initial weights, data order, noise and dropout):');
    const lesionColumn = (line: string) => line.split(/\s{2,}/)[5];
    expect(lesionColumn(lines.find((l) => /^teacher\s+test\s+1\s/.test(l))!)).toBe((100 * a).toFixed(1));
    expect(lesionColumn(lines.find((l) => /^teacher\s+test\s+2\s/.test(l))!)).toBe((100 * b).toFixed(1));
    const p = (x: number) => (100 * x).toFixed(1);
    expect(lesionColumn(lines.find((l) => l.includes('mean ± sd'))!)).toBe(`${p(mean)} ± ${p(sd)} (${p(Math.min(a, b))}-${p(Math.max(a, b))})`);
    const repeats = JSON.parse(readFileSync(path.join(series, 'repeats.json'), 'utf8'));
    expect(repeats.seeds).toEqual([1, 2]);
    expect(repeats.stages[0].spread.lesionIoU.mean).toBeCloseTo(mean, 12);
  });

  it('stores each seed\'s test figures with their intervals, in metrics.json and metrics.csv', () => {
    const metrics = JSON.parse(readFileSync(path.join(series, 'seed-1', 'metrics.json'), 'utf8'));
    const test = metrics.results[0].test.overall as Figures;
    for (const f of FIGURES) {
      expect(test.ci95[f][0]).toBeLessThanOrEqual(test[f]);
      expect(test.ci95[f][1]).toBeGreaterThanOrEqual(test[f]);
    }
    // A tiny test split says how wide that makes its interval.
    expect(test.note).toBe(`${test.images} test images: an interval of ±${Math.round(50 * (test.ci95.lesionIoU[1] - test.ci95.lesionIoU[0]))} points`);
    const [header, ...rows] = readFileSync(path.join(series, 'seed-1', 'metrics.csv'), 'utf8').trim().split('\n');
    const columns = header.split(',');
    expect(columns.slice(-3)).toEqual(['thresholdedJaccard_ci95_lo', 'thresholdedJaccard_ci95_hi', 'note']);
    const testRow = rows.find((r) => r.startsWith('teacher,test,all,'))!.split(',');
    expect(Number(testRow[columns.indexOf('lesionIoU_ci95_lo')])).toBe(test.ci95.lesionIoU[0]);
    expect(testRow.at(-1)).toBe(test.note);
    const valRow = rows.find((r) => r.startsWith('teacher,val,all,'))!.split(',');
    expect(valRow[columns.indexOf('lesionIoU_ci95_lo')]).toBe('');
  });
});

describe('lesion-studio eval and compare', () => {
  let evals: { overall: Figures; sets: Record<string, Figures> }[];

  beforeAll(async () => {
    evals = [];
    for (const seed of [1, 2]) {
      const { code, stdout, stderr } = await cli('eval', '--model', model(seed), '--data', PH2, '--json', '--backend', 'wasm');
      expect(code, stderr).toBe(0);
      evals.push(JSON.parse(stdout));
    }
  }, 300_000);

  it('eval --json gives every figure, per set and overall, its 95 % interval around it', () => {
    for (const report of [evals[0].overall, evals[0].sets.ph2]) {
      expect(report.images).toBe(32);
      for (const f of FIGURES) {
        const [lo, hi] = report.ci95[f];
        expect(lo, f).toBeLessThanOrEqual(report[f]);
        expect(hi, f).toBeGreaterThanOrEqual(report[f]);
      }
      expect(report.ci95.lesionIoU[1] - report.ci95.lesionIoU[0]).toBeGreaterThan(0);
      // 32 images are not few.
      expect(report.note).toBeUndefined();
    }
  });

  it('compare gives the paired difference of two seeds\' models with its interval, p-value and wins, and says training noise is not covered', async () => {
    const { code, stdout, stderr } = await cli('compare', '--model', model(1), '--model', model(2), '--data', PH2, '--json', '--backend', 'wasm');
    expect(code, stderr).toBe(0);
    const c = JSON.parse(stdout);
    expect(c.images).toBe(32);
    expect(c.test).toBe('paired permutation test over images, two-sided, 10,000 random swaps');
    const [d] = c.differences;
    for (const f of FIGURES) {
      // The same figures eval printed for each model, and for one model the same interval.
      expect(c.arms[0].value[f]).toBeCloseTo(evals[0].overall[f], 12);
      expect(d.difference[f]).toBeCloseTo(evals[1].overall[f] - evals[0].overall[f], 12);
      expect(c.arms[0].ci95[f]).toEqual(evals[0].overall.ci95[f]);
      expect(d.ci95[f][0]).toBeLessThanOrEqual(d.difference[f]);
      expect(d.ci95[f][1]).toBeGreaterThanOrEqual(d.difference[f]);
      expect(d.pValue[f]).toBeGreaterThan(0);
      expect(d.pValue[f]).toBeLessThanOrEqual(1);
    }
    expect(d.perImage).toHaveLength(32);
    expect(d.wins + d.losses + d.ties).toBe(32);
    expect(d.warning).toMatch(/^training noise is not covered/);

    const text = await cli('compare', '--model', model(1), '--model', model(2), '--data', PH2, '--backend', 'wasm');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`\nA: ${model(1)}\nB: ${model(2)}\n`);
    expect(text.stdout).toContain('B minus A, paired on the same images');
    expect(text.stdout).toContain(`per image, lesion IoU: B wins ${d.wins}, loses ${d.losses}, ties ${d.ties}`);
    expect(text.stdout).toContain('warning: training noise is not covered');
  }, 300_000);

  it('compare of a model with itself gives exactly 0, an interval of [0, 0] and p = 1', async () => {
    const { code, stdout, stderr } = await cli('compare', '--model', model(1), '--model', model(1), '--data', PH2, '--json', '--backend', 'wasm');
    expect(code, stderr).toBe(0);
    const [d] = JSON.parse(stdout).differences;
    for (const f of FIGURES) {
      expect(d.difference[f]).toBe(0);
      expect(d.ci95[f]).toEqual([0, 0]);
      expect(d.pValue[f]).toBe(1);
    }
  }, 300_000);

  it('takes the seeds of one card as one arm, paired by seed with the other arm\'s, with P(A > B) over paired runs', async () => {
    const { code, stdout, stderr } = await cli('compare', '--model', `${model(1)},${model(2)}`, '--model', `${model(2)},${model(1)}`, '--data', PH2, '--json', '--backend', 'wasm');
    expect(code, stderr).toBe(0);
    const c = JSON.parse(stdout);
    // Both arms hold the seeds 1 and 2: they are paired by seed, whatever order they were given in.
    expect(c.pairedBySeed).toBe(true);
    expect(c.arms.map((a: { runs: string[] }) => a.runs)).toEqual([[model(1), model(2)], [model(1), model(2)]]);
    const [d] = c.differences;
    // The same two models in both arms, each against itself: exactly no difference, in every resample too.
    for (const f of FIGURES) {
      expect(d.difference[f]).toBe(0);
      expect(d.ci95[f]).toEqual([0, 0]);
    }
    expect(d.pairs).toBe(2);
    expect(d.probabilityBetter.lesionIoU).toBe(0.5);
    expect(d.warning).toContain('has 2 seeds');
  }, 300_000);

  it('exits 2, naming both, on models that take different inputs', async () => {
    const big = path.join(work, 'big-model');
    await tf.setBackend('cpu');
    const built = buildDeepLabV3(tinyConfig('mobilenetv2', { inputSize: 64 }), 'export', 1);
    await saveLayersModel(built, big, { format: 'lesion-studio-model/1', inputSize: 64, logitThreshold: 0 });
    built.dispose();
    const { code, stdout, stderr } = await cli('compare', '--model', model(1), '--model', big, '--data', PH2, '--backend', 'wasm');
    expect(code, stderr).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(`lesion-studio compare: the models take different inputs (${model(1)} takes 32x32 RGB, ${big} takes 64x64 RGB)`);
  }, 300_000);

  it('exits 2 on data without masks, and on fewer than two arms', async () => {
    const loose = path.join(work, 'loose');
    mkdirSync(loose);
    for (const name of ['ISIC_0000013.jpg', 'ISIC_0000015.jpg']) symlinkSync(path.join(ISIC_IMAGES, name), path.join(loose, name));
    const unlabeled = await cli('compare', '--model', model(1), '--model', model(2), '--data', loose);
    expect(unlabeled.code, unlabeled.stderr).toBe(2);
    expect(unlabeled.stderr).toMatch(new RegExp(`lesion-studio compare: no labeled images \\(image \\+ mask pairs\\) in ${loose} \\(\\d+ images without masks\\): models are compared against ground-truth masks`));
    const one = await cli('compare', '--model', model(1), '--data', PH2);
    expect(one.code).toBe(2);
    expect(one.stderr).toContain('lesion-studio compare: give two --model arms or more (got 1)');
  });
});
