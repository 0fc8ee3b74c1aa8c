/**
 * What the studio's page shows about runs that the core decides: the stages
 * a card plans and how sizes are worded. Free of TensorFlow.js, so the page
 * (which never loads tfjs) and the worker share one definition.
 */
import type { RunCard } from '../config.ts';
import type { StageName } from '../events.ts';

/** The stages a card asks for, in order. */
export function plannedStages(card: Pick<RunCard, 'student'>): StageName[] {
  const stages: StageName[] = ['teacher'];
  if (card.student.rounds >= 1) stages.push('pseudo-teacher', 'student');
  if (card.student.rounds >= 2) stages.push('pseudo-student', 'student-star');
  return stages;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A fine-tune's two arms (core/active/fine-tune.ts): with the new labels, and its control without them. */
export type FineTuneArmName = 'with' | 'without';

export const FINE_TUNE_ARMS: Record<FineTuneArmName, string> = { with: 'with the new labels', without: 'without them (control)' };
