/**
 * Shared by the model and backend tests: tiny model configs, seeded weights,
 * and running a computation on one backend at a time. tfjs misbehaves when
 * the backend changes under live tensors, so every cross-backend comparison
 * builds its own model per backend, reads results back as typed arrays, and
 * disposes everything before the next switch.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { softDiceLoss } from '../../src/core/training/losses.ts';
import { buildDeepLabV3, type EncoderName, type ModelConfig } from '../../src/core/model/deeplab.ts';
import { Rng } from '../../src/core/random.ts';

export { datasetsRoot, repoRoot } from './datasets.ts';

/** Small enough for seconds per step on the cpu backend; rate 12 exceeds the 8x8 feature map. */
export function tinyConfig(encoder: EncoderName, overrides: Partial<ModelConfig> = {}): ModelConfig {
  return {
    encoder,
    width: 0.25,
    outputStride: 8,
    atrousRates: [2, 4, 12],
    asppChannels: 16,
    dropout: 0,
    inputSize: 64,
    init: 'random',
    inputRange: 'unit',
    ...overrides,
  };
}

/**
 * Values for every weight of `model`, in model.weights order, from a seed:
 * He-scaled kernels, and batch-norm parameters and statistics away from their
 * identity initialisation so that a wrong mapping of them would show.
 */
export function seededWeights(model: tf.LayersModel, seed: number): Float32Array[] {
  const rng = new Rng(seed);
  return model.weights.map((w) => {
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    const param = w.originalName.slice(w.originalName.lastIndexOf('/') + 1);
    const values = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      switch (param) {
        case 'gamma':
        case 'moving_variance':
          values[i] = rng.uniform(0.5, 1.5);
          break;
        case 'beta':
        case 'moving_mean':
        case 'bias':
          values[i] = rng.uniform(-0.2, 0.2);
          break;
        default: {
          // Depthwise kernels [k, k, c, 1] see k*k inputs, others k*k*ci.
          const fanIn = param === 'depthwise_kernel' ? shape[0] * shape[1] : size / shape[shape.length - 1];
          values[i] = rng.normal() * Math.sqrt(2 / fanIn);
        }
      }
    }
    return values;
  });
}

export function setWeightValues(model: tf.LayersModel, values: Float32Array[]): void {
  tf.tidy(() => model.setWeights(values.map((v, i) => tf.tensor(v, model.weights[i].shape as number[]))));
}

/** Deterministic inputs in [0, 1) and a blob-shaped 0/1 target, as typed arrays. */
export function seededBatch(config: ModelConfig, batch: number, seed: number): { x: Float32Array; y: Float32Array } {
  const rng = new Rng(seed);
  const s = config.inputSize;
  const x = Float32Array.from({ length: batch * s * s * 3 }, () => rng.next());
  const y = new Float32Array(batch * s * s);
  for (let b = 0; b < batch; b++) {
    const cy = rng.uniform(0.3, 0.7) * s;
    const cx = rng.uniform(0.3, 0.7) * s;
    const r = rng.uniform(0.15, 0.3) * s;
    for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) y[(b * s + i) * s + j] = (i - cy) ** 2 + (j - cx) ** 2 < r * r ? 1 : 0;
  }
  return { x, y };
}

export interface StepResult {
  logits: Float32Array;
  loss: number;
  /** d loss / d weight for every trainable weight, in model.trainableWeights order. */
  grads: Float32Array[];
  names: string[];
  /**
   * How close any ReLU input came to a kink (0, or the cap of ReLU6). Two
   * backends' gradients are comparable only where the network is
   * differentiable: a unit within float noise of a kink may take either side
   * on either backend, and then both gradients are right.
   */
  kinkMargin: number;
}

/**
 * One training-mode forward and backward pass of a freshly built 'train'
 * model with the given weights, on `backend`. The model is disposed after.
 */
export async function trainingStep(
  backend: string,
  config: ModelConfig,
  weights: Float32Array[],
  batch: { x: Float32Array; y: Float32Array },
  loss: (logits: tf.Tensor, targets: tf.Tensor) => tf.Scalar,
): Promise<StepResult> {
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} did not initialise`);
  const model = buildDeepLabV3(config, 'train', 0);
  const relus = model.layers.filter((layer) => layer.getClassName() === 'ReLU');
  // Same layers and variables, with every ReLU input as an extra output.
  const probed = tf.model({ inputs: model.inputs, outputs: [model.outputs[0], ...relus.map((l) => l.input as tf.SymbolicTensor)] });
  try {
    setWeightValues(model, weights);
    const s = config.inputSize;
    const n = batch.x.length / (s * s * 3);
    const trainable = model.trainableWeights.map((w) => w.read() as tf.Variable);
    let outputs: tf.Tensor[] = [];
    const { value, grads } = tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [n, s, s, 3]);
      const y = tf.tensor4d(batch.y, [n, s, s, 1]);
      const result = tf.variableGrads(() => {
        // Kept: the gradient computation disposes everything but its result.
        outputs = (probed.apply(x, { training: true }) as tf.Tensor[]).map((t) => tf.keep(t));
        return loss(outputs[0], y);
      }, trainable);
      return { value: result.value, grads: trainable.map((v) => result.grads[v.name]) };
    });
    // Asynchronous reads: webgpu has no synchronous read outside a browser.
    try {
      let kinkMargin = Infinity;
      for (const [i, layer] of relus.entries()) {
        const cap = layer.getConfig().maxValue as number | null | undefined;
        for (const v of await outputs[i + 1].data()) {
          kinkMargin = Math.min(kinkMargin, Math.abs(v), cap == null ? Infinity : Math.abs(v - cap));
        }
      }
      return {
        logits: (await outputs[0].data()) as Float32Array,
        loss: (await value.data())[0],
        grads: (await Promise.all(grads.map((g) => g.data()))) as Float32Array[],
        names: model.trainableWeights.map((w) => w.originalName),
        kinkMargin,
      };
    } finally {
      tf.dispose([...outputs, value, ...grads]);
    }
  } finally {
    model.dispose();
  }
}

/**
 * max |a - b| over max |b| (or over `floor` when larger): one number per
 * tensor, insensitive to its scale. The floor keeps gradients that are zero in
 * exact arithmetic (float noise on both sides) from counting as mismatches.
 */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-12): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} differs from ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, floor);
}

/**
 * One training step of a tiny DeepLabV3 on `backend` against the same step on
 * cpu: same logits (1e-4), loss (1e-5) and gradient for every trainable weight
 * (1e-3 relative), and no tensor leaked. Gradients pass through ~50 layers of
 * float32 and batch statistics (a 1e-6 change of the input moves them by ~1e-4
 * on one backend alone); some are zero in exact arithmetic (a batch-norm
 * shift that only feeds another training-mode batch norm): a floor of 1e-3 of
 * the largest gradient keeps their noise out.
 */
export async function expectStepMatchesCpu(backend: string, encoder: EncoderName, seed: number): Promise<void> {
  const config = tinyConfig(encoder, { inputSize: 32 });
  await tf.setBackend('cpu');
  const shape = buildDeepLabV3(config, 'train', seed);
  const weights = seededWeights(shape, seed);
  shape.dispose();
  const batch = seededBatch(config, 2, seed);

  const cpu = await trainingStep('cpu', config, weights, batch, softDiceLoss);
  const tensorsBefore = tf.memory().numTensors;
  const other = await trainingStep(backend, config, weights, batch, softDiceLoss);
  expect(tf.memory().numTensors, `the ${backend} step leaks no tensor`).toBe(tensorsBefore);

  expect(Math.min(cpu.kinkMargin, other.kinkMargin), 'seed puts a ReLU input at a kink; pick another').toBeGreaterThan(1e-5);
  expect(other.names).toEqual(cpu.names);
  expect(relativeError(other.logits, cpu.logits)).toBeLessThan(1e-4);
  expect(Math.abs(other.loss - cpu.loss)).toBeLessThan(1e-5);
  const largest = Math.max(...cpu.grads.map((g) => g.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
  const worst = cpu.grads
    .map((g, i) => ({ name: cpu.names[i], error: relativeError(other.grads[i], g, 1e-3 * largest) }))
    .reduce((a, b) => (b.error > a.error ? b : a));
  expect(worst.error, `worst: ${worst.name}`).toBeLessThan(1e-3);
}

