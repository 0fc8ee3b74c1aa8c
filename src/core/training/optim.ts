/**
 * Optimisers with PyTorch's semantics (the paper's code is PyTorch), whose
 * state is plain named tensors so a checkpoint can hold it and a resumed run
 * continues exactly where it stopped.
 */
import * as tf from '@tensorflow/tfjs';
import { backendOps } from '../backends/ops.ts';
import type { OptimizerConfig, TrainConfig } from '../config.ts';

export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

/** A trainable variable under a name that is stable across model rebuilds. */
export interface Param {
  key: string;
  variable: tf.Variable;
}

export interface Optimizer {
  /** Applies one update at lrScale times the configured rate; grads[i] belongs to params[i]; disposes the gradients. */
  apply(params: Param[], grads: tf.Tensor[], lrScale?: number): void;
  state(): NamedTensor[];
  /** Replaces the state with copies of the given tensors. */
  setState(state: NamedTensor[]): void;
  dispose(): void;
}

abstract class SlottedOptimizer implements Optimizer {
  protected slots = new Map<string, tf.Variable>();
  protected iterations = 0;

  abstract apply(params: Param[], grads: tf.Tensor[], lrScale?: number): void;

  protected slot(name: string, like: tf.Tensor): tf.Variable {
    let v = this.slots.get(name);
    if (!v) {
      v = tf.variable(tf.zerosLike(like), false);
      this.slots.set(name, v);
    }
    return v;
  }

  state(): NamedTensor[] {
    const out: NamedTensor[] = [{ name: 'iterations', tensor: tf.scalar(this.iterations) }];
    for (const [name, v] of this.slots) out.push({ name, tensor: v });
    return out;
  }

  setState(state: NamedTensor[]): void {
    this.dispose();
    for (const { name, tensor } of state) {
      if (name === 'iterations') this.iterations = tensor.dataSync()[0];
      else this.slots.set(name, tf.variable(tensor.clone(), false));
    }
  }

  dispose(): void {
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
    this.iterations = 0;
  }
}

/** torch.optim.SGD: g += wd * w; buf = momentum * buf + g; w -= lr * buf. */
export class Sgd extends SlottedOptimizer {
  constructor(private readonly config: Extract<OptimizerConfig, { kind: 'sgd' }>) {
    super();
  }

  apply(params: Param[], grads: tf.Tensor[], lrScale = 1): void {
    const { momentum, weightDecay } = this.config;
    const lr = this.config.lr * lrScale;
    tf.tidy(() => {
      const ops = backendOps();
      const o = { lr, momentum, weightDecay, first: this.iterations === 0 };
      if (momentum > 0 && ops.sgdMomentumStep) {
        const step = ops.sgdMomentumStep;
        params.forEach(({ key, variable: v }, i) => step(v, grads[i], this.slot(`${key}/momentum`, v), o));
        return;
      }
      if (momentum <= 0 && ops.sgdStep) {
        const step = ops.sgdStep;
        params.forEach(({ variable: v }, i) => step(v, grads[i], o));
        return;
      }
      params.forEach(({ key, variable: v }, i) => {
        const g = weightDecay > 0 ? tf.add(grads[i], tf.mul(v, weightDecay)) : grads[i];
        let step = g;
        if (momentum > 0) {
          const buf = this.slot(`${key}/momentum`, v);
          // PyTorch's first step initialises the buffer with the gradient itself.
          const next = this.iterations === 0 ? g : tf.add(tf.mul(buf, momentum), g);
          buf.assign(next);
          step = next;
        }
        v.assign(tf.sub(v, tf.mul(step, lr)));
      });
    });
    this.iterations++;
    tf.dispose(grads);
  }
}

/** torch.optim.Adam (L2 weight decay added to the gradient, bias-corrected moments). */
export class Adam extends SlottedOptimizer {
  constructor(private readonly config: Extract<OptimizerConfig, { kind: 'adam' }>) {
    super();
  }

  apply(params: Param[], grads: tf.Tensor[], lrScale = 1): void {
    const { beta1, beta2, epsilon, weightDecay } = this.config;
    const lr = this.config.lr * lrScale;
    const t = this.iterations + 1;
    const correction1 = 1 - beta1 ** t;
    const correction2 = 1 - beta2 ** t;
    tf.tidy(() => {
      const step = backendOps().adamStep;
      if (step) {
        const o = { lr, beta1, beta2, epsilon, weightDecay, correction1, correction2 };
        params.forEach(({ key, variable: v }, i) => step(v, grads[i], this.slot(`${key}/m`, v), this.slot(`${key}/v`, v), o));
        return;
      }
      params.forEach(({ key, variable: v }, i) => {
        const g = weightDecay > 0 ? tf.add(grads[i], tf.mul(v, weightDecay)) : grads[i];
        const m = this.slot(`${key}/m`, v);
        const s = this.slot(`${key}/v`, v);
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        s.assign(tf.add(tf.mul(s, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const denom = tf.add(tf.div(tf.sqrt(s), Math.sqrt(correction2)), epsilon);
        v.assign(tf.sub(v, tf.mul(tf.div(m, denom), lr / correction1)));
      });
    });
    this.iterations = t;
    tf.dispose(grads);
  }
}

/**
 * The factor on the configured learning rate for the stage's step `step`
 * (0-based) of `totalSteps`: linear warm-up over the first warmupEpochs, then
 * constant or DeepLabV3's poly decay (power 0.9). A function of the step
 * alone, so a resumed stage takes exactly the rates of an unbroken one.
 */
export function learningRateScale(train: Pick<TrainConfig, 'lrSchedule' | 'warmupEpochs'>, step: number, totalSteps: number, stepsPerEpoch: number): number {
  const warmup = Math.min(Math.round(train.warmupEpochs * stepsPerEpoch), totalSteps - 1);
  if (step < warmup) return (step + 1) / (warmup + 1);
  if (train.lrSchedule === 'constant') return 1;
  return (1 - (step - warmup) / (totalSteps - warmup)) ** 0.9;
}

export function createOptimizer(config: OptimizerConfig): Optimizer {
  return config.kind === 'sgd' ? new Sgd(config) : new Adam(config);
}
