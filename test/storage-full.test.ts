/**
 * A full disk in the Node host fails as a full browser storage does: a
 * LesionError 'storage-full' that names the file, what it held and the way
 * out, the previous value kept, and the CLI printing that one line and
 * exiting 1. The disk is made full by making node:fs/promises' writeFile
 * refuse writes below a folder of this test.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import * as fsPromises from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { failureCode, LesionError } from '../src/core/errors.ts';
import { main } from '../src/node/cli.ts';
import { writeProducts } from '../src/node/files.ts';
import { FsKeyValueStore } from '../src/node/store.ts';
import { datasetsRoot } from './helpers/datasets.ts';

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  return { ...actual, writeFile: vi.fn(actual.writeFile) };
});

const dir = mkdtempSync(path.join(tmpdir(), 'lesion-full-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.mocked(fsPromises.writeFile).mockReset());

/** From now on, writes below `below` fail as a full disk (or a used-up quota) makes them. */
async function fillDisk(below: string, code: 'ENOSPC' | 'EDQUOT' = 'ENOSPC'): Promise<void> {
  const actual = await vi.importActual<typeof import('node:fs/promises')>('node:fs/promises');
  vi.mocked(fsPromises.writeFile).mockImplementation((file, data, options) => {
    if (String(file).startsWith(below)) {
      return Promise.reject(Object.assign(new Error(`${code}: no space, write '${String(file)}'`), { code, path: String(file), syscall: 'write' }));
    }
    return actual.writeFile(file, data, options);
  });
}

describe('a full disk in Node', () => {
  it("the store refuses the write as 'storage-full', naming the file and what it held, and keeps the previous value", async () => {
    const root = path.join(dir, 'store');
    const store = new FsKeyValueStore(root);
    await store.set('runs/r1/state', { epoch: 1 });
    await fillDisk(root);
    const failed = await store.set('runs/r1/state', { epoch: 2 }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(LesionError);
    expect(failureCode(failed)).toBe('storage-full');
    const message = (failed as Error).message;
    expect(message).toBe(
      `${path.join(root, 'runs', 'r1', 'state.v8')}: no space left on the device: the progress record of run r1 (8 B) could not be saved. ` +
        'Free space on that disk (or write to another one), then run the command again; train --resume continues a run from its last checkpoint',
    );
    expect(message).not.toContain('\n');
    expect(await store.get('runs/r1/state')).toEqual({ epoch: 1 });
    // No temporary file is left to take more of the space that ran out.
    expect(readdirSync(path.join(root, 'runs', 'r1'))).toEqual(['state.v8']);
  });

  it('a used-up quota is a full disk too, and other write errors stay what they are', async () => {
    const root = path.join(dir, 'quota');
    await fillDisk(root, 'EDQUOT');
    const failed = await new FsKeyValueStore(root).set('studio', 1).catch((error: unknown) => error);
    expect(failureCode(failed)).toBe('storage-full');
    expect((failed as Error).message).toContain('the disk quota is used up');
    vi.mocked(fsPromises.writeFile).mockRejectedValueOnce(Object.assign(new Error('EACCES'), { code: 'EACCES' }));
    const denied = await new FsKeyValueStore(root).set('studio', 1).catch((error: unknown) => error);
    expect(denied).not.toBeInstanceOf(LesionError);
  });

  it("the product writer refuses the same way, naming the file it could not write", async () => {
    const out = path.join(dir, 'products');
    await fillDisk(out);
    const failed = await writeProducts(out, [{ name: 'teacher/metrics.json', bytes: new Uint8Array(3) }]).catch((error: unknown) => error);
    expect(failureCode(failed)).toBe('storage-full');
    expect((failed as Error).message).toMatch(new RegExp(`^${path.join(out, 'teacher', 'metrics.json')}: no space left on the device\\. Free space on that disk`));
  });

  it('the CLI prints the one line and exits 1, as for any other failure', async () => {
    const out = path.join(dir, 'job');
    await fillDisk(out);
    const err: string[] = [];
    const code = await main(['export-job', '--preset', 'quick', '--labeled', path.join(datasetsRoot, 'ph2'), '--out', out], { out: () => {}, err: (line) => err.push(line) });
    expect(code).toBe(1);
    const last = err.at(-1)!;
    expect(last).toMatch(new RegExp(`^lesion-studio export-job: ${out}/\\S+: no space left on the device\\. Free space on that disk`));
    expect(last).not.toContain('\n');
  }, 120_000);
});
