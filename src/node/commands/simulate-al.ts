/**
 * `lesion-studio simulate-al --data <dir>... [--size 64] [--initial 8]
 *  [--per-round 6] [--rounds 3] [--test 20] [--epochs 30] [--fine-tune-epochs 8]
 *  [--strategies entropy,flip,random] [--seeds 1,2] [--backend wasm] [--json out.json]`
 *
 * The simulated active-learning loop of src/core/active/active-loop.ts on labeled
 * folders: prints the card, the seeds and a table of lesion IoU on the test
 * split per round and strategy, with intervals over seeds and each strategy's
 * difference to random paired by seed (simulation-summary.ts); --json writes
 * every row and that summary (the rows are what the studio's Results view
 * plots when the file is opened there).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ACQUISITION_SCORES, type AcquisitionScore } from '../../core/active/acquisition.ts';
import { simulateActiveLearning, type SimulationResult } from '../../core/active/active-loop.ts';
import { simulationTable, summariseSimulation, type SimulationRow } from '../../core/active/simulation-summary.ts';
import { parseRunCard, quickCard, type RunCard } from '../../core/config.ts';
import { backendLine, initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type Command } from '../command.ts';
import { SharpDecoder } from '../decode.ts';
import { FsFileSource, outInsideData } from '../files.ts';
import { overwriteRefusal } from '../outputs.ts';
import { FsKeyValueStore } from '../store.ts';

/** A flag's value the command cannot use: a usage error (exit 2), not a failed simulation. */
class BadFlag extends Error {}

function integer(values: Record<string, unknown>, name: string, fallback: number, min: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new BadFlag(`--${name} must be an integer of at least ${min}, got '${String(raw)}'`);
  return n;
}

function settings(values: Record<string, unknown>) {
  const strategies = ((values.strategies as string | undefined) ?? 'entropy,flip,random').split(',') as AcquisitionScore[];
  const unknown = strategies.find((s) => !ACQUISITION_SCORES.includes(s));
  if (unknown !== undefined) throw new BadFlag(`--strategies: unknown strategy '${unknown}'; use ${ACQUISITION_SCORES.join(', ')}`);
  const seeds = ((values.seeds as string | undefined) ?? '1').split(',').map((s) => {
    const n = Number(s);
    if (s === '' || !Number.isInteger(n) || n < 0) throw new BadFlag(`--seeds takes integers separated by commas, got '${s}'`);
    return n;
  });
  return {
    size: integer(values, 'size', 64, 32),
    epochs: integer(values, 'epochs', 30, 1),
    seeds,
    spec: {
      initial: integer(values, 'initial', 8, 1),
      perRound: integer(values, 'per-round', 6, 1),
      rounds: integer(values, 'rounds', 3, 1),
      test: integer(values, 'test', 20, 1),
      fineTuneEpochs: integer(values, 'fine-tune-epochs', 8, 1),
      mcPasses: integer(values, 'mc-passes', 4, 2),
      strategies,
    },
  };
}

/**
 * The quick preset shrunk for a CPU: ImageNet MobileNetV2 (width 1, the only
 * pretrained width), output stride 16, ASPP 32 channels, the given input size.
 */
export function simulationCard(size: number, epochs: number, seed: number): RunCard {
  const quick = quickCard();
  return parseRunCard({
    ...quick,
    name: 'simulate-al',
    seed,
    backend: 'wasm',
    model: { ...quick.model, asppChannels: 32, inputSize: size },
    train: { ...quick.train, epochs, batchSize: 4, readEverySteps: 4, checkpointEverySteps: 1000 },
  });
}

const simulate: Command = {
  usage: '--data <dir>... [--size 64] [--initial 8] [--per-round 6] [--rounds 3] [--test 20] [--epochs 30] [--fine-tune-epochs 8] [--strategies entropy,flip,random] [--seeds 1] [--mc-passes 4] [--backend cpu|wasm|webgpu|auto] [--json <file> [--overwrite]]',
  options: {
    data: { type: 'string', multiple: true },
    size: { type: 'string' },
    initial: { type: 'string' },
    'per-round': { type: 'string' },
    rounds: { type: 'string' },
    test: { type: 'string' },
    epochs: { type: 'string' },
    'fine-tune-epochs': { type: 'string' },
    strategies: { type: 'string' },
    seeds: { type: 'string' },
    'mc-passes': { type: 'string' },
    backend: { type: 'string' },
    json: { type: 'string' },
    overwrite: { type: 'boolean' },
  },
  paths: { data: 'folder', json: 'out-file' },
  async run({ values }, io) {
    const dirs = (values.data as string[] | undefined) ?? [];
    if (dirs.length === 0) {
      io.err(`usage: lesion-studio simulate-al ${simulate.usage}`);
      return EXIT_USAGE;
    }
    let parsed: ReturnType<typeof settings>;
    try {
      parsed = settings(values);
    } catch (error) {
      if (!(error instanceof BadFlag)) throw error;
      io.err(`lesion-studio simulate-al: ${error.message}\nusage: lesion-studio simulate-al ${simulate.usage}`);
      return EXIT_USAGE;
    }
    const { size, epochs, seeds, spec } = parsed;
    const jsonOut = values.json as string | undefined;
    // Refused now, not after the hours of training that would fill it.
    const misplaced = jsonOut && ((await outInsideData(jsonOut, [{ flag: 'data', dirs }], '--json')) ?? (await overwrittenResult(jsonOut, Boolean(values.overwrite))));
    if (misplaced) {
      io.err(`lesion-studio simulate-al: ${misplaced}`);
      return EXIT_USAGE;
    }

    const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? 'wasm');
    io.err(backendLine(backend));
    const source = new FsFileSource(dirs);
    const index = await source.index();
    const samples = index.sets.flatMap((set) => set.labeled);
    io.err(`data: ${samples.length} labeled pairs in ${dirs.join(', ')}`);

    const scratch = await mkdtemp(path.join(os.tmpdir(), 'lesion-simulate-'));
    const rows: SimulationRow[] = [];
    const testIds: Record<number, string[]> = {};
    let last: SimulationResult | undefined;
    const started = performance.now();
    try {
      for (const seed of seeds) {
        const card = simulationCard(size, epochs, seed);
        last = await simulateActiveLearning(
          { ...spec, card, samples, seed },
          { source, decoder: new SharpDecoder(), store: new FsKeyValueStore(path.join(scratch, String(seed))), emit: () => {}, log: (line) => io.err(line) },
        );
        rows.push(...last.rows);
        testIds[seed] = last.testIds;
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    // One file for all seeds: the rows carry their seed, and the card's own seed is the first one's.
    const { seed: _last, ...shared } = last!.spec;
    const result = { ...last!, card: simulationCard(size, epochs, seeds[0]), spec: shared, rows, seeds, testIds, minutes: (performance.now() - started) / 60000 };
    const { card } = result;
    io.out(`card: ${card.model.encoder} width ${card.model.width} (${card.model.init}), output stride ${card.model.outputStride}, ASPP ${card.model.asppChannels}, ${card.model.inputSize} px; ` +
      `${card.train.optimizer.kind} lr ${card.train.optimizer.lr}, batch ${card.train.batchSize}, ${card.train.loss} loss, noise ${card.noise.preset}; ` +
      `round 0: ${epochs} epochs on ${spec.initial} images, then ${spec.rounds} rounds of +${spec.perRound} images and ${spec.fineTuneEpochs} fine-tune epochs; ` +
      `test split ${spec.test} images; backend ${backend.name}`);
    io.out(`seeds: ${seeds.join(', ')} (split, initial images, weights, noise and dropout all drawn from the seed)`);
    io.out(
      seeds.length > 1
        ? `lesion IoU on the test split: mean over ${seeds.length} seeds [95 % interval over seeds, bootstrap], and each strategy minus random paired by seed:`
        : 'lesion IoU on the test split, and each strategy minus random (one seed: no interval; give --seeds 1,2,3 for one over seeds):',
    );
    io.out(simulationTable(result));
    if (jsonOut) await writeFile(jsonOut, `${JSON.stringify({ ...result, summary: summariseSimulation(rows) }, null, 2)}\n`);
    return 0;
  },
};

export default simulate;

/** The refusal to write over `file` unless it is an earlier simulate-al result (or --overwrite). */
async function overwrittenResult(file: string, overwrite: boolean): Promise<string | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let ours = false;
  try {
    const json = JSON.parse(text) as Record<string, unknown>;
    ours = Array.isArray(json.rows) && Array.isArray(json.seeds) && typeof json.spec === 'object' && typeof json.card === 'object';
  } catch {
    // Not JSON: not a result this command wrote.
  }
  return ours ? undefined : overwriteRefusal('--json', file, 'simulate-al', [file], overwrite);
}
