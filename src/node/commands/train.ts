/**
 * `lesion-studio train --config run.json|--preset quick --labeled <dir>...
 *  [--unlabeled <dir>...] --out <dir> [--backend ...] [--resume | --replace]`
 *
 * Runs the whole Noisy Student pipeline headless and writes, under --out:
 * each stage's model (tfjs layers format + metadata.json) and its results
 * (metrics.json), the kept pseudo-labels as PNG masks at their images' size
 * with a CSV, the run's metrics (JSON and CSV), the run card used, and the
 * store that makes the run resumable. The files are the core's products, the
 * ones the studio exports.
 *
 * --seeds 1,2,3 runs the card once per seed, one after another, each in
 * --out/seed-<n>/ exactly as a single run in --out (resumable, replaceable),
 * then prints each seed's test figures, their mean, sd and range
 * (src/core/run/repeats.ts) and writes them to --out/repeats.json.
 *
 * One --out holds one run (or one series of seeds) and has one writer: train.lock holds the pid of the
 * train writing there. A fresh run refuses an --out that holds a run unless
 * --replace deletes it; --resume refuses a card that differs from the run's.
 * An --out that holds no run but files of a run's names is someone else's:
 * refused unless --overwrite.
 * Ctrl-C saves a checkpoint and exits 130.
 */
import { constants as osConstants } from 'node:os';
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cardDifferences, parseRunCard, type RunCard } from '../../core/config.ts';
import { CancelledError, RunControl } from '../../core/training/control.ts';
import { LesionError } from '../../core/errors.ts';
import { STAGE_TITLES, type TrainerEvent } from '../../core/events.ts';
import { inputsByRole } from '../../core/dataset/layouts.ts';
import { plannedStages } from '../../core/run/display.ts';
import type { FileSource } from '../../core/io.ts';
import { loadStageModel, runNoisyStudent } from '../../core/run/pipeline.ts';
import { metricsFiles, modelFiles, pseudoLabelFiles } from '../../core/run/products.ts';
import { RunStore } from '../../core/run/run-store.ts';
import { formatSpread, summariseRepeats } from '../../core/run/repeats.ts';
import { METRIC_KEYS, METRIC_TITLES } from '../../core/scoring/bootstrap.ts';
import { backendLine, initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, listOf, type CliIo, type Command } from '../command.ts';
import { SharpDecoder } from '../decode.ts';
import { FsFileSource, outInsideData, writeProducts } from '../files.ts';
import { outHoldsData, overwriteRefusal } from '../outputs.ts';
import { FsKeyValueStore } from '../store.ts';
import { ProgressPrinter } from '../progress.ts';
import { readCard } from '../run-card.ts';

const train: Command = {
  usage: '(--config <run.json> | --preset paper|quick) --labeled <dir>... [--unlabeled <dir>...] --out <dir> [--seeds <n>,<n>...] [--backend auto|cpu|wasm|webgpu] [--resume | --replace] [--overwrite] [--run-id <id>]',
  options: {
    config: { type: 'string' },
    preset: { type: 'string' },
    labeled: { type: 'string', multiple: true },
    unlabeled: { type: 'string', multiple: true },
    out: { type: 'string' },
    backend: { type: 'string' },
    resume: { type: 'boolean' },
    replace: { type: 'boolean' },
    overwrite: { type: 'boolean' },
    'run-id': { type: 'string' },
    seeds: { type: 'string' },
  },
  paths: { config: 'file', labeled: 'folder', unlabeled: 'folder', out: 'out-folder' },
  async run({ values }, io) {
    const labeledDirs = listOf(values.labeled);
    const unlabeledDirs = listOf(values.unlabeled);
    const out = values.out as string | undefined;
    const resume = Boolean(values.resume);
    if (labeledDirs.length === 0 || !out || (values.config === undefined) === (values.preset === undefined)) {
      io.err(`usage: lesion-studio train ${train.usage}`);
      return EXIT_USAGE;
    }
    if (resume && values.replace) {
      io.err(`lesion-studio train: --resume continues the run in --out and --replace deletes it; give one\nusage: lesion-studio train ${train.usage}`);
      return EXIT_USAGE;
    }
    const misplaced = (await outInsideData(out, [{ flag: 'labeled', dirs: labeledDirs }, { flag: 'unlabeled', dirs: unlabeledDirs }])) ?? (await outHoldsData(out));
    if (misplaced) {
      io.err(`lesion-studio train: ${misplaced}`);
      return EXIT_USAGE;
    }
    const seeds = values.seeds === undefined ? undefined : parseSeeds(values.seeds as string);
    if (typeof seeds === 'string') {
      io.err(`lesion-studio train: ${seeds}\nusage: lesion-studio train ${train.usage}`);
      return EXIT_USAGE;
    }
    const card = await readCard(values.config as string | undefined, values.preset as string | undefined);
    const cardFlag = values.config === undefined ? `--preset ${values.preset as string}` : `--config ${values.config as string}`;
    const runId = (values['run-id'] as string | undefined) ?? 'run';
    const backend = values.backend as NodeBackendName | undefined;
    await mkdir(out, { recursive: true });
    const unlock = await lockOut(out, io);
    try {
      // One run, or one per seed in its own folder: each is refused, resumed or replaced as a single run would be.
      const runs = (seeds ?? [undefined]).map((seed) => {
        const dir = seed === undefined ? out : path.join(out, `seed-${seed}`);
        return { seed, dir, card: seed === undefined ? card : parseRunCard({ ...card, seed }), store: new FsKeyValueStore(path.join(dir, 'store')) };
      });
      const resumes: boolean[] = [];
      for (const r of runs) {
        // A series stopped early has seeds not yet begun: --resume starts those.
        const begun = (await r.store.keys()).length > 0;
        resumes.push(resume && (seeds === undefined || begun));
        const refusal = resumes.at(-1) ? await resumeRefusal(r.store, runId, r.card, cardFlag, r.dir) : await freshRefusal(r.store, r.dir, { replace: Boolean(values.replace), overwrite: Boolean(values.overwrite) }, io);
        if (refusal) {
          io.err(`lesion-studio train: ${refusal}`);
          return EXIT_USAGE;
        }
      }
      for (const [i, r] of runs.entries()) {
        if (r.seed !== undefined) {
          io.err(`seed ${r.seed} (${i + 1} of ${runs.length}): ${resumes[i] ? 'resuming' : 'running'} in ${r.dir}`);
          await mkdir(r.dir, { recursive: true });
        }
        const code = await runAndWrite(r.card, { labeledDirs, unlabeledDirs, out: r.dir, store: r.store, runId, resume: resumes[i], backend }, io);
        if (code !== 0) return code;
      }
      if (seeds) await reportRepeats(runs.map((r) => ({ seed: r.seed!, store: r.store })), runId, card, out, io);
      return 0;
    } finally {
      await unlock();
    }
  },
};

/** The seeds of --seeds, distinct non-negative integers, or what is wrong with them. */
function parseSeeds(text: string): number[] | string {
  const seeds = text.split(',').map((s) => (/^\d+$/.test(s.trim()) ? Number(s) : NaN));
  if (seeds.some((s) => !Number.isSafeInteger(s))) return `--seeds takes integers separated by commas (e.g. 1,2,3), got '${text}'`;
  if (new Set(seeds).size !== seeds.length) return `--seeds names a seed twice: '${text}'`;
  return seeds;
}

/** Each seed's test figures per stage with their mean and spread, printed and written to repeats.json. */
async function reportRepeats(runs: { seed: number; store: FsKeyValueStore }[], runId: string, card: RunCard, out: string, io: CliIo): Promise<void> {
  const { name } = card;
  const seedRuns = await Promise.all(runs.map(async ({ seed, store }) => ({ seed, results: (await new RunStore(store, runId).state())?.results ?? [] })));
  const stages = summariseRepeats(seedRuns);
  await writeFile(path.join(out, 'repeats.json'), `${JSON.stringify({ card: name, seeds: runs.map((r) => r.seed), stages }, null, 2)}\n`);
  const header = ['stage', 'split', 'seed', ...METRIC_KEYS.map((k) => METRIC_TITLES[k])];
  const rows = stages.flatMap((s) => [
    ...s.perSeed.map((m, i) => [s.stage, s.split, String(s.seeds[i]), ...METRIC_KEYS.map((k) => (100 * m[k]).toFixed(1))]),
    [s.stage, s.split, 'mean ± sd (range)', ...METRIC_KEYS.map((k) => formatSpread(s.spread[k]))],
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  io.out(
    [
      `${name} over seeds ${runs.map((r) => r.seed).join(', ')}, in percent (${card.data.splitSeed === undefined ? 'each seed draws its own split, initial weights' : `one split for all, from split seed ${card.data.splitSeed}; each seed draws its initial weights`}, data order, noise and dropout):`,
      line(header),
      ...rows.map(line),
    ].join('\n'),
  );
  io.err(`wrote ${path.join(out, 'repeats.json')}`);
}

export default train;

interface RunPlan {
  labeledDirs: string[];
  unlabeledDirs: string[];
  out: string;
  store: FsKeyValueStore;
  runId: string;
  resume: boolean;
  backend?: NodeBackendName;
}

async function runAndWrite(card: RunCard, { labeledDirs, unlabeledDirs, out, store, runId, resume, backend: backendName }: RunPlan, io: CliIo): Promise<number> {
  const backend = await initNodeBackend(backendName ?? (card.backend === 'webgl' ? 'auto' : card.backend));
  io.err(backendLine(backend));

  const source = new FsFileSource([...labeledDirs, ...unlabeledDirs]);
  const index = await source.index();
  const unlabeledRoots = new Set(unlabeledDirs.map((d) => path.basename(path.resolve(d))));
  const { labeled, unlabeled } = inputsByRole(index, (root) => !unlabeledRoots.has(root));
  io.err(`data: ${labeled.length} labeled pairs, ${unlabeled.length} unlabeled images, ${index.strays.length} strays`);

  await writeFile(path.join(out, 'run-card.json'), `${JSON.stringify(card, null, 2)}\n`);
  const progress = new ProgressPrinter(io);
  const control = new RunControl();
  let interrupted: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals): void => {
    io.err('\ninterrupted: saving a checkpoint; run again with --resume to continue');
    interrupted = signal;
    control.cancel();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await runNoisyStudent(
      card,
      { labeled, unlabeled },
      { source, decoder: new SharpDecoder(), store, emit: (e: TrainerEvent) => progress.show(e) },
      control,
      { runId, resume },
    );
  } catch (error) {
    // The user's stop, already said and checkpointed: the shell's code for that signal, no stack.
    if (interrupted && error instanceof CancelledError) return 128 + osConstants.signals[interrupted];
    throw error;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    progress.end();
  }
  await writeOutputs(store, runId, card, source, out, io);
  return 0;
}

/** Why --resume must not go on with this card: every knob where it differs from the run's own. */
async function resumeRefusal(store: FsKeyValueStore, runId: string, card: RunCard, cardFlag: string, out: string): Promise<string | undefined> {
  // Without a stored card the pipeline says there is nothing to resume.
  const stored = await new RunStore(store, runId).card();
  // The backend is the host's choice, which --backend overrides on any run, not part of the experiment.
  const differences = stored ? cardDifferences(card, stored).filter((d) => d.field !== 'backend') : [];
  if (differences.length === 0) return undefined;
  const flag = cardFlag.split(' ')[0];
  return [
    `${cardFlag} differs from the run being resumed in ${out}:`,
    ...differences.map(({ field, a, b }) => `  ${field}: ${JSON.stringify(a)} in ${flag}, ${JSON.stringify(b)} in the run being resumed`),
    `resume with the run's own card (--config ${path.join(out, 'run-card.json')}), or start afresh with --replace`,
  ].join('\n');
}

/** What a run writes directly under its --out (train.lock aside). */
const RUN_OUTPUTS = ['store', 'run-card.json', 'metrics.json', 'metrics.csv', ...Object.keys(STAGE_TITLES)];

/**
 * A fresh run into an --out that holds one would reuse its stored
 * initialisation and checkpoints: refused unless --replace, which deletes
 * the old run (store, run card and stage outputs) first. Into an --out that
 * holds no run, the files a run writes there can only be someone else's:
 * refused unless --overwrite.
 */
async function freshRefusal(store: FsKeyValueStore, out: string, { replace, overwrite }: { replace: boolean; overwrite: boolean }, io: CliIo): Promise<string | undefined> {
  if ((await store.keys()).length === 0) {
    const present = [];
    for (const name of RUN_OUTPUTS) if (await stat(path.join(out, name)).catch(() => undefined)) present.push(path.join(out, name));
    return overwriteRefusal('--out', out, 'train', present, overwrite);
  }
  if (!replace) return `${out} already holds a run (${store.root}); continue it with --resume, or give --replace to delete it and start afresh`;
  for (const name of RUN_OUTPUTS) await rm(path.join(out, name), { recursive: true, force: true });
  io.err(`note: --replace: deleted the run in ${out} (its store, run card and stage outputs)`);
  return undefined;
}

const LOCK_FILE = 'train.lock';

/**
 * Makes this process the one writer of `out`: train.lock, created with
 * O_EXCL, holds its pid. A lock whose pid no longer runs was left by a crash
 * and is taken over with a note. Resolves to the release.
 */
async function lockOut(out: string, io: CliIo): Promise<() => Promise<void>> {
  const file = path.join(out, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        if ((await readFile(file, 'utf8').catch(() => '')).trim() === String(process.pid)) await rm(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const text = (await readFile(file, 'utf8').catch(() => '')).trim();
    const holder = /^\d+$/.test(text) ? Number(text) : undefined;
    // A lock without a pid may be one being written this instant: never taken over.
    if (holder === undefined) throw new LesionError('storage', `${out} is locked by ${file}, which holds no pid; if no train runs there, delete ${file}`);
    if (attempt > 0 || (holder !== process.pid && isRunning(holder))) {
      throw new LesionError('storage', `${out} is in use by another train (pid ${holder}, in ${file}); wait for it to end or stop it. If no train runs there, delete ${file}`);
    }
    io.err(`note: ${file} was left by pid ${holder}, which is no longer running; taking it over`);
    await rm(file, { force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The run's products (src/core/run/products.ts), the files the studio exports:
 * per stage its model and results, or its pseudo-labels at their images' own
 * size; and the run's metrics beside the stage folders.
 */
async function writeOutputs(store: FsKeyValueStore, runId: string, card: RunCard, source: FileSource, out: string, io: CliIo): Promise<void> {
  const run = new RunStore(store, runId);
  const state = await run.state();
  for (const stage of plannedStages(card)) {
    const dir = path.join(out, stage);
    if (stage === 'pseudo-teacher' || stage === 'pseudo-student') {
      // A resumed run may keep fewer masks (some rejected since): none of the earlier ones may stay.
      await rm(path.join(dir, 'masks'), { recursive: true, force: true });
      await writeProducts(dir, await pseudoLabelFiles(run, stage, source));
      continue;
    }
    const { model, metadata } = await loadStageModel(store, runId, stage);
    try {
      await writeProducts(path.join(dir, 'model'), await modelFiles(model, metadata));
    } finally {
      model.dispose();
    }
    const result = state?.results.find((r) => r.stage === stage);
    await writeFile(path.join(dir, 'metrics.json'), `${JSON.stringify(result, null, 2)}\n`);
  }
  await writeProducts(out, await metricsFiles(run));
  io.err(`wrote models, metrics and pseudo-labels to ${out}`);
}
