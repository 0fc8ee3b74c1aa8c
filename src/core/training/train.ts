/**
 * One training stage: a custom loop (not model.fit) with fixed-shape batches,
 * the paper's noise, seeded dropout, PyTorch-style optimisers, validation
 * after every epoch, nnU-Net's EMA rule for the best checkpoint, resumable
 * checkpoints every few steps, pause/resume/cancel between steps, and losses
 * read back from the device only every few steps.
 *
 * Every random draw is derived from (seed, stage, epoch, step), so a run
 * resumed from a checkpoint repeats exactly what an uninterrupted run does.
 */
import * as tf from '@tensorflow/tfjs';
import { backendOps } from '../backends/ops.ts';
import type { CheckpointStore, LoopPosition } from './checkpoint.ts';
import { epochOfStep, trainableParams, weightsAreFinite } from './checkpoint.ts';
import { batchTooLarge, type RunCard } from '../config.ts';
import { CancelledError, type RunControl } from './control.ts';
import { LesionError } from '../errors.ts';
import { evaluate, summary } from '../scoring/evaluate.ts';
import { readoutOf } from '../scoring/readout.ts';
import type { EventSink, MetricSummary, StageName } from '../events.ts';
import type { BinaryMask, RgbImage } from '../io.ts';
import { lossByName } from './losses.ts';
import { setDropoutSeed } from '../model/dropout.ts';
import { canRecompute, outgrowsWasmHeap } from '../model/recompute.ts';
import { applyNoise } from '../noise/chain.ts';
import { createOptimizer, learningRateScale } from './optim.ts';
import { TrainingStep } from './step.ts';
import { deriveSeed, Rng } from '../random.ts';
import { imagesToBatch, masksToBatch, type PixelCache, type TrainItem } from '../dataset/samples.ts';

export interface StageSpec {
  stage: StageName;
  card: RunCard;
  model: tf.LayersModel;
  train: TrainItem[];
  val: TrainItem[];
  cache: PixelCache;
  checkpoints: CheckpointStore;
  emit: EventSink;
  control: RunControl;
  /** Continue from the stage's latest checkpoint when there is one. */
  resume: boolean;
  /**
   * The host's device errors since the last call (e.g. WebGPU's
   * uncapturederror: an allocation that failed there does not throw, it
   * yields zeros). Checked whenever losses are read.
   */
  deviceError?: () => Error | undefined;
}

/** Errors that a smaller batch can cure. */
export function isResourceExhausted(error: unknown): boolean {
  const message = error instanceof Error ? `${error.name} ${error.message}` : String(error);
  return /out of memory|\bOOM\b|failed to allocate|allocation failed|array buffer allocation|maxStorageBufferBindingSize|maxBufferSize|exceeds the max|memory could not be allocated/i.test(message);
}

/**
 * The fault tests' divergence (README, Reliability): every trainable weight
 * in the engine becomes NaN, as after a step that blew up, and the training
 * loop must stop as 'diverged' before any checkpoint holds them.
 */
export function poisonTrainableWeights(): void {
  const trainable = Object.values(tf.engine().registeredVariables).filter((variable) => variable.trainable);
  if (trainable.length === 0) throw new LesionError('config', 'no model is training');
  for (const variable of trainable) tf.tidy(() => variable.assign(tf.fill(variable.shape, Number.NaN)));
}

export interface StageOutcome {
  /** The best checkpoint's epoch (the one a stage exports), its EMA and its validation figures. */
  bestEpoch: number | null;
  bestEma: number | null;
  bestValidation: MetricSummary | null;
  /** The final epoch, apart: the best checkpoint is an earlier one when validation peaked before. */
  lastEpoch: number;
  lastValidation: MetricSummary | null;
}

/**
 * Whether the loop writes the latest checkpoint right after a step, given
 * where it stands after it: every `every` steps, except an epoch's last step,
 * which the epoch's end writes once validation has updated the EMA and the
 * best epoch. So no step is written twice.
 */
export function checkpointAfterStep(position: Pick<LoopPosition, 'step' | 'stepInEpoch'>, stepsPerEpoch: number, every: number): boolean {
  return position.step % every === 0 && position.stepInEpoch < stepsPerEpoch;
}

/** Whether a stage's step (from 1) ends with a latest checkpoint: the schedule above, or its epoch's end. */
export function stepIsCheckpointed(step: number, stepsPerEpoch: number, every: number): boolean {
  const stepInEpoch = ((step - 1) % stepsPerEpoch) + 1;
  return stepInEpoch === stepsPerEpoch || checkpointAfterStep({ step, stepInEpoch }, stepsPerEpoch, every);
}

const FRESH: LoopPosition = { epoch: 0, stepInEpoch: 0, step: 0, ema: null, bestEma: null, bestEpoch: null, skipped: [] };

export async function trainStage(spec: StageSpec): Promise<StageOutcome> {
  const { stage, card, model, train, val, cache, checkpoints, emit, control } = spec;
  const { epochs, readEverySteps, checkpointEverySteps, emaSmoothing } = card.train;
  // The batch may shrink when the device runs out of memory; the loop's geometry follows it.
  let B = card.train.batchSize;
  let stepsPerEpoch = 0;
  let totalSteps = 0;
  // Recomputing the encoder's blocks costs a forward pass of them per step: only where the wasm heap,
  // 4 GiB and no more, would not hold the step otherwise. Elsewhere running out of memory halves the batch.
  let recompute = false;
  const setBatch = (batchSize: number): void => {
    B = batchSize;
    stepsPerEpoch = Math.floor(train.length / B);
    totalSteps = epochs * stepsPerEpoch;
    recompute = backendOps().heapLimited === true && canRecompute(model) && outgrowsWasmHeap(model, B);
    if (recompute) emit({ type: 'log', message: `${stage}: batch ${B} would not fit the wasm heap; the encoder's blocks are recomputed in the backward pass` });
  };
  setBatch(B);
  const tooLarge = batchTooLarge(train.length, B);
  if (tooLarge) throw new LesionError('dataset', `${stage}: ${tooLarge.message}`);
  const size = card.model.inputSize;
  const lossFn = lossByName(card.train.loss, { posWeight: card.train.posWeight });
  const optimizer = createOptimizer(card.train.optimizer);
  const params = trainableParams(model);
  const step = new TrainingStep({ model, params, optimizer, lossFn }, (message) => emit({ type: 'log', message: `${stage}: ${message}` }));

  let position: LoopPosition = { ...FRESH };
  /** The step the latest checkpoint holds: a cancel right after a write does not write it again. */
  let latestStep: number | undefined;
  if (spec.resume) {
    const saved = await checkpoints.load('latest', model);
    if (saved) {
      optimizer.setState(saved.optimizer);
      tf.dispose(saved.optimizer.map((t) => t.tensor));
      position = saved.position;
      latestStep = position.step;
      if (position.batchSize && position.batchSize < B) setBatch(position.batchSize);
      emit({ type: 'log', message: `${stage}: resumed at epoch ${epochOfStep(position)}, step ${position.step} of ${totalSteps}` });
    }
  }

  const pending: { step: number; epoch: number; loss: tf.Scalar; dispatches?: number; issueMs?: number }[] = [];
  let windowStart = performance.now();
  let secondsPerStep = 0;

  /** Reads the pending losses in one transfer; a non-finite one stops the run. */
  const flush = async (): Promise<void> => {
    const deviceError = spec.deviceError?.();
    if (deviceError) throw deviceError;
    if (pending.length === 0) return;
    const stacked = tf.stack(pending.map((p) => p.loss));
    const values = (await stacked.data()) as Float32Array;
    stacked.dispose();
    const now = performance.now();
    const perStep = (now - windowStart) / 1000 / pending.length;
    secondsPerStep = secondsPerStep === 0 ? perStep : 0.7 * secondsPerStep + 0.3 * perStep;
    windowStart = now;
    const memory = tf.memory();
    const steps = pending.splice(0);
    tf.dispose(steps.map((p) => p.loss));
    steps.forEach((p, i) => {
      if (!Number.isFinite(values[i])) {
        throw new LesionError(
          'diverged',
          `${stage}: the loss became ${values[i]} at step ${p.step}; the run stopped, and its latest checkpoint (saved only after finite losses) is the last good one`,
        );
      }
      emit({
        type: 'step',
        stage,
        epoch: p.epoch + 1,
        step: p.step,
        totalSteps,
        loss: values[i],
        imagesPerSecond: B / perStep,
        etaSeconds: (totalSteps - p.step) * secondsPerStep,
        numTensors: memory.numTensors,
        numBytes: memory.numBytes,
        ...(p.dispatches === undefined ? {} : { dispatches: p.dispatches, issueMs: p.issueMs }),
      });
    });
  };

  const save = async (kind: 'latest' | 'best'): Promise<void> => {
    step.sync();
    if (!(await weightsAreFinite(model))) {
      throw new LesionError(
        'diverged',
        `${stage}: the weights became non-finite by step ${position.step}; the run stopped, and its latest checkpoint (saved only with finite losses and weights) is the last good one`,
      );
    }
    const state = optimizer.state();
    const bytes = await checkpoints.save(kind, model, state, position);
    tf.dispose(state.filter((s) => s.name === 'iterations').map((s) => s.tensor));
    if (kind === 'latest') latestStep = position.step;
    emit({ type: 'checkpoint', stage, epoch: epochOfStep(position), step: position.step, kind, bytes });
  };

  const runEpochs = async (): Promise<void> => {
    for (let epoch = position.epoch; epoch < epochs; epoch++) {
      const epochStart = performance.now();
      const order = new Rng(deriveSeed(card.seed, `${stage}/order/${epoch}`)).shuffle(train.map((_, i) => i));
      for (let s = epoch === position.epoch ? position.stepInEpoch : 0; s < stepsPerEpoch; s++) {
        await control.checkpoint(() => {
          step.sync();
          emit({ type: 'log', message: `${stage}: paused at step ${position.step}` });
        });
        const batch = await assemble(order.slice(s * B, (s + 1) * B).map((i) => train[i]), cache, card, `${stage}/${epoch}/${s}`);
        if (!batch) {
          emit({ type: 'warning', message: `${stage}: step ${position.step + 1} skipped, none of its images could be read` });
        } else {
          setDropoutSeed(model, deriveSeed(card.seed, `${stage}/dropout/${epoch}/${s}`));
          // Counted per step, not per stage: a lost device gives the stage a new backend object.
          const counter = backendOps().countDispatches?.();
          let loss: tf.Scalar;
          const issued = performance.now();
          try {
            loss = step.run({ ...batch, size, batchSize: B }, learningRateScale(card.train, position.step, totalSteps, stepsPerEpoch), recompute);
          } finally {
            counter?.detach();
          }
          const issueMs = performance.now() - issued;
          pending.push({ step: position.step + 1, epoch, loss, ...(counter ? { dispatches: counter.take().total, issueMs } : {}) });
        }
        position = { ...position, epoch, stepInEpoch: s + 1, step: position.step + 1 };
        if (pending.length >= readEverySteps) await flush();
        if (checkpointAfterStep(position, stepsPerEpoch, checkpointEverySteps)) {
          await flush();
          await save('latest');
        }
      }
      await flush();

      let ema = position.ema;
      let best = false;
      let validation: MetricSummary | null = null;
      if (val.length > 0) {
        step.sync();
        validation = summary((await evaluate(model, val, cache, { ...readoutOf(card), batchSize: B })).overall);
        const metric = validation.paperMIoU;
        ema = ema === null ? metric : emaSmoothing * ema + (1 - emaSmoothing) * metric;
      }
      // Without validation images, the latest epoch is the best one known.
      best = ema === null || position.bestEma === null || ema > position.bestEma;
      position = {
        ...position,
        epoch: epoch + 1,
        stepInEpoch: 0,
        ema,
        bestEma: best ? ema : position.bestEma,
        bestEpoch: best ? epoch + 1 : position.bestEpoch,
        bestValidation: best ? validation : position.bestValidation,
        lastValidation: validation,
      };
      if (best) await save('best');
      await save('latest');
      emit({
        type: 'epoch',
        stage,
        epoch: epoch + 1,
        epochs,
        metrics: validation ?? emptySummary(),
        ema: ema ?? Number.NaN,
        best,
        seconds: (performance.now() - epochStart) / 1000,
      });
    }
  };

  try {
    for (;;) {
      try {
        await runEpochs();
        break;
      } catch (error) {
        if (!isResourceExhausted(error) || B === 1) throw error;
        // The step that failed changed no weight: go on from the last completed one with half the batch.
        disposeAbandonedTape();
        step.reset();
        tf.dispose(pending.splice(0).map((p) => p.loss));
        const half = Math.floor(B / 2);
        const done = position.stepInEpoch * B;
        emit({ type: 'warning', message: `${stage}: the device ran out of memory at batch size ${B} (${(error as Error).message}); continuing with batch size ${half}` });
        setBatch(half);
        const stepInEpoch = Math.floor(done / B);
        position = { ...position, stepInEpoch, step: position.epoch * stepsPerEpoch + stepInEpoch, batchSize: B };
        await save('latest');
      }
    }
  } catch (error) {
    tf.dispose(pending.splice(0).map((p) => p.loss));
    if (error instanceof CancelledError && latestStep !== position.step) await save('latest');
    throw error;
  } finally {
    step.dispose();
    optimizer.dispose();
  }
  return {
    bestEpoch: position.bestEpoch,
    bestEma: position.bestEma,
    bestValidation: position.bestValidation ?? null,
    lastEpoch: position.epoch,
    lastValidation: position.lastValidation ?? null,
  };
}

/**
 * A step that failed inside tf.variableGrads leaves the tensors its tape saved
 * for the backward pass (kept, so no tidy frees them) on the engine, and the
 * next step's tape only drops the reference: at 256 px batch 10 on wasm,
 * 3.97 GiB of the 4 GiB heap that the smaller batch then needed.
 */
function disposeAbandonedTape(): void {
  const state = (tf.engine() as unknown as { state: { activeTape: { saved?: tf.Tensor[] }[] | null } }).state;
  for (const node of state.activeTape ?? []) tf.dispose(node.saved ?? []);
  state.activeTape = null;
}

function emptySummary() {
  return { paperMIoU: Number.NaN, pooledMIoU: Number.NaN, lesionIoU: Number.NaN, dice: Number.NaN, thresholdedJaccard: Number.NaN, images: 0 };
}

/**
 * Loads and noises one batch. An unreadable image is replaced by another of
 * the same batch, so batch shapes stay fixed; undefined if none can be read.
 */
async function assemble(
  items: TrainItem[],
  cache: PixelCache,
  card: RunCard,
  label: string,
): Promise<{ x: Float32Array; y: Float32Array } | undefined> {
  const loaded = await Promise.all(items.map((item) => cache.get(item)));
  const readable = loaded.filter((p) => p !== undefined);
  if (readable.length === 0) return undefined;
  const out = { width: card.model.inputSize, height: card.model.inputSize };
  const images: RgbImage[] = [];
  const masks: BinaryMask[] = [];
  loaded.forEach((pixels, k) => {
    const source = pixels ?? readable[k % readable.length];
    const rng = new Rng(deriveSeed(card.seed, `${label}/noise/${k}`));
    const noised = applyNoise(source.image, source.mask, card.noise, rng, out);
    images.push(noised.image);
    masks.push(noised.mask!);
  });
  return { x: imagesToBatch(images), y: masksToBatch(masks) };
}
