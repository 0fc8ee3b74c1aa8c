/**
 * `lesion-studio train --config run.json|--preset quick --labeled <dir>...
 *  [--unlabeled <dir>...] --out <dir> [--backend ...] [--resume]`
 *
 * Runs the whole Noisy Student pipeline headless and writes, under --out:
 * each stage's model (tfjs layers format + metadata.json), its metrics JSON,
 * the pseudo-labels as PNG masks, the run card used, and the store that makes
 * the run resumable.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseRunCard, presetCard, type PresetName, type RunCard } from '../../core/config.ts';
import { RunControl } from '../../core/control.ts';
import type { Sample } from '../../core/dataset/layouts.ts';
import { ConfigError } from '../../core/errors.ts';
import type { TrainerEvent } from '../../core/events.ts';
import { loadStageModel, plannedStages, runKey, runNoisyStudent, type RunState, type TrainingStage } from '../../core/pipeline.ts';
import type { StoredMask } from '../../core/samples.ts';
import { initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type CliIo, type Command } from '../cli.ts';
import { JimpDecoder } from '../decode.ts';
import { FsFileSource } from '../files.ts';
import { saveLayersModel } from '../model-files.ts';
import { encodeMaskPng } from './predict.ts';
import { FsKeyValueStore } from '../store.ts';
import { ProgressPrinter } from '../progress.ts';

const list = (v: unknown): string[] => (v === undefined ? [] : (v as string[]));

const train: Command = {
  usage: '(--config <run.json> | --preset paper|quick) --labeled <dir>... [--unlabeled <dir>...] --out <dir> [--backend auto|cpu|wasm|webgpu] [--resume] [--run-id <id>]',
  options: {
    config: { type: 'string' },
    preset: { type: 'string' },
    labeled: { type: 'string', multiple: true },
    unlabeled: { type: 'string', multiple: true },
    out: { type: 'string' },
    backend: { type: 'string' },
    resume: { type: 'boolean' },
    'run-id': { type: 'string' },
  },
  async run({ values }, io) {
    const labeledDirs = list(values.labeled);
    const unlabeledDirs = list(values.unlabeled);
    const out = values.out as string | undefined;
    if (labeledDirs.length === 0 || !out || (values.config === undefined) === (values.preset === undefined)) {
      io.err(`usage: lesion-studio train ${train.usage}`);
      return EXIT_USAGE;
    }
    for (const dir of [...labeledDirs, ...unlabeledDirs]) {
      if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
        io.err(`lesion-studio train: ${dir}: no such folder`);
        return EXIT_USAGE;
      }
    }
    const card = await readCard(values.config as string | undefined, values.preset as string | undefined);
    const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? (card.backend === 'webgl' ? 'auto' : card.backend));
    io.err(`backend: ${backend.name} (${backend.detail})`);

    const source = new FsFileSource([...labeledDirs, ...unlabeledDirs]);
    const index = await source.index();
    const unlabeledRoots = new Set(unlabeledDirs.map((d) => path.basename(path.resolve(d))));
    const inUnlabeledRoot = (s: Sample): boolean => unlabeledRoots.has(s.image.split('/')[0]);
    const labeled = index.sets.flatMap((set) => set.labeled).filter((s) => !inUnlabeledRoot(s));
    const unlabeled = index.sets.flatMap((set) => [...set.unlabeled, ...set.labeled.filter(inUnlabeledRoot).map((s) => ({ ...s, mask: undefined }))]);
    io.err(`data: ${labeled.length} labeled pairs, ${unlabeled.length} unlabeled images, ${index.strays.length} strays`);

    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, 'run-card.json'), `${JSON.stringify(card, null, 2)}\n`);
    const store = new FsKeyValueStore(path.join(out, 'store'));
    const runId = (values['run-id'] as string | undefined) ?? 'run';
    const progress = new ProgressPrinter(io);
    const control = new RunControl();
    const stop = (): void => {
      io.err('\ninterrupted: saving a checkpoint; run again with --resume to continue');
      control.cancel();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await runNoisyStudent(
        card,
        { labeled, unlabeled },
        { source, decoder: new JimpDecoder(), store, emit: (e: TrainerEvent) => progress.show(e) },
        control,
        { runId, resume: Boolean(values.resume) },
      );
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      progress.end();
    }
    await writeOutputs(store, runId, card, out, io);
    return 0;
  },
};

export default train;

async function readCard(configPath: string | undefined, preset: string | undefined): Promise<RunCard> {
  if (preset !== undefined) {
    if (preset !== 'paper' && preset !== 'quick') throw new ConfigError('--preset', `must be "paper" or "quick", got "${preset}"`);
    return presetCard(preset as PresetName);
  }
  const text = await readFile(configPath!, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(configPath!, `not valid JSON (${(error as Error).message})`);
  }
  return parseRunCard(json);
}

async function writeOutputs(store: FsKeyValueStore, runId: string, card: RunCard, out: string, io: CliIo): Promise<void> {
  const state = await store.get<RunState>(runKey(runId, 'state'));
  for (const stage of plannedStages(card)) {
    if (stage.startsWith('pseudo')) {
      await writePseudoLabels(store, runId, stage, path.join(out, stage));
      continue;
    }
    const { model, metadata } = await loadStageModel(store, runId, stage as TrainingStage);
    await saveLayersModel(model, path.join(out, stage, 'model'), metadata);
    model.dispose();
    const result = state?.results.find((r) => r.stage === stage);
    await writeFile(path.join(out, stage, 'metrics.json'), `${JSON.stringify(result, null, 2)}\n`);
  }
  io.err(`wrote models, metrics and pseudo-labels to ${out}`);
}

async function writePseudoLabels(store: FsKeyValueStore, runId: string, stage: string, dir: string): Promise<void> {
  const records = (await store.get<{ id: string; key: string; dropped: boolean; lesionFraction: number; uncertainty: number }[]>(runKey(runId, `pseudo/${stage}`))) ?? [];
  await mkdir(dir, { recursive: true });
  for (const r of records) {
    const mask = await store.get<StoredMask>(r.key);
    if (!mask) continue;
    await writeFile(path.join(dir, `${r.id}_segmentation.png`), await encodeMaskPng(mask));
  }
  await writeFile(path.join(dir, 'pseudo-labels.json'), `${JSON.stringify(records, null, 2)}\n`);
}
