/**
 * Scale: how long indexing a 30,000-image folder takes, and whether memory
 * stays bounded while pseudo-labelling streams through an unlabeled pool
 * (peak JS heap and tfjs tensor bytes, sampled after every batch). Prints a
 * table; asserts nothing. Files are generated in a temp folder from one real
 * ISIC image and removed afterwards.
 *
 *   tsx bench/scale.ts [--files 30000] [--pool 600] [--backend wasm]
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { Jimp } from 'jimp';
import { paperCard, type RunCard } from '../src/core/config.ts';
import { RunControl } from '../src/core/training/control.ts';
import { recogniseDatasets } from '../src/core/dataset/layouts.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { generatePseudoLabels } from '../src/core/run/pseudo.ts';
import { RunStore } from '../src/core/run/run-store.ts';
import { PixelCache } from '../src/core/dataset/samples.ts';
import { initNodeBackend, type NodeBackendName } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { FsKeyValueStore } from '../src/node/store.ts';
import { DATASETS, MODELS } from './tasks.ts';

const { values } = parseArgs({
  options: { files: { type: 'string', default: '30000' }, pool: { type: 'string', default: '600' }, backend: { type: 'string', default: 'wasm' } },
  // bench/all.sh hands run.ts's options to this script too.
  strict: false,
});
const files = Number(values.files);
const pool = values.quick ? 200 : Number(values.pool);
const MiB = 2 ** 20;

const backend = await initNodeBackend(values.backend as NodeBackendName);
const root = await mkdtemp(path.join(os.tmpdir(), 'lesion-scale-'));
try {
  const seed = await Jimp.read(path.join(DATASETS.isic2018, 'ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg'));
  seed.resize({ w: 96, h: 72 });
  const base = await seed.getBuffer('image/jpeg');

  // 30,000 images in 300 sub-folders: the pool the studio indexes without decoding.
  const big = path.join(root, 'archive');
  for (let d = 0; d < Math.ceil(files / 100); d++) {
    const dir = path.join(big, `part${String(d).padStart(3, '0')}`);
    await mkdir(dir, { recursive: true });
    await Promise.all(Array.from({ length: Math.min(100, files - d * 100) }, (_, i) => writeFile(path.join(dir, `ISIC_${String(d * 100 + i).padStart(7, '0')}.jpg`), base)));
  }
  const t0 = performance.now();
  const listed = await new FsFileSource([big]).list();
  const t1 = performance.now();
  const index = recogniseDatasets(listed);
  const t2 = performance.now();
  const unlabeledCount = index.sets.reduce((n, s) => n + s.unlabeled.length, 0);

  // A pool of distinct images (a pixel differs), so no pseudo-label is reused by content hash.
  const poolDir = path.join(root, 'pool');
  await mkdir(poolDir);
  for (let i = 0; i < pool; i++) {
    const image = seed.clone();
    image.setPixelColor(0xff000000 + i * 97, i % 96, Math.floor(i / 96) % 72);
    await writeFile(path.join(poolDir, `IMG_${String(i).padStart(5, '0')}.jpg`), await image.getBuffer('image/jpeg'));
  }
  const source = new FsFileSource([poolDir]);
  const samples = recogniseDatasets(await source.list()).sets.flatMap((s) => s.unlabeled);
  const card: RunCard = { ...paperCard(), model: { ...MODELS.small, inputSize: 64 }, train: { ...paperCard().train, batchSize: 8 } };
  const model = buildDeepLabV3(card.model, 'train', card.seed);
  const store = new FsKeyValueStore(path.join(root, 'store'));
  const samplesSeen: { done: number; heap: number; tensorBytes: number }[] = [];
  const sample = (done: number): void => {
    samplesSeen.push({ done, heap: process.memoryUsage().heapUsed, tensorBytes: tf.memory().numBytes });
  };
  sample(0);
  const started = performance.now();
  const records = await generatePseudoLabels({
    stage: 'pseudo-teacher',
    producer: { stage: 'teacher', checkpoint: 'bench-scale' },
    model,
    postprocess: false,
    samples,
    card,
    cache: new PixelCache(source, new SharpDecoder(), store, { width: 64, height: 64 }, () => {}),
    source,
    run: new RunStore(store, 'bench'),
    emit: (e) => {
      if (e.type === 'pseudo') sample(e.done);
    },
    control: new RunControl(),
  });
  const seconds = (performance.now() - started) / 1000;
  model.dispose();

  const peakHeap = Math.max(...samplesSeen.map((s) => s.heap));
  const firstTenth = samplesSeen.filter((s) => s.done <= pool / 10);
  const peakEarly = Math.max(...firstTenth.map((s) => s.heap));
  const out = [
    `Scale (backend ${backend.name}; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})`,
    `  index ${files} images in ${Math.ceil(files / 100)} folders: list ${(t1 - t0).toFixed(0)} ms, recognise ${(t2 - t1).toFixed(0)} ms, ${unlabeledCount} unlabeled found`,
    `  pseudo-label ${records.length} distinct images (small model, 64 px, batch 8): ${(records.length / seconds).toFixed(1)} img/s`,
    `    JS heap: ${(samplesSeen[0].heap / MiB).toFixed(0)} MiB at start, peak ${(peakEarly / MiB).toFixed(0)} MiB in the first tenth, peak ${(peakHeap / MiB).toFixed(0)} MiB overall, ${(samplesSeen.at(-1)!.heap / MiB).toFixed(0)} MiB at the end`,
    `    tfjs tensor bytes: ${(samplesSeen[0].tensorBytes / MiB).toFixed(1)} MiB at start, peak ${(Math.max(...samplesSeen.map((s) => s.tensorBytes)) / MiB).toFixed(1)} MiB, ${(samplesSeen.at(-1)!.tensorBytes / MiB).toFixed(1)} MiB at the end`,
  ];
  console.log(out.join('\n'));
} finally {
  await rm(root, { recursive: true, force: true });
}
