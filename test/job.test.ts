/**
 * A job for a PyTorch cluster is the same whichever host packs it: the
 * studio's Export view (src/worker/exports.ts) and `lesion-studio export-job`
 * write the same split and the same starting weights for one card and one set
 * of folders, and the studio's job carries the expert labels as mask files.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabelStore, type ExpertLabel } from '../src/core/active/labels.ts';
import { quickCard, type RunCard } from '../src/core/config.ts';
import { readMask } from '../src/core/dataset/loader.ts';
import type { JobManifest } from '../src/core/run/job.ts';
import { RunStore } from '../src/core/run/run-store.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import type { ExportedFile } from '../src/worker/api.ts';
import { OpenDataset } from '../src/worker/dataset.ts';
import { exportJob } from '../src/worker/exports.ts';
import { labeledDataset } from '../src/worker/labeling.ts';
import { cli } from './helpers/cli.ts';
import { datasetsRoot } from './helpers/datasets.ts';
import { MemoryStore } from './helpers/memory-store.ts';

const PH2 = path.join(datasetsRoot, 'ph2');
const ISIC2017 = path.join(datasetsRoot, 'isic2017');
const card: RunCard = { ...quickCard(), name: 'job-test', model: { ...quickCard().model, width: 0.35, asppChannels: 8, inputSize: 32, init: 'random' } };

const file = (files: ExportedFile[], name: string): Uint8Array => {
  const found = files.find((f) => f.name === `${card.name}-job/${name}`);
  if (!found) throw new Error(`no ${name} among ${files.map((f) => f.name).join(', ')}`);
  return new Uint8Array(found.bytes);
};

describe('export-job and the studio\'s Export job', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'job-'));
  let dataset: OpenDataset;
  beforeAll(async () => {
    await initNodeBackend('cpu');
    dataset = await OpenDataset.open('folders', new FsFileSource([PH2, ISIC2017]));
    dataset.setRole('isic2017', 'unlabeled');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('write the same split and starting weights for one card and one set of folders', async () => {
    writeFileSync(path.join(dir, 'card.json'), JSON.stringify(card));
    const made = await cli('export-job', '--config', path.join(dir, 'card.json'), '--labeled', PH2, '--unlabeled', ISIC2017, '--out', path.join(dir, 'cli'));
    expect(made.code, made.stderr).toBe(0);
    const fromCli = JSON.parse(readFileSync(path.join(dir, 'cli', 'job.json'), 'utf8')) as JobManifest;
    const files = await exportJob(new RunStore(new MemoryStore(), 'r'), card, dataset, []);
    const fromStudio = JSON.parse(new TextDecoder().decode(file(files, 'job.json'))) as JobManifest;

    expect(fromStudio.images).toEqual(fromCli.images);
    expect(fromStudio.counts).toEqual(fromCli.counts);
    expect(fromCli.counts).toMatchObject({ train: 20, val: 6, test: 6, unlabeled: 65 });
    expect(fromCli.roots).toEqual({ ph2: PH2, isic2017: ISIC2017 });
    expect(Object.keys(fromStudio.roots)).toEqual(['isic2017', 'ph2']);
    expect(Buffer.compare(file(files, 'init/weights.bin'), readFileSync(path.join(dir, 'cli', 'init', 'weights.bin')))).toBe(0);
    expect(new TextDecoder().decode(file(files, 'init/model.json'))).toBe(readFileSync(path.join(dir, 'cli', 'init', 'model.json'), 'utf8'));
    // Every image once, with a mask exactly when it trains, validates or tests.
    expect(new Set(fromCli.images.map((i) => `${i.root}/${i.image}`)).size).toBe(fromCli.images.length);
    expect(fromCli.images.every((i) => (i.split === 'unlabeled') === (i.mask === undefined))).toBe(true);
  });

  it('carry an expert label drawn in the studio as a mask file, the image among the labeled ones', async () => {
    const labels = new LabelStore(new MemoryStore());
    const image = dataset.inputs().unlabeled[0];
    const width = 48;
    const height = 36;
    const data = Uint8Array.from({ length: width * height }, (_, i) => (i % width > 20 ? 1 : 0));
    const label: ExpertLabel = { image: image.image, id: image.id, set: image.set, width, height, data, author: 'test', note: '', savedAt: new Date(0).toISOString(), startedFrom: 'empty' };
    await labels.save(label);
    const files = await exportJob(new RunStore(new MemoryStore(), 'r'), card, await labeledDataset(dataset, labels), await labels.all());
    const manifest = JSON.parse(new TextDecoder().decode(file(files, 'job.json'))) as JobManifest;
    const entry = manifest.images.find((i) => `${i.root}/${i.image}` === image.image)!;
    expect(entry).toMatchObject({ role: 'labeled', mask: `expert-labels/${image.id}_segmentation.png`, maskInJob: true });
    expect(['train', 'val', 'test']).toContain(entry.split);
    const mask = await readMask(entry.mask!, file(files, entry.mask!), new SharpDecoder());
    expect(mask.mask).toEqual({ width, height, data });
  });
});
