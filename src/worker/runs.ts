/**
 * Starts, steers and lists Noisy Student runs inside the worker. One run at a
 * time: it owns the backend and the GPU memory. What the page needs to reopen
 * a run after a reload (which data set it came from) is stored beside the
 * pipeline's own state, under the run's key prefix, so deleting the run
 * deletes it too.
 */
import type { RunCard } from '../core/config.ts';
import { LesionError } from '../core/errors.ts';
import type { TrainerEvent } from '../core/events.ts';
import type { KeyValueStore } from '../core/io.ts';
import { deleteRun, listRuns, runKey, runNoisyStudent, RunControl, type RunState } from '../core/pipeline.ts';
import type { BackendReport, DatasetOrigin, EventBatchSink, RunListing } from './api.ts';
import { chooseBackend } from './backend.ts';
import type { OpenDataset } from './dataset.ts';
import { BitmapDecoder } from './decode.ts';
import { EventForwarder } from './events.ts';

interface RunOrigin {
  dataset: DatasetOrigin;
  roots: string[];
}

const originKey = (runId: string): string => runKey(runId, 'studio/origin');

interface ActiveRun {
  runId: string;
  control: RunControl;
  events: EventForwarder;
  done: Promise<void>;
}

export class RunManager {
  private active: ActiveRun | undefined;

  constructor(private readonly store: KeyValueStore) {}

  get activeRunId(): string | undefined {
    return this.active?.runId;
  }

  async start(card: RunCard, dataset: OpenDataset, sink: EventBatchSink): Promise<{ runId: string; backend: BackendReport }> {
    const runId = `${slug(card.name)}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await this.store.set(originKey(runId), { dataset: dataset.origin, roots: dataset.rootNames() } satisfies RunOrigin);
    return this.launch(runId, card, dataset, sink, false);
  }

  async resumeStored(runId: string, dataset: OpenDataset, sink: EventBatchSink): Promise<{ runId: string; backend: BackendReport }> {
    const card = await this.store.get<RunCard>(runKey(runId, 'card'));
    if (!card) throw new LesionError('storage', `run ${runId} is not stored in this browser`);
    return this.launch(runId, card, dataset, sink, true);
  }

  async origin(runId: string): Promise<RunOrigin | undefined> {
    return this.store.get<RunOrigin>(originKey(runId));
  }

  private async launch(runId: string, card: RunCard, dataset: OpenDataset, sink: EventBatchSink, resume: boolean) {
    if (this.active) throw new LesionError('config', `run ${this.active.runId} is still going; stop it first`);
    const events = new EventForwarder(sink, this.store, runId);
    if (resume) await events.replay();
    const backend = await chooseBackend(card.backend, (message) => {
      events.push({ type: 'warning', message });
      this.active?.control.cancel();
    });
    events.push({ type: 'log', message: `backend: ${backend.title} (${backend.reason})` });
    const control = new RunControl();
    let ended = false;
    const emit = (event: TrainerEvent): void => {
      if (event.type === 'run' && (event.status === 'completed' || event.status === 'failed' || event.status === 'cancelled')) ended = true;
      events.push(event);
    };
    const host = { source: dataset.source, decoder: new BitmapDecoder(), store: this.store, emit };
    const done = runNoisyStudent(card, dataset.inputs(), host, control, { runId, resume })
      .then(
        () => undefined,
        (error: unknown) => {
          // Failures inside the stages are reported by the pipeline; ones before them (e.g. a resume
          // whose images are missing) are not, and the page must still hear that the run ended.
          if (!ended) emit({ type: 'run', runId, status: 'failed', message: error instanceof Error ? error.message : String(error) });
        },
      )
      .finally(async () => {
        await events.close();
        if (this.active?.runId === runId) this.active = undefined;
      });
    this.active = { runId, control, events, done };
    return { runId, backend };
  }

  pause(): void {
    const run = this.active;
    if (!run || run.control.state !== 'running') return;
    run.control.pause();
    run.events.push({ type: 'run', runId: run.runId, status: 'paused', message: 'paused at the next step' });
  }

  unpause(): void {
    const run = this.active;
    if (!run || run.control.state !== 'paused') return;
    run.control.resume();
    run.events.push({ type: 'run', runId: run.runId, status: 'continued' });
  }

  cancel(): void {
    this.active?.control.cancel();
  }

  async list(): Promise<RunListing[]> {
    const states = await listRuns(this.store);
    return Promise.all(states.map((state) => this.listing(state)));
  }

  private async listing(state: RunState): Promise<RunListing> {
    const [card, origin] = await Promise.all([
      this.store.get<RunCard>(runKey(state.runId, 'card')),
      this.origin(state.runId),
    ]);
    const mine = this.active?.runId === state.runId;
    // A stored 'running' run that this worker is not running lost its tab mid-run.
    const status = state.status === 'running' && !mine ? 'interrupted' : mine && this.active!.control.state === 'paused' ? 'paused' : state.status;
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
    };
  }

  async delete(runId: string): Promise<void> {
    if (this.active?.runId === runId) {
      this.active.control.cancel();
      await this.active.done;
    }
    await deleteRun(this.store, runId);
  }

  async state(runId: string): Promise<{ state: RunState; card: RunCard }> {
    const [state, card] = await Promise.all([
      this.store.get<RunState>(runKey(runId, 'state')),
      this.store.get<RunCard>(runKey(runId, 'card')),
    ]);
    if (!state || !card) throw new LesionError('storage', `run ${runId} is not stored in this browser`);
    return { state, card };
  }
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'run';
}
