/**
 * One training stage on the cpu backend, on real ISIC 2018 images, with a
 * model small enough for about a second per step: exact resume, events,
 * one checkpoint per step and the loss chart across interruptions, the EMA
 * rule for the best checkpoint, flat memory, pause, divergence and
 * unreadable images.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointStore, modelWeights, trainableParams, type LoopPosition } from '../src/core/training/checkpoint.ts';
import { paperCard, type RunCard, type TrainConfig } from '../src/core/config.ts';
import { CancelledError, RunControl } from '../src/core/training/control.ts';
import { recogniseDatasets } from '../src/core/dataset/layouts.ts';
import { LesionError } from '../src/core/errors.ts';
import type { TrainerEvent } from '../src/core/events.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { itemFromSample, PixelCache, type TrainItem } from '../src/core/dataset/samples.ts';
import { checkpointAfterStep, stepIsCheckpointed, trainStage, type StageSpec } from '../src/core/training/train.ts';
import { chartSeries, type StepPoint } from '../src/ui/series.ts';
import { initNodeBackend, type NodeBackendName } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { MemoryStore } from './helpers/memory-store.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const isic2018 = path.join(datasetsRoot, 'isic2018');
const SIZE = 32;
const START: LoopPosition = { epoch: 0, stepInEpoch: 0, step: 0, ema: null, bestEma: null, bestEpoch: null, skipped: [] };

/** The paper's card (SGD with momentum, Dice, noise 'paper', dropout 0.5) on a tiny model. */
function tinyCard(train: Partial<TrainConfig>): RunCard {
  const paper = paperCard();
  return {
    ...paper,
    seed: 11,
    model: { encoder: 'mobilenetv2', width: 0.35, outputStride: 16, atrousRates: [6, 12, 18], asppChannels: 16, dropout: 0.5, inputSize: SIZE, init: 'random', inputRange: 'unit' },
    train: { ...paper.train, epochs: 1, batchSize: 2, readEverySteps: 1, checkpointEverySteps: 1, ...train },
  };
}

// A webgpu that cannot start falls back to wasm.
const webgpu = (await initNodeBackend('webgpu')).name === 'webgpu';
const RESUME_BACKENDS: NodeBackendName[] = ['cpu', 'wasm', ...(webgpu ? (['webgpu'] as const) : [])];

let source: FsFileSource;
let items: TrainItem[];

beforeAll(async () => {
  await initNodeBackend('cpu');
  source = new FsFileSource([isic2018]);
  const [set] = recogniseDatasets(await source.list()).sets;
  items = set.labeled.slice(0, 6).map(itemFromSample);
});

interface Harness {
  store: MemoryStore;
  cache: PixelCache;
  events: TrainerEvent[];
  /** A stage spec with this harness's store, cache and event log; `emit` also sees every event. */
  spec(card: RunCard, parts: Partial<StageSpec> & { train: TrainItem[] }): StageSpec;
}

function harness(files: FsFileSource = source): Harness {
  const store = new MemoryStore();
  const events: TrainerEvent[] = [];
  const cache = new PixelCache(files, new SharpDecoder(), store, { width: SIZE, height: SIZE }, (e) => events.push(e));
  return {
    store,
    cache,
    events,
    spec: (card, parts) => {
      const emit = parts.emit;
      return {
        stage: 'teacher',
        card,
        val: [],
        cache,
        checkpoints: new CheckpointStore(store, 'ckpt'),
        control: new RunControl(),
        resume: false,
        ...parts,
        model: parts.model ?? buildDeepLabV3(card.model, 'train', card.seed),
        emit: (e) => {
          events.push(e);
          emit?.(e);
        },
      };
    },
  };
}

/** Every weight's values, read asynchronously (WebGPU in Node has no synchronous read). */
async function snapshot(model: tf.LayersModel): Promise<Map<string, Float32Array>> {
  const weights = modelWeights(model);
  const values = await Promise.all(weights.map(async ({ tensor }) => ((await tensor.data()) as Float32Array).slice()));
  return new Map(weights.map(({ name }, i) => [name, values[i]]));
}

/** Largest |a - b| over all weights; Infinity when a NaN or a missing weight makes them incomparable. */
function maxAbsDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  if (a.size !== b.size) return Infinity;
  let max = 0;
  for (const [name, x] of a) {
    const y = b.get(name);
    if (!y || y.length !== x.length) return Infinity;
    for (let i = 0; i < x.length; i++) {
      const d = Math.abs(x[i] - y[i]);
      if (Number.isNaN(d)) return Infinity;
      if (d > max) max = d;
    }
  }
  return max;
}

/** Names of the weights whose bits differ (a missing weight counts as differing). */
function differingBits(a: Map<string, Float32Array>, b: Map<string, Float32Array>): string[] {
  const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);
  return [...a].filter(([name, x]) => {
    const y = b.get(name);
    return !y || y.length !== x.length || bits(x).some((v, i) => v !== bits(y)[i]);
  }).map(([name]) => name);
}

const stepsOf = (events: TrainerEvent[]) => events.filter((e): e is Extract<TrainerEvent, { type: 'step' }> => e.type === 'step');
const epochsOf = (events: TrainerEvent[]) => events.filter((e): e is Extract<TrainerEvent, { type: 'epoch' }> => e.type === 'epoch');

describe('trainStage', () => {
  // The same backend, twice: wasm and WebGPU (Dawn, lavapipe here) too, whose batch norm (and, on WebGPU, optimiser) are kernels of ours.
  it.each(RESUME_BACKENDS)('%s: a run cancelled mid-epoch and resumed ends with exactly the weights of an uninterrupted run', async (backend) => {
    await initNodeBackend(backend);
    try {
      await expectResumeIsExact();
    } finally {
      await initNodeBackend('cpu');
    }
  });

  async function expectResumeIsExact(): Promise<void> {
    // 2 steps per epoch, 2 epochs; the cut falls after the first step of epoch 2.
    const card = tinyCard({ epochs: 2, readEverySteps: 1, checkpointEverySteps: 1, emaSmoothing: 0.5 });
    const h = harness();
    const train = items.slice(0, 4);
    const val = items.slice(4, 6);

    const init = new CheckpointStore(h.store, 'init');
    const initial = buildDeepLabV3(card.model, 'train', card.seed);
    await init.save('init', initial, [], START);
    const initialWeights = await snapshot(initial);
    initial.dispose();
    const fromInit = async (): Promise<tf.LayersModel> => {
      const model = buildDeepLabV3(card.model, 'train', card.seed);
      await init.load('init', model);
      return model;
    };

    const straight = h.spec(card, { model: await fromInit(), train, val, checkpoints: new CheckpointStore(h.store, 'straight') });
    const straightOutcome = await trainStage(straight);
    const expected = await snapshot(straight.model);
    straight.model.dispose();
    expect(maxAbsDiff(expected, initialWeights)).toBeGreaterThan(0);

    const checkpoints = new CheckpointStore(h.store, 'interrupted');
    const control = new RunControl();
    const interrupted = h.spec(card, {
      model: await fromInit(),
      train,
      val,
      checkpoints,
      control,
      emit: (e) => {
        if (e.type === 'step' && e.step === 3) control.cancel();
      },
    });
    const firstPart = h.events.length;
    await expect(trainStage(interrupted)).rejects.toBeInstanceOf(CancelledError);
    expect(stepsOf(h.events.slice(firstPart)).map((e) => e.step)).toEqual([1, 2, 3]);
    // Cut mid-epoch, and the weights by then differ from the finished run's.
    const saved = (await checkpoints.load('latest', interrupted.model))!;
    tf.dispose(saved.optimizer.map((t) => t.tensor));
    expect(saved.position).toMatchObject({ epoch: 1, stepInEpoch: 1, step: 3 });
    expect(maxAbsDiff(await snapshot(interrupted.model), expected)).toBeGreaterThan(0);
    interrupted.model.dispose();

    const resumed = h.spec(card, { model: await fromInit(), train, val, checkpoints, resume: true });
    const secondPart = h.events.length;
    const resumedOutcome = await trainStage(resumed);
    expect(stepsOf(h.events.slice(secondPart)).map((e) => e.step)).toEqual([4]);
    expect(maxAbsDiff(await snapshot(resumed.model), expected)).toBe(0);
    expect(resumedOutcome.bestEpoch).toBe(straightOutcome.bestEpoch);
    expect(resumedOutcome.bestEma).toBe(straightOutcome.bestEma);
    // The best epoch's figures survive the interruption, whichever epoch it was.
    expect(resumedOutcome.bestValidation).toEqual(straightOutcome.bestValidation);
    expect(resumedOutcome.lastValidation).toEqual(straightOutcome.lastValidation);
    expect(straightOutcome.bestValidation!.images).toBe(val.length);
    resumed.model.dispose();
  }

  it('checkpoints each step once, labelled with its epoch, and charts each step once in step order, across a cancel and a crash', async () => {
    // 2 steps per epoch, 2 epochs, a checkpoint after every step: the epoch's end writes its last step, nothing else does.
    expect([1, 2, 3, 4].map((step) => checkpointAfterStep({ step, stepInEpoch: ((step - 1) % 2) + 1 }, 2, 1))).toEqual([true, false, true, false]);
    // Every third step and each epoch's end, 4 steps an epoch: what the page's history writer expects.
    expect([1, 2, 3, 4, 5, 6, 7, 8].filter((step) => stepIsCheckpointed(step, 4, 3))).toEqual([3, 4, 6, 8]);
    const card = tinyCard({ epochs: 2, readEverySteps: 1, checkpointEverySteps: 1 });
    const h = harness();
    const train = items.slice(0, 4);
    const checkpoints = new CheckpointStore(h.store, 'stopped');
    const model = () => buildDeepLabV3(card.model, 'train', card.seed);
    const at = new Map<TrainerEvent, number>();
    const clock = (e: TrainerEvent) => at.set(e, at.size);

    // Stopped by the user right after step 1's checkpoint: the cancel has nothing new to write.
    const control = new RunControl();
    const first = h.spec(card, { model: model(), train, checkpoints, control, emit: (e) => (clock(e), e.type === 'step' && control.cancel()) });
    await expect(trainStage(first)).rejects.toBeInstanceOf(CancelledError);
    first.model.dispose();
    // The tab closes as step 3 is reported, before its checkpoint: step 3 is trained again on resume.
    const second = h.spec(card, {
      model: model(),
      train,
      checkpoints,
      resume: true,
      emit: (e) => {
        clock(e);
        if (e.type === 'step' && e.step === 3) throw new Error('tab closed');
      },
    });
    await expect(trainStage(second)).rejects.toThrow('tab closed');
    second.model.dispose();
    const third = h.spec(card, { model: model(), train, checkpoints, resume: true, emit: clock });
    await trainStage(third);
    third.model.dispose();

    const latest = h.events.filter((e): e is Extract<TrainerEvent, { type: 'checkpoint' }> => e.type === 'checkpoint' && e.kind === 'latest');
    expect(latest.map((e) => e.step)).toEqual([1, 2, 3, 4].filter((step) => stepIsCheckpointed(step, 2, 1)));
    expect(latest.map((e) => e.epoch)).toEqual([1, 1, 2, 2]);
    const resumed = h.events.filter((e) => e.type === 'log' && /resumed/.test(e.message)).map((e) => (e as { message: string }).message);
    expect(resumed).toEqual(['teacher: resumed at epoch 1, step 1 of 4', 'teacher: resumed at epoch 1, step 2 of 4']);

    const steps = stepsOf(h.events);
    expect(steps.map((e) => e.step)).toEqual([1, 2, 3, 3, 4]);
    const points: StepPoint[] = steps.map((e) => ({ ...e, at: at.get(e)! }));
    const series = chartSeries(points, epochsOf(h.events).map((e) => ({ ...e, at: at.get(e)! })), ['teacher']);
    expect(series.steps.x).toEqual([1, 2, 3, 4]);
    expect(series.steps.epoch).toEqual([1, 1, 2, 2]);
    // The step trained again is the one charted, with when it ran.
    const redone = steps.filter((e) => e.step === 3).at(-1)!;
    expect(series.steps.loss).toEqual([steps[0].loss, steps[1].loss, redone.loss, steps[4].loss]);
    expect(series.steps.at[2]).toBe(at.get(redone));
    expect(series.epochLines).toEqual([{ x: 2.5, epoch: 2 }]);
    expect(series.epochs.x).toEqual([2, 4]);
  });

  it('the same card starts and trains to the same weights, bit for bit; another seed starts elsewhere', async () => {
    const card = tinyCard({ epochs: 1 });
    const run = async (c: RunCard) => {
      const spec = harness().spec(c, { train: items.slice(0, 4), val: items.slice(4, 6) });
      const initial = await snapshot(spec.model);
      await trainStage(spec);
      const trained = await snapshot(spec.model);
      spec.model.dispose();
      return { initial, trained };
    };
    const first = await run(card);
    const second = await run(card);
    expect(differingBits(first.initial, second.initial)).toEqual([]);
    expect(differingBits(first.trained, second.trained)).toEqual([]);
    expect(differingBits(first.trained, first.initial).length).toBeGreaterThan(0);

    const other = buildDeepLabV3(card.model, 'train', card.seed + 1);
    const otherInitial = await snapshot(other);
    // Every drawn weight (the kernels) differs; biases and batch norm start from constants, the same for any seed.
    const drawn = other.layers.flatMap((layer) => layer.weights.flatMap((w, i) => (/kernel$/.test(w.originalName) ? [`${layer.name}#${i}`] : [])));
    other.dispose();
    expect(drawn.length).toBeGreaterThan(0);
    expect(differingBits(first.initial, otherInitial).sort()).toEqual(drawn.sort());
  });

  it('reports every step and epoch, picks the best checkpoint by the EMA rule and keeps the tensor count flat', async () => {
    const smoothing = 0.5;
    // One step per epoch keeps it short; three epochs let the EMA move.
    const card = tinyCard({ epochs: 3, emaSmoothing: smoothing });
    const h = harness();
    const val = items.slice(4, 6);
    const weightsAtEpoch = new Map<number, Promise<Map<string, Float32Array>>>();
    const tensorsAtEpoch: number[] = [];
    const spec = h.spec(card, {
      train: items.slice(0, 2),
      val,
      emit: (e) => {
        if (e.type === 'epoch') {
          weightsAtEpoch.set(e.epoch, snapshot(spec.model));
          tensorsAtEpoch.push(tf.memory().numTensors);
        }
      },
    });
    const before = tf.memory().numTensors;
    const outcome = await trainStage(spec);
    expect(tf.memory().numTensors).toBe(before);

    const steps = stepsOf(h.events);
    expect(steps.map((e) => e.step)).toEqual([1, 2, 3]);
    expect(steps.map((e) => e.epoch)).toEqual([1, 2, 3]);
    for (const step of steps) {
      expect(Number.isFinite(step.loss)).toBe(true);
      // Dice loss lies in [0, 1].
      expect(step.loss).toBeGreaterThanOrEqual(0);
      expect(step.loss).toBeLessThanOrEqual(1);
      expect(step.totalSteps).toBe(3);
    }
    // The same point of every epoch holds the same number of tensors: nothing accumulates.
    expect(steps[2].numTensors).toBe(steps[0].numTensors);
    expect(tensorsAtEpoch).toHaveLength(3);
    expect(tensorsAtEpoch[2]).toBe(tensorsAtEpoch[0]);

    const epochs = epochsOf(h.events);
    expect(epochs.map((e) => e.epoch)).toEqual([1, 2, 3]);
    let ema: number | undefined;
    let bestEma = -Infinity;
    let bestEpoch = 0;
    for (const e of epochs) {
      expect(e.epochs).toBe(3);
      expect(e.metrics.images).toBe(val.length);
      const metric = e.metrics.paperMIoU;
      expect(metric).toBeGreaterThanOrEqual(0);
      expect(metric).toBeLessThanOrEqual(1);
      ema = ema === undefined ? metric : smoothing * ema + (1 - smoothing) * metric;
      expect(e.ema).toBeCloseTo(ema, 12);
      expect(e.best).toBe(e.ema > bestEma);
      if (e.best) [bestEma, bestEpoch] = [e.ema, e.epoch];
    }
    const bestSaves = h.events.filter((e) => e.type === 'checkpoint' && e.kind === 'best').map((e) => (e as { epoch: number }).epoch);
    expect(bestSaves).toEqual(epochs.filter((e) => e.best).map((e) => e.epoch));
    expect(outcome.bestEpoch).toBe(bestEpoch);
    expect(outcome.bestEma).toBe(bestEma);
    // The best checkpoint's validation figures, and the last epoch's apart.
    expect(outcome.bestValidation).toEqual(epochs.find((e) => e.epoch === bestEpoch)!.metrics);
    expect(outcome.lastEpoch).toBe(3);
    expect(outcome.lastValidation).toEqual(epochs[2].metrics);

    // The best checkpoint holds the weights the model had at the end of that epoch.
    const best = buildDeepLabV3(card.model, 'train', card.seed);
    const loaded = await spec.checkpoints.load('best', best);
    tf.dispose(loaded!.optimizer.map((t) => t.tensor));
    expect(loaded!.position.bestEpoch).toBe(bestEpoch);
    expect(maxAbsDiff(await snapshot(best), await weightsAtEpoch.get(bestEpoch)!)).toBe(0);
    best.dispose();
    spec.model.dispose();
  });

  it('halves the batch and goes on when the device reports it ran out of memory', async () => {
    // 4 images, batch 4: one step per epoch until the device fails, then two of batch 2.
    const card = tinyCard({ epochs: 2, batchSize: 4, readEverySteps: 1, checkpointEverySteps: 1 });
    const h = harness();
    let reported = false;
    const spec = h.spec(card, {
      train: items.slice(0, 4),
      // As WebGPU's uncapturederror would: the failed allocation surfaces on the next read.
      deviceError: () => {
        if (reported || stepsOf(h.events).length === 0) return undefined;
        reported = true;
        return new Error('GPU out of memory: failed to allocate a 64 MiB buffer');
      },
    });
    await trainStage(spec);
    spec.model.dispose();
    const warning = h.events.find((e) => e.type === 'warning' && /out of memory at batch size 4.*continuing with batch size 2/.test(e.message));
    expect(warning).toBeDefined();
    const steps = stepsOf(h.events);
    expect(steps.every((e) => Number.isFinite(e.loss))).toBe(true);
    // After the switch, an epoch has two steps of batch 2.
    expect(steps.at(-1)!.totalSteps).toBe(4);
    expect(epochsOf(h.events).map((e) => e.epoch)).toEqual([1, 2]);
    const saved = await spec.checkpoints.load('latest', buildDeepLabV3(card.model, 'train', card.seed));
    expect(saved!.position.batchSize).toBe(2);
    expect(saved!.position.epoch).toBe(2);
  });

  it('pauses between steps and continues where it paused', async () => {
    const card = tinyCard({ epochs: 1 });
    const h = harness();
    const control = new RunControl();
    let resumedAt = Infinity;
    const arrivals = new Map<number, number>();
    const spec = h.spec(card, {
      train: items.slice(0, 4),
      control,
      emit: (e) => {
        if (e.type !== 'step') return;
        arrivals.set(e.step, performance.now());
        if (e.step === 1) {
          control.pause();
          setTimeout(() => {
            resumedAt = performance.now();
            control.resume();
          }, 100);
        }
      },
    });
    await trainStage(spec);
    spec.model.dispose();

    expect(stepsOf(h.events).map((e) => e.step)).toEqual([1, 2]);
    expect(arrivals.get(2)!).toBeGreaterThan(resumedAt);
    const order = h.events.map((e) => (e.type === 'step' ? `step ${e.step}` : e.type === 'log' && /paused/.test(e.message) ? 'paused' : undefined)).filter(Boolean);
    expect(order).toEqual(['step 1', 'paused', 'step 2']);
    expect(control.state).toBe('running');
  });

  it('stops with a "diverged" error naming the first step whose loss was not finite, even when losses are read late', async () => {
    // Losses are read every 3 steps; the weights turn NaN just before step 2, so steps 2 and 3 both fail.
    const card = tinyCard({ epochs: 1, readEverySteps: 3, checkpointEverySteps: 100 });
    const h = harness();
    const control = new RunControl();
    const spec = h.spec(card, { train: items.slice(0, 6), control });
    const betweenSteps = control.checkpoint.bind(control);
    let calls = 0;
    control.checkpoint = async (onPause) => {
      if (++calls === 2) {
        const [first] = trainableParams(spec.model);
        const nan = tf.fill(first.variable.shape, Number.NaN);
        first.variable.assign(nan);
        nan.dispose();
      }
      return betweenSteps(onPause);
    };
    const before = tf.memory().numTensors;
    const error = await trainStage(spec).then(() => undefined, (e: unknown) => e);
    expect(calls).toBe(3);
    expect(error).toBeInstanceOf(LesionError);
    expect((error as LesionError).code).toBe('diverged');
    expect((error as LesionError).message).toMatch(/at step 2\b/);
    // Step 1 is reported; no step with a bad loss is; nothing is left allocated.
    expect(stepsOf(h.events).map((e) => e.step)).toEqual([1]);
    expect(tf.memory().numTensors).toBe(before);
    spec.model.dispose();
  });

  describe('with an unreadable image among the training items', () => {
    let folder: string;

    beforeAll(async () => {
      folder = await mkdtemp(path.join(os.tmpdir(), 'lesion-corrupt-'));
      const real = path.join(isic2018, items[0].image.slice('isic2018/'.length));
      const bytes = await readFile(real);
      await writeFile(path.join(folder, 'truncated.jpg'), bytes.subarray(0, bytes.length >> 1));
      await copyFile(real, path.join(folder, 'intact.jpg'));
    });

    afterAll(async () => {
      await rm(folder, { recursive: true, force: true });
    });

    it('warns, naming the file, and trains on', async () => {
      const files = new FsFileSource([isic2018, folder]);
      const root = path.basename(folder);
      const h = harness(files);
      const truncated: TrainItem = { ...items[0], id: 'truncated', image: `${root}/truncated.jpg` };
      const intact: TrainItem = { ...items[0], id: 'intact', image: `${root}/intact.jpg` };
      // One batch: the unreadable image's place is taken by the readable one.
      const spec = h.spec(tinyCard({ epochs: 1 }), { train: [truncated, intact] });
      await trainStage(spec);
      spec.model.dispose();

      const warnings = h.events.filter((e) => e.type === 'warning');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ file: `${root}/truncated.jpg` });
      expect((warnings[0] as { message: string }).message).toMatch(/corrupt or truncated JPEG/);
      expect(stepsOf(h.events).map((e) => e.step)).toEqual([1]);
      expect(epochsOf(h.events)).toHaveLength(1);
      expect(h.cache.failures.has(`${root}/truncated.jpg`)).toBe(true);
    });
  });
});
