/**
 * KeyValueStores on IndexedDB through idb-keyval, one database per concern
 * (runs, folders, ...) so that clearing one never touches another. Prefix
 * queries use a key range, so listing one run's keys does not read every key.
 */
import { createStore, del, get, promisifyRequest, set, type UseStore } from 'idb-keyval';
import type { KeyValueStore } from '../core/io.ts';

export type StoreConcern = 'runs' | 'folders' | 'studio';

export class IdbStore implements KeyValueStore {
  private readonly db: UseStore;

  constructor(concern: StoreConcern) {
    this.db = createStore(`lesion-studio-${concern}`, 'kv');
  }

  get<T>(key: string): Promise<T | undefined> {
    return get<T>(key, this.db);
  }

  set(key: string, value: unknown): Promise<void> {
    return set(key, value, this.db);
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
}

/** Every string key that starts with `prefix` (the empty prefix: all keys). */
function prefixRange(prefix: string): IDBKeyRange | undefined {
  return prefix === '' ? undefined : IDBKeyRange.bound(prefix, `${prefix}\uffff`);
}

function payloadBytes(value: unknown, depth = 0): number {
  if (value instanceof ArrayBuffer) return value.byteLength;
  if (ArrayBuffer.isView(value)) return value.byteLength;
  if (typeof value === 'string') return value.length * 2;
  if (typeof value === 'number' || typeof value === 'boolean') return 8;
  if (value === null || typeof value !== 'object' || depth > 8) return 0;
  if (value instanceof Blob) return value.size;
  let n = 0;
  for (const item of Array.isArray(value) ? value : Object.values(value)) n += payloadBytes(item, depth + 1);
  return n;
}
