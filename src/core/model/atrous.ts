/**
 * Atrous (dilated) convolutions that TRAIN on every backend.
 *
 * tfjs refuses gradients of dilated convolutions (tensorflow/tfjs#7906). Two
 * exact constructions from differentiable ops replace them:
 * - inside the encoder, a whole dilated stage runs on sub-grids (SpaceToBatch
 *   below), where its 3x3 convolutions are undilated;
 * - in ASPP, whose rates (12/24/36) are as large as the feature map, the
 *   convolution is a sum over its taps: each tap is a 1x1 convolution of the
 *   part of the input it can reach. Taps that reach only padding are skipped,
 *   so no work is spent on zeros (TensorFlow's spaceToBatch version pads a
 *   16x16 map at rate 12 to 48x48 and computes nine times the useful work).
 */
import * as tf from '@tensorflow/tfjs';
import { backendOps } from '../backends/ops.ts';

interface Tap {
  i: number;
  j: number;
  /** Where the tap's window starts in the input, and where its output goes. */
  inTop: number;
  inLeft: number;
  outTop: number;
  outLeft: number;
  rows: number;
  cols: number;
}

/** The taps that reach the input at all: output pixel (r, c) reads input (r + dy, c + dx). */
function tapsOf(h: number, w: number, kh: number, kw: number, rate: number): Tap[] {
  const taps: Tap[] = [];
  for (let i = 0; i < kh; i++) {
    const dy = (i - (kh - 1) / 2) * rate;
    const rows = h - Math.abs(dy);
    if (rows <= 0) continue;
    for (let j = 0; j < kw; j++) {
      const dx = (j - (kw - 1) / 2) * rate;
      const cols = w - Math.abs(dx);
      if (cols <= 0) continue;
      taps.push({ i, j, inTop: Math.max(0, dy), inLeft: Math.max(0, dx), outTop: Math.max(0, -dy), outLeft: Math.max(0, -dx), rows, cols });
    }
  }
  return taps;
}

/** Pads a tap's [b, rows, cols, c] block to the full [b, h, w, c] map at its place. */
function place(part: tf.Tensor4D, h: number, w: number, top: number, left: number): tf.Tensor4D {
  const [, rows, cols] = part.shape;
  if (rows === h && cols === w) return part;
  return tf.pad(part, [[0, 0], [top, h - rows - top], [left, w - cols - left], [0, 0]]);
}

/**
 * 'same'-padded, stride-1 atrous convolution, NHWC, odd square kernel.
 *
 * Its gradient is written out rather than taped: the tape would keep every
 * tap's input window (8x the feature map at 256 px, rate 12) and every padded
 * partial sum until the backward pass; here only x and the kernel are kept,
 * and each tap's window is cut again when its gradient is due.
 */
export function atrousConv2d(x: tf.Tensor4D, kernel: tf.Tensor4D, rate: number): tf.Tensor4D {
  const [kh, kw, ci, co] = kernel.shape;
  if (rate === 1 || (kh === 1 && kw === 1)) return tf.conv2d(x, kernel, 1, 'same');
  // On WebGPU, three kernels of ours instead of some ninety ops per convolution.
  const fused = backendOps().atrousConv2d;
  if (fused) return fused(x, kernel, rate);
  const [b, h, w] = x.shape;
  const taps = tapsOf(h, w, kh, kw, rate);
  const window = (input: tf.Tensor4D, t: Tap) => tf.slice(input, [0, t.inTop, t.inLeft, 0], [b, t.rows, t.cols, ci]);
  const weights = (k: tf.Tensor4D, t: Tap) => tf.slice(k, [t.i, t.j, 0, 0], [1, 1, ci, co]);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, k, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    save([input, k]);
    const value = taps
      .map((t) => place(tf.conv2d(window(input, t), weights(k, t), 1, 'valid'), h, w, t.outTop, t.outLeft))
      .reduce((sum, part) => tf.add(sum, part) as tf.Tensor4D);
    return {
      value,
      // In a tidy: the tape calls gradFunc outside any, and the taps' slices would live until the backward pass ends.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => {
        const [xs, ks] = saved as tf.Tensor4D[];
        let dx: tf.Tensor4D | undefined;
        // Taps that reach only padding have a zero gradient.
        const dk: tf.Tensor[] = Array.from({ length: kh * kw }, () => tf.zeros([ci, co]));
        for (const t of taps) {
          const dyTap = tf.slice(dy, [0, t.outTop, t.outLeft, 0], [b, t.rows, t.cols, co]) as tf.Tensor4D;
          const dWindow = tf.conv2d(dyTap, tf.transpose(weights(ks, t), [0, 1, 3, 2]) as tf.Tensor4D, 1, 'valid');
          const part = place(dWindow, h, w, t.inTop, t.inLeft);
          dx = dx ? (tf.add(dx, part) as tf.Tensor4D) : part;
          const attrs = { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [1, 1, ci, co] };
          const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x: window(xs, t), dy: dyTap }, attrs) as tf.Tensor;
          dk[t.i * kw + t.j] = tf.reshape(dw, [ci, co]);
        }
        return [dx!, tf.reshape(tf.stack(dk), [kh, kw, ci, co])];
      }),
    };
  });
  return op(x, kernel) as tf.Tensor4D;
}
interface AtrousArgs extends tf.serialization.ConfigDict {
  filters: number;
  kernelSize: number;
  rate: number;
  name: string;
  /** Seeds the He-normal kernel; the export twin's conv2d gets the same seed, hence the same start. */
  seed: number;
}


/**
 * Layer twin of tf.layers.conv2d({dilationRate, padding: 'same', useBias: false})
 * with identical weights, so a model can be exported with the standard layer
 * (plain tfjs loads it) and trained with this one.
 */
export class AtrousConv2D extends tf.layers.Layer {
  static readonly className = 'AtrousConv2D';
  private kernel!: tf.LayerVariable;

  constructor(private readonly args: AtrousArgs) {
    super({ name: args.name });
  }

  build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = inputShape as tf.Shape;
    const ci = shape[shape.length - 1] as number;
    const k = this.args.kernelSize;
    this.kernel = this.addWeight('kernel', [k, k, ci, this.args.filters], 'float32', tf.initializers.heNormal({ seed: this.args.seed }));
    this.built = true;
  }

  computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = inputShape as tf.Shape;
    return [...shape.slice(0, 3), this.args.filters];
  }

  call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
    return atrousConv2d(x, this.kernel.read() as tf.Tensor4D, this.args.rate);
  }

  getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.args };
  }
}

interface RegridArgs extends tf.serialization.ConfigDict {
  factor: number;
  name: string;
}

/**
 * A whole dilated encoder stage runs on the rate x rate sub-grids at once:
 * every 3x3 inside it is then undilated, and pointwise layers (1x1 conv,
 * batch norm, ReLU, add) do not care. Batch-norm statistics cover the same
 * pixels, so the result is identical to dilating each convolution, at the cost
 * of one regridding per stage instead of two per layer. Needs the feature map
 * side to be a multiple of the factor (no padding, so 'same' stays exact).
 */
export class SpaceToBatch extends tf.layers.Layer {
  static readonly className = 'SpaceToBatch';

  constructor(private readonly args: RegridArgs) {
    super({ name: args.name });
  }

  computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const [b, h, w, c] = inputShape as tf.Shape;
    const f = this.args.factor;
    return [b === null ? null : b * f * f, (h as number) / f, (w as number) / f, c];
  }

  call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
    const f = this.args.factor;
    if (x.shape[1] % f !== 0 || x.shape[2] % f !== 0) {
      throw new Error(`${this.name}: feature map ${x.shape[1]}x${x.shape[2]} is not a multiple of the dilation ${f}`);
    }
    return tf.spaceToBatchND(x, [f, f], [[0, 0], [0, 0]]);
  }

  getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.args };
  }
}

export class BatchToSpace extends tf.layers.Layer {
  static readonly className = 'BatchToSpace';

  constructor(private readonly args: RegridArgs) {
    super({ name: args.name });
  }

  computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const [b, h, w, c] = inputShape as tf.Shape;
    const f = this.args.factor;
    return [b === null ? null : b / (f * f), (h as number) * f, (w as number) * f, c];
  }

  call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
    const f = this.args.factor;
    return tf.batchToSpaceND(x, [f, f], [[0, 0], [0, 0]]);
  }

  getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.args };
  }
}

tf.serialization.registerClass(SpaceToBatch);
tf.serialization.registerClass(BatchToSpace);
tf.serialization.registerClass(AtrousConv2D);
