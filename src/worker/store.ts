/**
 * KeyValueStores on IndexedDB through idb-keyval, one database per concern
 * (runs, folders, ...) so that clearing one never touches another. Prefix
 * queries use a key range, so listing one run's keys does not read every key.
 *
 * A write the browser refuses for lack of space (QuotaExceededError) becomes
 * a LesionError that names what could not be saved and how much space the
 * site uses: the two-slot checkpoints keep the previous one in use, so the
 * run can resume once space is freed.
 */
import { createStore, del, get, promisifyRequest, set, type UseStore } from 'idb-keyval';
import { LesionError } from '../core/errors.ts';
import type { KeyValueStore } from '../core/io.ts';
import { describeKey, payloadBytes } from '../core/run/run-store.ts';
import { formatBytes } from '../core/run/display.ts';

export type StoreConcern = 'runs' | 'folders' | 'studio' | 'labels' | 'finetunes';

/** Test hook: writes of keys containing `match` fail as a full disk does, once `after` of them went through. */
export interface QuotaFault {
  after: number;
  match?: string;
}

export class IdbStore implements KeyValueStore {
  private readonly db: UseStore;
  private fault: (QuotaFault & { seen: number }) | undefined;

  constructor(concern: StoreConcern) {
    this.db = createStore(`lesion-studio-${concern}`, 'kv');
  }

  get<T>(key: string): Promise<T | undefined> {
    return get<T>(key, this.db);
  }

  async set(key: string, value: unknown): Promise<void> {
    try {
      if (this.injectedFault(key)) throw new DOMException('injected by the fault test hook', 'QuotaExceededError');
      await set(key, value, this.db);
    } catch (error) {
      if ((error as DOMException | undefined)?.name !== 'QuotaExceededError') throw error;
      throw await storageFull(key, payloadBytes(value));
    }
  }

  delete(key: string): Promise<void> {
    return del(key, this.db);
  }

  keys(prefix = ''): Promise<string[]> {
    return this.db('readonly', (store) => promisifyRequest(store.getAllKeys(prefixRange(prefix)))).then((keys) =>
      keys.filter((key): key is string => typeof key === 'string'),
    );
  }

  /**
   * Bytes held under a prefix, counting binary payloads (ArrayBuffers, typed
   * arrays) and strings. Walks a cursor, so one checkpoint at a time is in memory.
   */
  bytesUnder(prefix: string): Promise<number> {
    return this.db('readonly', (store) => new Promise<number>((resolve, reject) => {
      let total = 0;
      const cursor = store.openCursor(prefixRange(prefix));
      cursor.onerror = () => reject(cursor.error);
      cursor.onsuccess = () => {
        const at = cursor.result;
        if (!at) return resolve(total);
        total += payloadBytes(at.value);
        at.continue();
      };
    }));
  }

  /** Only the fault tests call this (see README, Reliability); undefined lifts the fault. */
  injectQuotaFault(fault: QuotaFault | undefined): void {
    this.fault = fault && { ...fault, seen: 0 };
  }

  private injectedFault(key: string): boolean {
    const fault = this.fault;
    if (!fault || (fault.match !== undefined && !key.includes(fault.match))) return false;
    return ++fault.seen > fault.after;
  }
}

async function storageFull(key: string, bytes: number): Promise<LesionError> {
  const { usage = 0, quota = 0 } = await navigator.storage.estimate().catch(() => ({ usage: undefined, quota: undefined }));
  return new LesionError(
    'storage-full',
    `the browser's storage is full: ${describeKey(key)} (${formatBytes(bytes)}) could not be saved. ` +
      `This site uses ${formatBytes(usage)} of the ${formatBytes(quota)} the browser allows it. ` +
      'Free space by deleting old runs in the Storage view, then resume the run.',
  );
}

/** Every string key that starts with `prefix` (the empty prefix: all keys). */
function prefixRange(prefix: string): IDBKeyRange | undefined {
  return prefix === '' ? undefined : IDBKeyRange.bound(prefix, `${prefix}\uffff`);
}
