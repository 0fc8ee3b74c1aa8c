/**
 * Files a run can be exported as: the model in TensorFlow.js layers format
 * (model.json + one weights.bin, loadable by plain tfjs with
 * tf.loadLayersModel) plus its metadata, the pseudo-label masks as PNGs named
 * like ISIC ground truth, and the metrics as JSON and CSV. The worker builds
 * the bytes; the page writes them (a folder or downloads).
 */
import * as tf from '@tensorflow/tfjs';
import type { RunCard } from '../core/config.ts';
import type { MetricSummary, PseudoLabelRecord } from '../core/events.ts';
import type { KeyValueStore } from '../core/io.ts';
import { loadStageModel, runKey, readRunState, type TrainingStage } from '../core/pipeline.ts';
import type { StoredMask } from '../core/samples.ts';
import type { ExportedFile } from './api.ts';
import { ensureBackend } from './backend.ts';
import type { OpenDataset } from './dataset.ts';
import { decodeBitmap } from './decode.ts';
import { maskPng } from './imaging.ts';
import { rejectedImages, resizeMask } from './results.ts';

const text = (value: string): ArrayBuffer => new TextEncoder().encode(value).buffer as ArrayBuffer;

export async function exportModel(store: KeyValueStore, card: RunCard, runId: string, stage: TrainingStage, kind: 'best' | 'latest'): Promise<ExportedFile[]> {
  await ensureBackend(card.backend);
  const { model, metadata } = await loadStageModel(store, runId, stage, kind);
  try {
    const folder = `${runId}-${stage}-${kind}`;
    let files: ExportedFile[] = [];
    await model.save(
      tf.io.withSaveHandler(async (artifacts) => {
        const weights = artifacts.weightData instanceof ArrayBuffer ? artifacts.weightData : tf.io.concatenateArrayBuffers(artifacts.weightData ?? []);
        const modelJson = {
          format: 'layers-model',
          generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
          convertedBy: 'Lesion Studio',
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
        };
        files = [
          { name: `${folder}/model.json`, bytes: text(JSON.stringify(modelJson)) },
          { name: `${folder}/weights.bin`, bytes: weights },
          { name: `${folder}/metadata.json`, bytes: text(JSON.stringify(metadata, null, 2)) },
        ];
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    return files;
  } finally {
    model.dispose();
  }
}

/**
 * Kept masks (not dropped, not rejected) at their image's own size, so they
 * line up with the originals as ISIC ground truth does; a CSV lists every record.
 */
export async function exportPseudoLabels(
  store: KeyValueStore,
  dataset: OpenDataset | undefined,
  runId: string,
  stage: 'pseudo-teacher' | 'pseudo-student',
): Promise<ExportedFile[]> {
  const records = (await store.get<PseudoLabelRecord[]>(runKey(runId, `pseudo/${stage}`))) ?? [];
  const rejected = new Set(await rejectedImages(store, runId));
  const folder = `${runId}-${stage}`;
  const files: ExportedFile[] = [];
  const rows = ['id,image,lesion_fraction,uncertainty_bits,dropped,rejected,exported_mask'];
  for (const record of records) {
    const keep = !record.dropped && !rejected.has(record.image);
    const stored = keep ? await store.get<StoredMask>(record.key) : undefined;
    let name = '';
    if (stored) {
      name = `${record.id}_segmentation.png`;
      const size = await imageSize(dataset, record.image);
      const mask = size ? resizeMask(stored, size.width, size.height) : stored;
      files.push({ name: `${folder}/masks/${name}`, bytes: await maskPng(mask) });
    }
    rows.push([record.id, record.image, record.lesionFraction.toFixed(6), record.uncertainty.toFixed(6), record.dropped, rejected.has(record.image), name].map(csvCell).join(','));
  }
  files.push({ name: `${folder}/pseudo-labels.csv`, bytes: text(`${rows.join('\n')}\n`) });
  return files;
}

/** The image's own size when its file is at hand; otherwise the mask stays at the training size. */
async function imageSize(dataset: OpenDataset | undefined, path: string): Promise<{ width: number; height: number } | undefined> {
  if (!dataset) return undefined;
  try {
    const bitmap = await decodeBitmap(path, await dataset.source.read(path));
    const size = { width: bitmap.width, height: bitmap.height };
    bitmap.close();
    return size;
  } catch {
    return undefined;
  }
}

const METRIC_COLUMNS: (keyof MetricSummary)[] = ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice', 'thresholdedJaccard', 'images'];

export async function exportMetrics(store: KeyValueStore, runId: string): Promise<ExportedFile[]> {
  const [state, card] = await Promise.all([readRunState(store, runId), store.get<RunCard>(runKey(runId, 'card'))]);
  // Each row says whose figures it holds: the exported (best) epoch's, or the last epoch's on 'val-last'.
  const rows = [['stage', 'split', 'set', 'epoch', ...METRIC_COLUMNS].join(',')];
  const row = (stage: string, split: string, set: string, epoch: number | null, m: MetricSummary): string =>
    [stage, split, set, epoch ?? '', ...METRIC_COLUMNS.map((k) => String(m[k]))].map(csvCell).join(',');
  for (const { stage, best, last, test } of state?.results ?? []) {
    if (best.val) rows.push(row(stage, 'val', 'all', best.epoch, best.val));
    if (last.val) rows.push(row(stage, 'val-last', 'all', last.epoch, last.val));
    if (test) {
      rows.push(row(stage, 'test', 'all', best.epoch, test.overall));
      for (const [set, m] of Object.entries(test.bySet)) rows.push(row(stage, 'test', set, best.epoch, m));
    }
  }
  const json = { runId, card, status: state?.status, split: state && Object.fromEntries(Object.entries(state.split).map(([k, v]) => [k, v.length])), results: state?.results ?? [] };
  return [
    { name: `${runId}-metrics.json`, bytes: text(JSON.stringify(json, null, 2)) },
    { name: `${runId}-metrics.csv`, bytes: text(`${rows.join('\n')}\n`) },
  ];
}

/** Quotes a CSV cell when it holds a comma, quote or newline (file names can). */
export function csvCell(value: unknown): string {
  const s = String(value);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
