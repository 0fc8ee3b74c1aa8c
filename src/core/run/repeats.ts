/**
 * One card run with several seeds (`train --seeds`, the studio's Repeat with
 * seeds): each seed's figures per stage, their mean and spread. Each seed
 * draws its own split, initial weights, data order, noise and dropout, so the
 * spread is the card's training noise and choice of images together, which
 * is what a single run hides (comparing-runs.md). Free of TensorFlow.js, so
 * the page imports it.
 */
import type { StageName, TestFigures } from '../events.ts';
import { repeatSpread, type MetricKey, type Spread } from '../scoring/bootstrap.ts';
import type { StageResult } from './run-store.ts';

export interface SeedRun {
  seed: number;
  results: readonly StageResult[];
}

export interface StageRepeats {
  stage: StageName;
  /** 'test' when every seed has test figures for the stage, else the best epoch's validation figures. */
  split: 'test' | 'val';
  seeds: number[];
  perSeed: TestFigures[];
  spread: Record<MetricKey, Spread>;
}

/** Per trained stage, in the first seed's order, the seeds that finished it, their figures and spread. */
export function summariseRepeats(runs: readonly SeedRun[]): StageRepeats[] {
  const stages = [...new Set(runs.flatMap((r) => r.results.map((s) => s.stage)))];
  return stages.flatMap((stage) => {
    const done = runs.flatMap((r) => r.results.filter((s) => s.stage === stage).map((s) => ({ seed: r.seed, result: s })));
    const split = done.every((d) => d.result.test) ? 'test' : 'val';
    const figured = done.flatMap((d) => {
      const figures = split === 'test' ? d.result.test?.overall : d.result.best.val;
      return figures ? [{ seed: d.seed, figures }] : [];
    });
    if (figured.length === 0) return [];
    const perSeed = figured.map((f) => f.figures);
    return [{ stage, split, seeds: figured.map((f) => f.seed), perSeed, spread: repeatSpread(perSeed) }];
  });
}

/** Mean, sd and range of each figure as percentages, e.g. "78.2 ± 1.7 (76.7-80.0)". */
export function formatSpread(s: Spread): string {
  const p = (x: number): string => (100 * x).toFixed(1);
  return s.n < 2 ? p(s.mean) : `${p(s.mean)} ± ${p(s.sd)} (${p(s.min)}-${p(s.max)})`;
}
