/**
 * One run trains in one tab. The worker that trains a run holds the Web Lock
 * named after it; the browser releases it however that worker ends (run
 * over, tab closed, worker killed), so a lock held means "training right
 * now, somewhere". Other tabs see the lock, show the run read-only and
 * follow its events on a BroadcastChannel of the same name.
 */
import type { EventBatchSink, StampedEvent } from './api.ts';

const PREFIX = 'lesion-studio-run-';

export const runLockName = (runId: string): string => `${PREFIX}${runId}`;

/** Takes the run's lock if no one holds it; the returned function lets it go. */
export function claimRun(runId: string): Promise<(() => void) | undefined> {
  return new Promise((resolve, reject) => {
    navigator.locks
      .request(runLockName(runId), { ifAvailable: true }, (lock) => {
        if (!lock) return resolve(undefined);
        return new Promise<void>((release) => resolve(release));
      })
      .catch(reject);
  });
}

/** Runs whose lock someone holds (this worker's own run included). */
export async function lockedRuns(): Promise<Set<string>> {
  const { held = [] } = await navigator.locks.query();
  return new Set(held.map((lock) => lock.name ?? '').filter((name) => name.startsWith(PREFIX)).map((name) => name.slice(PREFIX.length)));
}

/** Resolves once whoever trains the run lets it go (queues for the lock, then hands it straight back). */
export function whenReleased(runId: string, signal?: AbortSignal): Promise<void> {
  return navigator.locks.request(runLockName(runId), { signal }, () => undefined);
}

/** The training side: every batch the page gets, other tabs get too. */
export function broadcastTo(runId: string, sink: EventBatchSink): { sink: EventBatchSink; close: () => void } {
  const channel = new BroadcastChannel(runLockName(runId));
  return {
    sink: (batch) => {
      sink(batch);
      channel.postMessage(batch);
    },
    close: () => channel.close(),
  };
}

/**
 * The watching side: the run's stored history first, then its live batches.
 * Batches that arrive while the history loads are held back and sent after
 * it, minus what the history already holds.
 */
export function follow(runId: string, history: () => Promise<StampedEvent[]>, sink: EventBatchSink): () => void {
  const channel = new BroadcastChannel(runLockName(runId));
  let held: StampedEvent[] | undefined = [];
  channel.onmessage = (message: MessageEvent<StampedEvent[]>) => {
    if (held) held.push(...message.data);
    else sink(message.data);
  };
  void history().then((past) => {
    const last = past.at(-1)?.at ?? -Infinity;
    const fresh = (held ?? []).filter((e) => e.at > last);
    held = undefined;
    if (past.length > 0) sink(past);
    if (fresh.length > 0) sink(fresh);
  });
  return () => channel.close();
}
