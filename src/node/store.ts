/**
 * The key-value store on disk for the Node host: one file per key under a
 * folder, values in V8's structured-clone format (typed arrays and
 * ArrayBuffers included, like IndexedDB). Writes go to a temporary file that
 * is then renamed, so a crash never leaves a half-written value.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import v8 from 'node:v8';
import { LesionError } from '../core/errors.ts';
import type { KeyValueStore } from '../core/io.ts';
import { formatBytes } from '../core/run/display.ts';
import { describeKey, payloadBytes } from '../core/run/run-store.ts';
import { storageFull } from './files.ts';

const SUFFIX = '.v8';

export class FsKeyValueStore implements KeyValueStore {
  constructor(readonly root: string) {}

  private file(key: string): string {
    return path.join(this.root, ...key.split('/').map((part) => encodeURIComponent(part))) + SUFFIX;
  }

  async get<T>(key: string): Promise<T | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.file(key));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    try {
      return v8.deserialize(bytes) as T;
    } catch (error) {
      throw new LesionError('storage', `stored value ${key} cannot be read: ${(error as Error).message}`, this.file(key));
    }
  }

  async set(key: string, value: unknown): Promise<void> {
    const file = this.file(key);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(tmp, v8.serialize(value));
      await rename(tmp, file);
    } catch (error) {
      // A partial temporary file would only take more of the space that ran out.
      await rm(tmp, { force: true }).catch(() => undefined);
      throw storageFull(error, file, `${describeKey(key)} (${formatBytes(payloadBytes(value))})`);
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }

  async keys(prefix = ''): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, parts: string[]): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw error;
      }
      for (const entry of entries) {
        if (entry.isDirectory()) await walk(path.join(dir, entry.name), [...parts, decodeURIComponent(entry.name)]);
        else if (entry.name.endsWith(SUFFIX)) out.push([...parts, decodeURIComponent(entry.name.slice(0, -SUFFIX.length))].join('/'));
      }
    };
    await walk(this.root, []);
    return out.filter((k) => k.startsWith(prefix)).sort();
  }
}

/** For scoring against expert masks only (eval, compare): a pseudo-label lookup would be a bug. */
export const NO_PSEUDO_LABELS: KeyValueStore = {
  get: (key) => Promise.reject(new Error(`scoring keeps no pseudo-labels (asked for ${key})`)),
  set: (key) => Promise.reject(new Error(`scoring keeps no pseudo-labels (asked to store ${key})`)),
  delete: () => Promise.resolve(),
  keys: () => Promise.resolve([]),
};
