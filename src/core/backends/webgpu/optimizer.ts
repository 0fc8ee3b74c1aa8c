/**
 * SGD and Adam as one kernel per variable, writing the weight and its state,
 * where tfjs ran four to eight; SGD with momentum two variables a kernel.
 * What changes from step to step (the learning rate, PyTorch's first-step
 * rule, Adam's bias corrections) is in the programs' step block, so that a
 * replayed step (step-graph.ts) takes each step's values.
 */
import type * as tf from '@tensorflow/tfjs';
import type { AdamOptions, SgdOptions } from '../optimizer-options.ts';
import { type OwnProgram, runOwnTensors } from './own-dispatch.ts';
import { flatOwn } from './programs.ts';

/** The step block of an optimiser's programs: SGD (lr, first), Adam (lr / correction1, sqrt(correction2)). */
export function optimizerStepBlock(o: SgdOptions | AdamOptions): number[] {
  return 'beta1' in o ? [o.lr / o.correction1, Math.sqrt(o.correction2)] : [o.lr, o.first ? 1 : 0];
}

const stepped = (program: OwnProgram): OwnProgram => ({ ...program, stepBlock: true });

/**
 * Runs `program` into new tensors that `targets` then take. Writing into the
 * variables' own buffers would save no dispatch and is unsafe in tfjs-webgpu:
 * a clone shares the buffer, and a read caches the values on the CPU, which a
 * write under it would leave stale.
 */
function update(targets: tf.Variable[], program: OwnProgram, inputs: tf.Tensor[], uniforms: number[], o: SgdOptions | AdamOptions): void {
  runOwnTensors(stepped(program), inputs, uniforms, optimizerStepBlock(o)).forEach((next, i) => {
    targets[i].assign(next);
    next.dispose();
  });
}

/**
 * torch.optim.SGD on one variable: g' = g + wd * w; buf = first ? g' :
 * momentum * buf + g'; w -= lr * buf. One kernel, writing the weight and its
 * momentum buffer.
 */
export function sgdStep(
  w: tf.Variable,
  g: tf.Tensor,
  buf: tf.Variable | undefined,
  o: SgdOptions,
): void {
  const fields: OwnProgram['uniforms'] = [['momentum', 'f32'], ['wd', 'f32']];
  const hyper = [w.size, o.momentum, o.weightDecay];
  if (!buf) {
    update([w], flatOwn('lesion_sgd', ['nextW'], ['g', 'w'], w.shape, fields, `nextW[index] = w[index] - s.v.x * (g[index] + u.wd * w[index]);`), [g, w], hyper, o);
    return;
  }
  const program = flatOwn(
    'lesion_sgd_momentum',
    ['nextW', 'nextBuf'],
    ['g', 'w', 'buf'],
    w.shape,
    fields,
    `let grad = g[index] + u.wd * w[index];
          let step = select(u.momentum * buf[index] + grad, grad, s.v.y > 0.5);
          nextBuf[index] = step;
          nextW[index] = w[index] - s.v.x * step;`,
  );
  update([w, buf], program, [g, w, buf], hyper, o);
}

/**
 * sgdStep on two variables in one kernel, their momentum buffers packed in
 * one tensor (the first variable's values, then the second's): seven storage
 * buffers, within the eight a stage that tfjs's device allows, where two
 * variables with buffers of their own would take ten. The arithmetic is
 * sgdStep's, element for element.
 */
export function sgdPairStep(
  [w1, w2]: [tf.Variable, tf.Variable],
  [g1, g2]: [tf.Tensor, tf.Tensor],
  packed: tf.Variable,
  o: Parameters<typeof sgdStep>[3],
): void {
  const program: OwnProgram = {
    ...flatOwn(
      'lesion_sgd_momentum_pair',
      [],
      ['g1', 'w1', 'g2', 'w2', 'buf'],
      packed.shape,
      [['momentum', 'f32'], ['wd', 'f32'], ['n1', 'i32']],
      `if (index < u.n1) {
            let grad = g1[index] + u.wd * w1[index];
            let step = select(u.momentum * buf[index] + grad, grad, s.v.y > 0.5);
            nextBuf[index] = step;
            nextW1[index] = w1[index] - s.v.x * step;
          } else {
            let j = index - u.n1;
            let grad = g2[j] + u.wd * w2[j];
            let step = select(u.momentum * buf[index] + grad, grad, s.v.y > 0.5);
            nextBuf[index] = step;
            nextW2[j] = w2[j] - s.v.x * step;
          }`,
    ),
    outputs: [['nextW1', w1.shape], ['nextW2', w2.shape], ['nextBuf', packed.shape]],
  };
  update([w1, w2, packed], program, [g1, w1, g2, w2, packed], [packed.size, o.momentum, o.weightDecay, w1.size], o);
}

/**
 * torch.optim.Adam on one variable (L2 decay in the gradient, bias-corrected
 * moments): one kernel writing the weight and both moments.
 */
export function adamStep(
  w: tf.Variable,
  g: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  o: AdamOptions,
): void {
  const program = flatOwn(
    'lesion_adam',
    ['nextW', 'nextM', 'nextV'],
    ['g', 'w', 'm', 'v'],
    w.shape,
    [['beta1', 'f32'], ['oneMinusBeta1', 'f32'], ['beta2', 'f32'], ['oneMinusBeta2', 'f32'], ['eps', 'f32'], ['wd', 'f32']],
    `let grad = g[index] + u.wd * w[index];
          let mNext = u.beta1 * m[index] + u.oneMinusBeta1 * grad;
          let vNext = u.beta2 * v[index] + u.oneMinusBeta2 * (grad * grad);
          nextM[index] = mNext;
          nextV[index] = vNext;
          let denom = sqrt(vNext) / s.v.y + u.eps;
          nextW[index] = w[index] - s.v.x * mNext / denom;`,
  );
  const hyper = [w.size, o.beta1, 1 - o.beta1, o.beta2, 1 - o.beta2, o.epsilon, o.weightDecay];
  update([w, m, v], program, [g, w, m, v], hyper, o);
}
