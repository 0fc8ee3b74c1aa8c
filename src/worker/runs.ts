/**
 * Starts, steers and lists Noisy Student runs inside the worker. One run at a
 * time: it owns the backend and the GPU memory. What the page needs to reopen
 * a run after a reload (which data set it came from) is kept by the run's
 * RunStore with the pipeline's own state, so deleting the run deletes it too.
 */
import { parseRunCard, type RunCard } from '../core/config.ts';
import { failureCode, LesionError } from '../core/errors.ts';
import { STAGE_TITLES, type StageName, type TrainerEvent } from '../core/events.ts';
import type { KeyValueStore } from '../core/io.ts';
import { missingImages, runNoisyStudent, RunControl } from '../core/run/pipeline.ts';
import { plannedStages } from '../core/run/display.ts';
import { epochOfStep } from '../core/training/checkpoint.ts';
import { stepIsCheckpointed } from '../core/training/train.ts';
import { RunStore, type RunState } from '../core/run/run-store.ts';
import type { BackendReport, DatasetOrigin, EventBatchSink, RunListing } from './api.ts';
import { chooseBackend } from './backend.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder } from './decode.ts';
import { EventForwarder } from './events.ts';
import { DeviceWatch, forgetWebGPU, webgpuDevice } from './gpu-watch.ts';
import { broadcastTo, claimRun, lockedRuns } from './tabs.ts';

export interface RunOrigin {
  dataset: DatasetOrigin;
  roots: string[];
}

interface ActiveRun {
  runId: string;
  session: RunSession;
  done: Promise<void>;
}

/** What every attempt at one run shares: a lost GPU ends an attempt, not the run. */
interface RunSession {
  runId: string;
  card: RunCard;
  dataset: OpenDataset;
  events: EventForwarder;
  control: RunControl;
  /** The backend of the latest attempt. */
  backend?: BackendReport;
  /** Where the run stands, across attempts: what a recovery message names. */
  lastCheckpoint?: { stage: StageName; step: number };
  lastStep?: { stage: StageName; step: number };
}

/** Losses in a row (no checkpoint between them) recovered from automatically; the next one stops the run. */
const MAX_RECOVERIES = 3;
/** How long a failed WebGPU run waits to learn whether its device was lost. */
const LOSS_SETTLES_MS = 1000;

export class RunManager {
  private active: ActiveRun | undefined;

  constructor(private readonly store: KeyValueStore) {}

  get activeRunId(): string | undefined {
    return this.active?.runId;
  }

  async start(card: RunCard, dataset: OpenDataset, sink: EventBatchSink): Promise<{ runId: string; backend: BackendReport }> {
    const runId = `${slug(card.name)}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await new RunStore(this.store, runId).setOrigin<RunOrigin>({ dataset: dataset.origin, roots: dataset.rootNames() });
    return this.launch(runId, card, dataset, sink, false);
  }

  /** A learning rate replaces the stored card's, e.g. after the run diverged. */
  async resumeStored(runId: string, dataset: OpenDataset, sink: EventBatchSink, learningRate?: number): Promise<{ runId: string; backend: BackendReport }> {
    const run = new RunStore(this.store, runId);
    const [stored, state, origin] = await Promise.all([run.card(), run.state(), run.origin<RunOrigin>()]);
    if (!stored || !state) throw new LesionError('storage', `run ${runId} is not stored in this browser`);
    // Checked before the run is claimed and its events recorded: a folder not open yet is a thing to open, not the run's failure.
    const missing = missingImages(state, dataset.inputs());
    if (missing.length > 0) {
      const total = Object.values(state.split).flat().length;
      throw new LesionError('dataset', `${openFoldersFirst(origin)}: ${missing.length} of its ${total} images are not in the open data set (first: ${missing[0]})`);
    }
    const card = learningRate === undefined
      ? stored
      : parseRunCard({ ...stored, train: { ...stored.train, optimizer: { ...stored.train.optimizer, lr: learningRate } } });
    return this.launch(runId, card, dataset, sink, true, card !== stored);
  }

  async origin(runId: string): Promise<RunOrigin | undefined> {
    return new RunStore(this.store, runId).origin<RunOrigin>();
  }

  private async launch(runId: string, card: RunCard, dataset: OpenDataset, sink: EventBatchSink, resume: boolean, cardChanged = false) {
    if (this.active) throw new LesionError('config', `run ${this.active.runId} is still going; stop it first`);
    const release = await claimRun(runId);
    if (!release) throw new LesionError('config', `run ${runId} is training in another tab of this browser; pause or stop it there`);
    const broadcast = broadcastTo(runId, sink);
    try {
      const run = new RunStore(this.store, runId);
      const { epochs, checkpointEverySteps } = card.train;
      const events = new EventForwarder(broadcast.sink, run, (step) => stepIsCheckpointed(step.step, step.totalSteps / epochs, checkpointEverySteps));
      if (resume) await events.replay();
      if (cardChanged) {
        // Stored only once the run is ours: another tab's run keeps its card.
        await run.setCard(card);
        events.push({ type: 'log', message: `run card changed for this resume: learning rate ${card.train.optimizer.lr}` });
      }
      const session: RunSession = { runId, card, dataset, events, control: new RunControl() };
      const first = await this.attempt(session, resume);
      const done = this.recoverLostDevices(session, first.lost).finally(async () => {
        await events.close().catch(() => undefined);
        broadcast.close();
        release();
        if (this.active?.runId === runId) this.active = undefined;
      });
      this.active = { runId, session, done };
      return { runId, backend: first.backend };
    } catch (error) {
      broadcast.close();
      release();
      throw error;
    }
  }

  /**
   * A lost GPU (driver reset, laptop switching GPUs) ends an attempt; the run
   * goes on from its last checkpoint on a new device, or on wasm when WebGPU
   * does not start again. The steps since that checkpoint are done again.
   */
  private async recoverLostDevices(session: RunSession, lost: Promise<string | undefined>): Promise<void> {
    let recoveries = 0;
    let progress = session.lastCheckpoint;
    for (;;) {
      const why = await lost;
      if (why === undefined) return;
      // Losses count in a row while no checkpoint is saved between them.
      if (session.lastCheckpoint !== progress) {
        recoveries = 0;
        progress = session.lastCheckpoint;
      }
      if (++recoveries > MAX_RECOVERIES) {
        const message = `${why}, the ${MAX_RECOVERIES + 1}th time without a checkpoint in between: the run stopped at its last checkpoint. Resume it once the GPU is stable, or set the run card's backend to wasm.`;
        session.events.push({ type: 'run', runId: session.runId, status: 'failed', message, code: 'device-lost' });
        return;
      }
      forgetWebGPU();
      lost = this.attempt(session, true, why).then(
        (next) => next.lost,
        (error: unknown) => {
          const message = `${why}, and the run could not start again: ${error instanceof Error ? error.message : String(error)}`;
          session.events.push({ type: 'run', runId: session.runId, status: 'failed', message, code: 'device-lost' });
          return undefined;
        },
      );
    }
  }

  /**
   * One pass of the pipeline on one backend. `lost` settles when the pipeline
   * does: with why, when the GPU went away under it (and the user did not stop it).
   */
  private async attempt(session: RunSession, resume: boolean, lostBefore?: string): Promise<{ backend: BackendReport; lost: Promise<string | undefined> }> {
    const { runId, card, dataset, events, control } = session;
    // Losses are seen by the watch below; backend.ts's own callback would only repeat them.
    const backend = await chooseBackend(card.backend, () => undefined);
    session.backend = backend;
    const device = backend.name === 'webgpu' ? webgpuDevice() : undefined;
    const watch = device && new DeviceWatch(device);
    events.push({ type: 'log', message: `backend: ${backend.title} (${backend.reason})` });
    let ended = false;
    /** On WebGPU a failure waits until it is known whether the device went away: then it is not the run's end. */
    let failure: TrainerEvent | undefined;
    const emit = (event: TrainerEvent): void => {
      if (event.type === 'step') session.lastStep = { stage: event.stage, step: event.step };
      if (event.type === 'checkpoint' && event.kind === 'latest') {
        // A smaller batch renumbers the steps: the checkpoint's number is the current one.
        session.lastCheckpoint = { stage: event.stage, step: event.step };
        session.lastStep = session.lastCheckpoint;
      }
      if (event.type === 'run' && event.status === 'failed' && watch) {
        failure = event;
        ended = true;
        return;
      }
      if (event.type === 'run' && event.status === 'resumed' && lostBefore) {
        event = { ...event, message: recoveredMessage(lostBefore, session.lastCheckpoint, backend) };
      }
      if (event.type === 'run' && (event.status === 'completed' || event.status === 'failed' || event.status === 'cancelled')) ended = true;
      events.push(event);
    };
    const host = { source: dataset.source, decoder: new BitmapDecoder(), store: this.store, emit, deviceError: watch?.deviceError };
    const lost = runNoisyStudent(card, dataset.inputs(), host, control, { runId, resume })
      .then(
        () => undefined,
        async (error: unknown) => {
          const why = watch && control.state !== 'cancelled' ? await watch.lostWithin(LOSS_SETTLES_MS) : undefined;
          if (why !== undefined) {
            const at = session.lastStep;
            const where = at ? `${why} after step ${at.step} of the ${STAGE_TITLES[at.stage]} stage` : why;
            events.push({ type: 'warning', message: `${where}; resuming from the last checkpoint` });
            return where;
          }
          if (failure) events.push(failure);
          // Failures inside the stages are reported by the pipeline; ones before them (e.g. a resume
          // whose images are missing) are not, and the page must still hear that the run ended.
          else if (!ended) emit({ type: 'run', runId, status: 'failed', message: error instanceof Error ? error.message : String(error), code: failureCode(error) });
          return undefined;
        },
      )
      .finally(() => watch?.stop());
    return { backend, lost };
  }

  /** The backend the running run trains on now: a lost GPU can move it to wasm. */
  get activeBackend(): BackendReport | undefined {
    return this.active?.session.backend;
  }

  pause(): void {
    const run = this.active?.session;
    if (!run || run.control.state !== 'running') return;
    run.control.pause();
    run.events.push({ type: 'run', runId: run.runId, status: 'paused', message: 'paused at the next step' });
  }

  unpause(): void {
    const run = this.active?.session;
    if (!run || run.control.state !== 'paused') return;
    run.control.resume();
    run.events.push({ type: 'run', runId: run.runId, status: 'continued' });
  }

  cancel(): void {
    this.active?.session.control.cancel();
  }

  async list(): Promise<RunListing[]> {
    const [states, locked] = await Promise.all([RunStore.list(this.store), lockedRuns()]);
    return Promise.all(states.map((state) => this.listing(state, locked.has(state.runId))));
  }

  private async listing(state: RunState, locked: boolean): Promise<RunListing> {
    const run = new RunStore(this.store, state.runId);
    const [card, origin] = await Promise.all([run.card(), run.origin<RunOrigin>()]);
    const stage = card && plannedStages(card).find((s) => !state.completed.includes(s));
    const training = stage === 'teacher' || stage === 'student' || stage === 'student-star' ? stage : undefined;
    const saved = training && state.status !== 'completed' ? await run.checkpoints(training).describe('latest') : undefined;
    const mine = this.active?.runId === state.runId;
    // A run whose lock another worker holds trains there; a stored 'running' run that no one holds lost its tab mid-run.
    const status = mine
      ? this.active!.session.control.state === 'paused' ? 'paused' : state.status
      : locked ? 'in-another-tab' : state.status === 'running' ? 'interrupted' : state.status;
    return {
      runId: state.runId,
      name: card?.name ?? state.runId,
      createdAt: state.createdAt,
      updatedAt: state.updatedAt,
      status,
      message: state.message,
      completed: state.completed,
      dataset: origin?.dataset ?? 'folders',
      roots: origin?.roots ?? [],
      card: card!,
      lastCheckpoint: saved && training && { stage: training, epoch: epochOfStep(saved.position), step: saved.position.step, bytes: saved.bytes },
    };
  }

  async delete(runId: string): Promise<void> {
    if (this.active?.runId !== runId && (await lockedRuns()).has(runId)) {
      throw new LesionError('config', `run ${runId} is training in another tab of this browser; stop it there before deleting it`);
    }
    if (this.active?.runId === runId) {
      this.active.session.control.cancel();
      await this.active.done;
    }
    await new RunStore(this.store, runId).delete();
  }

  async state(runId: string): Promise<{ state: RunState; card: RunCard }> {
    const run = new RunStore(this.store, runId);
    const [state, card] = await Promise.all([run.state(), run.card()]);
    if (!state || !card) throw new LesionError('storage', `run ${runId} is not stored in this browser`);
    return { state, card };
  }
}

/** What a resume needs first when the run's images are not open. */
export function openFoldersFirst(origin: RunOrigin | undefined): string {
  return `open the folders this run was trained on (${origin?.roots.join(', ') || 'unknown'}) before resuming it`;
}

function recoveredMessage(lost: string, checkpoint: RunSession['lastCheckpoint'], backend: BackendReport): string {
  const from = checkpoint ? `its last checkpoint (${STAGE_TITLES[checkpoint.stage]}, step ${checkpoint.step})` : 'its last checkpoint';
  const on = backend.name === 'webgpu'
    ? 'on a new WebGPU device'
    : `on ${backend.title}, because WebGPU did not start again (${backend.reason})`;
  return `${lost[0].toUpperCase()}${lost.slice(1)}; the run resumed from ${from} ${on}.`;
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'run';
}
