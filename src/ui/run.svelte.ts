/**
 * What the Train view shows of a run, folded from the worker's TrainerEvents.
 * Chart points are plain arrays outside Svelte's reactivity (thousands of
 * points would make every push a proxy trap); `version` ticks when they
 * change so the charts redraw once per animation frame at most.
 */
import type { RunCard } from '../core/config.ts';
import { plannedStages } from '../core/run/display.ts';
import type { FailureCode } from '../core/errors.ts';
import type { MetricSummary, StageName, TrainerEvent } from '../core/events.ts';
import { STAGE_TITLES } from '../core/events.ts';
import type { BackendReport, RunListing, StampedEvent } from '../worker/api.ts';
import { chartSeries, type ChartSeries, type EpochPoint, type StepPoint } from './series.ts';

/** 'stopped': the run ended (failed or stopped) while the stage ran. */
export type StageStatus = 'waiting' | 'running' | 'completed' | 'skipped' | 'stopped';

export interface StageView {
  stage: StageName;
  title: string;
  status: StageStatus;
  message?: string;
}

export interface StepProgress {
  stage: StageName;
  epoch: number;
  epochs?: number;
  step: number;
  totalSteps: number;
  etaSeconds: number;
  imagesPerSecond: number;
  loss: number;
  numTensors: number;
  numBytes: number;
}

export interface EpochRow {
  stage: StageName;
  epoch: number;
  epochs: number;
  metrics: MetricSummary;
  ema: number;
  best: boolean;
  seconds: number;
}

/** Every step and epoch report as it arrived, a resumed run's repeats included (chartSeries keeps the latest). */
interface Recorded {
  steps: StepPoint[];
  epochs: EpochPoint[];
}

/** 'interrupted': stopped before it finished (its tab closed, its trainer stopped), not failed: it resumes from its last checkpoint. */
export type RunStatus = 'idle' | 'starting' | 'running' | 'paused' | 'interrupted' | 'cancelled' | 'completed' | 'failed';

const MAX_LOG = 200;

/** What went wrong with a failed run, so the Train view can offer the matching way out. */
export type FailureKind = 'diverged' | 'storage-full' | 'other';

export function failureKind(code: FailureCode | undefined): FailureKind {
  switch (code) {
    case 'diverged':
    case 'storage-full':
      return code;
    default:
      return 'other';
  }
}

/** The code a failure carries: on the run's event, or on an error the worker threw (comlink keeps it, see trainer.worker.ts). */
export function thrownCode(error: unknown): FailureCode | undefined {
  return (error as { code?: FailureCode } | undefined)?.code;
}

export class RunView {
  runId = $state<string | undefined>();
  /** The card it runs with (a resume may change its learning rate). */
  card = $state.raw<RunCard | undefined>();
  /** Another tab trains it; this one only follows its events. */
  watching = $state(false);
  status = $state<RunStatus>('idle');
  message = $state<string | undefined>();
  /** Why the run failed, when it did and the worker said. */
  failure = $state<FailureCode | undefined>();
  backend = $state<BackendReport | undefined>();
  stages = $state<StageView[]>([]);
  step = $state<StepProgress | undefined>();
  pseudo = $state<{ stage: StageName; done: number; total: number; kept: number; dropped: number; imagesPerSecond: number } | undefined>();
  task = $state<{ task: string; done: number; total: number; etaSeconds?: number } | undefined>();
  epochs = $state<EpochRow[]>([]);
  evaluations = $state<Extract<TrainerEvent, { type: 'evaluation' }>[]>([]);
  warnings = $state<{ message: string; file?: string }[]>([]);
  log = $state<string[]>([]);
  /** The checkpoint a resume would continue from (the stage's latest; best ones are for exports). */
  lastCheckpoint = $state<{ stage: StageName; epoch: number; step: number; bytes: number } | undefined>();
  version = $state(0);
  private readonly recorded: Recorded = { steps: [], epochs: [] };
  private charted: { version: number; series: ChartSeries } | undefined;

  reset(card: RunCard): void {
    this.runId = undefined;
    this.card = card;
    this.watching = false;
    this.status = 'starting';
    this.message = undefined;
    this.failure = undefined;
    this.backend = undefined;
    this.stages = plannedStages(card).map((stage) => ({ stage, title: STAGE_TITLES[stage], status: 'waiting' }));
    this.step = undefined;
    this.pseudo = undefined;
    this.task = undefined;
    this.epochs = [];
    this.evaluations = [];
    this.warnings = [];
    this.log = [];
    this.lastCheckpoint = undefined;
    this.recorded.steps = [];
    this.recorded.epochs = [];
    this.version++;
  }

  /** The charts' data, built once per change however many charts read it. */
  series(): ChartSeries {
    if (this.charted?.version !== this.version) {
      const stages = this.stages.map((view) => view.stage);
      this.charted = { version: this.version, series: chartSeries(this.recorded.steps, this.recorded.epochs, stages) };
    }
    return this.charted.series;
  }

  get active(): boolean {
    return this.status === 'starting' || this.status === 'running' || this.status === 'paused';
  }

  /** The run ended without a word from the worker (it stopped, or the tab that trained it let go): interrupted, not failed. */
  stopped(why: string): void {
    const at = this.lastCheckpoint;
    const from = at ? `its last checkpoint (${STAGE_TITLES[at.stage]}, step ${at.step})` : 'its last checkpoint';
    this.status = 'interrupted';
    this.failure = undefined;
    this.message = `${why} Resume the run from ${from}.`;
    for (const view of this.stages) if (view.status === 'running') view.status = 'stopped';
    this.addLog(this.message);
  }

  /**
   * A stored run that is not training, as its history tells it: charts, epoch
   * table, log and last checkpoint. Its status is the stored one, so a run
   * whose tab closed reads as interrupted, whatever its last event was.
   */
  showStored(listing: RunListing, history: StampedEvent[], message?: string): void {
    this.reset(listing.card);
    this.runId = listing.runId;
    this.apply(history);
    // The stored pointer is the truth; a checkpoint of a stage already completed is none a resume goes on from.
    if (listing.lastCheckpoint) this.lastCheckpoint = listing.lastCheckpoint;
    else if (this.lastCheckpoint && listing.completed.includes(this.lastCheckpoint.stage)) this.lastCheckpoint = undefined;
    const stored: Partial<Record<RunListing['status'], RunStatus>> = { cancelled: 'cancelled', completed: 'completed', failed: 'failed' };
    this.status = stored[listing.status] ?? 'interrupted';
    if (this.status === 'interrupted') {
      this.failure = undefined;
      const at = this.lastCheckpoint;
      this.message = message ?? (at
        ? `Stopped before it finished (its tab closed or its trainer stopped). Nothing saved is lost: it resumes from its last checkpoint (${STAGE_TITLES[at.stage]}, epoch ${at.epoch}, step ${at.step}).`
        : 'Stopped before it finished (its tab closed or its trainer stopped), before its first checkpoint: a resume starts its current stage again.');
    } else if (message) this.message = message;
    for (const view of this.stages) if (view.status === 'running') view.status = 'stopped';
  }

  apply(batch: StampedEvent[]): void {
    let charted = false;
    for (const { at, event } of batch) charted = this.applyOne(event, at / 1000) || charted;
    if (charted) this.version++;
  }

  /** Returns whether a chart series changed. */
  private applyOne(event: TrainerEvent, now: number): boolean {
    const s = this.recorded;
    switch (event.type) {
      case 'run': {
        this.runId = event.runId;
        const status: Record<typeof event.status, RunStatus> = {
          started: 'running',
          resumed: 'running',
          continued: 'running',
          paused: 'paused',
          cancelled: 'cancelled',
          completed: 'completed',
          failed: 'failed',
        };
        this.status = status[event.status];
        this.message = event.message;
        this.failure = event.status === 'failed' ? event.code : undefined;
        if (!this.active) for (const view of this.stages) if (view.status === 'running') view.status = 'stopped';
        this.addLog(`Run ${event.status}${event.message ? `: ${event.message}` : ''}`, now);
        return false;
      }
      case 'stage': {
        const view = this.stages.find((v) => v.stage === event.stage);
        if (view) {
          view.status = event.status === 'started' ? 'running' : event.status;
          view.message = event.message;
        }
        this.addLog(`${STAGE_TITLES[event.stage]} ${event.status}${event.message ? `: ${event.message}` : ''}`, now);
        return false;
      }
      case 'step': {
        const epochs = this.epochs.filter((row) => row.stage === event.stage).at(-1)?.epochs;
        this.step = { ...event, epochs };
        const { stage, step, epoch, totalSteps, loss, imagesPerSecond } = event;
        s.steps.push({ stage, step, epoch, totalSteps, loss, imagesPerSecond, at: now });
        return true;
      }
      case 'epoch': {
        this.epochs.push({ stage: event.stage, epoch: event.epoch, epochs: event.epochs, metrics: event.metrics, ema: event.ema, best: event.best, seconds: event.seconds });
        if (this.step?.stage === event.stage) this.step.epochs = event.epochs;
        s.epochs.push({ stage: event.stage, epoch: event.epoch, epochs: event.epochs, metrics: event.metrics, at: now });
        return true;
      }
      case 'evaluation':
        this.evaluations.push(event);
        return false;
      case 'pseudo':
        this.pseudo = { ...event };
        return false;
      case 'checkpoint':
        if (event.kind === 'latest') this.lastCheckpoint = { stage: event.stage, epoch: event.epoch, step: event.step, bytes: event.bytes };
        return false;
      case 'progress':
        this.task = { task: event.task, done: event.done, total: event.total, etaSeconds: event.etaSeconds };
        return false;
      case 'warning':
        this.warnings.push({ message: event.message, file: event.file });
        return false;
      case 'log':
        this.addLog(event.message, now);
        return false;
    }
  }

  /** `at` in seconds: a line from a replayed history keeps the time it was written. */
  private addLog(line: string, at = Date.now() / 1000): void {
    this.log.push(`${new Date(at * 1000).toLocaleTimeString()}  ${line}`);
    if (this.log.length > MAX_LOG) this.log.splice(0, this.log.length - MAX_LOG);
  }
}
