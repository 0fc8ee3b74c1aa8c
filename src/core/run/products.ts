/**
 * What a run produces, as files: the model (tfjs layers format plus its
 * metadata), the pseudo-labels (PNG masks and a CSV), the metrics (JSON and
 * CSV) and full-resolution prediction masks. Each is a list of
 * `{ name, bytes }` with names relative to wherever the host puts them: the
 * worker hands the bytes to the page, the CLI writes them under --out.
 * Neither computes them, so both write the same bytes.
 */
import * as tf from '@tensorflow/tfjs';
import type { MetricSummary, TestFigures } from '../events.ts';
import { METRIC_KEYS } from '../scoring/bootstrap.ts';
import type { ExpertLabel } from '../active/labels.ts';
import { inspectImage } from '../image/image-header.ts';
import type { BinaryMask, FileSource, RgbImage } from '../io.ts';
import { maskPng } from '../image/png.ts';
import { predictLogits } from '../scoring/predict.ts';
import { largestLesionFilled, readMask, type Readout } from '../scoring/readout.ts';
import { resizeAndThreshold, resizeMask } from '../image/resize.ts';
import type { PseudoStage, RunStore } from './run-store.ts';

export interface ProductFile {
  name: string;
  bytes: Uint8Array;
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';
export const METADATA_FILE = 'metadata.json';

/** Named like the ISIC ground truth, which the challenge's scorer pairs by name. */
export const maskFileName = (id: string): string => `${id}_segmentation.png`;

/**
 * model.json and one weights.bin, loadable by plain tfjs (tf.loadLayersModel),
 * and metadata.json when there is metadata.
 */
export async function modelFiles(model: tf.LayersModel, metadata?: unknown): Promise<ProductFile[]> {
  let files: ProductFile[] = [];
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = artifacts.weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
      const json: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as tf.io.ModelJSON['modelTopology'],
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
      };
      files = [
        { name: MODEL_FILE, bytes: text(JSON.stringify(json)) },
        { name: WEIGHTS_FILE, bytes: new Uint8Array(weights) },
      ];
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  if (metadata !== undefined) files.push({ name: METADATA_FILE, bytes: text(`${JSON.stringify(metadata, null, 2)}\n`) });
  return files;
}

/**
 * Kept masks (not dropped, not rejected) as `masks/<id>_segmentation.png` at
 * their image's own size, so they line up with the originals as ISIC ground
 * truth does, and `pseudo-labels.csv` listing every record. The size is read
 * from the image file's header; without the file at hand (no source, or it
 * cannot be read) a mask stays at the training size.
 */
export async function pseudoLabelFiles(run: RunStore, stage: PseudoStage, source?: FileSource): Promise<ProductFile[]> {
  const records = await run.pseudoLabels(stage);
  const rejected = new Set(await run.rejected());
  const files: ProductFile[] = [];
  const rows = ['id,image,lesion_fraction,uncertainty_bits,dropped,rejected,exported_mask'];
  for (const record of records) {
    const keep = !record.dropped && !rejected.has(record.image);
    const stored = keep ? await run.mask(record.key) : undefined;
    let name = '';
    if (stored) {
      name = maskFileName(record.id);
      const size = await imageSize(source, record.image);
      files.push({ name: `masks/${name}`, bytes: maskPng(size ? resizeMask(stored, size.width, size.height) : stored) });
    }
    rows.push([record.id, record.image, record.lesionFraction.toFixed(6), record.uncertainty.toFixed(6), record.dropped, rejected.has(record.image), name].map(csvCell).join(','));
  }
  files.push({ name: 'pseudo-labels.csv', bytes: text(`${rows.join('\n')}\n`) });
  return files;
}

async function imageSize(source: FileSource | undefined, path: string): Promise<{ width: number; height: number } | undefined> {
  if (!source) return undefined;
  try {
    const { width, height } = inspectImage(path, await source.read(path));
    return width !== undefined && height !== undefined ? { width, height } : undefined;
  } catch {
    return undefined;
  }
}

const METRIC_COLUMNS: (keyof MetricSummary)[] = ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice', 'thresholdedJaccard', 'images'];
/** After the figures, so that the columns older files had keep their places. */
const INTERVAL_COLUMNS = [...METRIC_KEYS.flatMap((k) => [`${k}_ci95_lo`, `${k}_ci95_hi`]), 'note'];

/**
 * metrics.json (the run's card, split sizes and every stage's results) and
 * metrics.csv, a row per stage, split and set; test rows carry each figure's
 * 95 % interval over images and the few-images note (validation rows, and
 * runs stored before intervals were kept, leave those cells empty).
 */
export async function metricsFiles(run: RunStore): Promise<ProductFile[]> {
  const [state, card] = await Promise.all([run.state(), run.card()]);
  // Each row says whose figures it holds: the exported (best) epoch's, or the last epoch's on 'val-last'.
  const rows = [['stage', 'split', 'set', 'epoch', ...METRIC_COLUMNS, ...INTERVAL_COLUMNS].join(',')];
  const row = (stage: string, split: string, set: string, epoch: number | null, m: TestFigures): string =>
    [stage, split, set, epoch ?? '', ...METRIC_COLUMNS.map((k) => String(m[k])), ...METRIC_KEYS.flatMap((k): unknown[] => m.ci95?.[k] ?? ['', '']), m.note ?? '']
      .map(csvCell)
      .join(',');
  for (const { stage, best, last, test } of state?.results ?? []) {
    if (best.val) rows.push(row(stage, 'val', 'all', best.epoch, best.val));
    if (last.val) rows.push(row(stage, 'val-last', 'all', last.epoch, last.val));
    if (test) {
      rows.push(row(stage, 'test', 'all', best.epoch, test.overall));
      for (const [set, m] of Object.entries(test.bySet)) rows.push(row(stage, 'test', set, best.epoch, m));
    }
  }
  const json = { runId: run.runId, card, status: state?.status, split: state && Object.fromEntries(Object.entries(state.split).map(([k, v]) => [k, v.length])), results: state?.results ?? [] };
  return [
    { name: 'metrics.json', bytes: text(JSON.stringify(json, null, 2)) },
    { name: 'metrics.csv', bytes: text(`${rows.join('\n')}\n`) },
  ];
}

/**
 * Expert labels as ISIC ships ground truth: `<id>_segmentation.png` (0/255,
 * the image's own size) per label, and a CSV of who drew what, when.
 */
export function expertLabelFiles(labels: ExpertLabel[]): ProductFile[] {
  const files: ProductFile[] = [];
  const rows = ['id,image,width,height,lesion_pixels,author,note,saved_at,started_from,mask'];
  for (const label of labels) {
    const name = maskFileName(label.id);
    files.push({ name, bytes: maskPng(label) });
    const lesion = label.data.reduce((n, v) => n + v, 0);
    rows.push([label.id, label.image, label.width, label.height, lesion, label.author, label.note, label.savedAt, label.startedFrom, name].map(csvCell).join(','));
  }
  files.push({ name: 'expert-labels.csv', bytes: text(`${rows.join('\n')}\n`) });
  return files;
}

/** Quotes a CSV cell when it holds a comma, quote or newline (file names can). */
function csvCell(value: unknown): string {
  const s = String(value);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export interface PredictionInput {
  id: string;
  /** The image resized to the model's input size. */
  image: RgbImage;
  /** The image's own size, which its mask gets. */
  width: number;
  height: number;
}

export interface Prediction {
  /** `<id>_segmentation.png` at the image's own size, 0/255. */
  file: ProductFile;
  /** The logits at the input size, for views at other sizes (predictionMask). */
  logits: Float32Array;
  /** Lesion share at the input size. */
  lesionFraction: number;
}

/**
 * Masks in the ISIC convention: the logits, at the model's input size, are
 * resized bilinearly to the image's own size and only then thresholded at the
 * card's logit threshold (row by row: no full-size float copy), then
 * post-processed there when the stage kept post-processing.
 */
export function predictionMask(logits: Float32Array, inputSize: number, width: number, height: number, readout: Pick<Readout, 'logitThreshold' | 'postprocess'>): BinaryMask {
  const mask = resizeAndThreshold({ width: inputSize, height: inputSize, data: logits }, width, height, readout.logitThreshold);
  return readout.postprocess ? { ...mask, data: largestLesionFilled(mask.data, width, height) } : mask;
}

export async function predictions(
  model: tf.LayersModel,
  inputs: PredictionInput[],
  options: { inputSize: number; readout: Readout; batchSize: number },
): Promise<Prediction[]> {
  if (inputs.length === 0) return [];
  const { inputSize, readout } = options;
  const logits = await predictLogits(model, inputs.map((i) => i.image), { batchSize: options.batchSize, tta: readout.tta });
  return inputs.map((input, i) => {
    const mask = predictionMask(logits[i], inputSize, input.width, input.height, readout);
    const lesion = readMask(logits[i], inputSize, inputSize, readout).reduce((n, v) => n + v, 0);
    return { file: { name: maskFileName(input.id), bytes: maskPng(mask) }, logits: logits[i], lesionFraction: lesion / logits[i].length };
  });
}
