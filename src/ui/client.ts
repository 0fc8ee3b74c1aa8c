/**
 * The page's handle on the trainer worker. Only comlink and types cross into
 * the page: TensorFlow.js loads in the worker alone.
 *
 * The page watches the worker: an exception nothing in it caught (its
 * 'error' event) or a ping left unanswered too long means its state can no
 * longer be trusted, and `onStopped` hears why. Runs are checkpointed, so the
 * studio starts a new worker and offers to resume.
 */
import * as Comlink from 'comlink';
import { FAULT_TEST_MARK, TRAINER_NAME, type TrainerApi } from '../worker/api.ts';

export type Trainer = Comlink.Remote<TrainerApi>;

export interface TrainerLink {
  readonly trainer: Trainer;
  /** Ends the worker on purpose: onStopped does not fire. */
  stop(): void;
  /** Test hook: ends the worker the way the browser might, without telling anyone. */
  kill(): void;
}

export interface LinkOptions {
  /** Name the worker so that it accepts injected faults (README, Reliability). */
  faults: boolean;
  /**
   * How long a ping may go unanswered before the worker counts as stopped.
   * A step on the CPU backends blocks the worker's thread, so the limit
   * grows to four times the slowest answer seen.
   */
  heartbeatMs: number;
  /** `started`: it had answered a ping; one that never did failed to start, and a new one would too. */
  onStopped: (reason: string, started: boolean) => void;
}

const PING_EVERY_MS = 2000;

export function startTrainer(options: LinkOptions): TrainerLink {
  const worker = new Worker(new URL('../worker/trainer.worker.ts', import.meta.url), {
    type: 'module',
    name: options.faults ? `${TRAINER_NAME} ${FAULT_TEST_MARK}` : TRAINER_NAME,
  });
  const trainer = Comlink.wrap<TrainerApi>(worker);
  let over = false;
  let started = false;
  let slowest = 0;
  /** When the unanswered ping left, if one is out: silence is counted from there, so a throttled background tab is not mistaken for a dead worker. */
  let pingSentAt: number | undefined;

  const stop = (): void => {
    over = true;
    clearInterval(timer);
    worker.terminate();
  };
  const stopped = (reason: string): void => {
    if (over) return;
    stop();
    options.onStopped(reason, started);
  };

  worker.addEventListener('error', (event) => {
    event.preventDefault();
    stopped(`an error nothing caught: ${event.message || 'unknown error'}`);
  });
  const timer = setInterval(() => {
    const now = performance.now();
    if (pingSentAt !== undefined) {
      const silent = now - pingSentAt;
      if (silent > Math.max(options.heartbeatMs, 4 * slowest)) stopped(`it has not answered for ${Math.round(silent / 1000)} s`);
      return;
    }
    const sent = now;
    pingSentAt = sent;
    void trainer.ping().then(() => {
      started = true;
      slowest = Math.max(slowest, performance.now() - sent);
      pingSentAt = undefined;
    });
  }, PING_EVERY_MS);

  return { trainer, stop, kill: () => worker.terminate() };
}

export const { proxy, transfer } = Comlink;
