/**
 * DeepLabV3 as segmentation_models_pytorch builds it (the paper's code):
 * encoder at output stride 8 or 16, ASPP (1x1, three atrous 3x3, image
 * pooling), 1x1 projection with dropout, 3x3 conv-BN-ReLU, a 1x1 head with one
 * logit channel, bilinear upsampling back to the input size.
 */
import * as tf from '@tensorflow/tfjs';
import { LayerKit, type BuildMode } from './layers.ts';
import { mobileNetV2 } from './mobilenetv2.ts';
import { resNet34 } from './resnet34.ts';

export type EncoderName = 'mobilenetv2' | 'resnet34';
/**
 * Where the encoder's first weights come from. The built-in ones are the
 * MobileNetV2 that nsfwjs ships: ImageNet's through block_10 (nsfwjs froze
 * them), tuned by nsfwjs for its own task after. 'imagenet-through-block10'
 * keeps only ImageNet's part and draws the later blocks.
 */
export type EncoderInit = 'nsfwjs' | 'imagenet-through-block10' | 'random' | 'user';

export interface ModelConfig {
  encoder: EncoderName;
  /** Width multiplier: 1 is the standard network; small values make test-sized models. */
  width: number;
  outputStride: 8 | 16;
  atrousRates: [number, number, number];
  asppChannels: number;
  dropout: number;
  /** Square input side in pixels; a multiple of the output stride. */
  inputSize: number;
  init: EncoderInit;
  /** Pixels enter the model in [0, 1]; 'symmetric' rescales to [-1, 1] inside it (Keras MobileNetV2's convention). */
  inputRange: 'unit' | 'symmetric';
}

const BN = { epsilon: 1e-5, momentum: 0.9 };
type Sym = tf.SymbolicTensor;

/**
 * `seed` is the run card's: every initial weight is drawn from it (see
 * LayerKit), so two builds of one card start from the same weights.
 */
export function buildDeepLabV3(config: ModelConfig, mode: BuildMode, seed: number): tf.LayersModel {
  if (config.inputSize % config.outputStride !== 0) {
    throw new Error(`inputSize ${config.inputSize} must be a multiple of the output stride ${config.outputStride}`);
  }
  const kit = new LayerKit(mode, seed);
  const size = config.inputSize;
  const input = tf.input({ shape: [size, size, 3], name: 'image' });
  const scaled = config.inputRange === 'symmetric'
    ? (tf.layers.rescaling({ scale: 2, offset: -1, name: 'to_symmetric' }).apply(input) as Sym)
    : input;
  const encoder = config.encoder === 'mobilenetv2'
    ? mobileNetV2(kit, scaled, config.width, config.outputStride)
    : resNet34(kit, scaled, config.width, config.outputStride);

  const c = config.asppChannels;
  const fs = size / config.outputStride;
  const branch = (x: Sym, name: string, kernel: number, rate: number): Sym => {
    let y = kit.conv(x, { name: `${name}_conv`, filters: c, kernel, rate });
    y = kit.bn(y, { name: `${name}_bn`, ...BN });
    return kit.relu(y, `${name}_relu`);
  };
  const f = encoder.features;
  const branches = [
    branch(f, 'aspp_0', 1, 1),
    ...config.atrousRates.map((rate, i) => branch(f, `aspp_${i + 1}`, 3, rate)),
  ];
  let pooled = tf.layers.globalAveragePooling2d({ name: 'aspp_pool_avg', dataFormat: 'channelsLast' }).apply(f) as Sym;
  pooled = tf.layers.reshape({ name: 'aspp_pool_reshape', targetShape: [1, 1, encoder.channels] }).apply(pooled) as Sym;
  pooled = branch(pooled, 'aspp_pool', 1, 1);
  pooled = tf.layers.upSampling2d({ name: 'aspp_pool_upsample', size: [fs, fs], interpolation: 'bilinear' }).apply(pooled) as Sym;
  branches.push(pooled);

  let x = tf.layers.concatenate({ name: 'aspp_concat', axis: -1 }).apply(branches) as Sym;
  x = branch(x, 'aspp_project', 1, 1);
  x = kit.dropout(x, 'aspp_dropout', config.dropout);
  x = branch(x, 'decoder', 3, 1);
  x = kit.conv(x, { name: 'head', filters: 1, kernel: 1, bias: true });
  const logits = tf.layers
    .upSampling2d({ name: 'logits', size: [config.outputStride, config.outputStride], interpolation: 'bilinear' })
    .apply(x) as Sym;
  return tf.model({ inputs: input, outputs: logits, name: `deeplabv3_${config.encoder}` });
}

/** Copies weights between a training and an export build of the same config, by layer name. */
export function copyWeights(from: tf.LayersModel, to: tf.LayersModel): void {
  for (const layer of to.layers) {
    const weights = layer.getWeights();
    if (weights.length === 0) continue;
    layer.setWeights(from.getLayer(layer.name).getWeights());
  }
}

export function countParameters(model: tf.LayersModel): number {
  return model.weights.reduce((n, w) => n + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0);
}
