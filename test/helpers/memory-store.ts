/**
 * An in-memory KeyValueStore for tests. Values are structured-cloned on the
 * way in and out, as IndexedDB and the Node store do, so a caller that keeps
 * mutating an object after set() (or one returned by get()) cannot change what
 * is stored. Every write is logged, so tests can tell what a call wrote.
 */
import type { KeyValueStore } from '../../src/core/io.ts';

export class MemoryStore implements KeyValueStore {
  private readonly values = new Map<string, unknown>();
  /** Keys passed to set(), in call order. */
  readonly writes: string[] = [];

  async get<T>(key: string): Promise<T | undefined> {
    return this.values.has(key) ? (structuredClone(this.values.get(key)) as T) : undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    this.writes.push(key);
    this.values.set(key, structuredClone(value));
  }

  async delete(key: string): Promise<void> {
    this.values.delete(key);
  }

  async keys(prefix = ''): Promise<string[]> {
    return [...this.values.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
}
