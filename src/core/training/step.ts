/**
 * One training step: forward, loss, gradients, optimiser update, the loss
 * returned as a tensor on the device (read back by the caller, rarely). The
 * training loop and the bench run this same step. Where the backend can
 * replay a recorded step (WebGPU, step-graph.ts), steps after the first few
 * of a shape run from the recording; `sync` then brings the model's
 * variables up to date and must precede anything that reads the model.
 */
import * as tf from '@tensorflow/tfjs';
import { type BackendOps, backendOps } from '../backends/ops.ts';
import type { StepReplay } from '../backends/webgpu/step-graph.ts';
import { dropoutStepInputs } from '../model/dropout.ts';
import { trainingForward } from '../model/recompute.ts';
import type { LossFn } from './losses.ts';
import type { Optimizer, Param } from './optim.ts';

export interface StepParts {
  model: tf.LayersModel;
  params: Param[];
  optimizer: Optimizer;
  lossFn: LossFn;
}

export interface StepBatch {
  x: Float32Array;
  y: Float32Array;
  /** Images in the batch, and their side in pixels. */
  size: number;
  batchSize: number;
}

export class TrainingStep {
  private readonly replay: StepReplay | undefined;
  /** The backend's optimiser step block, which a replayed step writes (read once: the stage's backend is fixed). */
  private readonly stepBlockOf: BackendOps['optimizerStepBlock'];
  /** The model's own step inputs beside the batch: its dropout layers' masks. */
  private readonly modelInputs: Map<string, () => Float32Array | undefined>;

  constructor(
    private readonly parts: StepParts,
    log?: (message: string) => void,
  ) {
    const ops = backendOps();
    this.replay = ops.stepReplay?.(log);
    this.stepBlockOf = ops.optimizerStepBlock;
    this.modelInputs = dropoutStepInputs(parts.model);
  }

  /** Runs one step at lrScale times the configured rate; recompute: the encoder's blocks recomputed in the backward pass. */
  run(batch: StepBatch, lrScale: number, recompute = false): tf.Scalar {
    const { model, params, optimizer, lossFn } = this.parts;
    const { batchSize: B, size } = batch;
    const shapes = `${B}x${size}${recompute ? ' recompute' : ''}`;
    const inputs = (key: string): Float32Array => {
      const values = key === 'x' ? batch.x : key === 'y' ? batch.y : this.modelInputs.get(key)?.();
      if (!values) throw new Error(`a replayed step asked for an input it cannot make: ${key}`);
      return values;
    };
    const replayed = this.replay?.replay(inputs, shapes, this.stepBlockOf?.(optimizer.stepOptions(lrScale)) ?? []);
    if (replayed) {
      optimizer.advance();
      return replayed;
    }
    return tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [B, size, size, 3]);
      const y = tf.tensor4d(batch.y, [B, size, size, 1]);
      const variables = params.map((p) => p.variable);
      const step = () => {
        const { value, grads } = tf.variableGrads(() => lossFn(trainingForward(model, x, recompute), y), variables);
        optimizer.apply(params, variables.map((v) => grads[v.name]), lrScale);
        return value;
      };
      return this.replay ? this.replay.record(new Map([['x', x], ['y', y]]), shapes, step) : step();
    });
  }

  /** The model's variables made current (a replayed step leaves them behind until then). */
  sync(): void {
    this.replay?.sync();
  }

  /** Syncs and forgets any recording: the batch size changes, or the stage ends. */
  reset(): void {
    this.replay?.drop();
  }

  dispose(): void {
    this.replay?.dispose();
  }
}
