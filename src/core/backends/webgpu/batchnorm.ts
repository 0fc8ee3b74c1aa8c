/**
 * Batch norm in training: statistics with both running averages in one
 * kernel, normalisation in one, and the backward pass in two (gradient sums,
 * input gradient) or, with the 'batchnorm-one-pass' lever, one; tfjs ran
 * moments through transposes and reductions, six kernels for the running
 * averages and about twenty element-wise kernels in its gradient.
 */
import * as tf from '@tensorflow/tfjs';
import { runOwnTensors } from './own-dispatch.ts';
import { channelReduction, flatProgram, runProgram } from './programs.ts';

/** Two-pass per-channel mean and biased variance, as the cpu path computes them, into mean and variance. */
const STATS_BODY = `
        var sum = 0.0;
        if (valid) {
          for (var r = lane; r < u.M; r = r + LANES) { sum = sum + x[r * u.C + c]; }
        }
        let mean = laneSum(lid, sum) / f32(u.M);
        var squares = 0.0;
        if (valid) {
          for (var r = lane; r < u.M; r = r + LANES) {
            let d = x[r * u.C + c] - mean;
            squares = squares + d * d;
          }
        }
        let variance = laneSum(lid, squares) / f32(u.M);`;

/**
 * Channel c's sum(dy) and sum(dy * xhat) over the M rows, the lanes' shares
 * added by laneSum into totalDy and totalDyXhat; mean and rstd are left for
 * what a kernel computes after. The kernel binds dy, x, stats and the
 * uniforms M, C and eps.
 */
const GRAD_SUMS_BODY = `
        var accDy = 0.0;
        var accDyXhat = 0.0;
        var mean = 0.0;
        var rstd = 0.0;
        if (valid) {
          mean = stats[c];
          rstd = inverseSqrt(stats[u.C + c] + u.eps);
          for (var r = lane; r < u.M; r = r + LANES) {
            let i = r * u.C + c;
            accDy = accDy + dy[i];
            accDyXhat = accDyXhat + (x[i] - mean) * rstd * dy[i];
          }
        }
        let totalDy = laneSum(lid, accDy);
        let totalDyXhat = laneSum(lid, accDyXhat);`;

/** Per channel: row 0 the batch mean, row 1 the biased variance (two passes, as the cpu path computes them). */
export function batchNormStats(x: tf.Tensor): tf.Tensor2D {
  const c = x.shape[x.shape.length - 1];
  const program = channelReduction('lesion_bn_stats', [['stats', [2, c]]], ['x'], [['M', 'i32'], ['C', 'i32']], c, `${STATS_BODY}
        if (valid && lane == 0) {
          stats[c] = mean;
          stats[u.C + c] = variance;
        }`);
  return runOwnTensors(program, [x], [x.size / c, c])[0] as tf.Tensor2D;
}

/**
 * batchNormStats, and in the same kernel the layer's running averages moved
 * by them (moving * momentum + batch * factor * (1 - momentum), factor 1 for
 * the mean and M / (M - 1) for the variance), as new tensors: [stats, mean, variance].
 * Complements like 1 - momentum come from JavaScript in double precision, as
 * the cpu path's scalars do: in float32 on the GPU, 1 - 0.999 is off by 1e-5.
 */
export function batchNormStatsAndMoving(x: tf.Tensor, movingMean: tf.Tensor, movingVariance: tf.Tensor, momentum: number, varianceFactor: number): tf.Tensor[] {
  const c = x.shape[x.shape.length - 1];
  const program = channelReduction(
    'lesion_bn_stats_moving',
    [['stats', [2, c]], ['newMean', [c]], ['newVariance', [c]]],
    ['x', 'movingMean', 'movingVariance'],
    [['M', 'i32'], ['C', 'i32'], ['momentum', 'f32'], ['meanWeight', 'f32'], ['varianceWeight', 'f32']],
    c,
    `${STATS_BODY}
        if (valid && lane == 0) {
          stats[c] = mean;
          stats[u.C + c] = variance;
          newMean[c] = movingMean[c] * u.momentum + mean * u.meanWeight;
          newVariance[c] = movingVariance[c] * u.momentum + variance * u.varianceWeight;
        }`,
  );
  return runOwnTensors(program, [x, movingMean, movingVariance], [x.size / c, c, momentum, 1 - momentum, varianceFactor * (1 - momentum)]);
}

/**
 * Batch norm's backward pass in one kernel (the 'batchnorm-one-pass' lever):
 * each workgroup, having summed its channels' gradients, computes dx for
 * them in a second pass over the rows, as batchNormGradSums then
 * batchNormGradInput do. One dispatch instead of two; the price is the
 * reduction's parallelism (C / 4 workgroups) for the element-wise pass, which
 * a graphics card may feel on the wide early layers (bench:gpu measures the
 * levers). The forward pass cannot be one kernel the same way: statistics,
 * output and both new running averages with their inputs are nine storage
 * buffers, and tfjs's device keeps WebGPU's default limit of eight a stage.
 * Returns [dx, dGamma, dBeta].
 */
export function batchNormBackward(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, epsilon: number): tf.Tensor[] {
  const c = x.shape[x.shape.length - 1];
  const program = channelReduction(
    'lesion_bn_backward',
    [['dx', x.shape], ['sumDyXhat', [c]], ['sumDy', [c]]],
    ['dy', 'x', 'stats', 'gamma'],
    [['M', 'i32'], ['C', 'i32'], ['eps', 'f32']],
    c,
    `${GRAD_SUMS_BODY}
        if (valid) {
          if (lane == 0) {
            sumDy[c] = totalDy;
            sumDyXhat[c] = totalDyXhat;
          }
          let m = f32(u.M);
          let g = gamma[c];
          for (var r = lane; r < u.M; r = r + LANES) {
            let i = r * u.C + c;
            let xhat = (x[i] - mean) * rstd;
            dx[i] = g * rstd * (dy[i] - totalDy / m - xhat * totalDyXhat / m);
          }
        }`,
  );
  return runOwnTensors(program, [dy, x, stats, gamma], [x.size / c, c, epsilon]);
}

/**
 * y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel from `stats`;
 * with `skip`, y + skip in the same kernel (a residual block's addition).
 */
export function batchNormApply(x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number, skip?: tf.Tensor): tf.Tensor {
  const c = x.shape[x.shape.length - 1];
  const normalised = '(x[index] - stats[c]) * scale + beta[c]';
  const program = flatProgram(
    skip ? 'lesion_bn_apply_add' : 'lesion_bn_apply',
    ['x', 'stats', 'gamma', 'beta', ...(skip ? ['skip'] : [])],
    x.shape,
    'C : i32, eps : f32,',
    `let c = index % uniforms.C;
          let scale = inverseSqrt(stats[uniforms.C + c] + uniforms.eps) * gamma[c];
          setOutputAtIndex(index, ${skip ? `${normalised} + skip[index]` : normalised});`,
  );
  return runProgram(program, [x, stats, gamma, beta, ...(skip ? [skip] : [])], [{ type: 'int32', data: [c] }, { type: 'float32', data: [epsilon] }]);
}

/** Per channel, in one kernel: sum(dy) and sum(dy * xhat), the gradients of beta and gamma, each a [C] tensor of its own. */
export function batchNormGradSums(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, epsilon: number): [tf.Tensor1D, tf.Tensor1D] {
  const c = x.shape[x.shape.length - 1];
  const program = channelReduction(
    'lesion_bn_grad_sums',
    [['sumDy', [c]], ['sumDyXhat', [c]]],
    ['dy', 'x', 'stats'],
    [['M', 'i32'], ['C', 'i32'], ['eps', 'f32']],
    c,
    `${GRAD_SUMS_BODY}
        if (valid && lane == 0) {
          sumDy[c] = totalDy;
          sumDyXhat[c] = totalDyXhat;
        }`,
  );
  return runOwnTensors(program, [dy, x, stats], [x.size / c, c, epsilon]) as [tf.Tensor1D, tf.Tensor1D];
}

/** dx = gamma * rstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M). */
export function batchNormGradInput(
  dy: tf.Tensor,
  x: tf.Tensor,
  stats: tf.Tensor,
  gamma: tf.Tensor,
  sumDy: tf.Tensor,
  sumDyXhat: tf.Tensor,
  epsilon: number,
): tf.Tensor {
  const c = x.shape[x.shape.length - 1];
  const m = x.size / c;
  const program = flatProgram(
    'lesion_bn_grad_input',
    ['dy', 'x', 'stats', 'gamma', 'sumDy', 'sumDyXhat'],
    x.shape,
    'C : i32, M : f32, eps : f32,',
    `let c = index % uniforms.C;
          let rstd = inverseSqrt(stats[uniforms.C + c] + uniforms.eps);
          let xhat = (x[index] - stats[c]) * rstd;
          let g = dy[index] - sumDy[c] / uniforms.M - xhat * sumDyXhat[c] / uniforms.M;
          setOutputAtIndex(index, gamma[c] * rstd * g);`,
  );
  return runProgram(program, [dy, x, stats, gamma, sumDy, sumDyXhat], [
    { type: 'int32', data: [c] },
    { type: 'float32', data: [m] },
    { type: 'float32', data: [epsilon] },
  ]);
}
