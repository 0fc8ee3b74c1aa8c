/**
 * `lesion-studio eval (--model <dir> | --pred <dir> [--min-matched 1]) --data <dir>... [--json]
 *  [--backend auto|cpu|wasm|webgpu] [--batch <n>]`
 *
 * Scores with every metric (src/core/scoring/metrics.ts), per set and overall, the
 * labeled images (image + mask pairs) found in the --data folders:
 * - --model: an exported model predicts at its input size and is scored
 *   there, against masks resized to it, as the paper and training do;
 * - --pred: masks already written are scored at each ground truth's full
 *   resolution, the ISIC challenge's way. They are paired with their ground
 *   truth as its scorer pairs them (src/core/scoring/match.ts): by a name
 *   holding the image's ISIC number, or the image id, in the folder or in
 *   `<set>/` when predict wrote one folder per set. Two candidates for one
 *   ground truth refuse the whole scoring, naming both; no match at all
 *   scores nothing; fewer matches than --min-matched (all, by default, as
 *   the scorer requires) print the scores and exit 1. Predictions are
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
import path from 'node:path';
import type { DatasetIndex, Sample } from '../../core/dataset/layouts.ts';
import { maskAspectError, readMask, sameAspect, type ReadMask, type Size } from '../../core/dataset/loader.ts';
import { inspectImage } from '../../core/image/image-header.ts';
import { matchPredictions } from '../../core/scoring/match.ts';
import { LesionError } from '../../core/errors.ts';
import { evaluate, type Evaluation } from '../../core/scoring/evaluate.ts';
import type { FileSource } from '../../core/io.ts';
import { MetricAccumulator, type MetricReport } from '../../core/scoring/metrics.ts';
import { METRIC_KEYS, METRIC_TITLES, uncertainty, type MetricKey, type Uncertainty } from '../../core/scoring/bootstrap.ts';
import { itemFromSample, PixelCache } from '../../core/dataset/samples.ts';
import { backendLine, initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type CliIo, type Command } from '../command.ts';
import { SharpDecoder } from '../decode.ts';
import { FsFileSource, setFolderName } from '../files.ts';
import { describeReadout, loadExportedModel } from '../model-files.ts';
import { NO_PSEUDO_LABELS } from '../store.ts';

/** The official validation batch: the paper's mIoU is pooled per batch of this many images. */
const PAPER_BATCH = 10;

const evalCommand: Command = {
  usage: '(--model <dir> | --pred <dir> [--min-matched <share>]) --data <dir>... [--json] [--backend auto|cpu|wasm|webgpu] [--batch <n>]',
  options: {
    model: { type: 'string' },
    pred: { type: 'string' },
    'min-matched': { type: 'string' },
    data: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    backend: { type: 'string' },
    batch: { type: 'string' },
  },
  paths: { model: 'folder', pred: 'folder', data: 'folder' },
  async run({ values }, io) {
    const modelDir = values.model as string | undefined;
    const predDir = values.pred as string | undefined;
    const dataDirs = (values.data as string[] | undefined) ?? [];
    const batchSize = Number(values.batch ?? PAPER_BATCH);
    const minMatched = Number(values['min-matched'] ?? 1);
    if ((modelDir === undefined) === (predDir === undefined) || dataDirs.length === 0 || !Number.isInteger(batchSize) || batchSize < 1) {
      io.err(`usage: lesion-studio eval ${evalCommand.usage}`);
      return EXIT_USAGE;
    }
    if (!(minMatched >= 0 && minMatched <= 1) || (values['min-matched'] !== undefined && predDir === undefined)) {
      io.err(`lesion-studio eval: --min-matched takes the share of ground truths that must have a prediction, from 0 to 1, with --pred; got '${String(values['min-matched'])}'\nusage: lesion-studio eval ${evalCommand.usage}`);
      return EXIT_USAGE;
    }
    const source = new FsFileSource(dataDirs);
    const index = await source.index();
    const labeled = index.sets.flatMap((set) => set.labeled);
    if (labeled.length === 0) throw new LesionError('dataset', `no labeled images (image + mask pairs) in ${dataDirs.join(', ')}`);

    let evaluation: Evaluation;
    let scoredAt: string;
    let rejected = 0;
    let shortOfMatches: string | undefined;
    if (modelDir !== undefined) {
      const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? 'auto');
      io.err(backendLine(backend));
      const { model, inputSize, readout } = await loadExportedModel(modelDir, io);
      io.err(`scoring ${labeled.length} images at ${inputSize}x${inputSize}, ${describeReadout(readout)}`);
      // Budget 0: every image is read once, nothing is worth caching.
      const cache = new PixelCache(source, new SharpDecoder(), NO_PSEUDO_LABELS, { width: inputSize, height: inputSize }, (e) => {
        if (e.type === 'warning') io.err(`warning: ${e.message}`);
      }, 0);
      try {
        evaluation = await evaluate(model, labeled.map(itemFromSample), cache, { ...readout, batchSize });
      } finally {
        model.dispose();
      }
      scoredAt = `model input ${inputSize}x${inputSize}`;
    } else {
      io.err(`scoring the masks in ${predDir} against ${labeled.length} ground truths at full resolution`);
      const scored = await scoreWrittenMasks(index, source, predDir!, batchSize, io);
      if (!scored) return 1;
      ({ evaluation, rejected } = scored);
      // The ISIC scorer refuses a submission that misses any image; a script must not record a half-empty score as a result.
      if (scored.matched < minMatched * scored.truths) {
        shortOfMatches = `error: ${scored.matched} of ${scored.truths} ground truths (${percent(scored.matched / scored.truths)}) have a prediction in ${predDir}, ` +
          `fewer than --min-matched ${minMatched} (${percent(minMatched)}); the others count as empty masks in these scores`;
      }
      scoredAt = 'full resolution';
    }
    const reported = {
      scoredAt,
      sets: Object.fromEntries(Object.entries(evaluation.bySet).map(([name, r]) => [name, withUncertainty(r)])),
      overall: withUncertainty(evaluation.overall),
    };
    io.out(values.json ? JSON.stringify(reported, null, 2) : scoreTable(reported));
    if (shortOfMatches) io.err(shortOfMatches);
    if (rejected > 0) {
      io.err(
        rejected === 1
          ? 'error: 1 prediction had another aspect ratio than its ground truth (named above); it counts as an empty mask in these scores'
          : `error: ${rejected} predictions had another aspect ratio than their ground truth (named above); they count as empty masks in these scores`,
      );
    }
    return shortOfMatches || rejected > 0 ? 1 : 0;
  },
};

export default evalCommand;

interface Scored {
  evaluation: Evaluation;
  /** Predictions of another aspect ratio than their ground truth, named above and counted as empty masks. */
  rejected: number;
  /** Ground truths with a prediction, of all scored. */
  matched: number;
  truths: number;
}

/**
 * The masks in predDir scored against the ground truth at its full
 * resolution, or undefined (said) when they cannot be paired: a ground
 * truth with two candidate files, or no prediction for any.
 */
async function scoreWrittenMasks(index: DatasetIndex, truthSource: FileSource, predDir: string, batchSize: number, io: CliIo): Promise<Scored | undefined> {
  const decoder = new SharpDecoder();
  const predSource = new FsFileSource([predDir]);
  const listed = await predSource.list();
  for (const link of predSource.brokenLinks) io.err(`warning: ${link.path}: ${link.detail}`);
  // Listed as '<folder name>/<path below>': matched below the folder.
  const root = `${path.basename(path.resolve(predDir))}/`;
  const truths = index.sets.flatMap((set) => set.labeled.map((sample) => ({ ...sample, setFolder: setFolderName(sample.set) })));
  const matching = matchPredictions(truths, listed.map((file) => file.slice(root.length)));
  if (matching.ambiguous.length > 0) {
    for (const { truth, files } of matching.ambiguous) {
      io.err(`error: ${truth.set} ${truth.id}: ${files.length} candidate predictions, ${files.map((f) => root + f).join(' and ')}; keep one (the ISIC scorer refuses this too: "multiple matching submissions")`);
    }
    io.err(`error: ${matching.ambiguous.length} of ${truths.length} ground truths have more than one candidate prediction in ${predDir} (named above); nothing scored`);
    return undefined;
  }
  if (matching.matched.length === 0) {
    io.err(
      `error: no file in ${predDir} is a prediction for any of the ${truths.length} ground truths; nothing scored. ` +
        'A prediction is named after its image (ISIC_0000003_segmentation.png, or any name holding the ISIC number 0000003; IMD002_segmentation.png), ' +
        'in that folder or in a folder named after its set, as predict writes them',
    );
    return undefined;
  }
  const predictionOf = new Map(matching.matched.map(({ truth, file }) => [truth, root + file]));

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
  /** Whether a ground truth has another aspect than its image (said); not known when the image's header gives no size. */
  const truthMismatch = async (sample: Sample, truth: ReadMask): Promise<boolean> => {
    let header;
    try {
      header = inspectImage(sample.image, await truthSource.read(sample.image));
    } catch (error) {
      if (!(error instanceof LesionError)) throw error;
      io.err(`warning: ${error.message}; its ground truth's size cannot be checked against it`);
      return false;
    }
    if (header.width === undefined || header.height === undefined) return false;
    const mismatch = maskAspectError(sample.mask!, truth, { sourceWidth: header.width, sourceHeight: header.height });
    if (mismatch) io.err(`warning: skipped ${sample.image}: ${mismatch.message}`);
    return mismatch !== undefined;
  };

  const overall = new MetricAccumulator();
  const bySet: Record<string, MetricReport> = {};
  let rejected = 0;
  for (const set of index.sets) {
    const setTruths = truths.filter((t) => t.set === set.name);
    if (setTruths.length === 0) continue;
    const accumulator = new MetricAccumulator();
    for (let start = 0; start < setTruths.length; start += batchSize) {
      const preds: Uint8Array[] = [];
      const masks: Uint8Array[] = [];
      const ids: string[] = [];
      for (const sample of setTruths.slice(start, start + batchSize)) {
        const truth = await read(truthSource, sample.mask!);
        if (!truth) {
          io.err(`warning: ${sample.set} ${sample.id} left out: its ground truth cannot be read`);
          continue;
        }
        if (await truthMismatch(sample, truth)) continue;
        for (const warning of truth.warnings) io.err(`warning: ${warning}`);
        const { width, height } = truth.mask;
        const file = predictionOf.get(sample);
        let pred: ReadMask | undefined;
        if (!file) {
          io.err(`warning: no prediction for ${sample.set} ${sample.id} (no file named after it in ${predDir}); scored as an empty mask`);
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
        masks.push(truth.mask.data);
        ids.push(sample.id);
      }
      accumulator.addBatch(preds, masks, ids);
      overall.addBatch(preds, masks, ids);
    }
    bySet[set.name] = accumulator.report();
  }
  return { evaluation: { overall: overall.report(), bySet }, rejected, matched: matching.matched.length, truths: truths.length };
}

function percent(x: number): string {
  return Number.isFinite(x) ? `${(100 * x).toFixed(2)} %` : '--';
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
