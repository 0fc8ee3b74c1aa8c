/**
 * Training kernels of our own for tfjs's webgpu backend. tfjs-webgpu pays a
 * uniform write, a bind group and a dispatch for every element-wise op, and a
 * training step of the paper's model made about 4,200 of them: batch norm
 * alone (moments through transposes and reductions, the running averages,
 * and about twenty element-wise kernels in its gradient) and the optimiser
 * (four to eight kernels per variable) were three quarters of them. Here batch
 * norm takes two kernels forward, three backward and one per running average,
 * the optimisers one kernel per tensor written, ReLU and clip gradients one
 * each; and the weight gradients that tfjs computes with one serial loop per
 * filter element become a matrix product (1x1) or a parallel reduction
 * (depthwise).
 *
 * tfjs caches a compiled program by its shader key and the ranks and types of
 * its tensors, so everything that varies between calls is a uniform.
 *
 * The programs follow tfjs-webgpu's WebGPUProgram contract: tfjs generates the
 * bindings (`result`, then one read-only array per variable name) and the
 * uniform block (shapes first, then the fields named in `uniforms`, filled in
 * order from the uniform data passed with the run).
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { asKernel, type Attrs, geometry, type KernelSpec, registerKernelFor, replaceGradient } from '../kernel-util.ts';
import { installLaunchCache } from './launch-cache.ts';
import { type OwnProgram, runOwn, runOwnTensors } from './own-dispatch.ts';

type Uniform = { type: 'int32' | 'float32'; data: number[] };
/** The label names our programs in dispatch counts (tfjs's are named by class). */
type Program = WebGPUProgram & { label: string };

/** Each replacement can be turned off, so the bench measures what each one buys. */
export const WEBGPU_LEVERS = ['batchnorm', 'optimizer', 'filter-grad', 'activation-grad', 'atrous', 'reduce-grad', 'uniform-cache', 'batchnorm-one-pass'] as const;
export type WebGpuLever = (typeof WEBGPU_LEVERS)[number];
const enabled = new Set<WebGpuLever>(WEBGPU_LEVERS);

export function setWebGpuLevers(levers: Iterable<WebGpuLever>): void {
  enabled.clear();
  for (const lever of levers) enabled.add(lever);
}

/** Whether `lever`'s kernels are on (they run only while webgpu is the active backend). */
export function leverOn(lever: WebGpuLever): boolean {
  return enabled.has(lever);
}

/** Gradients are replaced for every backend at once: ours apply only while webgpu is active. */
const onWebGpu = (lever: WebGpuLever) => () => leverOn(lever) && tf.getBackend() === 'webgpu';

const FLAT = 64;

function gpuBackend(): WebGPUBackend {
  return tf.backend() as WebGPUBackend;
}

/** What every program of ours declares alike; the dispatch layout is flat (tfjs calls main(index)). */
function programBase(key: string, variableNames: string[], outputShape: number[], uniforms: string) {
  return { label: key, shaderKey: key, variableNames, outputShape, uniforms, dispatchLayout: { x: outputShape.map((_, i) => i) } };
}

/** An element-wise program over `size` outputs, one thread each. */
function flatProgram(key: string, variableNames: string[], outputShape: number[], uniforms: string, body: string): Program {
  const size = outputShape.reduce((a, b) => a * b, 1);
  return {
    ...programBase(key, variableNames, outputShape, uniforms),
    size: true,
    workgroupSize: [FLAT, 1, 1],
    dispatch: [Math.ceil(size / FLAT), 1, 1],
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`,
  };
}

/**
 * Per-channel reductions over an activation seen as [M, C] (NHWC flattened):
 * a workgroup of THREADS owns CHANNELS neighbouring channels (and one of
 * `taps` outputs per channel, wid.y), so reads of one row are
 * contiguous, and LANES = THREADS / CHANNELS threads per channel stride down
 * the rows; the lanes are then summed in a fixed tree, so results do not vary
 * between runs. Early layers have few channels and many pixels: 4 channels a
 * workgroup keeps C / 4 workgroups busy there; 16 above 256 channels. Our own
 * bind group (own-dispatch.ts), so that one reduction can write several tensors.
 */
const THREADS = 256;

function channelReduction(
  label: string,
  outputs: [string, number[]][],
  inputs: string[],
  uniforms: OwnProgram['uniforms'],
  channels: number,
  body: string,
  taps = 1,
): OwnProgram {
  const perGroup = channels <= 256 ? 4 : 16;
  return {
    label: `${label}_${perGroup}`,
    outputs,
    inputs,
    uniforms,
    workgroupSize: THREADS,
    workgroups: [Math.ceil(channels / perGroup), taps, 1],
    body: `
      const CHANNELS = ${perGroup};
      const LANES = ${THREADS / perGroup};
      var<workgroup> partial : array<f32, ${THREADS}>;

      // Sums 'value' over the lanes of this thread's channel; every thread gets the total.
      fn laneSum(lid : i32, value : f32) -> f32 {
        partial[lid] = value;
        workgroupBarrier();
        for (var stride = ${THREADS / 2}; stride >= CHANNELS; stride = stride / 2) {
          if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
          }
          workgroupBarrier();
        }
        let total = partial[lid % CHANNELS];
        workgroupBarrier();
        return total;
      }

      fn main(index : i32, lid : i32, wid : vec3<i32>) {
        let c = wid.x * CHANNELS + lid % CHANNELS;
        let lane = lid / CHANNELS;
        let valid = c < u.C;
        let tap = wid.y;
        ${body}
      }`,
  };
}

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

function run(program: Program, inputs: tf.Tensor[], uniforms: Uniform[]): tf.Tensor {
  return tf.engine().makeTensorFromTensorInfo(gpuBackend().runWebGPUProgram(program, inputs, 'float32', uniforms));
}

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
    `
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
        let totalDyXhat = laneSum(lid, accDyXhat);
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

/** y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel from `stats`. */
export function batchNormApply(x: tf.Tensor, stats: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): tf.Tensor {
  const c = x.shape[x.shape.length - 1];
  const program = flatProgram(
    'lesion_bn_apply',
    ['x', 'stats', 'gamma', 'beta'],
    x.shape,
    'C : i32, eps : f32,',
    `let c = index % uniforms.C;
          let scale = inverseSqrt(stats[uniforms.C + c] + uniforms.eps) * gamma[c];
          setOutputAtIndex(index, (x[index] - stats[c]) * scale + beta[c]);`,
  );
  return run(program, [x, stats, gamma, beta], [{ type: 'int32', data: [c] }, { type: 'float32', data: [epsilon] }]);
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
    `
        var accDy = 0.0;
        var accDyXhat = 0.0;
        if (valid) {
          let mean = stats[c];
          let rstd = inverseSqrt(stats[u.C + c] + u.eps);
          for (var r = lane; r < u.M; r = r + LANES) {
            let i = r * u.C + c;
            accDy = accDy + dy[i];
            accDyXhat = accDyXhat + (x[i] - mean) * rstd * dy[i];
          }
        }
        let totalDy = laneSum(lid, accDy);
        let totalDyXhat = laneSum(lid, accDyXhat);
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
  return run(program, [dy, x, stats, gamma, sumDy, sumDyXhat], [
    { type: 'int32', data: [c] },
    { type: 'float32', data: [m] },
    { type: 'float32', data: [epsilon] },
  ]);
}

/**
 * An element-wise program of ours over `size` values: one thread each, the
 * workgroups laid out in x, spilling into y past WebGPU's 65,535 a dimension.
 */
function flatOwn(label: string, outputs: string[], inputs: string[], shape: number[], uniforms: OwnProgram['uniforms'], body: string): OwnProgram {
  const size = shape.reduce((a, b) => a * b, 1);
  const groups = Math.ceil(size / FLAT);
  const x = Math.min(groups, 65535);
  return {
    label,
    outputs: outputs.map((name) => [name, shape]),
    inputs,
    uniforms: [['size', 'i32'], ...uniforms],
    workgroupSize: FLAT,
    workgroups: [x, Math.ceil(groups / x), 1],
    body: `
      fn main(flat : i32, lid : i32, wid : vec3<i32>) {
        // Only a dispatch with all 65,535 workgroups in x has a second row (wid.y > 0); the pipeline is shared by every size.
        let index = flat + wid.y * ${65535 * FLAT};
        if (index < u.size) {
          ${body}
        }
      }`,
  };
}

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

/**
 * dW of a depthwise convolution (channel multiplier 1, any stride and padding,
 * undilated as tfjs's gradients require): one reduction per (channel, tap) over batch x output positions.
 * tfjs's own runs one thread per filter element looping over all of them
 * serially (288 threads for the first layer at 128 px, 16,384 steps each).
 */
function depthwiseFilterGrad(x: tf.TensorInfo, dy: tf.TensorInfo, filterShape: number[], g: ReturnType<typeof geometry>): tf.TensorInfo {
  const [kh, kw, c] = filterShape;
  const [n, h, w] = x.shape;
  const program = channelReduction(
    'lesion_depthwise_filter_grad',
    [['dw', filterShape]],
    ['x', 'dy'],
    (['M', 'C', 'H', 'W', 'outW', 'outHW', 'kw', 'strideH', 'strideW', 'padTop', 'padLeft'] as const).map((name) => [name, 'i32']),
    c,
    `
        let kr = tap / u.kw;
        let kc = tap % u.kw;
        var sum = 0.0;
        if (valid) {
          for (var r = lane; r < u.M; r = r + LANES) {
            let b = r / u.outHW;
            let p = r % u.outHW;
            let ih = (p / u.outW) * u.strideH - u.padTop + kr;
            let iw = (p % u.outW) * u.strideW - u.padLeft + kc;
            if (ih >= 0 && ih < u.H && iw >= 0 && iw < u.W) {
              sum = sum + x[((b * u.H + ih) * u.W + iw) * u.C + c] * dy[r * u.C + c];
            }
          }
        }
        let total = laneSum(lid, sum);
        if (valid && lane == 0) {
          dw[tap * u.C + c] = total;
        }`,
    kh * kw,
  );
  return runOwn(program, [x, dy], [n * g.outH * g.outW, c, h, w, g.outW, g.outH * g.outW, kw, g.strideH, g.strideW, g.padTop, g.padLeft])[0];
}

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [Number(v ?? 1), Number(v ?? 1)]);

/** Call once the webgpu backend is active: its launches then take cached uniform buffers (launch-cache.ts) while that lever is on. */
export function prepareWebGpuBackend(): void {
  installLaunchCache(tf.backend(), () => enabled.has('uniform-cache'));
}

let registered = false;

/**
 * Replaces tfjs-webgpu's weight-gradient kernels where ours apply, keeping
 * theirs for the rest (and whenever the 'filter-grad' lever is off), and the
 * activations' gradients.
 * Idempotent; call once the webgpu backend module is imported.
 */
export function registerWebGpuTrainingKernels(): void {
  if (registered) return;
  registered = true;

  replaceKernel('Conv2DBackpropFilter', ({ inputs, attrs, backend }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as Attrs;
    const filterShape = a.filterShape as [number, number, number, number];
    const [sh, sw] = pair(a.strides);
    if (filterShape[0] !== 1 || filterShape[1] !== 1 || sh !== 1 || sw !== 1 || (a.dataFormat ?? 'NHWC') !== 'NHWC') return undefined;
    // A 1x1 convolution is a matrix product over batch x pixels: tfjs's
    // matmul (split-K where the output is small and the inner side long).
    const [ci, co] = [filterShape[2], filterShape[3]];
    return asKernel(backend, [x, dy], (xt, dyt) => tf.reshape(tf.matMul(tf.reshape(xt, [-1, ci]), tf.reshape(dyt, [-1, co]), true, false), filterShape));
  });

  replaceKernel('DepthwiseConv2dNativeBackpropFilter', ({ inputs, attrs }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as Attrs;
    const filterShape = a.filterShape as [number, number, number, number];
    const [dh, dw] = pair(a.dilations);
    if (filterShape[3] !== 1 || dh !== 1 || dw !== 1) return undefined;
    const g = geometry(x.shape as never, filterShape, a.strides as never, a.pad as never, a.dimRoundingMode as never, true);
    return depthwiseFilterGrad(x, dy, filterShape, g);
  });

  const applies = onWebGpu('activation-grad');
  replaceGradient('Relu', applies, (dy, x) => activationGrad(dy, x));
  replaceGradient('ClipByValue', applies, (dy, x, a) => activationGrad(dy, x, { lo: a.clipValueMin as number, hi: a.clipValueMax as number }));
  replaceGradient('Relu6', applies, (dy, x) => activationGrad(dy, x, { lo: 0, hi: 6, above: true }));

  const spreads = onWebGpu('reduce-grad');
  replaceGradient('Sum', spreads, (dy, x, a) => spreadGrad(dy, x, a, false));
  replaceGradient('Mean', spreads, (dy, x, a) => spreadGrad(dy, x, a, true));
}

/**
 * The gradients of Sum and Mean spread dy back over the reduced axes. tfjs
 * multiplies it by ones(x.shape), an array it fills in JavaScript and uploads
 * at every step: for the ASPP's image pooling (a mean over a 1280-channel
 * map) 1.3 M values at 128 px batch 4 and 13 M at 256 px batch 10, the
 * largest part of a step's host cost in the profile. Broadcasting instead
 * stays on the GPU and gives the same values (dy * 1 is dy).
 */
function spreadGrad(dy: tf.Tensor, x: tf.Tensor, attrs: Attrs, mean: boolean): tf.Tensor {
  const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
  const spread = tf.broadcastTo(tf.reshape(dy, x.shape.map((d, i) => (axes.includes(i) ? 1 : d))), x.shape);
  return mean ? tf.div(spread, axes.reduce((n, i) => n * x.shape[i], 1)) : spread;
}

/**
 * ReLU, clip and ReLU6 gradients in one kernel each: tfjs builds them from
 * two (Step, Multiply), five (two comparisons, LogicalAnd, ZerosLike, Select)
 * and five (LessEqual, Step, two casts, Multiply) element-wise kernels. Same
 * rule: ReLU passes dy where x > 0, the clip where lo <= x <= hi, ReLU6 (above)
 * where lo < x <= hi.
 */
function activationGrad(dy: tf.Tensor, x: tf.Tensor, range?: { lo: number; hi: number; above?: boolean }): tf.Tensor {
  if (!range) return run(flatProgram('lesion_relu_grad', ['dy', 'x'], x.shape, '', 'setOutputAtIndex(index, select(0.0, dy[index], x[index] > 0.0));'), [dy, x], []);
  const program = flatProgram(
    range.above ? 'lesion_relu6_grad' : 'lesion_clip_grad',
    ['dy', 'x'],
    x.shape,
    'lo : f32, hi : f32,',
    `setOutputAtIndex(index, select(0.0, dy[index], x[index] ${range.above ? '>' : '>='} uniforms.lo && x[index] <= uniforms.hi));`,
  );
  return run(program, [dy, x], [
    { type: 'float32', data: [range.lo] },
    { type: 'float32', data: [range.hi] },
  ]);
}

type KernelParams = Parameters<KernelSpec['kernelFunc']>[0];

/** Registers `ours` under `name`; tfjs's own kernel runs where ours returns undefined or the lever is off. */
function replaceKernel(name: string, ours: (params: KernelParams) => tf.TensorInfo | undefined): void {
  const theirs = tf.getKernel(name, 'webgpu')!.kernelFunc as KernelSpec['kernelFunc'];
  registerKernelFor('webgpu', { kernelName: name, kernelFunc: (params) => (enabled.has('filter-grad') ? ours(params) : undefined) ?? theirs(params) });
}
