/**
 * One benchmark task on one tfjs backend, in its own process: run.ts spawns
 * this file once per (backend, task), because switching backends inside one
 * process with live tensors breaks tfjs, and so that each task starts with a
 * clean heap. Prints a JSON line (a TaskResult) on stdout after every timed
 * run, the last one holding all figures so far; anything else goes to stderr.
 *
 *   tsx bench/step.ts --backend cpu|wasm|webgpu --task train|predict|memory
 *     [--model default|small] [--size 128] [--batch 4] [--steps 5] [--warmup 1] [--budget 60]
 *     [--levers all|none|batchnorm,optimizer,filter-grad]   (webgpu: which of our kernels to use)
 *     [--recompute]   (train: the encoder's blocks recomputed in the backward pass, as training on wasm does when a step would not fit its heap)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { DispatchCounter, type DispatchCount } from '../src/core/backends/webgpu/dispatches.ts';
import { timeHostCost, type HostCost } from '../src/core/backends/webgpu/host-clock.ts';
import { leverOn, setWebGpuLevers, WEBGPU_LEVERS, type WebGpuLever } from '../src/core/backends/webgpu/levers.ts';
import { CheckpointStore, trainableParams } from '../src/core/training/checkpoint.ts';
import { paperCard, type RunCard } from '../src/core/config.ts';
import { RunControl } from '../src/core/training/control.ts';
import { recogniseDatasets } from '../src/core/dataset/layouts.ts';
import { loadSample } from '../src/core/dataset/loader.ts';
import type { TrainerEvent } from '../src/core/events.ts';
import type { RgbImage } from '../src/core/io.ts';
import { lossByName } from '../src/core/training/losses.ts';
import { buildDeepLabV3, countParameters, type ModelConfig } from '../src/core/model/deeplab.ts';
import { setDropoutSeed } from '../src/core/model/dropout.ts';
import { createOptimizer } from '../src/core/training/optim.ts';
import { TrainingStep } from '../src/core/training/step.ts';
import { predictLogits } from '../src/core/scoring/predict.ts';
import { deriveSeed, Rng } from '../src/core/random.ts';
import { itemFromSample, PixelCache } from '../src/core/dataset/samples.ts';
import { trainStage } from '../src/core/training/train.ts';
import { initNodeBackend, type NodeBackendName } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { FsKeyValueStore } from '../src/node/store.ts';
import { DATASETS, MODELS, type ModelName, type TaskResult } from './tasks.ts';

const SEED = 2137;

const { values } = parseArgs({
  options: {
    backend: { type: 'string' },
    task: { type: 'string' },
    model: { type: 'string', default: 'default' },
    size: { type: 'string', default: '128' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    budget: { type: 'string', default: '60' },
    levers: { type: 'string', default: 'all' },
    recompute: { type: 'boolean', default: false },
  },
});

setWebGpuLevers(parseLevers(values.levers!));

const backend = await initNodeBackend(values.backend as NodeBackendName);
const modelName = values.model as ModelName;
const size = Number(values.size);
const batch = Number(values.batch);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const budgetMs = Number(values.budget) * 1000;

const config = (): ModelConfig => ({ ...MODELS[modelName], inputSize: size });

interface Timing {
  timesMs: number[];
  warmupMs: number[];
}

/** One JSON line; the parent reads the last one. */
const emit = (result: TaskResult): void => {
  const heapBytes = (tf.backend() as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.length;
  process.stdout.write(`${JSON.stringify({ ...result, backend: backend.name, backendDetail: backend.detail, heapBytes })}\n`);
};

switch (values.task) {
  case 'train':
    await timeTraining();
    break;
  case 'predict':
    await timePrediction();
    break;
  case 'memory':
    emit(await memoryAcrossEpochs());
    break;
  default:
    throw new Error(`unknown task ${values.task}`);
}

/**
 * Runs `step` `warmupSteps` times untimed, then times up to `steps` more runs:
 * always one, then more while the last one says another fits the budget.
 * The figures so far go out after every run, so that a child stopped for
 * overrunning still leaves what it measured.
 */
async function timeRepeated(warmupSteps: number, step: () => Promise<void>, report: (timing: Timing) => void): Promise<Timing> {
  const timing: Timing = { timesMs: [], warmupMs: [] };
  const started = performance.now();
  for (let i = 0; i < warmupSteps; i++) {
    const t = performance.now();
    await step();
    timing.warmupMs.push(performance.now() - t);
    report(timing);
  }
  while (timing.timesMs.length < steps) {
    const last = timing.timesMs.at(-1) ?? timing.warmupMs.at(-1) ?? 0;
    if (timing.timesMs.length > 0 && performance.now() - started + last > budgetMs) break;
    const t = performance.now();
    await step();
    timing.timesMs.push(performance.now() - t);
    report(timing);
  }
  return timing;
}

/**
 * The training loop's step (training/step.ts, as train.ts runs it) on a fixed
 * synthetic batch: forward, backward, SGD update, loss read back. On WebGPU
 * with the replay lever the first three steps run through tfjs (recorded)
 * and the fourth compiles the recording before it is the first replayed
 * (step-graph.ts), so the warm-up is at least four.
 */
async function timeTraining(): Promise<void> {
  const card = paperCard();
  const model = buildDeepLabV3(config(), 'train', SEED);
  const params = trainableParams(model);
  const optimizer = createOptimizer(card.train.optimizer);
  const step = new TrainingStep({ model, params, optimizer, lossFn: lossByName(card.train.loss) }, (message) => process.stderr.write(`${message}\n`));
  const { x, y } = syntheticBatch(batch, size, new Rng(SEED));
  const parameters = countParameters(model);
  const counter = DispatchCounter.attach();
  let dispatches: DispatchCount | undefined;
  const hostCosts: HostCost[] = [];
  const warmupSteps = backend.name === 'webgpu' && leverOn('replay') ? Math.max(warmup, 4) : warmup;
  let n = 0;
  await timeRepeated(warmupSteps, async () => {
    counter?.take();
    setDropoutSeed(model, deriveSeed(SEED, `bench/${n++}`));
    // The host cost: what the step spends in JavaScript and WebGPU calls
    // before it returns with its work enqueued; on a GPU the device runs
    // behind it, so this, not the arithmetic, bounds a step from below.
    const { value: loss, cost } = timeHostCost(() => step.run({ x, y, size, batchSize: batch }, 1, values.recompute!));
    hostCosts.push(cost);
    // Reading the loss waits for the device: the step is over only then.
    await loss.data();
    loss.dispose();
    dispatches = counter?.take();
  }, (timing) => emit({ task: 'train', model: modelName, size, batch, parameters, ...timing, host: hostCosts.slice(timing.warmupMs.length), dispatches }));
  counter?.detach();
  step.dispose();
  optimizer.dispose();
  model.dispose();
}

/** Pseudo-labelling's model pass: predictLogits on real images decoded at `size`, `batch` at a time. */
async function timePrediction(): Promise<void> {
  const images = await realImages(batch, size);
  const model = buildDeepLabV3(config(), 'train', SEED);
  const parameters = countParameters(model);
  await timeRepeated(
    warmup,
    async () => {
      await predictLogits(model, images, { batchSize: batch });
    },
    (timing) => emit({ task: 'predict', model: modelName, size, batch, parameters, ...timing }),
  );
  model.dispose();
}

/**
 * Three epochs of the real training loop (trainStage: data, noise,
 * checkpoints, validation) on a few ISIC images with the small model, and
 * tfjs's tensor count and bytes before and after: they must not grow.
 */
async function memoryAcrossEpochs(): Promise<TaskResult> {
  const card: RunCard = {
    ...paperCard(),
    model: { ...config() },
    train: { ...paperCard().train, epochs: 3, batchSize: batch, readEverySteps: 2, checkpointEverySteps: 2 },
  };
  const source = new FsFileSource([DATASETS.isic2018]);
  const samples = recogniseDatasets(await source.list()).sets.flatMap((s) => s.labeled).slice(0, 3 * batch);
  const items = samples.map(itemFromSample);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lesion-bench-'));
  const store = new FsKeyValueStore(dir);
  const emit = (e: TrainerEvent): void => {
    if (e.type === 'epoch') process.stderr.write(`memory run: epoch ${e.epoch}/${e.epochs}, ${tf.memory().numTensors} tensors\n`);
  };
  const cache = new PixelCache(source, new SharpDecoder(), store, { width: size, height: size }, emit);
  const model = buildDeepLabV3(card.model, 'train', card.seed);
  try {
    const before = tf.memory();
    const started = performance.now();
    await trainStage({
      stage: 'teacher',
      card,
      model,
      train: items.slice(0, 2 * batch),
      val: items.slice(2 * batch),
      cache,
      checkpoints: new CheckpointStore(store, 'bench/ckpt'),
      emit,
      control: new RunControl(),
      resume: false,
    });
    const after = tf.memory();
    return {
      task: 'memory',
      model: modelName,
      size,
      batch,
      parameters: countParameters(model),
      timesMs: [performance.now() - started],
      warmupMs: [],
      memory: {
        before: { tensors: before.numTensors, bytes: before.numBytes },
        after: { tensors: after.numTensors, bytes: after.numBytes },
      },
    };
  } finally {
    model.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Uniform noise images and one disc-shaped lesion each: a fixed batch, seeded. */
function syntheticBatch(n: number, s: number, rng: Rng): { x: Float32Array; y: Float32Array } {
  const x = Float32Array.from({ length: n * s * s * 3 }, () => rng.next());
  const y = new Float32Array(n * s * s);
  for (let b = 0; b < n; b++) {
    const [cy, cx, r] = [rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s, rng.uniform(0.15, 0.3) * s];
    for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) y[(b * s + i) * s + j] = (i - cy) ** 2 + (j - cx) ** 2 < r * r ? 1 : 0;
  }
  return { x, y };
}

async function realImages(n: number, s: number): Promise<RgbImage[]> {
  const source = new FsFileSource([DATASETS.isic2018]);
  const samples = recogniseDatasets(await source.list()).sets.flatMap((set) => set.labeled).slice(0, n);
  const decoder = new SharpDecoder();
  return Promise.all(samples.map(async (sample) => (await loadSample({ ...sample, mask: undefined }, source, decoder, { width: s, height: s })).image));
}

function parseLevers(text: string): WebGpuLever[] {
  if (text === 'all') return [...WEBGPU_LEVERS];
  if (text === 'none') return [];
  const levers = text.split(',');
  const unknown = levers.filter((l) => !(WEBGPU_LEVERS as readonly string[]).includes(l));
  if (unknown.length > 0) throw new Error(`--levers: unknown ${unknown.join(', ')}; use all, none or some of ${WEBGPU_LEVERS.join(', ')}`);
  return levers as WebGpuLever[];
}
