/**
 * SGD and Adam as one kernel per variable, writing the weight and its state,
 * where tfjs ran four to eight; SGD with momentum two variables a kernel.
 */
import type * as tf from '@tensorflow/tfjs';
import { type OwnProgram, runOwnTensors } from './own-dispatch.ts';
import { flatOwn } from './programs.ts';

/**
 * Runs `program` into new tensors that `targets` then take. Writing into the
 * variables' own buffers would save no dispatch and is unsafe in tfjs-webgpu:
 * a clone shares the buffer, and a read caches the values on the CPU, which a
 * write under it would leave stale.
 */
function update(targets: tf.Variable[], program: OwnProgram, inputs: tf.Tensor[], uniforms: number[]): void {
  runOwnTensors(program, inputs, uniforms).forEach((next, i) => {
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
  o: { lr: number; momentum: number; weightDecay: number; first: boolean },
): void {
  const fields: OwnProgram['uniforms'] = [['lr', 'f32'], ['momentum', 'f32'], ['wd', 'f32'], ['first', 'f32']];
  const hyper = [w.size, o.lr, o.momentum, o.weightDecay, o.first ? 1 : 0];
  if (!buf) {
    update([w], flatOwn('lesion_sgd', ['nextW'], ['g', 'w'], w.shape, fields, `nextW[index] = w[index] - u.lr * (g[index] + u.wd * w[index]);`), [g, w], hyper);
    return;
  }
  const program = flatOwn(
    'lesion_sgd_momentum',
    ['nextW', 'nextBuf'],
    ['g', 'w', 'buf'],
    w.shape,
    fields,
    `let grad = g[index] + u.wd * w[index];
          let step = select(u.momentum * buf[index] + grad, grad, u.first > 0.5);
          nextBuf[index] = step;
          nextW[index] = w[index] - u.lr * step;`,
  );
  update([w, buf], program, [g, w, buf], hyper);
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
      [['lr', 'f32'], ['momentum', 'f32'], ['wd', 'f32'], ['first', 'f32'], ['n1', 'i32']],
      `if (index < u.n1) {
            let grad = g1[index] + u.wd * w1[index];
            let step = select(u.momentum * buf[index] + grad, grad, u.first > 0.5);
            nextBuf[index] = step;
            nextW1[index] = w1[index] - u.lr * step;
          } else {
            let j = index - u.n1;
            let grad = g2[j] + u.wd * w2[j];
            let step = select(u.momentum * buf[index] + grad, grad, u.first > 0.5);
            nextBuf[index] = step;
            nextW2[j] = w2[j] - u.lr * step;
          }`,
    ),
    outputs: [['nextW1', w1.shape], ['nextW2', w2.shape], ['nextBuf', packed.shape]],
  };
  update([w1, w2, packed], program, [g1, w1, g2, w2, packed], [packed.size, o.lr, o.momentum, o.weightDecay, o.first ? 1 : 0, w1.size]);
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
  o: { lr: number; beta1: number; beta2: number; epsilon: number; weightDecay: number; correction1: number; correction2: number },
): void {
  const program = flatOwn(
    'lesion_adam',
    ['nextW', 'nextM', 'nextV'],
    ['g', 'w', 'm', 'v'],
    w.shape,
    [['stepSize', 'f32'], ['beta1', 'f32'], ['oneMinusBeta1', 'f32'], ['beta2', 'f32'], ['oneMinusBeta2', 'f32'], ['eps', 'f32'], ['wd', 'f32'], ['sqrtCorrection2', 'f32']],
    `let grad = g[index] + u.wd * w[index];
          let mNext = u.beta1 * m[index] + u.oneMinusBeta1 * grad;
          let vNext = u.beta2 * v[index] + u.oneMinusBeta2 * (grad * grad);
          nextM[index] = mNext;
          nextV[index] = vNext;
          let denom = sqrt(vNext) / u.sqrtCorrection2 + u.eps;
          nextW[index] = w[index] - u.stepSize * mNext / denom;`,
  );
  const hyper = [w.size, o.lr / o.correction1, o.beta1, 1 - o.beta1, o.beta2, 1 - o.beta2, o.epsilon, o.weightDecay, Math.sqrt(o.correction2)];
  update([w, m, v], program, [g, w, m, v], hyper);
}
