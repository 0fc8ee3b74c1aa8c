/**
 * The simulated active-learning loop's numbers, summarised the one way both
 * the CLI's table and the studio's Results view show them: per round, each
 * strategy's lesion IoU on the test split, averaged over the seeds with a
 * bootstrap interval over seeds, and its difference to random paired by seed
 * (the same split, initial images and round-0 model) with its interval. The
 * seeds' spread is what tells a strategy's gain from luck. Free of
 * TensorFlow.js, so the page imports it.
 */
import { meanInterval, type Interval } from '../scoring/bootstrap.ts';
import type { AcquisitionScore } from './acquisition.ts';

export interface SimulationRow {
  seed: number;
  strategy: AcquisitionScore;
  round: number;
  /** Images with revealed masks the model was trained on. */
  labeled: number;
  lesionIoU: number;
  dice: number;
  /** Ids revealed in this round. */
  revealed: string[];
}

/** A strategy's lesion IoU minus random's in the same round, seed by seed, averaged. */
export interface PairedDifference {
  difference: number;
  /** Bootstrap over seeds of the mean paired difference; a single point with one seed. */
  ci95: Interval;
  /** Seeds with both figures. */
  seeds: number;
}

export interface SimulationSummary {
  strategies: AcquisitionScore[];
  seeds: number[];
  rounds: {
    round: number;
    labeled: number;
    /** Per strategy, in `strategies` order. */
    mean: number[];
    /** Per strategy, each seed's value in `seeds` order. */
    perSeed: number[][];
    /** Per strategy, the bootstrap interval over seeds of the mean. */
    ci95: Interval[];
    /** Per strategy, its paired difference to random; null for random itself and when random was not run. */
    vsRandom: (PairedDifference | null)[];
  }[];
}

export function summariseSimulation(rows: SimulationRow[]): SimulationSummary {
  const strategies = [...new Set(rows.map((r) => r.strategy))];
  const seeds = [...new Set(rows.map((r) => r.seed))];
  const rounds = [...new Set(rows.map((r) => r.round))].sort((a, b) => a - b).map((round) => {
    const at = rows.filter((r) => r.round === round);
    const bySeed = strategies.map((strategy) => new Map(at.filter((r) => r.strategy === strategy).map((r) => [r.seed, r.lesionIoU])));
    const perSeed = bySeed.map((values) => seeds.filter((seed) => values.has(seed)).map((seed) => values.get(seed)!));
    const random = strategies.indexOf('random');
    const vsRandom = bySeed.map((values, s) => {
      if (random < 0 || s === random) return null;
      const differences = seeds.filter((seed) => values.has(seed) && bySeed[random].has(seed)).map((seed) => values.get(seed)! - bySeed[random].get(seed)!);
      return { difference: mean(differences), ci95: meanInterval(differences), seeds: differences.length };
    });
    return { round, labeled: at[0].labeled, perSeed, mean: perSeed.map(mean), ci95: perSeed.map((v) => meanInterval(v)), vsRandom };
  });
  return { strategies, seeds, rounds };
}

const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;

/**
 * Rounds x strategies as a Markdown table: each strategy's mean over seeds,
 * then each one's difference to random; with several seeds each figure has
 * its 95 % interval over seeds in brackets.
 */
export function simulationTable(result: { rows: SimulationRow[] }): string {
  const { strategies, seeds, rounds } = summariseSimulation(result.rows);
  const several = seeds.length > 1;
  const compared = strategies.filter((s) => s !== 'random' && strategies.includes('random'));
  const fixed = (x: number, sign = false): string => `${sign && x >= 0 ? '+' : ''}${x.toFixed(3)}`;
  const withInterval = (x: number, ci: Interval, sign = false): string => (several ? `${fixed(x, sign)} [${fixed(ci[0], sign)}, ${fixed(ci[1], sign)}]` : fixed(x, sign));
  const header = [...strategies, ...compared.map((s) => `${s} - random`)];
  const lines = [`| round | labeled | ${header.join(' | ')} |`, `| --- | --- | ${header.map(() => '---').join(' | ')} |`];
  for (const { round, labeled, mean: means, ci95, vsRandom } of rounds) {
    const cells = [
      ...strategies.map((_, s) => withInterval(means[s], ci95[s])),
      ...compared.map((name) => {
        const d = vsRandom[strategies.indexOf(name)]!;
        return withInterval(d.difference, d.ci95, true);
      }),
    ];
    lines.push(`| ${round} | ${labeled} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}
