/**
 * The few layer shapes the encoders and the decoder are made of, built once
 * for training (atrous layers that train everywhere) or for export (tfjs's own
 * dilated layers, which plain tfjs loads), with identical weight names and,
 * for one seed, identical initial weights.
 */
import * as tf from '@tensorflow/tfjs';
import { deriveSeed } from '../random.ts';
import { AtrousConv2D, BatchToSpace, SpaceToBatch } from './atrous.ts';
import { ReLU6 } from './activation.ts';
import { BatchNorm } from './batchnorm.ts';
import { SeededDropout } from './dropout.ts';

export type BuildMode = 'train' | 'export';
type Sym = tf.SymbolicTensor;

export interface ConvSpec {
  filters: number;
  kernel: number;
  stride?: number;
  rate?: number;
  bias?: boolean;
  name: string;
  /** Keras-style explicit padding before a 'valid' conv; otherwise 'same'. */
  padding?: 'same' | 'valid';
}

export interface BnSpec {
  name: string;
  epsilon: number;
  momentum: number;
}

export class LayerKit {
  /** In training builds, the regridding factors applied so far; their product is the current stage's rate. */
  private readonly regrids: number[] = [];

  constructor(
    readonly mode: BuildMode,
    private readonly seed: number,
  ) {}

  /**
   * A layer's kernel is drawn from the run's seed and the layer's name alone:
   * the same card draws the same weights (tfjs's unseeded initialisers draw
   * new ones in every build), and adding or removing a layer shifts no other
   * layer's draw.
   */
  private kernelSeed(name: string): number {
    return deriveSeed(this.seed, `init/${name}`);
  }

  private kernelInit(name: string) {
    return tf.initializers.heNormal({ seed: this.kernelSeed(name) });
  }

  private get regrid(): number {
    return this.regrids.reduce((a, b) => a * b, 1);
  }

  /**
   * Enters a dilated encoder stage. Training builds regrid once (see
   * SpaceToBatch) and run the stage's convolutions undilated; export builds
   * keep tfjs's own dilated layers, which plain tfjs loads.
   */
  dilateStage(x: Sym, rate: number, name: string): Sym {
    if (this.mode === 'export' || rate === this.regrid) return x;
    const factor = rate / this.regrid;
    this.regrids.push(factor);
    return new SpaceToBatch({ name, factor }).apply(x) as Sym;
  }

  /**
   * Leaves all dilated stages: back to the full-resolution grid. Each
   * regridding is undone, last first: one BatchToSpace by the product of two
   * factors would put the sub-grids back in the wrong order.
   */
  undilate(x: Sym, name: string): Sym {
    let y = x;
    while (this.regrids.length > 0) {
      const factor = this.regrids.pop()!;
      const layerName = this.regrids.length === 0 ? name : `${name}_${this.regrids.length}`;
      y = new BatchToSpace({ name: layerName, factor }).apply(y) as Sym;
    }
    return y;
  }

  /** A spec without a rate is pointwise or belongs to the current stage. */
  private effectiveRate(rate: number | undefined): number {
    return (rate ?? this.regrid) / this.regrid;
  }

  conv(x: Sym, s: ConvSpec): Sym {
    const rate = this.effectiveRate(s.rate);
    if (rate > 1 && s.kernel > 1 && this.mode === 'train') {
      if (s.bias) throw new Error(`${s.name}: atrous convolutions are built without bias`);
      return new AtrousConv2D({ name: s.name, filters: s.filters, kernelSize: s.kernel, rate, seed: this.kernelSeed(s.name) }).apply(x) as Sym;
    }
    return tf.layers
      .conv2d({
        name: s.name,
        filters: s.filters,
        kernelSize: s.kernel,
        strides: s.stride ?? 1,
        dilationRate: rate,
        padding: s.padding ?? 'same',
        useBias: s.bias ?? false,
        kernelInitializer: this.kernelInit(s.name),
      })
      .apply(x) as Sym;
  }

  depthwise(x: Sym, s: Omit<ConvSpec, 'filters'>): Sym {
    const rate = this.effectiveRate(s.rate);
    if (rate > 1 && this.mode === 'train') {
      throw new Error(`${s.name}: dilated depthwise convolutions train only inside a regridded stage`);
    }
    if (rate > 1) return this.subgridDepthwise(x, s, rate);
    return tf.layers
      .depthwiseConv2d({
        name: s.name,
        kernelSize: s.kernel,
        strides: s.stride ?? 1,
        dilationRate: rate,
        padding: s.padding ?? 'same',
        useBias: false,
        depthwiseInitializer: this.kernelInit(s.name),
      })
      .apply(x) as Sym;
  }

  /**
   * tfjs-layers 4.22's DepthwiseConv2D ignores its dilationRate (a TODO in its
   * call), so export builds dilate it the way training builds do, from
   * standard layers that plain tfjs loads: the rate x rate sub-grids become
   * time steps and one undilated depthwise layer runs on each. The wrapper
   * carries the layer's name and its weights are the depthwise kernel itself.
   */
  private subgridDepthwise(x: Sym, s: Omit<ConvSpec, 'filters'>, rate: number): Sym {
    const [, h, w, c] = x.shape as number[];
    if ((s.stride ?? 1) !== 1 || h % rate !== 0 || w % rate !== 0) {
      throw new Error(`${s.name}: a dilated depthwise convolution needs stride 1 and a ${h}x${w} map divisible by ${rate}`);
    }
    const reshape = (y: Sym, targetShape: number[], suffix: string) =>
      tf.layers.reshape({ name: `${s.name}_${suffix}`, targetShape }).apply(y) as Sym;
    const permute = (y: Sym, dims: number[], suffix: string) =>
      tf.layers.permute({ name: `${s.name}_${suffix}`, dims }).apply(y) as Sym;
    const [hs, ws] = [h / rate, w / rate];
    let y = reshape(x, [hs, rate, ws, rate, c], 'split');
    y = permute(y, [2, 4, 1, 3, 5], 'subgrids_first');
    y = reshape(y, [rate * rate, hs, ws, c], 'subgrids');
    const depthwise = tf.layers.depthwiseConv2d({
      name: `${s.name}_subgrid`,
      kernelSize: s.kernel,
      padding: 'same',
      useBias: false,
      depthwiseInitializer: this.kernelInit(s.name),
    });
    y = tf.layers.timeDistributed({ name: s.name, layer: depthwise }).apply(y) as Sym;
    y = reshape(y, [rate, rate, hs, ws, c], 'unsplit');
    y = permute(y, [3, 1, 4, 2, 5], 'subgrids_last');
    return reshape(y, [h, w, c], 'merged');
  }

  bn(x: Sym, s: BnSpec): Sym {
    if (this.mode === 'train') return new BatchNorm({ name: s.name, epsilon: s.epsilon, momentum: s.momentum }).apply(x) as Sym;
    return tf.layers.batchNormalization({ name: s.name, epsilon: s.epsilon, momentum: s.momentum }).apply(x) as Sym;
  }

  /** skip + bn(x): in training builds the BatchNorm adds it (batchnorm.ts), in export builds tfjs's Add layer named `addName`. */
  bnAdd(x: Sym, s: BnSpec, skip: Sym, addName: string): Sym {
    if (this.mode === 'train') return new BatchNorm({ name: s.name, epsilon: s.epsilon, momentum: s.momentum }).apply([x, skip]) as Sym;
    return this.add([skip, this.bn(x, s)], addName);
  }

  relu(x: Sym, name: string, maxValue?: number): Sym {
    if (this.mode === 'train' && maxValue === 6) return new ReLU6({ name }).apply(x) as Sym;
    return tf.layers.reLU({ name, maxValue }).apply(x) as Sym;
  }

  zeroPad(x: Sym, name: string, padding: [[number, number], [number, number]]): Sym {
    return tf.layers.zeroPadding2d({ name, padding }).apply(x) as Sym;
  }

  dropout(x: Sym, name: string, rate: number): Sym {
    if (this.mode === 'train') return new SeededDropout({ name, rate }).apply(x) as Sym;
    return tf.layers.dropout({ name, rate }).apply(x) as Sym;
  }

  maxPool(x: Sym, name: string, pool: number, stride: number): Sym {
    return tf.layers.maxPooling2d({ name, poolSize: pool, strides: stride, padding: 'same' }).apply(x) as Sym;
  }

  add(xs: Sym[], name: string): Sym {
    return tf.layers.add({ name }).apply(xs) as Sym;
  }
}

/** Keras' _make_divisible: channel counts for a width multiplier. */
export function makeDivisible(v: number, divisor = 8): number {
  const rounded = Math.max(divisor, Math.floor(v + divisor / 2) - (Math.floor(v + divisor / 2) % divisor));
  return rounded < 0.9 * v ? rounded + divisor : rounded;
}
