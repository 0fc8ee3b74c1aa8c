/**
 * The simulated active-learning loop's numbers, summarised the one way both
 * the CLI's table and the studio's Results view show them: per round, each
 * strategy's lesion IoU on the test split, averaged over the seeds. Free of
 * TensorFlow.js, so the page imports it.
 */
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

export interface SimulationSummary {
  strategies: AcquisitionScore[];
  seeds: number[];
  rounds: { round: number; labeled: number; mean: number[]; perSeed: number[][] }[];
}

export function summariseSimulation(rows: SimulationRow[]): SimulationSummary {
  const strategies = [...new Set(rows.map((r) => r.strategy))];
  const seeds = [...new Set(rows.map((r) => r.seed))];
  const rounds = [...new Set(rows.map((r) => r.round))].sort((a, b) => a - b).map((round) => {
    const at = rows.filter((r) => r.round === round);
    const perSeed = strategies.map((strategy) => seeds.flatMap((seed) => at.filter((r) => r.strategy === strategy && r.seed === seed).map((r) => r.lesionIoU)));
    return { round, labeled: at[0].labeled, perSeed, mean: perSeed.map((v) => v.reduce((a, b) => a + b, 0) / v.length) };
  });
  return { strategies, seeds, rounds };
}

/** Rounds x strategies as a Markdown table: the mean over seeds, each seed's value in brackets when there are several. */
export function simulationTable(result: { rows: SimulationRow[] }): string {
  const { strategies, seeds, rounds } = summariseSimulation(result.rows);
  const lines = [`| round | labeled | ${strategies.join(' | ')} |`, `| --- | --- | ${strategies.map(() => '---').join(' | ')} |`];
  for (const { round, labeled, mean, perSeed } of rounds) {
    const cells = strategies.map((_, s) => (seeds.length > 1 ? `${mean[s].toFixed(3)} (${perSeed[s].map((v) => v.toFixed(3)).join(', ')})` : mean[s].toFixed(3)));
    lines.push(`| ${round} | ${labeled} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}
