/**
 * `lesion-studio eval (--model <dir> | --pred <dir>) --data <dir>... [--json]
 *  [--backend auto|cpu|wasm|webgpu] [--batch <n>]`
 *
 * Scores with every metric (src/core/metrics.ts), per set and overall, the
 * labeled images (image + mask pairs) found in the --data folders:
 * - --model: an exported model predicts at its input size and is scored
 *   there, against masks resized to it, as the paper and training do;
 * - --pred: masks already written (`<id>_segmentation.png` or `<id>.png`,
 *   any resolution; `<set>/<id>...` when predict wrote one folder per set) are
 *   scored at each ground truth's full resolution, both binarised at >127:
 *   the ISIC challenge's way. A missing prediction counts as an empty mask
 *   and is named in a warning.
 * The paper's mIoU pools each batch of --batch images (10, the official
 * validation batch), so it depends on the batch size; the other figures do not.
 */
import { stat } from 'node:fs/promises';
import { recogniseDatasets, type DatasetIndex, type Sample } from '../../core/dataset/layouts.ts';
import { binariseMask, type Size } from '../../core/dataset/loader.ts';
import { LesionError } from '../../core/errors.ts';
import { evaluate, type Evaluation } from '../../core/evaluate.ts';
import type { BinaryMask, FileSource, KeyValueStore, RgbaPixels } from '../../core/io.ts';
import { MetricAccumulator, type MetricReport } from '../../core/metrics.ts';
import { itemFromSample, PixelCache } from '../../core/samples.ts';
import { initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type CliIo, type Command } from '../cli.ts';
import { JimpDecoder } from '../decode.ts';
import { FsFileSource } from '../files.ts';
import { loadExportedModel, maskFileName, setFolderName } from './predict.ts';

/** The official validation batch: the paper's mIoU is pooled per batch of this many images. */
const PAPER_BATCH = 10;

const evalCommand: Command = {
  usage: '(--model <dir> | --pred <dir>) --data <dir>... [--json] [--backend auto|cpu|wasm|webgpu] [--batch <n>]',
  options: {
    model: { type: 'string' },
    pred: { type: 'string' },
    data: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    backend: { type: 'string' },
    batch: { type: 'string' },
  },
  async run({ values }, io) {
    const modelDir = values.model as string | undefined;
    const predDir = values.pred as string | undefined;
    const dataDirs = (values.data as string[] | undefined) ?? [];
    const batchSize = Number(values.batch ?? PAPER_BATCH);
    if ((modelDir === undefined) === (predDir === undefined) || dataDirs.length === 0 || !Number.isInteger(batchSize) || batchSize < 1) {
      io.err(`usage: lesion-studio eval ${evalCommand.usage}`);
      return EXIT_USAGE;
    }
    for (const dir of [...dataDirs, ...(predDir === undefined ? [] : [predDir])]) {
      if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
        io.err(`lesion-studio eval: ${dir}: no such folder`);
        return EXIT_USAGE;
      }
    }
    const source = new FsFileSource(dataDirs);
    const index = recogniseDatasets(await source.list());
    const labeled = index.sets.flatMap((set) => set.labeled);
    if (labeled.length === 0) throw new LesionError('dataset', `no labeled images (image + mask pairs) in ${dataDirs.join(', ')}`);

    let evaluation: Evaluation;
    let scoredAt: string;
    if (modelDir !== undefined) {
      const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? 'auto');
      io.err(`backend: ${backend.name} (${backend.detail})`);
      const { model, inputSize, logitThreshold } = await loadExportedModel(modelDir, io);
      io.err(`scoring ${labeled.length} images at ${inputSize}x${inputSize}, logits thresholded at ${logitThreshold}`);
      // Budget 0: every image is read once, nothing is worth caching.
      const cache = new PixelCache(source, new JimpDecoder(), NO_PSEUDO_LABELS, { width: inputSize, height: inputSize }, (e) => {
        if (e.type === 'warning') io.err(`warning: ${e.message}`);
      }, 0);
      try {
        evaluation = await evaluate(model, labeled.map(itemFromSample), cache, { batchSize, logitThreshold });
      } finally {
        model.dispose();
      }
      scoredAt = `model input ${inputSize}x${inputSize}`;
    } else {
      io.err(`scoring the masks in ${predDir} against ${labeled.length} ground truths at full resolution`);
      evaluation = await scoreWrittenMasks(index, source, predDir!, batchSize, io);
      scoredAt = 'full resolution';
    }
    io.out(values.json ? JSON.stringify({ scoredAt, sets: evaluation.bySet, overall: evaluation.overall }, null, 2) : scoreTable(evaluation, scoredAt));
    return 0;
  },
};

export default evalCommand;

/** Evaluation reads expert masks only; a pseudo-label lookup would be a bug. */
const NO_PSEUDO_LABELS: KeyValueStore = {
  get: (key) => Promise.reject(new Error(`eval keeps no pseudo-labels (asked for ${key})`)),
  set: (key) => Promise.reject(new Error(`eval keeps no pseudo-labels (asked to store ${key})`)),
  delete: () => Promise.resolve(),
  keys: () => Promise.resolve([]),
};

async function scoreWrittenMasks(index: DatasetIndex, truthSource: FileSource, predDir: string, batchSize: number, io: CliIo): Promise<Evaluation> {
  const decoder = new JimpDecoder();
  const predSource = new FsFileSource([predDir]);
  // Listed as '<folder name>/<path below>'; matched below the folder, ignoring case.
  const predictions = new Map<string, string>();
  for (const file of await predSource.list()) predictions.set(file.slice(file.indexOf('/') + 1).toLowerCase(), file);
  const findPrediction = (sample: Sample): string | undefined => {
    for (const folder of [`${setFolderName(sample.set)}/`, '']) {
      for (const name of [maskFileName(sample.id), `${sample.id}.png`]) {
        const hit = predictions.get(`${folder}${name}`.toLowerCase());
        if (hit) return hit;
      }
    }
    return undefined;
  };

  /** Undefined (warned) when the file cannot be read. */
  const readMask = async (from: FileSource, file: string, binarise: (pixels: RgbaPixels) => BinaryMask, size?: Size): Promise<BinaryMask | undefined> => {
    try {
      const decoded = await decoder.decode({ path: file, bytes: await from.read(file), ...(size && { resize: { ...size, filter: 'nearest' as const } }) });
      return binarise(decoded.pixels);
    } catch (error) {
      if (!(error instanceof LesionError)) throw error;
      io.err(`warning: ${error.message}`);
      return undefined;
    }
  };
  // Ground truth as training reads it (with its warnings about odd masks).
  const binariseTruth = (file: string) => (pixels: RgbaPixels): BinaryMask => {
    const { mask, warning } = binariseMask(pixels);
    if (warning) io.err(`warning: ${file}: ${warning}`);
    return mask;
  };

  const overall = new MetricAccumulator();
  const bySet: Record<string, MetricReport> = {};
  let resized = 0;
  for (const set of index.sets) {
    if (set.labeled.length === 0) continue;
    const accumulator = new MetricAccumulator();
    for (let start = 0; start < set.labeled.length; start += batchSize) {
      const preds: Uint8Array[] = [];
      const truths: Uint8Array[] = [];
      const ids: string[] = [];
      for (const sample of set.labeled.slice(start, start + batchSize)) {
        const truth = await readMask(truthSource, sample.mask!, binariseTruth(sample.mask!));
        if (!truth) {
          io.err(`warning: ${sample.set} ${sample.id} left out: its ground truth cannot be read`);
          continue;
        }
        const file = findPrediction(sample);
        let pred: BinaryMask | undefined;
        if (!file) {
          io.err(`warning: no prediction for ${sample.set} ${sample.id} (no ${maskFileName(sample.id)} or ${sample.id}.png in ${predDir}); scored as an empty mask`);
        } else {
          pred = await readMask(predSource, file, binarisePrediction, { width: truth.width, height: truth.height });
          if (!pred) io.err(`warning: ${file} scored as an empty mask`);
          else if (pred.width !== truth.width || pred.height !== truth.height) resized++;
        }
        preds.push(pred?.data ?? new Uint8Array(truth.data.length));
        truths.push(truth.data);
        ids.push(sample.id);
      }
      accumulator.addBatch(preds, truths, ids);
      overall.addBatch(preds, truths, ids);
    }
    bySet[set.name] = accumulator.report();
  }
  if (resized > 0) io.err(`note: ${resized} predictions were not at their ground truth's size; resized to it with nearest neighbour`);
  return { overall: overall.report(), bySet };
}

/**
 * A submitted mask as the ISIC scorer reads it: lesion where the pixel is
 * above 127 (its brightest channel, for colour files), with none of the
 * ground truth's guessing; an empty prediction is a legitimate answer.
 */
function binarisePrediction(pixels: RgbaPixels): BinaryMask {
  const count = pixels.width * pixels.height;
  const data = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * 4;
    data[i] = Math.max(pixels.data[at], pixels.data[at + 1], pixels.data[at + 2]) > 127 ? 1 : 0;
  }
  return { width: pixels.width, height: pixels.height, data };
}

function scoreTable(evaluation: Evaluation, scoredAt: string): string {
  const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(2)} %` : '--');
  const header = ['set', 'images', 'paper mIoU', 'pooled mIoU', 'lesion IoU', 'Dice', 'thresholded Jaccard'];
  const row = (name: string, r: MetricReport): string[] => [
    name,
    String(r.images),
    pct(r.paperMIoU),
    pct(r.pooledMIoU),
    pct(r.lesionIoU),
    pct(r.dice),
    pct(r.thresholdedJaccard),
  ];
  const rows = [...Object.entries(evaluation.bySet).map(([name, r]) => row(name, r)), row('overall', evaluation.overall)];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [`scored at ${scoredAt}`, line(header), ...rows.map(line)].join('\n');
}
