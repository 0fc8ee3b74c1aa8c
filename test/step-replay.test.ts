/**
 * The replayed WebGPU training step (backends/webgpu/step-graph.ts) against
 * the same steps run through tfjs: losses, weights, batch-norm running
 * statistics and optimiser state equal to the bit, with dropout, a learning
 * rate that changes every step, SGD and Adam, a batch size that changes
 * mid-stage and a weight assigned from outside between replays.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { DispatchCounter } from '../src/core/backends/webgpu/dispatches.ts';
import { setWebGpuLevers, WEBGPU_LEVERS } from '../src/core/backends/webgpu/levers.ts';
import { paperCard, type OptimizerConfig } from '../src/core/config.ts';
import { buildDeepLabV3, type ModelConfig } from '../src/core/model/deeplab.ts';
import { setDropoutSeed } from '../src/core/model/dropout.ts';
import { Rng } from '../src/core/random.ts';
import { trainableParams } from '../src/core/training/checkpoint.ts';
import { lossByName } from '../src/core/training/losses.ts';
import { createOptimizer } from '../src/core/training/optim.ts';
import { TrainingStep } from '../src/core/training/step.ts';
import { initNodeBackend } from '../src/node/backends.ts';

const started = await initNodeBackend('webgpu');
const unavailable = started.name === 'webgpu' ? undefined : started.reason;

const MODEL: ModelConfig = { ...paperCard().model, width: 0.35, outputStride: 16, atrousRates: [1, 2, 3], asppChannels: 32, dropout: 0.5, inputSize: 32, init: 'random' };
const SGD: OptimizerConfig = { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 1e-4 };
const ADAM: OptimizerConfig = { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 1e-4 };

interface Arm {
  losses: number[];
  /** Every weight of the model (trainable and running statistics), then the optimiser's state, as bytes. */
  state: Uint8Array[];
  replayedSteps: number;
  logs: string[];
}

interface Plan {
  optimizer: OptimizerConfig;
  steps: number;
  /** Batch size at each step. */
  batchAt: (step: number) => number;
  /** Something done to the model from outside before a step. */
  before?: (step: number, model: tf.LayersModel) => void;
}

function batchOf(step: number, n: number): { x: Float32Array; y: Float32Array } {
  const rng = new Rng(1000 + step);
  const s = MODEL.inputSize;
  return {
    x: Float32Array.from({ length: n * s * s * 3 }, () => rng.next()),
    y: Float32Array.from({ length: n * s * s }, (_, i) => (Math.hypot((i % s) - s / 2, (Math.floor(i / s) % s) - s / 2) < s / 4 ? 1 : 0)),
  };
}

async function train(replay: boolean, plan: Plan): Promise<Arm> {
  setWebGpuLevers(replay ? WEBGPU_LEVERS : WEBGPU_LEVERS.filter((l) => l !== 'replay'));
  const model = buildDeepLabV3(MODEL, 'train', 7);
  const params = trainableParams(model);
  const optimizer = createOptimizer(plan.optimizer);
  const logs: string[] = [];
  const step = new TrainingStep({ model, params, optimizer, lossFn: lossByName('dice') }, (m) => logs.push(m));
  const counter = DispatchCounter.attach()!;
  const losses: number[] = [];
  let replayedSteps = 0;
  try {
    for (let s = 0; s < plan.steps; s++) {
      plan.before?.(s, model);
      setDropoutSeed(model, 50 + s);
      const n = plan.batchAt(s);
      const loss = step.run({ ...batchOf(s, n), size: MODEL.inputSize, batchSize: n }, 1 - s / (2 * plan.steps));
      losses.push((await loss.data())[0]);
      loss.dispose();
      if (counter.take().byProgram['replayed step']) replayedSteps++;
    }
    step.sync();
    const tensors = [...model.weights.map((w) => w.read()), ...optimizer.state().map((s) => s.tensor)];
    const state = await Promise.all(tensors.map(async (t) => new Uint8Array((await t.data()).buffer.slice(0))));
    return { losses, state, replayedSteps, logs };
  } finally {
    counter.detach();
    step.dispose();
    optimizer.dispose();
    model.dispose();
  }
}

async function expectSameTraining(plan: Plan): Promise<Arm> {
  const tfjs = await train(false, plan);
  const replayed = await train(true, plan);
  expect(tfjs.replayedSteps).toBe(0);
  expect(replayed.losses).toEqual(tfjs.losses);
  expect(replayed.state.length).toBe(tfjs.state.length);
  replayed.state.forEach((bytes, i) => expect(Buffer.compare(bytes, tfjs.state[i]), `state tensor ${i}`).toBe(0));
  return replayed;
}

describe.skipIf(unavailable !== undefined)('WebGPU step replay', () => {
  afterAll(() => setWebGpuLevers(WEBGPU_LEVERS));

  it('replays SGD steps with dropout and a changing learning rate, bit for bit', async () => {
    const arm = await expectSameTraining({ optimizer: SGD, steps: 6, batchAt: () => 2 });
    // The first step differs from the next (the optimiser makes its state); two that agree are recorded through tfjs, then the graph runs the rest.
    expect(arm.replayedSteps).toBe(3);
    expect(arm.logs).toEqual([]);
  }, 240_000);

  it('replays Adam steps bit for bit', async () => {
    const arm = await expectSameTraining({ optimizer: ADAM, steps: 5, batchAt: () => 2 });
    expect(arm.replayedSteps).toBe(2);
  }, 240_000);

  it('records again after the batch size changes, and takes weights assigned from outside between replays', async () => {
    const arm = await expectSameTraining({
      optimizer: SGD,
      steps: 9,
      batchAt: (s) => (s < 4 ? 2 : 1),
      before: (s, model) => {
        if (s !== 7) return;
        // As a loaded checkpoint would: values that do not depend on the model's current ones.
        const kernel = model.weights.find((w) => w.name.includes('kernel'))!;
        kernel.write(tf.fill(kernel.shape as number[], 0.01));
      },
    });
    // Step 3 replayed at batch 2; 4-5 recorded at batch 1, 6-8 replayed (7 after pulling the weight written before it).
    expect(arm.replayedSteps).toBe(4);
  }, 240_000);
});
