/**
 * The studio and the CLI make a run's products the same way. One tiny run
 * (teacher, pseudo-labels, student at 32 px; PH2 labeled, ISIC 2018 as the
 * pool) is trained by `lesion-studio train`; then the worker's export and
 * Predict functions, driven here in Node on that run's own store, give byte
 * for byte the files the CLI wrote: models, pseudo-labels, metrics, and a
 * prediction mask at the image's own size.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Jimp } from 'jimp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunCard } from '../src/core/config.ts';
import { tinyTestCard } from './helpers/cards.ts';
import { inspectImage } from '../src/core/image/image-header.ts';
import { loadSample } from '../src/core/dataset/loader.ts';
import { binariseLogits, confusion, lesionDice, lesionJaccard } from '../src/core/scoring/metrics.ts';
import { maskPng } from '../src/core/image/png.ts';
import { resizeMask } from '../src/core/image/resize.ts';
import { RunStore } from '../src/core/run/run-store.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { FsKeyValueStore } from '../src/node/store.ts';
import type { ExportedFile } from '../src/worker/api.ts';
import { OpenDataset } from '../src/worker/dataset.ts';
import { exportMetrics, exportModel, exportPseudoLabels } from '../src/worker/exports.ts';
import { predictUpload } from '../src/core/run/stage-model.ts';
import { cli } from './helpers/cli.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const PH2 = path.join(datasetsRoot, 'ph2');
const ISIC2018 = path.join(datasetsRoot, 'isic2018');
const SIZE = 32;
const ISIC_IMAGE = path.join(ISIC2018, 'ISIC2018_Task1-2_Training_Input', 'ISIC_0000013.jpg');
const PH2_IMAGE = path.join(PH2, 'PH2 Dataset images', 'IMD004', 'IMD004_Dermoscopic_Image', 'IMD004.bmp');

function tinyCard(): RunCard {
  const card = tinyTestCard('products-test', 7);
  return {
    ...card,
    model: { ...card.model, inputSize: SIZE },
    data: { ...card.data, split: { kind: 'fractions', val: 0.25, test: 0.15 } },
    student: { ...card.student, rounds: 1 },
  };
}

/** Every file below a folder, by its path relative to it. */
function filesUnder(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (at: string, rel: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(at, entry.name), `${rel}${entry.name}/`);
      else out.set(`${rel}${entry.name}`, readFileSync(path.join(at, entry.name)));
    }
  };
  walk(dir, '');
  return out;
}

/** The worker's files under `folder/`, by their names below it. */
function below(files: ExportedFile[], folder: string): Map<string, Buffer> {
  return new Map(files.map((f) => {
    expect(f.name.startsWith(`${folder}/`)).toBe(true);
    return [f.name.slice(folder.length + 1), Buffer.from(f.bytes)];
  }));
}

const pngSize = (bytes: Uint8Array): { width: number; height: number } => {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  return { width: view.getUint32(16), height: view.getUint32(20) };
};

let work: string;
let out: string;
let cardFile: string;
let run: RunStore;
let card: RunCard;
let dataset: OpenDataset;
/** The image the review rejected, between the run and the CLI's second write of its outputs. */
let rejectedImage: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'lesion-products-'));
  out = path.join(work, 'run');
  cardFile = path.join(work, 'card.json');
  writeFileSync(cardFile, JSON.stringify(tinyCard()));
  const trained = await cli('train', '--config', cardFile, '--labeled', PH2, '--unlabeled', ISIC2018, '--out', out);
  expect(trained.stderr).toContain('wrote models, metrics and pseudo-labels');
  expect(trained.code).toBe(0);

  await initNodeBackend('wasm');
  run = new RunStore(new FsKeyValueStore(path.join(out, 'store')), 'run');
  card = (await run.card())!;
  // A pseudo-label rejected in review: the CLI writes the completed run's outputs again on --resume.
  rejectedImage = (await run.pseudoLabels('pseudo-teacher')).find((r) => !r.dropped)!.image;
  await run.setRejected(rejectedImage, true);
  const resumed = await cli('train', '--config', cardFile, '--labeled', PH2, '--unlabeled', ISIC2018, '--out', out, '--resume');
  expect(resumed.code).toBe(0);
  dataset = await OpenDataset.open('folders', new FsFileSource([PH2, ISIC2018]));
}, 600_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a run\'s products, from the studio\'s worker and from the CLI', () => {
  it.each(['teacher', 'student'] as const)('the %s model files are byte-identical', async (stage) => {
    const studio = below(await exportModel(run, stage, 'best'), `run-${stage}-best`);
    const written = filesUnder(path.join(out, stage, 'model'));
    expect([...studio.keys()].sort()).toEqual(['metadata.json', 'model.json', 'weights.bin']);
    expect([...written.keys()].sort()).toEqual([...studio.keys()].sort());
    for (const [name, bytes] of studio) expect(written.get(name)!.equals(bytes), name).toBe(true);
  });

  it('the pseudo-labels are byte-identical: kept masks only, each at its image\'s own size, and the CSV', async () => {
    const studio = below(await exportPseudoLabels(run, dataset, 'pseudo-teacher'), 'run-pseudo-teacher');
    const written = filesUnder(path.join(out, 'pseudo-teacher'));
    expect([...written.keys()].sort()).toEqual([...studio.keys()].sort());
    for (const [name, bytes] of studio) expect(written.get(name)!.equals(bytes), name).toBe(true);

    const records = await run.pseudoLabels('pseudo-teacher');
    const kept = records.filter((r) => !r.dropped && r.image !== rejectedImage);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(records.length);
    expect([...written.keys()].filter((n) => n.startsWith('masks/')).sort()).toEqual(kept.map((r) => `masks/${r.id}_segmentation.png`).sort());
    for (const record of kept) {
      const header = inspectImage(record.image, await dataset.source.read(record.image));
      const size = pngSize(written.get(`masks/${record.id}_segmentation.png`)!);
      expect(size).toEqual({ width: header.width, height: header.height });
      expect(size.width).not.toBe(SIZE);
    }
    const csv = written.get('pseudo-labels.csv')!.toString('utf8').trim().split('\n');
    expect(csv).toHaveLength(records.length + 1);
    expect(csv.find((line) => line.includes(rejectedImage))).toMatch(/,true,$/);
  });

  it('the metrics are byte-identical', async () => {
    const studio = await exportMetrics(run);
    expect(studio.map((f) => f.name)).toEqual(['run-metrics.json', 'run-metrics.csv']);
    for (const file of studio) {
      expect(readFileSync(path.join(out, file.name.replace(/^run-/, ''))).equals(Buffer.from(file.bytes)), file.name).toBe(true);
    }
    const json = JSON.parse(readFileSync(path.join(out, 'metrics.json'), 'utf8'));
    expect(json.results.map((r: { stage: string }) => r.stage)).toEqual(['teacher', 'student']);
  });
});

describe('the test scores a stage stores', () => {
  it.each(['teacher', 'student'] as const)('keep the %s\'s prediction of every test image, which gives its stored score against the ground truth', async (stage) => {
    const state = (await run.state())!;
    const [scores, predictions] = await Promise.all([run.perImage(stage), run.testPredictions(stage)]);
    const byKey = new Map(dataset.inputs().labeled.map((s) => [`${s.set}/${s.id}`, s]));
    const tested = state.split.test.map((key) => byKey.get(key)!);
    expect(tested.length).toBeGreaterThan(0);
    expect(scores!.map((s) => s.id).sort()).toEqual(tested.map((s) => s.id).sort());
    expect([...predictions!.keys()].sort()).toEqual(tested.map((s) => s.id).sort());
    for (const sample of tested) {
      const truth = (await loadSample(sample, dataset.source, new SharpDecoder(), { width: SIZE, height: SIZE })).mask!;
      const prediction = predictions!.get(sample.id)!;
      expect([prediction.width, prediction.height]).toEqual([SIZE, SIZE]);
      const c = confusion(prediction.data, truth.data);
      expect(scores!.find((s) => s.id === sample.id)).toEqual({ id: sample.id, lesionIoU: lesionJaccard(c), dice: lesionDice(c), confusion: c, batch: expect.any(Number) });
    }
  });
});

describe('the Predict view and `lesion-studio predict`', () => {
  let images: string;
  let predicted: string;

  beforeAll(async () => {
    images = path.join(work, 'images');
    predicted = path.join(work, 'predicted');
    mkdirSync(images);
    for (const file of [ISIC_IMAGE, PH2_IMAGE]) symlinkSync(file, path.join(images, path.basename(file)));
    const outcome = await cli('predict', '--model', path.join(out, 'student', 'model'), '--images', images, '--out', predicted);
    expect(outcome.code).toBe(0);
  }, 300_000);

  it.each([ISIC_IMAGE, PH2_IMAGE])('give the same mask file, at the image\'s own size, for %s', async (file) => {
    const bytes = new Uint8Array(readFileSync(file));
    const name = path.basename(file);
    const { prediction, width, height } = await predictUpload(run, card, 'student', name, bytes, new SharpDecoder());
    const id = name.replace(/\.[^.]+$/, '');
    expect(prediction.file.name).toBe(`${id}_segmentation.png`);
    const cli = readFileSync(path.join(predicted, `${id}_segmentation.png`));
    expect(cli.equals(Buffer.from(prediction.file.bytes))).toBe(true);

    const header = inspectImage(name, bytes);
    expect({ width, height }).toEqual({ width: header.width, height: header.height });
    expect(pngSize(cli)).toEqual({ width, height });
    const decoded = (await Jimp.fromBuffer(cli)).bitmap;
    let lesion = 0;
    for (let i = 0; i < width * height; i++) lesion += decoded.data[i * 4] === 255 ? 1 : 0;
    expect(lesion).toBeGreaterThan(0);
    expect(lesion).toBeLessThan(width * height);
    // Bilinear logits, then the threshold: not the nearest-neighbour enlargement of the thresholded 32 px mask.
    const small = { width: SIZE, height: SIZE, data: binariseLogits(prediction.logits, card.eval.logitThreshold) };
    expect(Buffer.from(maskPng(resizeMask(small, width, height))).equals(cli)).toBe(false);
  });
});
