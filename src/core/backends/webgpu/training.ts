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

type Uniform = { type: 'int32' | 'float32'; data: number[] };
/** The label names our programs in dispatch counts (tfjs's are named by class). */
type Program = WebGPUProgram & { label: string };

/** Each replacement can be turned off, so the bench measures what each one buys. */
export const WEBGPU_LEVERS = ['batchnorm', 'optimizer', 'filter-grad', 'activation-grad'] as const;
export type WebGpuLever = (typeof WEBGPU_LEVERS)[number];
const enabled = new Set<WebGpuLever>(WEBGPU_LEVERS);

export function setWebGpuLevers(levers: Iterable<WebGpuLever>): void {
  enabled.clear();
  for (const lever of levers) enabled.add(lever);
}

/** Whether training code should take `lever`'s kernels now. */
export function useLever(lever: WebGpuLever): boolean {
  return enabled.has(lever) && tf.getBackend() === 'webgpu';
}

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
 * `taps` outputs per channel, workgroupId.y), so reads of one row are
 * contiguous, and LANES = THREADS / CHANNELS threads per channel stride down
 * the rows; the lanes are then summed in a fixed tree, so results do not vary
 * between runs. Early layers have few channels and many pixels: 4 channels a
 * workgroup keeps C / 4 workgroups busy there; 16 above 256 channels.
 */
const THREADS = 256;

function channelReduction(key: string, variableNames: string[], outputShape: number[], channels: number, uniforms: string, body: string, taps = 1): Program {
  const perGroup = channels <= 256 ? 4 : 16;
  return {
    ...programBase(key, variableNames, outputShape, uniforms),
    shaderKey: `${key}_${perGroup}`,
    workgroupSize: [THREADS, 1, 1],
    dispatch: [Math.ceil(channels / perGroup), taps, 1],
    getUserCode: () => `
      const CHANNELS = ${perGroup};
      const LANES = ${THREADS / perGroup};
      var<workgroup> partial : array<f32, ${THREADS}>;

      // Sums 'value' over the lanes of this thread's channel; every thread gets the total.
      fn laneSum(value : f32) -> f32 {
        let lid = i32(localId.x);
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

      fn main(index : i32) {
        let lid = i32(localId.x);
        let c = i32(workgroupId.x) * CHANNELS + lid % CHANNELS;
        let lane = lid / CHANNELS;
        let valid = c < uniforms.C;
        let tap = i32(workgroupId.y);
        ${body}
      }`,
  };
}

function run(program: Program, inputs: tf.Tensor[], uniforms: Uniform[]): tf.Tensor {
  return tf.engine().makeTensorFromTensorInfo(gpuBackend().runWebGPUProgram(program, inputs, 'float32', uniforms));
}

/** Per channel: row 0 the batch mean, row 1 the biased variance (two passes, as the cpu path computes them). */
export function batchNormStats(x: tf.Tensor): tf.Tensor2D {
  const c = x.shape[x.shape.length - 1];
  const m = x.size / c;
  const program = channelReduction(
    'lesion_bn_stats',
    ['x'],
    [2, c],
    c,
    'M : i32, C : i32,',
    `
        var sum = 0.0;
        if (valid) {
          for (var r = lane; r < uniforms.M; r = r + LANES) { sum = sum + x[r * uniforms.C + c]; }
        }
        let mean = laneSum(sum) / f32(uniforms.M);
        var squares = 0.0;
        if (valid) {
          for (var r = lane; r < uniforms.M; r = r + LANES) {
            let d = x[r * uniforms.C + c] - mean;
            squares = squares + d * d;
          }
        }
        let variance = laneSum(squares) / f32(uniforms.M);
        if (valid && lane == 0) {
          result[c] = mean;
          result[uniforms.C + c] = variance;
        }`,
  );
  return run(program, [x], [{ type: 'int32', data: [m] }, { type: 'int32', data: [c] }]) as tf.Tensor2D;
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

/**
 * Per channel: sum(dy) (which 0) or sum(dy * xhat) (which 1), the gradients
 * of beta and gamma, each a [C] tensor of its own so that no slice follows.
 */
export function batchNormGradSum(dy: tf.Tensor, x: tf.Tensor, stats: tf.Tensor, epsilon: number, which: 0 | 1): tf.Tensor1D {
  const c = x.shape[x.shape.length - 1];
  const m = x.size / c;
  // WebGPU drops a binding the shader never reads: sum(dy) binds dy alone.
  const [variables, inputs, setup, term] =
    which === 0
      ? [['dy'], [dy], '', 'dy[i]']
      : [['dy', 'x', 'stats'], [dy, x, stats], 'let mean = stats[c];\n          let rstd = inverseSqrt(stats[uniforms.C + c] + uniforms.eps);', '(x[i] - mean) * rstd * dy[i]'];
  const program = channelReduction(
    `lesion_bn_grad_sum_${which}`,
    variables,
    [c],
    c,
    'M : i32, C : i32, eps : f32,',
    `
        var sum = 0.0;
        if (valid) {
          ${setup}
          for (var r = lane; r < uniforms.M; r = r + LANES) {
            let i = r * uniforms.C + c;
            sum = sum + ${term};
          }
        }
        let total = laneSum(sum);
        if (valid && lane == 0) {
          result[c] = total;
        }`,
  );
  return run(program, inputs, [
    { type: 'int32', data: [m] },
    { type: 'int32', data: [c] },
    { type: 'float32', data: [epsilon] },
  ]) as tf.Tensor1D;
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
 * moving * momentum + stats[row] * factor * (1 - momentum), as a new tensor.
 * Complements like 1 - momentum come from JavaScript in double precision, as
 * the cpu path's scalars do: in float32 on the GPU, 1 - 0.999 is off by 1e-5.
 */
export function movingAverage(moving: tf.Tensor, stats: tf.Tensor, row: 0 | 1, momentum: number, factor: number): tf.Tensor {
  const c = moving.size;
  const program = flatProgram(
    'lesion_bn_moving',
    ['moving', 'stats'],
    moving.shape,
    'row : i32, C : i32, momentum : f32, weight : f32,',
    `setOutputAtIndex(index, moving[index] * uniforms.momentum + stats[uniforms.row * uniforms.C + index] * uniforms.weight);`,
  );
  return run(program, [moving, stats], [
    { type: 'int32', data: [row] },
    { type: 'int32', data: [c] },
    { type: 'float32', data: [momentum] },
    { type: 'float32', data: [factor * (1 - momentum)] },
  ]);
}

/**
 * Runs `program` into a new tensor that `target` then takes. Writing into the
 * variable's own buffer would save no dispatch and is unsafe in tfjs-webgpu: a
 * clone shares the buffer, and a read caches the values on the CPU, which a
 * write under it would leave stale.
 */
function update(target: tf.Variable, program: Program, inputs: tf.Tensor[], uniforms: Uniform[]): void {
  const next = run(program, inputs, uniforms);
  target.assign(next);
  next.dispose();
}

/**
 * torch.optim.SGD on one variable: g' = g + wd * w; buf = first ? g' :
 * momentum * buf + g'; w -= lr * buf. One kernel without momentum, two with.
 */
export function sgdStep(
  w: tf.Variable,
  g: tf.Tensor,
  buf: tf.Variable | undefined,
  o: { lr: number; momentum: number; weightDecay: number; first: boolean },
): void {
  const hyper: Uniform[] = [
    { type: 'float32', data: [o.lr] },
    { type: 'float32', data: [o.momentum] },
    { type: 'float32', data: [o.weightDecay] },
    { type: 'float32', data: [o.first ? 1 : 0] },
  ];
  const fields = 'lr : f32, momentum : f32, wd : f32, first : f32,';
  if (!buf) {
    update(w, flatProgram('lesion_sgd', ['g', 'w'], w.shape, fields, `setOutputAtIndex(index, w[index] - uniforms.lr * (g[index] + uniforms.wd * w[index]));`), [g, w], hyper);
    return;
  }
  const momentum = flatProgram(
    'lesion_sgd_momentum',
    ['g', 'w', 'buf'],
    w.shape,
    fields,
    `let grad = g[index] + uniforms.wd * w[index];
          setOutputAtIndex(index, select(uniforms.momentum * buf[index] + grad, grad, uniforms.first > 0.5));`,
  );
  update(buf, momentum, [g, w, buf], hyper);
  update(w, flatProgram('lesion_sgd_apply', ['w', 'buf'], w.shape, fields, `setOutputAtIndex(index, w[index] - uniforms.lr * buf[index]);`), [w, buf], hyper);
}

/**
 * torch.optim.Adam on one variable (L2 decay in the gradient, bias-corrected
 * moments): three kernels, one per tensor written.
 */
export function adamStep(
  w: tf.Variable,
  g: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  o: { lr: number; beta1: number; beta2: number; epsilon: number; weightDecay: number; correction1: number; correction2: number },
): void {
  const hyper: Uniform[] = [
    { type: 'float32', data: [o.lr / o.correction1] },
    { type: 'float32', data: [o.beta1] },
    { type: 'float32', data: [1 - o.beta1] },
    { type: 'float32', data: [o.beta2] },
    { type: 'float32', data: [1 - o.beta2] },
    { type: 'float32', data: [o.epsilon] },
    { type: 'float32', data: [o.weightDecay] },
    { type: 'float32', data: [Math.sqrt(o.correction2)] },
  ];
  const fields = 'stepSize : f32, beta1 : f32, oneMinusBeta1 : f32, beta2 : f32, oneMinusBeta2 : f32, eps : f32, wd : f32, sqrtCorrection2 : f32,';
  const grad = 'let grad = g[index] + uniforms.wd * w[index];';
  const moment = (key: string, slot: tf.Variable, value: string) =>
    update(slot, flatProgram(key, ['g', 'w', 'slot'], w.shape, fields, `${grad}
          setOutputAtIndex(index, ${value});`), [g, w, slot], hyper);
  moment('lesion_adam_m', m, 'uniforms.beta1 * slot[index] + uniforms.oneMinusBeta1 * grad');
  moment('lesion_adam_v', v, 'uniforms.beta2 * slot[index] + uniforms.oneMinusBeta2 * (grad * grad)');
  const apply = flatProgram(
    'lesion_adam_apply',
    ['w', 'm', 'v'],
    w.shape,
    fields,
    `let denom = sqrt(v[index]) / uniforms.sqrtCorrection2 + uniforms.eps;
          setOutputAtIndex(index, w[index] - uniforms.stepSize * m[index] / denom);`,
  );
  update(w, apply, [w, m, v], hyper);
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
    ['x', 'dy'],
    filterShape,
    c,
    'M : i32, C : i32, H : i32, W : i32, outW : i32, outHW : i32, kw : i32, stride : vec2<i32>, pad : vec2<i32>,',
    `
        let kr = tap / uniforms.kw;
        let kc = tap % uniforms.kw;
        var sum = 0.0;
        if (valid) {
          for (var r = lane; r < uniforms.M; r = r + LANES) {
            let b = r / uniforms.outHW;
            let p = r % uniforms.outHW;
            let ih = (p / uniforms.outW) * uniforms.stride.x - uniforms.pad.x + kr;
            let iw = (p % uniforms.outW) * uniforms.stride.y - uniforms.pad.y + kc;
            if (ih >= 0 && ih < uniforms.H && iw >= 0 && iw < uniforms.W) {
              sum = sum + x[((b * uniforms.H + ih) * uniforms.W + iw) * uniforms.C + c] * dy[r * uniforms.C + c];
            }
          }
        }
        let total = laneSum(sum);
        if (valid && lane == 0) {
          result[tap * uniforms.C + c] = total;
        }`,
    kh * kw,
  );
  const int = (...data: number[]): Uniform => ({ type: 'int32', data });
  return gpuBackend().runWebGPUProgram(program, [x, dy], 'float32', [
    int(n * g.outH * g.outW),
    int(c),
    int(h),
    int(w),
    int(g.outW),
    int(g.outH * g.outW),
    int(kw),
    int(g.strideH, g.strideW),
    int(g.padTop, g.padLeft),
  ]);
}

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [Number(v ?? 1), Number(v ?? 1)]);

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

  const applies = () => useLever('activation-grad');
  replaceGradient('Relu', applies, (dy, x) => activationGrad(dy, x));
  replaceGradient('ClipByValue', applies, (dy, x, a) => activationGrad(dy, x, { lo: a.clipValueMin as number, hi: a.clipValueMax as number }));
}

/**
 * ReLU and ReLU6 (ClipByValue) gradients in one kernel each: tfjs builds them
 * from two (Step, Multiply) and five (two comparisons, LogicalAnd, ZerosLike,
 * Select) element-wise kernels. Same rule: ReLU passes dy where x > 0, the clip
 * where lo <= x <= hi.
 */
function activationGrad(dy: tf.Tensor, x: tf.Tensor, range?: { lo: number; hi: number }): tf.Tensor {
  if (!range) return run(flatProgram('lesion_relu_grad', ['dy', 'x'], x.shape, '', 'setOutputAtIndex(index, select(0.0, dy[index], x[index] > 0.0));'), [dy, x], []);
  const program = flatProgram(
    'lesion_clip_grad',
    ['dy', 'x'],
    x.shape,
    'lo : f32, hi : f32,',
    'setOutputAtIndex(index, select(0.0, dy[index], x[index] >= uniforms.lo && x[index] <= uniforms.hi));',
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
