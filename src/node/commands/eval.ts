/**
 * `lesion-studio eval (--model <dir> | --pred <dir>) --data <dir>... [--json]
 *  [--backend auto|cpu|wasm|webgpu] [--batch <n>]`
 *
 * Scores with every metric (src/core/scoring/metrics.ts), per set and overall, the
 * labeled images (image + mask pairs) found in the --data folders:
 * - --model: an exported model predicts at its input size and is scored
 *   there, against masks resized to it, as the paper and training do;
 * - --pred: masks already written (`<id>_segmentation.png` or `<id>.png`;
 *   `<set>/<id>...` when predict wrote one folder per set) are scored at each
 *   ground truth's full resolution, the ISIC challenge's way. Predictions are
 *   read exactly as ground truth is (readMask: 0/1 files, grey or colour
 *   values, each with its warning). One at another scale of the same aspect
 *   is resized with nearest neighbour and named in a note; one of another
 *   aspect ratio (transposed, rotated, cropped) cannot be lined up with its
 *   ground truth: it is named in an error, counts as an empty mask, and eval
 *   exits 1 after the scores. A missing or unreadable prediction counts as
 *   an empty mask and is named in a warning.
 * The paper's mIoU pools each batch of --batch images (10, the official
 * validation batch), so it depends on the batch size; the other figures do not.
 * Every figure carries its 95 % interval over images (src/core/scoring/bootstrap.ts:
 * 2,000 seeded resamples, percentile), `ci95` in --json, and a set of
 * fewer than 30 images says how wide that makes it.
 */
import { stat } from 'node:fs/promises';
import type { DatasetIndex, Sample } from '../../core/dataset/layouts.ts';
import { readMask, type ReadMask, type Size } from '../../core/dataset/loader.ts';
import { LesionError } from '../../core/errors.ts';
import { evaluate, type Evaluation } from '../../core/scoring/evaluate.ts';
import type { FileSource } from '../../core/io.ts';
import { MetricAccumulator, type MetricReport } from '../../core/scoring/metrics.ts';
import { METRIC_KEYS, METRIC_TITLES, uncertainty, type MetricKey, type Uncertainty } from '../../core/scoring/bootstrap.ts';
import { maskFileName } from '../../core/run/products.ts';
import { itemFromSample, PixelCache } from '../../core/dataset/samples.ts';
import { initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type CliIo, type Command } from '../command.ts';
import { JimpDecoder } from '../decode.ts';
import { FsFileSource, setFolderName } from '../files.ts';
import { loadExportedModel } from '../model-files.ts';
import { NO_PSEUDO_LABELS } from '../store.ts';

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
    const index = await source.index();
    const labeled = index.sets.flatMap((set) => set.labeled);
    if (labeled.length === 0) throw new LesionError('dataset', `no labeled images (image + mask pairs) in ${dataDirs.join(', ')}`);

    let evaluation: Evaluation;
    let scoredAt: string;
    let rejected = 0;
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
      ({ evaluation, rejected } = await scoreWrittenMasks(index, source, predDir!, batchSize, io));
      scoredAt = 'full resolution';
    }
    const reported = {
      scoredAt,
      sets: Object.fromEntries(Object.entries(evaluation.bySet).map(([name, r]) => [name, withUncertainty(r)])),
      overall: withUncertainty(evaluation.overall),
    };
    io.out(values.json ? JSON.stringify(reported, null, 2) : scoreTable(reported));
    if (rejected === 0) return 0;
    io.err(
      rejected === 1
        ? 'error: 1 prediction had another aspect ratio than its ground truth (named above); it counts as an empty mask in these scores'
        : `error: ${rejected} predictions had another aspect ratio than their ground truth (named above); they count as empty masks in these scores`,
    );
    return 1;
  },
};

export default evalCommand;

async function scoreWrittenMasks(
  index: DatasetIndex,
  truthSource: FileSource,
  predDir: string,
  batchSize: number,
  io: CliIo,
): Promise<{ evaluation: Evaluation; rejected: number }> {
  const decoder = new JimpDecoder();
  const predSource = new FsFileSource([predDir]);
  // Listed as '<folder name>/<path below>'; matched below the folder, ignoring case.
  const predictions = new Map<string, string>();
  for (const file of await predSource.list()) predictions.set(file.slice(file.indexOf('/') + 1).toLowerCase(), file);
  for (const link of predSource.brokenLinks) io.err(`warning: ${link.path}: ${link.detail}`);
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
  const read = async (from: FileSource, file: string, size?: Size): Promise<ReadMask | undefined> => {
    try {
      return await readMask(file, await from.read(file), decoder, size);
    } catch (error) {
      if (!(error instanceof LesionError)) throw error;
      io.err(`warning: ${error.message}`);
      return undefined;
    }
  };

  const overall = new MetricAccumulator();
  const bySet: Record<string, MetricReport> = {};
  let rejected = 0;
  for (const set of index.sets) {
    if (set.labeled.length === 0) continue;
    const accumulator = new MetricAccumulator();
    for (let start = 0; start < set.labeled.length; start += batchSize) {
      const preds: Uint8Array[] = [];
      const truths: Uint8Array[] = [];
      const ids: string[] = [];
      for (const sample of set.labeled.slice(start, start + batchSize)) {
        const truth = await read(truthSource, sample.mask!);
        if (!truth) {
          io.err(`warning: ${sample.set} ${sample.id} left out: its ground truth cannot be read`);
          continue;
        }
        for (const warning of truth.warnings) io.err(`warning: ${warning}`);
        const { width, height } = truth.mask;
        const file = findPrediction(sample);
        let pred: ReadMask | undefined;
        if (!file) {
          io.err(`warning: no prediction for ${sample.set} ${sample.id} (no ${maskFileName(sample.id)} or ${sample.id}.png in ${predDir}); scored as an empty mask`);
        } else {
          pred = await read(predSource, file, { width, height });
          const sizes = pred && `prediction is ${pred.sourceWidth}x${pred.sourceHeight} but its ground truth is ${width}x${height}`;
          if (!pred) io.err(`warning: ${file} scored as an empty mask`);
          else if (!sameAspect(pred.sourceWidth, pred.sourceHeight, width, height)) {
            // Stretching it would score a transposed or rotated mask at 74-99 %.
            io.err(`error: ${file}: ${sizes}, another aspect ratio (transposed, rotated or cropped?); not scored, counted as an empty mask`);
            rejected++;
            pred = undefined;
          } else if (pred.sourceWidth !== width || pred.sourceHeight !== height) {
            io.err(`note: ${file}: ${sizes}; resized to it with nearest neighbour`);
          }
          for (const warning of pred?.warnings ?? []) io.err(`warning: ${warning}`);
        }
        preds.push(pred?.mask.data ?? new Uint8Array(width * height));
        truths.push(truth.mask.data);
        ids.push(sample.id);
      }
      accumulator.addBatch(preds, truths, ids);
      overall.addBatch(preds, truths, ids);
    }
    bySet[set.name] = accumulator.report();
  }
  return { evaluation: { overall: overall.report(), bySet }, rejected };
}

/**
 * Whether a w x h mask is the W x H one at another scale: each side rounded
 * from one common factor, so the cross products differ by at most half the
 * larger mask's perimeter.
 */
function sameAspect(w: number, h: number, W: number, H: number): boolean {
  return Math.abs(w * H - h * W) <= Math.max(w + h, W + H) / 2;
}

type Reported = MetricReport & Uncertainty;

/** The figures, then their intervals and note, then the per-image list. */
function withUncertainty(report: MetricReport): Reported {
  const { perImage, ...figures } = report;
  return { ...figures, ...uncertainty(perImage, { noun: 'image' }), perImage };
}

function scoreTable({ scoredAt, sets, overall }: { scoredAt: string; sets: Record<string, Reported>; overall: Reported }): string {
  const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(2) : '--');
  const figure = (r: Reported, k: MetricKey): string => `${pct(r[k])} [${pct(r.ci95[k][0])}, ${pct(r.ci95[k][1])}]`;
  const header = ['set', 'images', ...METRIC_KEYS.map((k) => METRIC_TITLES[k]), ''];
  const row = (name: string, r: Reported): string[] => [name, String(r.images), ...METRIC_KEYS.map((k) => figure(r, k)), r.note ?? ''];
  const rows = [...Object.entries(sets).map(([name, r]) => row(name, r)), row('overall', overall)];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : i === cells.length - 1 ? c : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [`scored at ${scoredAt}; percentages, each with its 95 % interval over images (bootstrap, 2,000 resamples)`, line(header), ...rows.map(line)].join('\n');
}
