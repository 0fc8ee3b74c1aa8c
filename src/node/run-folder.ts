/**
 * A run folder as `train --out` leaves it, opened by the commands that work
 * on a trained run (`rank`, `fine-tune`): its store, the run's card and
 * state, and which of its trained stages to use.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { RunCard } from '../core/config.ts';
import { LesionError } from '../core/errors.ts';
import { RunStore, type RunState, type TrainingStage } from '../core/run/run-store.ts';
import { FsKeyValueStore } from './store.ts';

const TRAINING_STAGES: readonly TrainingStage[] = ['teacher', 'student', 'student-star'];

export interface RunFolder {
  dir: string;
  store: FsKeyValueStore;
  run: RunStore;
  card: RunCard;
  state: RunState;
  /** The stage asked for, or the run's last trained one. */
  stage: TrainingStage;
}

export async function openRunFolder(dir: string, runId: string, stage: string | undefined): Promise<RunFolder> {
  if (!(await stat(dir).catch(() => undefined))?.isDirectory()) throw new LesionError('storage', `${dir}: no such folder`);
  const store = new FsKeyValueStore(path.join(dir, 'store'));
  const run = new RunStore(store, runId);
  const [card, state] = await Promise.all([run.card(), run.state()]);
  if (!card || !state) throw new LesionError('storage', `${dir} holds no run ${runId} (no ${path.join(dir, 'store')}); give the --out of a train`);
  const trained = state.results.map((r) => r.stage).filter((s): s is TrainingStage => (TRAINING_STAGES as readonly string[]).includes(s));
  if (stage !== undefined && !(TRAINING_STAGES as readonly string[]).includes(stage)) {
    throw new LesionError('config', `--stage must be one of ${TRAINING_STAGES.join(', ')}, got '${stage}'`);
  }
  const chosen = (stage as TrainingStage | undefined) ?? trained.at(-1);
  if (!chosen || !trained.includes(chosen)) {
    throw new LesionError('storage', `the run in ${dir} has no trained ${chosen ?? 'stage'} yet${trained.length > 0 ? ` (trained: ${trained.join(', ')})` : ''}`);
  }
  return { dir, store, run, card, state, stage: chosen };
}
