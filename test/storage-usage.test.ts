/**
 * The Storage view's accounting is the core's (src/core/run/storage-usage.ts):
 * each run with its masks and nothing of another run, the expert labels and
 * the fine-tunes apart, counted by the store where it can (IndexedDB's cursor)
 * and value by value elsewhere.
 */
import { describe, expect, it } from 'vitest';
import { LabelStore, type ExpertLabel } from '../src/core/active/labels.ts';
import { payloadBytes } from '../src/core/run/run-store.ts';
import { storesUsage } from '../src/core/run/storage-usage.ts';
import { MemoryStore } from './helpers/memory-store.ts';

/** A store that counts its own bytes, as IdbStore does with a cursor. */
class CountingStore extends MemoryStore {
  readonly asked: string[] = [];
  async bytesUnder(prefix: string): Promise<number> {
    this.asked.push(prefix);
    return 1000;
  }
}

const label: ExpertLabel = {
  image: 'ph2/IMD002.bmp', id: 'IMD002', set: 'ph2', width: 2, height: 2, data: new Uint8Array([0, 1, 1, 0]),
  author: 'a', note: '', savedAt: '2025-01-01T00:00:00Z', startedFrom: 'empty',
};

describe('the storage accounting', () => {
  it('counts each run with its masks, the labels and the fine-tunes apart', async () => {
    const runs = new MemoryStore();
    await runs.set('runs/a/ckpt/teacher/latest', new Uint8Array(100));
    await runs.set('pseudo/a/teacher/x/y/32', new Uint8Array(10));
    await runs.set('runs/ab/state', new Uint8Array(7));
    const labels = new MemoryStore();
    await new LabelStore(labels).save(label);
    const fineTunes = new MemoryStore();
    await fineTunes.set('finetune/a/teacher', new Uint8Array(5));
    const usage = await storesUsage({ runs, labels, fineTunes }, [{ runId: 'a' }, { runId: 'ab' }]);
    expect(usage.runs).toEqual([
      { listing: { runId: 'a' }, bytes: 110 },
      { listing: { runId: 'ab' }, bytes: 7 },
    ]);
    expect(usage.expertLabels).toEqual({ count: 1, bytes: payloadBytes(label) });
    expect(usage.fineTuneBytes).toBe(5);
  });

  it("asks a store that can count its bytes instead of reading every value", async () => {
    const runs = new CountingStore();
    const usage = await storesUsage({ runs, labels: new CountingStore(), fineTunes: new CountingStore() }, [{ runId: 'a' }]);
    expect(runs.asked).toEqual(['runs/a/', 'pseudo/a/']);
    expect(usage.runs[0].bytes).toBe(2000);
    expect(usage.expertLabels).toEqual({ count: 0, bytes: 1000 });
    expect(usage.fineTuneBytes).toBe(1000);
  });
});
