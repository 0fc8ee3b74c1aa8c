/**
 * A run's exports for the page, which writes them to a folder or downloads:
 * the files come from the core's products (src/core/run/products.ts), the same
 * bytes the CLI writes, here only placed under the names the studio gives
 * them and moved into transferable buffers.
 */
import type { ExpertLabel } from '../core/active/labels.ts';
import type { RunCard } from '../core/config.ts';
import { jobFiles, jobStartModel } from '../core/run/job.ts';
import { loadStageModel, type TrainingStage } from '../core/run/pipeline.ts';
import { metricsFiles, modelFiles, pseudoLabelFiles, type ProductFile } from '../core/run/products.ts';
import type { PseudoStage, RunStore } from '../core/run/run-store.ts';
import type { ExportedFile } from './api.ts';
import type { OpenDataset } from './dataset.ts';

/** A product's bytes as a buffer of their own, which the page receives without a copy. */
export function exported(file: ProductFile, name = file.name): ExportedFile {
  const { bytes } = file;
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  return { name, bytes: (whole ? bytes.buffer : bytes.slice().buffer) as ArrayBuffer };
}

/** On the backend the caller started (trainer.worker.ts), so that this module also runs in Node's tests. */
export async function exportModel(run: RunStore, stage: TrainingStage, kind: 'best' | 'latest'): Promise<ExportedFile[]> {
  const { model, metadata } = await loadStageModel(run.kv, run.runId, stage, kind);
  try {
    const folder = `${run.runId}-${stage}-${kind}`;
    return (await modelFiles(model, metadata)).map((f) => exported(f, `${folder}/${f.name}`));
  } finally {
    model.dispose();
  }
}

/** At their images' own size when the run's folders are open; otherwise at the training size. */
export async function exportPseudoLabels(run: RunStore, dataset: OpenDataset | undefined, stage: PseudoStage): Promise<ExportedFile[]> {
  const folder = `${run.runId}-${stage}`;
  return (await pseudoLabelFiles(run, stage, dataset?.source)).map((f) => exported(f, `${folder}/${f.name}`));
}

export async function exportMetrics(run: RunStore): Promise<ExportedFile[]> {
  return (await metricsFiles(run)).map((f) => exported(f, `${run.runId}-${f.name}`));
}

/**
 * A run's card as a job for PyTorch on a cluster (src/core/run/job.ts), on the
 * open folders and the expert labels, starting from the card's
 * initialisation or from a stage's best checkpoint. A browser knows its
 * folders by name only: the job names them, and the cluster points each
 * name at its path (--data-root).
 */
export async function exportJob(run: RunStore, card: RunCard, dataset: OpenDataset, labels: ExpertLabel[], startFrom?: TrainingStage): Promise<ExportedFile[]> {
  const init = await jobStartModel(card, startFrom ? { run, stage: startFrom } : { userHint: 'export the job starting from a trained stage instead' });
  try {
    const roots = Object.fromEntries(dataset.rootNames().map((name) => [name, `the folder ${name} opened in the studio`]));
    const files = await jobFiles({ card, inputs: dataset.inputs(), roots, init, expertLabels: labels });
    return files.map((f) => exported(f, `${card.name}-job/${f.name}`));
  } finally {
    init.model.dispose();
  }
}
