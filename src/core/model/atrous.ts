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

/** 'same'-padded, stride-1 atrous convolution, NHWC, odd square kernel. */
export function atrousConv2d(x: tf.Tensor4D, kernel: tf.Tensor4D, rate: number): tf.Tensor4D {
  const [kh, kw, ci, co] = kernel.shape;
  if (rate === 1 || (kh === 1 && kw === 1)) return tf.conv2d(x, kernel, 1, 'same');
  const [b, h, w] = x.shape;
  let sum: tf.Tensor4D | undefined;
  for (let i = 0; i < kh; i++) {
    const dy = (i - (kh - 1) / 2) * rate;
    const rows = h - Math.abs(dy);
    if (rows <= 0) continue;
    for (let j = 0; j < kw; j++) {
      const dx = (j - (kw - 1) / 2) * rate;
      const cols = w - Math.abs(dx);
      if (cols <= 0) continue;
      // Output pixel (r, c) reads input (r + dy, c + dx).
      const window = tf.slice(x, [0, Math.max(0, dy), Math.max(0, dx), 0], [b, rows, cols, ci]);
      const tap = tf.slice(kernel, [i, j, 0, 0], [1, 1, ci, co]);
      let part = tf.conv2d(window, tap, 1, 'valid');
      if (rows < h || cols < w) {
        part = tf.pad(part, [[0, 0], [Math.max(0, -dy), Math.max(0, dy)], [Math.max(0, -dx), Math.max(0, dx)], [0, 0]]) as tf.Tensor4D;
      }
      sum = sum ? tf.add<tf.Tensor4D>(sum, part) : part;
    }
  }
  return sum!;
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
