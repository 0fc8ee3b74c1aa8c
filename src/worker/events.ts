/**
 * Forwards a run's events to the page in batches (every 100 ms at most), so
 * a fast loop never floods the main thread with messages, and keeps the
 * chartable part of them in storage so a resumed run shows its whole history.
 */
import type { TrainerEvent } from '../core/events.ts';
import type { RunStore } from '../core/run/run-store.ts';
import type { EventBatchSink, StampedEvent } from './api.ts';

const BATCH_MS = 100;
const SAVE_MS = 5000;

/** Every step is kept: the loss chart shows each one the run recorded, against its step. */
const KEPT: ReadonlySet<TrainerEvent['type']> = new Set(['run', 'stage', 'step', 'epoch', 'evaluation', 'checkpoint', 'warning', 'log']);

export class EventForwarder {
  private pending: StampedEvent[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private history: StampedEvent[] = [];
  private lastSave = 0;

  /**
   * `beforeCheckpoint` tells the steps a checkpoint follows: the history is
   * written at once for them, ahead of the checkpoint's own write, so a run
   * whose tab closes never holds a checkpoint its history lacks the steps of.
   */
  constructor(
    private readonly sink: EventBatchSink,
    private readonly run: RunStore,
    private readonly beforeCheckpoint: (step: Extract<TrainerEvent, { type: 'step' }>) => boolean = () => false,
  ) {}

  /** Sends what earlier sessions of this run recorded, before its new events. */
  async replay(): Promise<void> {
    this.history = await this.run.history<StampedEvent>();
    if (this.history.length > 0) this.sink(this.history);
  }

  push = (event: TrainerEvent): void => {
    const stamped = { at: Date.now(), event };
    this.pending.push(stamped);
    this.keep(stamped);
    this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
  };

  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.sink(batch);
  }

  /** Flushes to the page and writes the history now. */
  async close(): Promise<void> {
    this.flush();
    await this.save();
  }

  private keep(stamped: StampedEvent): void {
    if (!KEPT.has(stamped.event.type)) return;
    this.history.push(stamped);
    const important = stamped.event.type !== 'step' || this.beforeCheckpoint(stamped.event);
    // A history write the browser refuses (storage full) costs chart points, not the run: the run's own writes report it.
    if (important || stamped.at - this.lastSave > SAVE_MS) void this.save().catch(() => undefined);
  }

  private async save(): Promise<void> {
    this.lastSave = Date.now();
    await this.run.setHistory(this.history);
  }
}
