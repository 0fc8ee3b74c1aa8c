/**
 * Expert labels: the store refuses masks that do not fit, a labeled PH2
 * image moves from the pool to the labeled images, and the pipeline's own
 * loader reads the label back through the ExpertLabelSource exactly.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { recogniseDatasets, type Sample } from '../src/core/dataset/layouts.ts';
import { loadSample, readMask } from '../src/core/dataset/loader.ts';
import { expertMaskPath, ExpertLabelSource, LabelStore, maskBmp, withExpertLabels, type ExpertLabel } from '../src/core/active/labels.ts';
import { fillPolygon } from '../src/core/active/mask-edit.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { datasetsRoot } from './helpers/datasets.ts';
import { MemoryStore } from './helpers/memory-store.ts';

function label(image: string, width: number, height: number, data = new Uint8Array(width * height)): ExpertLabel {
  return { image, id: path.basename(image).replace(/\.\w+$/, ''), set: 'ph2', width, height, data, author: 'tester', note: '', savedAt: new Date(0).toISOString(), startedFrom: 'empty' };
}

describe('label store', () => {
  it('keeps labels by image, lists them with their lesion pixels, and deletes them', async () => {
    const labels = new LabelStore(new MemoryStore());
    await labels.save(label('b/x.bmp', 2, 2, Uint8Array.from([0, 1, 1, 1])));
    await labels.save(label('a/y.bmp', 1, 1));
    expect((await labels.infos()).map((l) => [l.image, l.lesionPixels])).toEqual([['a/y.bmp', 0], ['b/x.bmp', 3]]);
    expect([...(await labels.get('b/x.bmp'))!.data]).toEqual([0, 1, 1, 1]);
    await labels.delete('b/x.bmp');
    expect(await labels.get('b/x.bmp')).toBeUndefined();
  });

  it('refuses a mask of the wrong size or with values other than 0 and 1, naming the image', async () => {
    const labels = new LabelStore(new MemoryStore());
    await expect(labels.save(label('p/IMD002.bmp', 3, 2, new Uint8Array(5)))).rejects.toThrow(
      'p/IMD002.bmp: expert label holds 5 pixels, but the image is 3x2 (6)',
    );
    await expect(labels.save(label('p/IMD002.bmp', 2, 1, Uint8Array.from([0, 255])))).rejects.toThrow(
      'p/IMD002.bmp: expert label pixel 1 is 255; a mask holds only 0 and 1',
    );
    expect(await labels.all()).toEqual([]);
  });
});

describe('expert labels in a run', () => {
  it('a mask survives the BMP the pipeline reads, row padding and bottom-up rows included', async () => {
    const mask = { width: 7, height: 3, data: Uint8Array.from([1, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]) };
    const read = await readMask('m.bmp', maskBmp(mask), new SharpDecoder());
    expect([...read.mask.data]).toEqual([...mask.data]);
    expect(read.warnings).toEqual([]);
  });

  it('a labeled PH2 pool image joins the labeled images and loads with its label at the training size', async () => {
    const source = new FsFileSource([path.join(datasetsRoot, 'ph2')]);
    const index = recogniseDatasets(await source.list());
    // PH2 opened as a pool: its masks are not used.
    const pool: Sample[] = index.sets.flatMap((s) => s.labeled.map(({ mask: _mask, ...image }) => image));
    expect(pool.length).toBe(32);
    const chosen = pool[3];
    const decoder = new SharpDecoder();
    const own = await loadSample(chosen, source, decoder, { width: 1, height: 1 });
    const { sourceWidth: width, sourceHeight: height } = own;

    const drawn = label(chosen.image, width, height);
    const mask = { width, height, data: drawn.data };
    // The left half of the image: at 32 px, nearest neighbour gives exactly columns 0-15.
    fillPolygon(mask, [{ x: 0, y: 0 }, { x: width / 2, y: 0 }, { x: width / 2, y: height }, { x: 0, y: height }], 1);
    const labels = new LabelStore(new MemoryStore());
    await labels.save(drawn);

    const inputs = withExpertLabels({ labeled: [] as Sample[], unlabeled: pool }, new Set([chosen.image]));
    expect(inputs.expert).toBe(1);
    expect(inputs.unlabeled.length).toBe(31);
    expect(inputs.labeled).toEqual([{ ...chosen, mask: expertMaskPath(chosen.image) }]);

    const withLabels = new ExpertLabelSource(source, labels, [chosen.image]);
    const loaded = await loadSample(inputs.labeled[0], withLabels, decoder, { width: 32, height: 32 });
    expect(loaded.warnings).toEqual([]);
    const expected = Uint8Array.from({ length: 32 * 32 }, (_, i) => (i % 32 < 16 ? 1 : 0));
    expect([...loaded.mask!.data]).toEqual([...expected]);

    await labels.delete(chosen.image);
    await expect(withLabels.read(expertMaskPath(chosen.image))).rejects.toThrow(`${chosen.image}: its expert label was deleted from this browser`);
  });
});
