/**
 * Optimisers with PyTorch's semantics (the paper's code is PyTorch), whose
 * state is plain named tensors so a checkpoint can hold it and a resumed run
 * continues exactly where it stopped.
 */
import * as tf from '@tensorflow/tfjs';
import { type AdamOptions, type BackendOps, backendOps, type SgdOptions } from '../backends/ops.ts';
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
  /** The hyper-parameters `apply` would use for the next step at lrScale. */
  stepOptions(lrScale?: number): SgdOptions | AdamOptions;
  /** Counts a step that ran elsewhere with stepOptions's values (a replayed WebGPU step). */
  advance(): void;
  state(): NamedTensor[];
  /** Replaces the state with copies of the given tensors. */
  setState(state: NamedTensor[]): void;
  dispose(): void;
}

abstract class SlottedOptimizer implements Optimizer {
  protected slots = new Map<string, tf.Variable>();
  protected iterations = 0;

  abstract apply(params: Param[], grads: tf.Tensor[], lrScale?: number): void;
  abstract stepOptions(lrScale?: number): SgdOptions | AdamOptions;

  advance(): void {
    this.iterations++;
  }

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
      // The clone only seeds the variable: left alive, it would hold the values after the variable's disposal.
      else this.slots.set(name, tf.tidy(() => tf.variable(tensor.clone(), false)));
    }
  }

  dispose(): void {
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
    this.iterations = 0;
  }
}

/** Two parameters' momentum buffers in one tensor, for a backend's sgdMomentumPairStep. */
interface PackedPair {
  keys: [string, string];
  variables: [tf.Variable, tf.Variable];
  buffer: tf.Variable;
}

/**
 * torch.optim.SGD: g += wd * w; buf = momentum * buf + g; w -= lr * buf.
 * Where the backend steps parameters two at a time (sgdMomentumPairStep),
 * their buffers are packed by pair; everywhere else, and in state(), every
 * parameter has a buffer of its own, so checkpoints do not depend on the
 * backend that wrote them.
 */
export class Sgd extends SlottedOptimizer {
  /** By the pair's keys, in the order of the parameters. */
  private pairs = new Map<string, PackedPair>();
  /** The per-parameter buffers state() last cut from the pairs: the optimiser's, like its slots, until the next call. */
  private snapshot: tf.Tensor[] = [];

  constructor(private readonly config: Extract<OptimizerConfig, { kind: 'sgd' }>) {
    super();
  }

  stepOptions(lrScale = 1): SgdOptions {
    const { momentum, weightDecay } = this.config;
    return { lr: this.config.lr * lrScale, momentum, weightDecay, first: this.iterations === 0 };
  }

  apply(params: Param[], grads: tf.Tensor[], lrScale = 1): void {
    const o = this.stepOptions(lrScale);
    const { momentum } = o;
    this.dropSnapshot();
    tf.tidy(() => {
      const ops = backendOps();
      const pairStep = momentum > 0 ? ops.sgdMomentumPairStep : undefined;
      if (!pairStep) {
        this.unpackPairs();
        params.forEach((p, i) => this.step(ops, p, grads[i], o));
        return;
      }
      for (let i = 0; i + 1 < params.length; i += 2) {
        pairStep([params[i].variable, params[i + 1].variable], [grads[i], grads[i + 1]], this.pair(params[i], params[i + 1]), o);
      }
      if (params.length % 2 === 1) this.step(ops, params[params.length - 1], grads[params.length - 1], o);
    });
    this.iterations++;
    tf.dispose(grads);
  }

  /** One parameter with a buffer of its own: the backend's kernel where it has one, else tf ops. */
  private step(ops: BackendOps, { key, variable: v }: Param, grad: tf.Tensor, o: SgdOptions): void {
    const { lr, momentum, weightDecay, first } = o;
    if (momentum > 0 && ops.sgdMomentumStep) return ops.sgdMomentumStep(v, grad, this.slot(`${key}/momentum`, v), o);
    if (momentum <= 0 && ops.sgdStep) return ops.sgdStep(v, grad, o);
    const g = weightDecay > 0 ? tf.add(grad, tf.mul(v, weightDecay)) : grad;
    let step = g;
    if (momentum > 0) {
      const buf = this.slot(`${key}/momentum`, v);
      // PyTorch's first step initialises the buffer with the gradient itself.
      const next = first ? g : tf.add(tf.mul(buf, momentum), g);
      buf.assign(next);
      step = next;
    }
    v.assign(tf.sub(v, tf.mul(step, lr)));
  }

  /**
   * The packed buffer of `a` and `b`: kept from the last step, else packed
   * from their own buffers (a resumed state; one that lacks a buffer gets
   * zeros in its place), else zeros (the first step sets it to the gradients).
   */
  private pair(a: Param, b: Param): tf.Variable {
    const id = `${a.key}|${b.key}`;
    const found = this.pairs.get(id);
    if (found) return found.buffer;
    const own = [a, b].map(({ key }) => this.slots.get(`${key}/momentum`));
    const values = own.some(Boolean)
      ? tf.concat([a, b].map(({ variable }, i) => (own[i] ? tf.reshape(own[i], [-1]) : tf.zeros([variable.size]))))
      : tf.zeros([a.variable.size + b.variable.size]);
    for (const { key } of [a, b]) {
      this.slots.get(`${key}/momentum`)?.dispose();
      this.slots.delete(`${key}/momentum`);
    }
    const buffer = tf.variable(values, false);
    this.pairs.set(id, { keys: [a.key, b.key], variables: [a.variable, b.variable], buffer });
    return buffer;
  }

  /** Each pair's buffer cut back into its parameters' own (exact copies). */
  private cutPairs(): [string, tf.Tensor][] {
    return [...this.pairs.values()].flatMap(({ keys, variables, buffer }) => {
      const [a, b] = variables;
      return [
        [`${keys[0]}/momentum`, tf.reshape(tf.slice(buffer, 0, a.size), a.shape)],
        [`${keys[1]}/momentum`, tf.reshape(tf.slice(buffer, a.size, b.size), b.shape)],
      ] as [string, tf.Tensor][];
    });
  }

  /** Back to one buffer per parameter, for the paths that update them one by one. */
  private unpackPairs(): void {
    if (this.pairs.size === 0) return;
    for (const [name, tensor] of this.cutPairs()) this.slots.set(name, tf.variable(tensor, false));
    this.disposePairs();
  }

  private disposePairs(): void {
    for (const { buffer } of this.pairs.values()) buffer.dispose();
    this.pairs.clear();
  }

  private dropSnapshot(): void {
    tf.dispose(this.snapshot);
    this.snapshot = [];
  }

  override state(): NamedTensor[] {
    this.dropSnapshot();
    const cut = tf.tidy(() => this.cutPairs().map(([name, tensor]) => [name, tf.keep(tensor)] as const));
    this.snapshot = cut.map(([, tensor]) => tensor);
    return [...super.state(), ...cut.map(([name, tensor]) => ({ name, tensor }))];
  }

  override dispose(): void {
    this.dropSnapshot();
    this.disposePairs();
    super.dispose();
  }
}

/** torch.optim.Adam (L2 weight decay added to the gradient, bias-corrected moments). */
export class Adam extends SlottedOptimizer {
  constructor(private readonly config: Extract<OptimizerConfig, { kind: 'adam' }>) {
    super();
  }

  stepOptions(lrScale = 1): AdamOptions {
    const { beta1, beta2, epsilon, weightDecay } = this.config;
    const t = this.iterations + 1;
    return { lr: this.config.lr * lrScale, beta1, beta2, epsilon, weightDecay, correction1: 1 - beta1 ** t, correction2: 1 - beta2 ** t };
  }

  apply(params: Param[], grads: tf.Tensor[], lrScale = 1): void {
    const o = this.stepOptions(lrScale);
    const { lr, beta1, beta2, epsilon, weightDecay, correction1, correction2 } = o;
    tf.tidy(() => {
      const step = backendOps().adamStep;
      if (step) {
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
    this.iterations++;
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
