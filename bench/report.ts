/**
 * Turns the benchmark's outcomes into the tables it prints. A figure is
 * either measured (median of the timed steps), an upper bound (only the
 * first, warm-up step finished within the budget), a lower bound (no step
 * finished: the child was stopped) or an estimate (not run, predicted from a
 * smaller configuration on the same backend); every cell says which.
 */
import type { DecodeResult } from './decode.ts';
import type { ModelName, TaskName, TaskResult } from './tasks.ts';

export interface TaskSpec {
  key: string;
  title: string;
  task: TaskName;
  model: ModelName;
  size: number;
  batch: number;
  /** Skip it when the figure of `key` times `factor` says it cannot fit the budget. */
  estimateFrom?: { key: string; factor: number };
  /** A WebGPU-only cell that runs with only these of our kernels (step.ts --levers). */
  levers?: string;
  /** A cell that runs on WebGPU alone. */
  webgpuOnly?: boolean;
}

export type Outcome =
  | { kind: 'done'; result: TaskResult; seconds: number }
  | { kind: 'stopped'; afterSeconds: number }
  | { kind: 'failed'; message: string }
  | { kind: 'skipped'; reason: string; estimateMs?: number };

export interface Figure {
  ms: number;
  bound: 'measured' | 'at-most' | 'more-than' | 'estimate';
  /** Timed steps behind a measured figure. */
  n?: number;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function figureOf(outcome: Outcome | undefined): Figure | undefined {
  switch (outcome?.kind) {
    case 'done': {
      const { timesMs, warmupMs } = outcome.result;
      if (timesMs.length > 0) return { ms: median(timesMs), bound: 'measured', n: timesMs.length };
      return warmupMs.length > 0 ? { ms: warmupMs[0], bound: 'at-most' } : undefined;
    }
    case 'stopped':
      return { ms: outcome.afterSeconds * 1000, bound: 'more-than' };
    case 'skipped':
      return outcome.estimateMs === undefined ? undefined : { ms: outcome.estimateMs, bound: 'estimate' };
    default:
      return undefined;
  }
}

const seconds = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(0)} s` : `${(ms / 1000).toFixed(2)} s`);
const rate = (perSecond: number): string => (perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(2));

/** One cell: time per step (or batch) and images per second. */
export function describe(outcome: Outcome | undefined, batch: number): string {
  const f = figureOf(outcome);
  if (!f) {
    if (outcome?.kind === 'failed') return `failed: ${outcome.message}`;
    if (outcome?.kind === 'skipped') return `skipped: ${outcome.reason}`;
    return '—';
  }
  const imgs = (1000 * batch) / f.ms;
  const dispatches = outcome?.kind === 'done' && outcome.result.dispatches ? `  ${outcome.result.dispatches.total} dispatches` : '';
  switch (f.bound) {
    case 'measured':
      return `${seconds(f.ms)}  ${rate(imgs)} img/s  (n=${f.n})${dispatches}`;
    case 'at-most':
      return `≤ ${seconds(f.ms)}  ≥ ${rate(imgs)} img/s  (1st step only)${dispatches}`;
    case 'more-than':
      return `> ${seconds(f.ms)}  < ${rate(imgs)} img/s  (stopped)`;
    case 'estimate':
      return `~${seconds(f.ms)}  (estimate, not run)`;
  }
}

/** How many times faster than cpu `other` is (cpu time / other time), with the bound the two figures allow. */
export function speedup(cpu: Figure | undefined, other: Figure | undefined): string {
  if (!cpu || !other || cpu.bound === 'estimate' || other.bound === 'estimate') return '—';
  const r = cpu.ms / other.ms;
  const text = r >= 10 ? r.toFixed(0) : r.toFixed(2);
  const cpuLow = cpu.bound === 'more-than' || other.bound === 'at-most';
  const cpuHigh = cpu.bound === 'at-most' || other.bound === 'more-than';
  if (cpuLow && cpuHigh) return '—';
  if (cpuLow) return `≥ ${text}x`;
  if (cpuHigh) return `≤ ${text}x`;
  return `${text}x`;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function decodeTable(results: DecodeResult[], size: number): string {
  return table(
    ['images', 'files', 'decodes', 'mean MP', `ms per image (to ${size} px)`, 'images/s'],
    results.map((r) => [r.name, String(r.files), String(r.decodes), r.megapixels.toFixed(1), r.msPerImage.toFixed(0), rate(r.imagesPerSecond)]),
  );
}

export function memoryRow(backend: string, outcome: Outcome | undefined): string[] {
  if (outcome?.kind !== 'done' || !outcome.result.memory) return [backend, describe(outcome, 1), '', '', '', '', '', ''];
  const { before, after } = outcome.result.memory;
  const dt = after.tensors - before.tensors;
  const db = after.bytes - before.bytes;
  return [
    backend,
    String(before.tensors),
    String(after.tensors),
    `${dt >= 0 ? '+' : ''}${dt}`,
    String(before.bytes),
    String(after.bytes),
    `${db >= 0 ? '+' : ''}${db}`,
    dt === 0 && db === 0 ? 'flat' : 'GROWS',
  ];
}
