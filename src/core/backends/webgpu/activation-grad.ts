import type * as tf from '@tensorflow/tfjs';
import { replaceGradient } from '../kernel-util.ts';
import { onWebGpu } from './levers.ts';
import { flatProgram, runProgram } from './programs.ts';

/**
 * ReLU, clip and ReLU6 gradients in one kernel each: tfjs builds them from
 * two (Step, Multiply), five (two comparisons, LogicalAnd, ZerosLike, Select)
 * and five (LessEqual, Step, two casts, Multiply) element-wise kernels. Same
 * rule: ReLU passes dy where x > 0, the clip where lo <= x <= hi, ReLU6 (above)
 * where lo < x <= hi.
 */
function activationGrad(dy: tf.Tensor, x: tf.Tensor, range?: { lo: number; hi: number; above?: boolean }): tf.Tensor {
  if (!range) return runProgram(flatProgram('lesion_relu_grad', ['dy', 'x'], x.shape, '', 'setOutputAtIndex(index, select(0.0, dy[index], x[index] > 0.0));'), [dy, x], []);
  const program = flatProgram(
    range.above ? 'lesion_relu6_grad' : 'lesion_clip_grad',
    ['dy', 'x'],
    x.shape,
    'lo : f32, hi : f32,',
    `setOutputAtIndex(index, select(0.0, dy[index], x[index] ${range.above ? '>' : '>='} uniforms.lo && x[index] <= uniforms.hi));`,
  );
  return runProgram(program, [dy, x], [
    { type: 'float32', data: [range.lo] },
    { type: 'float32', data: [range.hi] },
  ]);
}

/** ReLU's, the clip's and ReLU6's gradients through ours while webgpu is active and the 'activation-grad' lever is on. */
export function registerActivationGradients(): void {
  const applies = onWebGpu('activation-grad');
  replaceGradient('Relu', applies, (dy, x) => activationGrad(dy, x));
  replaceGradient('ClipByValue', applies, (dy, x, a) => activationGrad(dy, x, { lo: a.clipValueMin as number, hi: a.clipValueMax as number }));
  replaceGradient('Relu6', applies, (dy, x) => activationGrad(dy, x, { lo: 0, hi: 6, above: true }));
}
