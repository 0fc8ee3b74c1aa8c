/**
 * The Noisy Student pipeline (Cancers 2024, 16(6):1120), chained end to end:
 *   teacher -> pseudo-labels -> noisy student -> pseudo-labels -> student*.
 * Each stage persists its checkpoints and results through the key-value
 * store; a run stopped anywhere resumes at its last saved step.
 */
import * as tf from '@tensorflow/tfjs';
import type { CheckpointStore } from '../training/checkpoint.ts';
import type { RunCard } from '../config.ts';
import { RunControl } from '../training/control.ts';
import type { Sample } from '../dataset/layouts.ts';
import { labeledUnlabeledRatio, paperSplit, splitSamples } from '../dataset/splits.ts';
import { plannedStages } from './display.ts';
import { failureCode, LesionError } from '../errors.ts';
import { evaluate } from '../scoring/evaluate.ts';
import type { Comparison } from '../scoring/compare.ts';
import { withIntervals, type Uncertainty } from '../scoring/bootstrap.ts';
import { readoutOf, type TtaKind } from '../scoring/readout.ts';
import type { EventSink, MetricSummary, PseudoLabelRecord, StageName } from '../events.ts';
import type { FileSource, KeyValueStore, PixelDecoder } from '../io.ts';
import { buildDeepLabV3 } from '../model/deeplab.ts';
import { applyEncoderWeights, builtInEncoderWeights, type NamedWeights } from '../model/pretrained.ts';
import { generatePseudoLabels } from './pseudo.ts';
import { deriveSeed } from '../random.ts';
import { RunStore, type PseudoStage, type RunState, type StageResult, type TrainingStage } from './run-store.ts';
import { itemFromSample, PixelCache, type TrainItem } from '../dataset/samples.ts';
import { trainStage } from '../training/train.ts';

export { RunControl };

export interface PipelineHost {
  source: FileSource;
  decoder: PixelDecoder;
  store: KeyValueStore;
  emit: EventSink;
  /** Weights for model.init = 'user' (e.g. a ResNet-34 the user converted to tfjs). */
  userEncoderWeights?: () => Promise<NamedWeights>;
  /** Device errors that do not throw (WebGPU's uncapturederror), drained on each call. */
  deviceError?: () => Error | undefined;
}

export interface RunInputs {
  /** Samples with expert masks. */
  labeled: Sample[];
  /** The unlabeled pool (images without masks). */
  unlabeled: Sample[];
}

export type { RunState, StageResult, TrainingStage };

export interface RunResults {
  runId: string;
  stages: StageResult[];
  pseudoLabels: PseudoLabelRecord[];
}

const PRODUCER: Record<PseudoStage, TrainingStage> = { 'pseudo-teacher': 'teacher', 'pseudo-student': 'student' };

/**
 * The card's held-out parts. Images an official layout already marks as test
 * (e.g. ISIC's Test folders) stay test; the rest is split with the card's
 * split seed, or its seed when it has none.
 */
export function splitLabeled(card: RunCard, labeled: Sample[]): { train: Sample[]; val: Sample[]; test: Sample[] } {
  const official = labeled.filter((s) => s.split === 'test');
  const rest = labeled.filter((s) => s.split !== 'test');
  const split = card.data.split;
  const seed = card.data.splitSeed ?? card.seed;
  if (split.kind === 'fractions') {
    const parts = splitSamples(rest, { seed, val: split.val, test: official.length > 0 ? 0 : split.test });
    return { train: parts.train, val: parts.val, test: [...official, ...parts.test] };
  }
  const held = official.length > 0 ? { train: rest, test: official } : (() => {
    const p = splitSamples(rest, { seed, val: 0, test: split.test });
    return { train: p.train, test: p.test };
  })();
  const folds = paperSplit(held.train, split.valFold);
  return { train: folds.train, val: folds.val, test: held.test };
}

/**
 * ISIC 2017 and 2018 share thousands of images: the same image in two sets
 * must not land in both training and test, so labeled images are unique by id,
 * and ids that differ only in case are one id (as within a set, layouts.ts).
 */
function uniqueById(samples: Sample[], emit: EventSink): Sample[] {
  const seen = new Map<string, Sample>();
  for (const s of samples) {
    const first = seen.get(s.id.toLowerCase());
    if (!first) seen.set(s.id.toLowerCase(), s);
    else if (first.id === s.id) emit({ type: 'warning', file: s.image, message: `same image id as ${first.image}; used once, from ${first.set}` });
    else emit({ type: 'warning', file: s.image, message: `image id ${s.id} differs only in case from ${first.image}; used once, from ${first.set}` });
  }
  return [...seen.values()];
}

function hideLabels(train: Sample[], card: RunCard): { labeled: Sample[]; unlabeled: Sample[] } {
  if (card.data.labeledFraction >= 1) return { labeled: train, unlabeled: [] };
  const keep = Math.max(1, Math.round(train.length * card.data.labeledFraction));
  const parts = splitSamples(train, { seed: deriveSeed(card.seed, 'labeled-fraction'), val: 0, test: 1 - keep / train.length });
  return { labeled: parts.train, unlabeled: parts.test.map((s) => ({ ...s, mask: undefined })) };
}

export interface SplitPlan {
  train: Sample[];
  val: Sample[];
  test: Sample[];
  /** The unlabeled images the run uses: the pool, plus labeled ones whose masks it hides, subset by the ratio. */
  unlabeled: Sample[];
  /** How many training pairs the labeled fraction hides the masks of (they join the pool). */
  labelsHidden: number;
}

/** Exactly the parts a new run of this card trains, validates and tests on (also for previews). */
export function planSplit(card: RunCard, inputs: RunInputs, emit: EventSink = () => {}): SplitPlan {
  const parts = splitLabeled(card, uniqueById(inputs.labeled, emit));
  const hidden = hideLabels(parts.train, card);
  const unlabeled = labeledUnlabeledRatio(hidden.labeled, [...inputs.unlabeled, ...hidden.unlabeled], card.data.unlabeledPerLabeled, card.seed);
  return { train: hidden.labeled, val: parts.val, test: parts.test, unlabeled, labelsHidden: hidden.unlabeled.length };
}

const keyOf = (s: Sample): string => `${s.set}/${s.id}${s.mask ? '' : '#unlabeled'}`;

/** The inputs under the keys a run's split stores them by. */
function samplesByKey(inputs: RunInputs): Map<string, Sample> {
  const byId = new Map<string, Sample>();
  for (const s of [...inputs.labeled, ...inputs.unlabeled]) {
    byId.set(keyOf(s), s);
    // Labeled images whose masks this run hides are addressed as unlabeled.
    if (s.mask) byId.set(keyOf({ ...s, mask: undefined }), { ...s, mask: undefined });
  }
  return byId;
}

/** The images of a stored run (by key) that these inputs lack: a resume needs every one, so hosts check before starting it. */
export function missingImages(state: Pick<RunState, 'split'>, inputs: RunInputs): string[] {
  const byId = samplesByKey(inputs);
  return Object.values(state.split).flat().filter((k) => !byId.has(k));
}

/**
 * The card's encoder initialisation on a freshly built model (training or
 * export build: they share weight names); 'random' keeps the seeded draws.
 */
export async function initialiseEncoder(
  card: RunCard,
  model: tf.LayersModel,
  userEncoderWeights: PipelineHost['userEncoderWeights'],
  emit: EventSink,
): Promise<void> {
  if (card.model.init === 'random') return;
  const weights = card.model.init !== 'user'
    ? await builtInEncoderWeights(card.model)
    : await (userEncoderWeights ?? (() => {
      throw new LesionError('model', 'model.init is "user" but no encoder weights were supplied');
    }))();
  const { loaded } = applyEncoderWeights(model, weights);
  tf.dispose([...weights.values()]);
  emit({ type: 'log', message: `encoder initialised from ${card.model.init} weights (${loaded.length} layers)` });
}

/**
 * The paper's four steps, one function each: (1) a teacher trained on the
 * labeled images, (2) its pseudo-labels on the unlabeled pool, (3) a noisy
 * student trained on both, and (4) the student as the next teacher
 * (pseudo-labels again, then student*). A stage the stored state marks
 * completed is skipped, so a resumed run goes on where it stopped.
 */
export async function runNoisyStudent(
  card: RunCard,
  inputs: RunInputs,
  host: PipelineHost,
  control: RunControl,
  options: { runId: string; resume: boolean },
): Promise<RunResults> {
  const { emit } = host;
  const { runId } = options;
  const run = new RunStore(host.store, runId);
  let state = await resumeOrStart(card, inputs, host, run, options);
  const saveState = async (patch: Partial<RunState>): Promise<void> => {
    state = { ...state, ...patch, updatedAt: new Date().toISOString() };
    await run.setState(state);
  };
  const context = stageContext(card, inputs, host, control, run, state, options.resume);
  const pseudoLabels: PseudoLabelRecord[] = [];

  try {
    for (const stage of plannedStages(card)) {
      if (state.completed.includes(stage)) {
        if (isPseudoStage(stage)) pseudoLabels.push(...(await run.pseudoLabels(stage)));
        emit({ type: 'stage', stage, status: 'skipped', message: 'already completed' });
        continue;
      }
      emit({ type: 'stage', stage, status: 'started' });
      if (isPseudoStage(stage)) {
        const producer = PRODUCER[stage];
        const postprocess = state.results.find((r) => r.stage === producer)?.postprocess?.applied ?? false;
        pseudoLabels.push(...(await runPseudoStage(context, stage, postprocess)));
        await saveState({ completed: [...state.completed, stage] });
      } else {
        const result = await runTrainingStage(context, stage);
        await saveState({ completed: [...state.completed, stage], results: [...state.results.filter((r) => r.stage !== stage), result] });
      }
      emit({ type: 'stage', stage, status: 'completed' });
    }
  } catch (error) {
    const cancelled = control.state === 'cancelled';
    const message = error instanceof Error ? error.message : String(error);
    await saveState({ status: cancelled ? 'cancelled' : 'failed', message });
    emit(cancelled ? { type: 'run', runId, status: 'cancelled', message } : { type: 'run', runId, status: 'failed', message, code: failureCode(error) });
    throw error;
  }
  await saveState({ status: 'completed' });
  emit({ type: 'run', runId, status: 'completed' });
  return { runId, stages: state.results, pseudoLabels };
}

const isPseudoStage = (stage: StageName): stage is PseudoStage => stage === 'pseudo-teacher' || stage === 'pseudo-student';

/**
 * The stored state a resume continues (refused when the run has none, or
 * when its images are not all open), or a new run's split and card; either
 * way saved as running and announced.
 */
async function resumeOrStart(card: RunCard, inputs: RunInputs, host: PipelineHost, run: RunStore, options: { runId: string; resume: boolean }): Promise<RunState> {
  const { runId } = options;
  const previous = options.resume ? await run.state() : undefined;
  if (options.resume && !previous) throw new LesionError('storage', `run ${runId} has no saved state to resume from`);
  let state: RunState;
  if (previous) {
    const missing = missingImages(previous, inputs);
    if (missing.length > 0) {
      throw new LesionError('dataset', `run ${runId} cannot resume: ${missing.length} of its images are not in the opened folders (first: ${missing[0]})`);
    }
    state = { ...previous, status: 'running', updatedAt: new Date().toISOString() };
  } else {
    const parts = planSplit(card, inputs, host.emit);
    state = {
      runId,
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      status: 'running',
      completed: [],
      split: { train: parts.train.map(keyOf), val: parts.val.map(keyOf), test: parts.test.map(keyOf), unlabeled: parts.unlabeled.map(keyOf) },
      results: [],
    };
    await run.setCard(card);
  }
  await run.setState(state);
  host.emit({ type: 'run', runId, status: previous ? 'resumed' : 'started' });
  return state;
}

/** What every stage of one call reads: the card, the hosts, and the stored split's images. */
interface StageContext {
  card: RunCard;
  host: PipelineHost;
  control: RunControl;
  run: RunStore;
  /** Whether trainStage continues from a stage's latest checkpoint. */
  resume: boolean;
  train: TrainItem[];
  val: TrainItem[];
  test: TrainItem[];
  pool: Sample[];
  cache: PixelCache;
}

function stageContext(card: RunCard, inputs: RunInputs, host: PipelineHost, control: RunControl, run: RunStore, state: RunState, resume: boolean): StageContext {
  const byId = samplesByKey(inputs);
  const samples = (keys: string[]): Sample[] => keys.map((k) => byId.get(k)!);
  const train = samples(state.split.train).map(itemFromSample);
  const val = samples(state.split.val).map(itemFromSample);
  const test = samples(state.split.test).map(itemFromSample);
  const pool = samples(state.split.unlabeled);
  host.emit({
    type: 'log',
    message: `split: ${train.length} train, ${val.length} val, ${test.length} test labeled images; ${pool.length} unlabeled`,
  });
  const size = card.model.inputSize;
  const cache = new PixelCache(host.source, host.decoder, host.store, { width: size, height: size }, host.emit);
  return { card, host, control, run, resume, train, val, test, pool, cache };
}

/** Steps 2 and 4: the producing stage's best checkpoint labels the pool, read with its post-processing decision. */
async function runPseudoStage(context: StageContext, stage: PseudoStage, postprocess: boolean): Promise<PseudoLabelRecord[]> {
  const { card, run } = context;
  const producer = PRODUCER[stage];
  const model = buildDeepLabV3(card.model, 'train', card.seed);
  const best = run.checkpoints(producer);
  await best.load('best', model);
  const records = await generatePseudoLabels({
    stage,
    producer: { stage: producer, checkpoint: String(await best.identity('best')) },
    model,
    postprocess,
    samples: context.pool,
    card,
    cache: context.cache,
    source: context.host.source,
    run,
    emit: context.host.emit,
    control: context.control,
  });
  model.dispose();
  await run.setPseudoLabels(stage, records);
  return records;
}

/**
 * Steps 1, 3 and 4: a stage trained from its starting weights, its best
 * checkpoint's post-processing decided on validation, and then tested.
 */
async function runTrainingStage(context: StageContext, stage: TrainingStage): Promise<StageResult> {
  const { card, host, run, val, cache } = context;
  const model = await startingModel(context, stage);
  const train = await studentItems(context, stage);
  const ckpt = run.checkpoints(stage);
  const outcome = await trainStage({
    stage,
    card,
    model,
    train,
    val,
    cache,
    checkpoints: ckpt,
    emit: host.emit,
    control: context.control,
    resume: context.resume,
    deviceError: host.deviceError,
  });
  await ckpt.load('best', model);
  const postprocess = await decidePostprocess(card, model, val, cache);
  if (postprocess) {
    const { without, with: withIt } = postprocess.valLesionIoU;
    host.emit({ type: 'log', message: `${stage}: post-processing (largest lesion, holes filled) ${postprocess.applied ? 'kept' : 'left off'}: validation lesion IoU ${(100 * without).toFixed(1)}% without, ${(100 * withIt).toFixed(1)}% with` });
  }
  const test = await testStage(context, stage, model, postprocess?.applied);
  model.dispose();
  return {
    stage,
    best: { epoch: outcome.bestEpoch, val: outcome.bestValidation },
    last: { epoch: outcome.lastEpoch, val: outcome.lastValidation },
    test,
    ...(postprocess && { postprocess }),
  };
}

/**
 * The card's initialisation, stored at the run's first stage so every later
 * stage starts from exactly the teacher's; a student whose card says
 * 'teacher-weights' then takes the teacher's best checkpoint.
 */
async function startingModel(context: StageContext, stage: TrainingStage): Promise<tf.LayersModel> {
  const { card, host, run } = context;
  const model = buildDeepLabV3(card.model, 'train', card.seed);
  const init = run.checkpoints('init');
  if (await init.identity('init')) {
    await init.load('init', model);
  } else {
    await initialiseEncoder(card, model, host.userEncoderWeights, host.emit);
    await init.save('init', model, [], { epoch: 0, stepInEpoch: 0, step: 0, ema: null, bestEma: null, bestEpoch: null, skipped: [] });
  }
  if (stage !== 'teacher' && card.student.init === 'teacher-weights') await run.checkpoints('teacher').load('best', model);
  return model;
}

/** The teacher's training set is the labeled images; a student's adds the pseudo-labels before it, less those dropped or rejected by review. */
async function studentItems(context: StageContext, stage: TrainingStage): Promise<TrainItem[]> {
  const { run, train } = context;
  const pseudoStage: PseudoStage | undefined = stage === 'student' ? 'pseudo-teacher' : stage === 'student-star' ? 'pseudo-student' : undefined;
  if (!pseudoStage) return train;
  const records = await run.pseudoLabels(pseudoStage);
  const rejected = new Set(await run.rejected());
  const poolByImage = new Map(context.pool.map((s) => [s.image, s]));
  const pseudoItems = records
    .filter((r) => !r.dropped && !rejected.has(r.image))
    .map((r): TrainItem => {
      const sample = poolByImage.get(r.image)!;
      return { id: sample.id, set: sample.set, image: sample.image, mask: { kind: 'pseudo', key: r.key } };
    });
  context.host.emit({ type: 'log', message: `${stage}: ${train.length} labeled + ${pseudoItems.length} pseudo-labeled images (${rejected.size} rejected by review)` });
  return [...train, ...pseudoItems];
}

/** The stage's figures on the test images as its readout reads them, with intervals; its per-image scores and masks are stored for the Results view. */
async function testStage(context: StageContext, stage: TrainingStage, model: tf.LayersModel, postprocess: boolean | undefined): Promise<StageResult['test']> {
  const { card, run, test } = context;
  if (test.length === 0) return null;
  const predictions = new Map<string, Uint8Array>();
  const evaluation = await evaluate(model, test, context.cache, {
    ...readoutOf(card, postprocess),
    batchSize: card.train.batchSize,
    onPrediction: (id, mask) => predictions.set(id, mask),
  });
  const result = {
    overall: withIntervals(evaluation.overall, { noun: 'test image' }),
    bySet: Object.fromEntries(Object.entries(evaluation.bySet).map(([k, v]) => [k, withIntervals(v, { noun: 'test image' })])),
  };
  context.host.emit({ type: 'evaluation', stage, split: 'test', overall: result.overall, bySet: result.bySet });
  await run.setPerImage(stage, evaluation.overall.perImage);
  const size = card.model.inputSize;
  await run.setTestPredictions(stage, { width: size, height: size }, predictions);
  return result;
}

/** eval.postprocess 'auto': whether the largest lesion, holes filled, scores better on the validation images; undefined when not asked or nothing to validate on. */
async function decidePostprocess(card: RunCard, model: tf.LayersModel, val: TrainItem[], cache: PixelCache): Promise<StageResult['postprocess']> {
  if (card.eval.postprocess !== 'auto' || val.length === 0) return undefined;
  const evaluation = await evaluate(model, val, cache, { ...readoutOf(card), batchSize: card.train.batchSize, alsoPostprocessed: true });
  const without = evaluation.overall.lesionIoU;
  const withIt = evaluation.postprocessed!.lesionIoU;
  return { applied: withIt > without, valLesionIoU: { without, with: withIt } };
}

/**
 * The stage's model in its export build (tfjs's standard layers only, so
 * plain tfjs loads what is saved from it) and its metadata document. The
 * caller saves it (model.save) and disposes it.
 */
export async function loadStageModel(
  store: KeyValueStore,
  runId: string,
  stage: TrainingStage,
  kind: 'best' | 'latest' = 'best',
): Promise<{ model: tf.LayersModel; metadata: ExportMetadata }> {
  const run = new RunStore(store, runId);
  const card = await run.card();
  if (!card) throw new LesionError('storage', `run ${runId} has no run card`);
  const model = await exportBuild(card, run.checkpoints(stage), kind, `run ${runId} has no ${kind} checkpoint for ${stage}`);
  const state = await run.state();
  return { model, metadata: exportMetadata(card, stage, state?.results.find((r) => r.stage === stage) ?? null) };
}

/** The card's model in its export build with a checkpoint's weights (checkpoints name weights by layer, which the export build shares). */
export async function exportBuild(card: RunCard, checkpoints: CheckpointStore, kind: 'best' | 'latest', missing: string): Promise<tf.LayersModel> {
  const model = buildDeepLabV3(card.model, 'export', card.seed);
  try {
    const loaded = await checkpoints.load(kind, model);
    if (!loaded) throw new LesionError('storage', missing);
    tf.dispose(loaded.optimizer.map((t) => t.tensor));
    return model;
  } catch (error) {
    model.dispose();
    throw error;
  }
}

export function exportMetadata(card: RunCard, stage: StageName, results: StageResult | null): ExportMetadata {
  return {
    format: 'lesion-studio-model/1',
    stage,
    inputSize: card.model.inputSize,
    input: 'RGB resized to inputSize x inputSize (aspect not kept), pixels scaled to [0, 1]',
    output: 'one channel of lesion logits at the input size',
    logitThreshold: card.eval.logitThreshold,
    tta: card.eval.tta,
    postprocess: results?.postprocess?.applied ?? false,
    card,
    results,
  };
}

export interface ExportMetadata {
  format: 'lesion-studio-model/1';
  stage: StageName;
  inputSize: number;
  input: string;
  output: string;
  logitThreshold: number;
  /** How predictions are read (readout.ts): test-time flips, and the stage's validated post-processing. */
  tta: TtaKind;
  postprocess: boolean;
  card: RunCard;
  results: StageResult | null;
  /** Present when the weights are a fine-tune's with expert labels (the Results view's before and after). */
  fineTune?: FineTuneResult;
}

/** One arm of a fine-tune: what it trained on and how it scored. */
export interface FineTuneArm {
  /** Training images: the run's own, plus the new labels in the arm that has them. */
  train: number;
  /** The arm's best epoch by the run's validation rule (null without validation images: the last epoch). */
  bestEpoch: number | null;
  /** Each epoch's validation figures, for Compare's curves. */
  curve: { epoch: number; metrics: MetricSummary }[];
  /** On the scored images, with 95 % intervals over them. */
  scores: MetricSummary & Uncertainty;
}

/**
 * A fine-tune of a stage with new labels and its control: the same schedule
 * (epochs, seed, card) from the same checkpoint, once on the run's training
 * images plus the new labels and once on the run's training images alone.
 * `labels` (with minus without, paired on the scored images) is what the
 * labels bought; `before` is the stage as the run left it.
 */
export interface FineTuneResult {
  runId: string;
  stage: TrainingStage;
  epochs: number;
  /** The run's test part, or its validation part when it has none. */
  split: 'test' | 'val';
  /** New labels among the training images of the arm that has them. */
  expertLabels: number;
  /** Images the figures are computed on. */
  scored: number;
  before: MetricSummary & Uncertainty;
  withLabels: FineTuneArm;
  withoutLabels: FineTuneArm;
  /** compareArms([without, with]): the difference is with minus without. */
  labels: Comparison;
  finishedAt: string;
}
