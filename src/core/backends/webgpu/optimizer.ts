/** SGD and Adam as one kernel per variable, writing the weight and its state, where tfjs ran four to eight. */
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
