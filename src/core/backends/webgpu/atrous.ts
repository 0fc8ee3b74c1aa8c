/**
 * The ASPP's atrous convolutions ('same', stride 1, odd kernel, NHWC) as
 * three kernels of ours: forward, input gradient and filter gradient.
 * tfjs refuses gradients of dilated convolutions, and the construction from
 * differentiable ops (src/core/model/atrous.ts: each tap a 1x1 convolution of
 * the window it reaches, padded back and summed) took some 170 slices, pads,
 * matrix products and additions per step at 256 px; here it is three
 * dispatches per convolution.
 *
 * Each is a matrix product tiled in workgroup memory, 16x16 outputs a
 * workgroup, one a thread, whose left operand is gathered through the tap's
 * offset (zero where it falls outside the map), so that no padded copy is
 * made. Taps whose offset leaves the map in every pixel are skipped, as the
 * op-level construction skips them.
 */
import * as tf from '@tensorflow/tfjs';
import { type OwnProgram, runOwnTensors } from './own-dispatch.ts';

const TILE = 16;

const GEOMETRY: OwnProgram['uniforms'] = [
  ['H', 'i32'],
  ['W', 'i32'],
  ['kh', 'i32'],
  ['kw', 'i32'],
  ['rate', 'i32'],
];

/** WGSL: the tap's offset (dy, dx) in the input for tap t, and whether it reaches the map at all. */
const TAP_HELPERS = `
  const TILE = ${TILE};
  var<workgroup> tileA : array<array<f32, ${TILE}>, ${TILE}>;
  var<workgroup> tileB : array<array<f32, ${TILE}>, ${TILE}>;

  fn tapOffset(t : i32) -> vec2<i32> {
    return vec2<i32>((t / u.kw - (u.kh - 1) / 2) * u.rate, (t % u.kw - (u.kw - 1) / 2) * u.rate);
  }

  fn tapReaches(offset : vec2<i32>) -> bool {
    return abs(offset.x) < u.H && abs(offset.y) < u.W;
  }

  // Row m of [batch * H * W, channels] moved by offset: its flat pixel, or -1 off the map.
  fn shifted(m : i32, offset : vec2<i32>) -> i32 {
    let hw = u.H * u.W;
    let r = (m % hw) / u.W + offset.x;
    let c = m % u.W + offset.y;
    if (r < 0 || r >= u.H || c < 0 || c >= u.W) {
      return -1;
    }
    return (m / hw) * hw + r * u.W + c;
  }`;

/**
 * out[m, n] = sum over taps t and k of A[m shifted by sign * offset(t), k] *
 * filter(t, k, n), where filter(t, k, n) is kernel[t, k, n] (forward: k
 * input channels, n output ones) or kernel[t, n, k] (input gradient: k
 * output channels, n input ones, the offset negated).
 */
function tappedProduct(label: string, a: tf.Tensor4D, kernel: tf.Tensor4D, rate: number, transposed: boolean): tf.Tensor4D {
  const [b, h, w, k] = a.shape;
  const [kh, kw, ci, co] = kernel.shape;
  const n = transposed ? ci : co;
  const m = b * h * w;
  const program: OwnProgram = {
    label,
    outputs: [['result', [b, h, w, n]]],
    inputs: ['a', 'kernel'],
    uniforms: [...GEOMETRY, ['M', 'i32'], ['K', 'i32'], ['N', 'i32'], ['sign', 'i32']],
    workgroupSize: TILE * TILE,
    workgroups: [Math.ceil(n / TILE), Math.ceil(m / TILE), 1],
    body: `${TAP_HELPERS}

  fn main(index : i32, lid : i32, wid : vec3<i32>) {
    let tx = lid % TILE;
    let ty = lid / TILE;
    let row = wid.y * TILE + ty;
    let col = wid.x * TILE + tx;
    var acc = 0.0;
    for (var t = 0; t < u.kh * u.kw; t = t + 1) {
      let offset = tapOffset(t) * u.sign;
      if (!tapReaches(offset)) {
        continue;
      }
      var source = -1;
      if (row < u.M) {
        source = shifted(row, offset);
      }
      for (var k0 = 0; k0 < u.K; k0 = k0 + TILE) {
        var av = 0.0;
        if (source >= 0 && k0 + tx < u.K) {
          av = a[source * u.K + k0 + tx];
        }
        tileA[ty][tx] = av;
        var bv = 0.0;
        let kk = k0 + ty;
        if (kk < u.K && col < u.N) {
          bv = kernel[t * u.K * u.N + ${transposed ? 'col * u.K + kk' : 'kk * u.N + col'}];
        }
        tileB[ty][tx] = bv;
        workgroupBarrier();
        for (var i = 0; i < TILE; i = i + 1) {
          acc = acc + tileA[ty][i] * tileB[i][tx];
        }
        workgroupBarrier();
      }
    }
    if (row < u.M && col < u.N) {
      result[row * u.N + col] = acc;
    }
  }`,
  };
  return runOwnTensors(program, [a, kernel], [h, w, kh, kw, rate, m, k, n, transposed ? -1 : 1])[0] as tf.Tensor4D;
}

/** dW[t, i, o] = sum over pixels p of x[p shifted by offset(t), i] * dy[p, o]: one product per tap (workgroup z). */
function filterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number, rate: number): tf.Tensor4D {
  const [b, h, w, ci] = x.shape;
  const co = dy.shape[3];
  const program: OwnProgram = {
    label: 'lesion_atrous_filter_grad',
    outputs: [['dw', [kh, kw, ci, co]]],
    inputs: ['x', 'dy'],
    uniforms: [...GEOMETRY, ['P', 'i32'], ['CI', 'i32'], ['CO', 'i32']],
    workgroupSize: TILE * TILE,
    workgroups: [Math.ceil(co / TILE), Math.ceil(ci / TILE), kh * kw],
    body: `${TAP_HELPERS}

  fn main(index : i32, lid : i32, wid : vec3<i32>) {
    let tx = lid % TILE;
    let ty = lid / TILE;
    let t = wid.z;
    let offset = tapOffset(t);
    let row = wid.y * TILE + ty;
    let col = wid.x * TILE + tx;
    var acc = 0.0;
    if (tapReaches(offset)) {
      for (var p0 = 0; p0 < u.P; p0 = p0 + TILE) {
        // tileA[i][j]: x at input channel wid.y * TILE + i, pixel p0 + j shifted.
        let pa = p0 + tx;
        var av = 0.0;
        if (pa < u.P && row < u.CI) {
          let source = shifted(pa, offset);
          if (source >= 0) {
            av = x[source * u.CI + row];
          }
        }
        tileA[ty][tx] = av;
        let pb = p0 + ty;
        var bv = 0.0;
        if (pb < u.P && col < u.CO) {
          bv = dy[pb * u.CO + col];
        }
        tileB[ty][tx] = bv;
        workgroupBarrier();
        for (var i = 0; i < TILE; i = i + 1) {
          acc = acc + tileA[ty][i] * tileB[i][tx];
        }
        workgroupBarrier();
      }
    }
    if (row < u.CI && col < u.CO) {
      dw[(t * u.CI + row) * u.CO + col] = acc;
    }
  }`,
  };
  return runOwnTensors(program, [x, dy], [h, w, kh, kw, rate, b * h * w, ci, co])[0] as tf.Tensor4D;
}

/** The dilated convolution with its gradients, keeping only x and the kernel for the backward pass. */
export function atrousConv2dWebGpu(x: tf.Tensor4D, kernel: tf.Tensor4D, rate: number): tf.Tensor4D {
  const [kh, kw] = kernel.shape;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, k, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    save([input, k]);
    return {
      value: tappedProduct('lesion_atrous_conv', input, k, rate, false),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ks] = saved as tf.Tensor4D[];
        return [tappedProduct('lesion_atrous_input_grad', dy as tf.Tensor4D, ks, rate, true), filterGradient(xs, dy as tf.Tensor4D, kh, kw, rate)];
      },
    };
  });
  return op(x, kernel) as tf.Tensor4D;
}
