/**
 * The pooled soft Dice loss (training/losses.ts, softDiceLoss) in two kernels
 * where tfjs's ops took about thirty: a dispatch costs more than its
 * arithmetic, and the loss runs every step.
 */
import * as tf from '@tensorflow/tfjs';
import { type OwnProgram, runOwnTensors } from './own-dispatch.ts';
import { flatOwn, THREADS } from './programs.ts';

/**
 * One workgroup sums p * t, p and t over the batch (p = sigmoid(logits)) in a
 * fixed order, so the loss does not vary between runs, and writes the loss
 * with the three sums; the gradient is one element-wise kernel from those
 * sums, the derivative of softDiceLoss's ops as tfjs differentiates them
 * (max(C, eps) passes the gradient where C >= eps, the sigmoid's is p * (1 - p)).
 */
export function diceLoss(logits: tf.Tensor, targets: tf.Tensor, eps: number): tf.Scalar {
  const forward: OwnProgram = {
    label: 'lesion_dice_loss',
    outputs: [['loss', []], ['sums', [3]]],
    inputs: ['x', 't'],
    uniforms: [['size', 'i32'], ['eps', 'f32']],
    workgroupSize: THREADS,
    workgroups: [1, 1, 1],
    body: `
      var<workgroup> partial : array<vec3<f32>, ${THREADS}>;

      fn main(index : i32, lid : i32, wid : vec3<i32>) {
        var acc = vec3<f32>(0.0);
        for (var i = lid; i < u.size; i = i + ${THREADS}) {
          let p = 1.0 / (1.0 + exp(-x[i]));
          acc = acc + vec3<f32>(p * t[i], p, t[i]);
        }
        partial[lid] = acc;
        workgroupBarrier();
        for (var stride = ${THREADS / 2}; stride >= 1; stride = stride / 2) {
          if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
          }
          workgroupBarrier();
        }
        if (lid == 0) {
          let total = partial[0];
          sums[0] = total.x;
          sums[1] = total.y;
          sums[2] = total.z;
          let score = 2.0 * total.x / max(total.y + total.z, u.eps);
          loss[0] = select(0.0, 1.0 - score, total.z > 0.0);
        }
      }`,
  };
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const [loss, sums] = runOwnTensors(forward, [x, targets], [x.size, eps]);
    save([x, sums]);
    return {
      value: loss as tf.Scalar,
      gradFunc: (dy: tf.Tensor, [xs, saved]: tf.Tensor[]) => {
        const program = flatOwn(
          'lesion_dice_loss_grad',
          ['dx'],
          ['dy', 'x', 't', 'sums'],
          xs.shape,
          [['eps', 'f32']],
          `let cardinality = sums[1] + sums[2];
          let denominator = max(cardinality, u.eps);
          let through = select(0.0, 1.0, cardinality >= u.eps);
          let p = 1.0 / (1.0 + exp(-x[index]));
          let dScore = 2.0 * t[index] / denominator - 2.0 * sums[0] * through / (denominator * denominator);
          dx[index] = select(0.0, -dy[0] * dScore * p * (1.0 - p), sums[2] > 0.0);`,
        );
        return runOwnTensors(program, [dy, xs, targets, saved], [xs.size, eps])[0];
      },
    };
  });
  return op(logits);
}
