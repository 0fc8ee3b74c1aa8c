/**
 * Bad inputs get a message naming the file and the problem, and the run goes
 * on without them: the corpus of test/helpers/corpus.ts goes end to end
 * through the folder walk, the layouts, the decoder and the pixel cache; then
 * broken model folders go through loadLayersModel.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recogniseDatasets } from '../src/core/dataset/layouts.ts';
import { loadSample } from '../src/core/dataset/loader.ts';
import { LesionError } from '../src/core/errors.ts';
import type { TrainerEvent } from '../src/core/events.ts';
import type { RgbaPixels } from '../src/core/io.ts';
import { itemFromSample, PixelCache } from '../src/core/dataset/samples.ts';
import { decodeImage } from '../src/core/image/decode.ts';
import { resizeRgba } from '../src/core/image/resize.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { loadLayersModel, saveLayersModel } from '../src/node/model-files.ts';
import { type CorpusCase, LARGE_HEIGHT, LARGE_WIDTH, LONG_STEM, mutateAfterIndexing, type TruePixels, writeBadInputCorpus } from './helpers/corpus.ts';
import { MemoryStore } from './helpers/memory-store.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const SIZE = { width: 64, height: 64 };
const decoder = new SharpDecoder();

const dir = mkdtempSync(path.join(tmpdir(), 'lesion-bad-inputs-'));
const root = path.basename(dir);
const source = new FsFileSource([dir]);
/** The path a FileSource (and so every message) gives a corpus file. */
const named = (relative: string) => `${root}/${relative}`;

const corpus = await writeBadInputCorpus(datasetsRoot, dir);
const listed = await source.list();
const index = recogniseDatasets(listed);
await mutateAfterIndexing(datasetsRoot, dir);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pairs = corpus.cases.filter((c) => c.mask !== undefined);
const large = corpus.cases.find((c) => c.mask === undefined)!;

function rgbError(pixels: RgbaPixels, truth: TruePixels): number {
  let sum = 0;
  for (let y = 0; y < truth.height; y++) {
    for (let x = 0; x < truth.width; x++) {
      const expected = truth.rgbAt(x, y);
      for (let c = 0; c < 3; c++) sum += Math.abs(pixels.data[(y * pixels.width + x) * 4 + c] - expected[c]);
    }
  }
  return sum / (truth.width * truth.height * 3);
}

/** The true mask, brought to the training size the way masks are (nearest). */
function maskAtTrainingSize(mask: NonNullable<CorpusCase['maskTruth']>): Uint8Array {
  const rgba = { width: mask.width, height: mask.height, data: new Uint8Array(mask.data.length * 4) };
  mask.data.forEach((v, i) => rgba.data.fill(v, i * 4, i * 4 + 4));
  const resized = resizeRgba(rgba, SIZE.width, SIZE.height, 'nearest');
  return Uint8Array.from({ length: SIZE.width * SIZE.height }, (_, i) => resized.data[i * 4]);
}

describe('the layouts on the corpus', () => {
  it('pair every case wherever and however it is named', () => {
    const labeled = new Map(index.sets.flatMap((set) => set.labeled.map((s) => [s.image, s.mask])));
    for (const c of pairs) expect(labeled.get(named(c.image)), c.name).toBe(named(c.mask!));
    expect(pairs.some((c) => c.image.split('/').length > 22)).toBe(true);
    expect(pairs.some((c) => c.image.includes(LONG_STEM) && LONG_STEM.length >= 200)).toBe(true);
    const unlabeled = index.sets.flatMap((set) => set.unlabeled.map((s) => s.image));
    expect(unlabeled).toEqual([named(large.image)]);
  });

  it('report the unrelated files and the duplicate id as strays, say why, and pass over metadata silently', () => {
    const strays = new Map(index.strays.map((s) => [s.path, s]));
    expect(index.strays).toHaveLength(corpus.strays.length);
    for (const expected of corpus.strays) {
      const stray = strays.get(named(expected.path));
      expect(stray?.kind, expected.path).toBe(expected.kind);
      expect(stray!.detail).toMatch(expected.detail);
    }
    const used = new Set(index.sets.flatMap((set) => [...set.labeled, ...set.unlabeled].flatMap((s) => [s.image, s.mask])));
    for (const file of corpus.ignored) {
      expect(strays.has(named(file))).toBe(false);
      expect(used.has(named(file))).toBe(false);
    }
    expect(corpus.ignored.length + corpus.strays.length).toBeGreaterThan(10_000);
  });
});

describe('every case end to end through loadSample', () => {
  for (const c of pairs) {
    it(`${c.name}: ${c.outcome}`, async () => {
      const sample = { id: c.name, set: 'corpus', layout: 'images-masks' as const, split: 'unspecified' as const, image: named(c.image), mask: named(c.mask!) };
      if (c.outcome === 'skipped') {
        const error = await loadSample(sample, source, decoder, SIZE).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(LesionError);
        expect((error as LesionError).file).toBe(named(c.file!));
        expect((error as LesionError).message).toContain(named(c.file!));
        expect((error as LesionError).message).toMatch(c.problem!);
        return;
      }

      const loaded = await loadSample(sample, source, decoder, SIZE);
      if (c.outcome === 'warns') {
        expect(loaded.warnings).toHaveLength(1);
        expect(loaded.warnings[0].file).toBe(named(c.file!));
        expect(loaded.warnings[0].message.startsWith(`${named(c.file!)}: `)).toBe(true);
        expect(loaded.warnings[0].message).toMatch(c.problem!);
      } else {
        expect(loaded.warnings).toEqual([]);
      }
      expect([loaded.image.width, loaded.image.height, loaded.image.data.length]).toEqual([SIZE.width, SIZE.height, SIZE.width * SIZE.height * 3]);
      expect(loaded.mask!.data).toEqual(maskAtTrainingSize(c.maskTruth!));

      // Pixel facts at the file's own size: what the file holds, within JPEG's loss.
      const truth = c.truth!;
      const { pixels } = await decodeImage(decoder, sample.image, await source.read(sample.image));
      expect([pixels.width, pixels.height]).toEqual([truth.width, truth.height]);
      expect([loaded.sourceWidth, loaded.sourceHeight]).toEqual([truth.width, truth.height]);
      const error = rgbError(pixels, truth);
      if (truth.meanError === 0) expect(error).toBe(0);
      else expect(error).toBeLessThanOrEqual(truth.meanError);
    });
  }

  it('a top-down BMP comes out right way up: its red mark top-left, its blue mark bottom-right', async () => {
    const file = named(pairs.find((c) => c.image.endsWith('top-down.bmp'))!.image);
    const bytes = await source.read(file);
    expect(new DataView(bytes.buffer, bytes.byteOffset).getInt32(22, true)).toBeLessThan(0);
    const { pixels } = await decodeImage(decoder, file, bytes);
    const at = (i: number) => [...pixels.data.subarray(i * 4, i * 4 + 3)];
    expect(at(0)).toEqual([255, 0, 0]);
    expect(at(pixels.width * pixels.height - 1)).toEqual([0, 0, 255]);
  });

  it('a file replaced after indexing decodes to its new content, not the old', async () => {
    const read = async (stem: string) => (await decodeImage(decoder, stem, await source.read(named(`lesions/images/${stem}.jpg`)))).pixels;
    const changed = corpus.cases.find((c) => c.image.endsWith('changed.jpg'))!;
    const clean = corpus.cases.find((c) => c.image.endsWith('clean.jpg'))!;
    // The clean file holds what changed.jpg held when it was indexed.
    expect(rgbError(await read('clean'), changed.truth!)).toBeGreaterThan(3 * changed.truth!.meanError);
    expect(rgbError(await read('changed'), clean.truth!)).toBeGreaterThan(3 * clean.truth!.meanError);
  });
});

describe('a 30-megapixel JPEG', () => {
  it('decodes and shrinks to the training size in 8-bit', async () => {
    const events: TrainerEvent[] = [];
    const cache = new PixelCache(source, decoder, new MemoryStore(), SIZE, (e) => events.push(e));
    const sample = index.sets.flatMap((set) => set.unlabeled)[0];
    const result = await cache.image(sample);
    expect(events).toEqual([]);
    expect([result!.sourceWidth, result!.sourceHeight]).toEqual([LARGE_WIDTH, LARGE_HEIGHT]);
    expect([result!.image.width, result!.image.height]).toEqual([SIZE.width, SIZE.height]);
    // A linear gradient stays linear under the symmetric resize filter, away from the borders.
    for (let y = 2; y < SIZE.height - 2; y += 5) {
      for (let x = 2; x < SIZE.width - 2; x += 5) {
        const centre = large.truth!.rgbAt(((x + 0.5) * LARGE_WIDTH) / SIZE.width - 0.5, ((y + 0.5) * LARGE_HEIGHT) / SIZE.height - 0.5);
        const got = result!.image.data.subarray((y * SIZE.width + x) * 3, (y * SIZE.width + x) * 3 + 3);
        centre.forEach((v, c) => expect(Math.abs(got[c] - v)).toBeLessThanOrEqual(3));
      }
    }
  });
});

describe('the run goes on', () => {
  it('a training-style loop gets pixels for the good items, undefined for the bad, each bad file reported once, by name', async () => {
    const events: TrainerEvent[] = [];
    const cache = new PixelCache(source, decoder, new MemoryStore(), SIZE, (e) => events.push(e));
    const items = index.sets.flatMap((set) => set.labeled.map(itemFromSample));
    expect(items).toHaveLength(pairs.length);
    for (let epoch = 0; epoch < 3; epoch++) {
      for (const item of items) {
        const c = pairs.find((p) => named(p.image) === item.image)!;
        const pixels = await cache.get(item);
        if (c.outcome === 'skipped') expect(pixels, c.name).toBeUndefined();
        else expect(pixels?.mask.data, c.name).toEqual(maskAtTrainingSize(c.maskTruth!));
      }
    }

    const warnings = events.filter((e): e is Extract<TrainerEvent, { type: 'warning' }> => e.type === 'warning');
    expect(events.filter((e) => e.type !== 'warning')).toEqual([]);
    const reported = pairs.filter((c) => c.outcome !== 'decodes');
    expect(warnings.map((w) => w.file).sort()).toEqual(reported.map((c) => named(c.file!)).sort());
    for (const c of reported) {
      const warning = warnings.find((w) => w.file === named(c.file!))!;
      expect(warning.message).toContain(named(c.file!));
      expect(warning.message).toMatch(c.problem!);
      // When the mask is at fault the message also says which image was left out.
      if (c.outcome === 'skipped') expect(warning.message).toContain(named(c.image));
    }
    expect([...cache.failures.keys()].sort()).toEqual(pairs.filter((c) => c.outcome === 'skipped').map((c) => named(c.image)).sort());
  });
});

describe('imported model folders', () => {
  const models = mkdtempSync(path.join(tmpdir(), 'lesion-bad-models-'));
  const good = path.join(models, 'good');
  afterAll(() => rmSync(models, { recursive: true, force: true }));

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3, padding: 'same' }),
        tf.layers.batchNormalization(),
        tf.layers.conv2d({ filters: 1, kernelSize: 1 }),
      ],
    });
    await saveLayersModel(model, good, { format: 'lesion-studio-model/1', inputSize: 8 });
    model.dispose();
  });

  /** A copy of the good folder with one edit. */
  function variant(name: string, edit: (folder: string) => void): string {
    const folder = path.join(models, name);
    cpSync(good, folder, { recursive: true });
    edit(folder);
    return folder;
  }
  const editJson = (folder: string, file: string, edit: (json: any) => void) => {
    const json = JSON.parse(readFileSync(path.join(folder, file), 'utf8'));
    edit(json);
    writeFileSync(path.join(folder, file), JSON.stringify(json));
  };
  const weightsOf = (folder: string) => readFileSync(path.join(folder, 'weights.bin'));

  const broken: [string, (folder: string) => void, string, RegExp][] = [
    ['broken model.json', (f) => writeFileSync(path.join(f, 'model.json'), '{"modelTopology": {"class_name": "Seq'), 'model.json', /not valid JSON/],
    ['model.json that is not a model', (f) => writeFileSync(path.join(f, 'model.json'), '{"name": "my model"}'), 'model.json', /not a tfjs layers model/],
    ['missing weights.bin', (f) => rmSync(path.join(f, 'weights.bin')), 'weights.bin', /the file is missing/],
    ['weights.bin too short', (f) => writeFileSync(path.join(f, 'weights.bin'), weightsOf(f).subarray(0, 100)), 'weights.bin', /holds 100 bytes of weights but model\.json describes \d+/],
    ['weights.bin too long', (f) => writeFileSync(path.join(f, 'weights.bin'), Buffer.concat([weightsOf(f), Buffer.alloc(64)])), 'weights.bin', /holds \d+ bytes of weights but model\.json describes \d+/],
    ['a layer this tfjs does not know', (f) => editJson(f, 'model.json', (j) => (j.modelTopology.config.layers[2].class_name = 'Swirl')), 'model.json', /cannot be built \(Unknown layer: Swirl/],
    [
      'weights of the right size but the wrong shape',
      (f) => editJson(f, 'model.json', (j) => (j.weightsManifest[0].weights[0].shape = [3, 3, 4, 3])),
      'model.json',
      /weight \S+\/kernel is \[3,3,4,3\] in the weightsManifest but the model needs \[3,3,3,4\]/,
    ],
    ['metadata from a newer format', (f) => editJson(f, 'metadata.json', (j) => (j.format = 'lesion-studio-model/2')), 'metadata.json', /lesion-studio-model\/2 comes from a newer studio/],
    ['broken metadata.json', (f) => writeFileSync(path.join(f, 'metadata.json'), '{"format": '), 'metadata.json', /not valid JSON/],
  ];

  for (const [name, edit, file, problem] of broken) {
    it(`${name}: rejected, naming ${file}, with no tensor left behind`, async () => {
      const folder = variant(name.replace(/\W+/g, '-'), edit);
      const before = tf.memory().numTensors;
      const error = await loadLayersModel(folder).catch((e: unknown) => e);
      expect(tf.memory().numTensors).toBe(before);
      expect(error).toBeInstanceOf(LesionError);
      expect((error as LesionError).file).toBe(path.join(folder, file));
      expect((error as LesionError).message).toContain(path.join(folder, file));
      expect((error as LesionError).message).toMatch(problem);
    });
  }

  it('the intact folder loads with its metadata, and disposing it leaves nothing behind', async () => {
    const before = tf.memory().numTensors;
    const { model, metadata } = await loadLayersModel<{ format: string }>(good);
    expect(metadata?.format).toBe('lesion-studio-model/1');
    const kernel = model.weights[0].read().dataSync();
    const saved = new Float32Array(new Uint8Array(weightsOf(good)).buffer, 0, kernel.length);
    expect([...kernel]).toEqual([...saved]);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
