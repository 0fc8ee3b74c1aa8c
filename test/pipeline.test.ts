/**
 * The whole Noisy Student pipeline on real data (ISIC 2018 labeled, PH2 as
 * the unlabeled pool), on the wasm backend with a tiny card: five stages,
 * stored pseudo-labels, resume, pseudo-label reuse, the export build, and
 * deleting a run.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { CheckpointStore } from '../src/core/training/checkpoint.ts';
import { paperCard, parseRunCard, type RunCard } from '../src/core/config.ts';
import { recogniseDatasets, type Sample } from '../src/core/dataset/layouts.ts';
import { loadSample } from '../src/core/dataset/loader.ts';
import type { PseudoLabelRecord, TrainerEvent } from '../src/core/events.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { plannedStages } from '../src/core/run/display.ts';
import {
  loadStageModel,
  RunControl,
  runNoisyStudent,
  type PipelineHost,
  type RunInputs,
  type RunResults,
  type RunState,
} from '../src/core/run/pipeline.ts';
import { predictLogits } from '../src/core/scoring/predict.ts';
import { RunStore } from '../src/core/run/run-store.ts';
import type { StoredMask } from '../src/core/dataset/samples.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { MemoryStore } from './helpers/memory-store.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const datasets = datasetsRoot;
const RUN = 'tiny-1';
const SIZE = 64;

/**
 * One epoch per stage at 64 px. At output stride 16 the feature map is 4 x 4,
 * so the dilated encoder stage (rate 2) and ASPP rates 2/3/4 all reach real
 * pixels: the export build's dilated layers are really compared.
 */
function tinyCard(): RunCard {
  const paper = paperCard();
  return parseRunCard({
    ...paper,
    name: 'pipeline-test',
    seed: 5,
    backend: 'wasm',
    model: { encoder: 'mobilenetv2', width: 0.35, outputStride: 16, atrousRates: [2, 3, 4], asppChannels: 16, dropout: 0.5, inputSize: SIZE, init: 'random', inputRange: 'symmetric' },
    train: {
      ...paper.train,
      epochs: 1,
      batchSize: 4,
      optimizer: { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
      readEverySteps: 2,
      checkpointEverySteps: 3,
    },
    data: { split: { kind: 'fractions', val: 0.2, test: 0.2 }, unlabeledPerLabeled: 0.25 },
    // Nothing dropped, so the students really train on pseudo-labels.
    pseudo: { threshold: 0.5, minLesionFraction: 0, flipTta: true },
  });
}

const card = tinyCard();
const store = new MemoryStore();
let source: FsFileSource;
let inputs: RunInputs;
let isicSet: string;
let first: RunResults;
let firstEvents: TrainerEvent[];

function host(events: TrainerEvent[]): PipelineHost {
  return { source, decoder: new SharpDecoder(), store, emit: (e) => events.push(e) };
}

const stageLog = (events: TrainerEvent[]): string[] =>
  events.flatMap((e) => (e.type === 'stage' ? [`${e.stage} ${e.status}`] : []));

async function records(stage: 'pseudo-teacher' | 'pseudo-student'): Promise<PseudoLabelRecord[]> {
  return (await store.get<PseudoLabelRecord[]>(`runs/${RUN}/pseudo/${stage}`))!;
}

/** Every class_name in a serialised model, wrapped layers' included. */
function classNames(json: unknown): string[] {
  if (Array.isArray(json)) return json.flatMap(classNames);
  if (typeof json !== 'object' || json === null) return [];
  return Object.entries(json).flatMap(([key, value]) => (key === 'class_name' && typeof value === 'string' ? [value] : classNames(value)));
}

beforeAll(async () => {
  await initNodeBackend('wasm');
  source = new FsFileSource([path.join(datasets, 'isic2018'), path.join(datasets, 'ph2')]);
  const index = recogniseDatasets(await source.list());
  const isic = index.sets.find((s) => s.layout === 'isic2018')!;
  const ph2 = index.sets.find((s) => s.layout === 'ph2')!;
  isicSet = isic.name;
  // PH2's masks are ignored: its images are the unlabeled pool.
  inputs = { labeled: isic.labeled, unlabeled: ph2.labeled.map((s): Sample => ({ ...s, mask: undefined })) };
  firstEvents = [];
  first = await runNoisyStudent(card, inputs, host(firstEvents), new RunControl(), { runId: RUN, resume: false });
});

describe('runNoisyStudent', () => {
  it('runs the five stages in order and records each training stage\'s results', async () => {
    expect(stageLog(firstEvents)).toEqual(plannedStages(card).flatMap((s) => [`${s} started`, `${s} completed`]));
    expect(plannedStages(card)).toHaveLength(5);
    const runs = firstEvents.filter((e) => e.type === 'run').map((e) => (e as { status: string }).status);
    expect(runs).toEqual(['started', 'completed']);

    const state = (await store.get<RunState>(`runs/${RUN}/state`))!;
    expect(state.status).toBe('completed');
    expect(state.completed).toEqual(plannedStages(card));
    expect(first.stages.map((s) => s.stage)).toEqual(['teacher', 'student', 'student-star']);
    for (const result of first.stages) {
      // One epoch: the exported checkpoint is the last epoch's.
      expect(result.best.epoch).toBe(1);
      expect(result.last.epoch).toBe(1);
      expect(result.best.val!.images).toBe(state.split.val.length);
      expect(result.last.val).toEqual(result.best.val);
      expect(result.test!.overall.images).toBe(state.split.test.length);
      expect(Object.keys(result.test!.bySet)).toEqual([isicSet]);
      expect(result.test!.overall.paperMIoU).toBeGreaterThanOrEqual(0);
      expect(result.test!.overall.paperMIoU).toBeLessThanOrEqual(1);
    }
    const epochsPerStage = firstEvents.filter((e) => e.type === 'epoch').map((e) => (e as { stage: string }).stage);
    expect(epochsPerStage).toEqual(['teacher', 'student', 'student-star']);
    // The split covers every labeled image once; the pool is the card's 1/m of the training images.
    const { train, val, test, unlabeled } = state.split;
    expect(new Set([...train, ...val, ...test]).size).toBe(inputs.labeled.length);
    expect(unlabeled).toHaveLength(Math.round(0.25 * train.length));
  });

  it('stores a pseudo-label mask for every pool image in both pseudo stages, keyed by run and producer', async () => {
    const state = (await store.get<RunState>(`runs/${RUN}/state`))!;
    const pool = state.split.unlabeled;
    const ph2Ids = new Set(inputs.unlabeled.map((s) => s.id));
    const teacherIds = (await records('pseudo-teacher')).map((r) => r.id);
    for (const [stage, producer] of [['pseudo-teacher', 'teacher'], ['pseudo-student', 'student']] as const) {
      const stored = await records(stage);
      // One record per pool image, the same images in both rounds.
      expect(stored).toHaveLength(pool.length);
      expect(new Set(stored.map((r) => r.id)).size).toBe(pool.length);
      expect(stored.map((r) => r.id)).toEqual(teacherIds);
      expect(stored.every((r) => ph2Ids.has(r.id))).toBe(true);
      const identity = await new CheckpointStore(store, `runs/${RUN}/ckpt/${producer}`).identity('best');
      for (const record of stored) {
        expect(record.key.startsWith(`pseudo/${RUN}/${producer}/${identity}/`)).toBe(true);
        const mask = (await store.get<StoredMask>(record.key))!;
        expect(mask.width).toBe(SIZE);
        expect(mask.height).toBe(SIZE);
        expect(mask.data).toHaveLength(SIZE * SIZE);
        expect(mask.data.every((v) => v === 0 || v === 1)).toBe(true);
        expect(record.lesionFraction).toBeCloseTo(mask.data.reduce((n, v) => n + v, 0) / (SIZE * SIZE), 12);
        expect(record.uncertainty).toBeGreaterThanOrEqual(0);
        expect(record.uncertainty).toBeLessThanOrEqual(1);
        expect(record.dropped).toBe(false);
      }
    }
    expect(first.pseudoLabels).toEqual([...(await records('pseudo-teacher')), ...(await records('pseudo-student'))]);
    // Each mask and its statistics were written once.
    expect(store.writes.filter((k) => k.startsWith('pseudo/'))).toHaveLength(2 * 2 * pool.length);
    // The students trained on the labeled images plus every pseudo-labeled one.
    const mixes = firstEvents.filter((e) => e.type === 'log' && /pseudo-labeled images/.test(e.message)).map((e) => (e as { message: string }).message);
    expect(mixes).toEqual([
      expect.stringMatching(new RegExp(`^student: ${state.split.train.length} labeled \\+ ${pool.length} pseudo-labeled`)),
      expect.stringMatching(new RegExp(`^student-star: ${state.split.train.length} labeled \\+ ${pool.length} pseudo-labeled`)),
    ]);
  });

  it('a second call with resume skips every completed stage and writes nothing but the run state', async () => {
    const events: TrainerEvent[] = [];
    const mark = store.writes.length;
    const again = await runNoisyStudent(card, inputs, host(events), new RunControl(), { runId: RUN, resume: true });
    expect(stageLog(events)).toEqual(plannedStages(card).map((s) => `${s} skipped`));
    expect(events.some((e) => e.type === 'step' || e.type === 'pseudo' || e.type === 'checkpoint')).toBe(false);
    expect(new Set(store.writes.slice(mark))).toEqual(new Set([`runs/${RUN}/state`]));
    expect(again.stages).toEqual(first.stages);
    expect(again.pseudoLabels).toEqual(first.pseudoLabels);
  });

  it('regenerating pseudo-labels for the same checkpoint reuses the stored masks without predicting', async () => {
    const before = await records('pseudo-teacher');
    const state = (await store.get<RunState>(`runs/${RUN}/state`))!;
    await store.set(`runs/${RUN}/state`, { ...state, completed: state.completed.filter((s) => s !== 'pseudo-teacher') });

    const events: TrainerEvent[] = [];
    const mark = store.writes.length;
    const again = await runNoisyStudent(card, inputs, host(events), new RunControl(), { runId: RUN, resume: true });
    expect(stageLog(events)).toEqual([
      'teacher skipped',
      'pseudo-teacher started',
      'pseudo-teacher completed',
      'student skipped',
      'pseudo-student skipped',
      'student-star skipped',
    ]);
    expect(store.writes.slice(mark).filter((k) => k.startsWith('pseudo/'))).toEqual([]);
    expect(await records('pseudo-teacher')).toEqual(before);
    expect(again.pseudoLabels).toEqual(first.pseudoLabels);
    const progress = events.filter((e) => e.type === 'pseudo');
    expect(progress.at(-1)).toMatchObject({ done: before.length, total: before.length, kept: before.length, dropped: 0 });
  });

  it('loadStageModel gives an export build of standard layers that predicts what the training build predicts', async () => {
    const { model, metadata } = await loadStageModel(store, RUN, 'student');
    const json = model.toJSON(null, false) as unknown as { config: { layers: { class_name: string; config: Record<string, unknown> }[] } };
    const classes = new Set(classNames(json));
    for (const custom of ['AtrousConv2D', 'SpaceToBatch', 'BatchToSpace', 'BatchNorm', 'SeededDropout']) expect(classes.has(custom)).toBe(false);
    for (const standard of ['Conv2D', 'DepthwiseConv2D', 'BatchNormalization', 'Dropout']) expect(classes.has(standard)).toBe(true);
    // The ASPP's atrous convolutions are tfjs's own dilated layers there.
    const dilated = json.config.layers.filter((l) => Array.isArray(l.config.dilation_rate) && (l.config.dilation_rate as number[]).some((r) => r > 1));
    expect(dilated.map((l) => l.config.name)).toEqual(expect.arrayContaining(['aspp_1_conv', 'aspp_2_conv', 'aspp_3_conv']));
    expect(metadata).toMatchObject({ stage: 'student', inputSize: SIZE, logitThreshold: card.eval.logitThreshold, card });
    expect(metadata.results).toEqual(first.stages.find((s) => s.stage === 'student'));

    const training = buildDeepLabV3(card.model, 'train', card.seed);
    const loaded = await new CheckpointStore(store, `runs/${RUN}/ckpt/student`).load('best', training);
    tf.dispose(loaded!.optimizer.map((t) => t.tensor));

    const samples = [...inputs.labeled.slice(0, 3), ...inputs.unlabeled.slice(0, 2)];
    const decoder = new SharpDecoder();
    const images = await Promise.all(samples.map(async (s) => (await loadSample({ ...s, mask: undefined }, source, decoder, { width: SIZE, height: SIZE })).image));
    const exported = await predictLogits(model, images, { batchSize: 4 });
    const trained = await predictLogits(training, images, { batchSize: 4 });
    model.dispose();
    training.dispose();

    let diff = 0;
    let spread = 0;
    exported.forEach((logits, i) => {
      for (let p = 0; p < logits.length; p++) {
        diff = Math.max(diff, Math.abs(logits[p] - trained[i][p]));
        spread = Math.max(spread, Math.abs(logits[p] - exported[0][0]));
      }
    });
    // The comparison means something only if the logits vary.
    expect(spread).toBeGreaterThan(1e-3);
    expect(diff).toBeLessThanOrEqual(1e-4);
  });

  it('RunStore.delete removes every key of the run and nothing of another run', async () => {
    const others = ['runs/tiny-10/state', 'pseudo/tiny-10/teacher/x/y/64', 'settings/theme'];
    for (const key of others) await store.set(key, 1);
    expect((await store.keys()).length).toBeGreaterThan(others.length);
    await new RunStore(store, RUN).delete();
    expect(await store.keys()).toEqual([...others].sort());
  });
});
