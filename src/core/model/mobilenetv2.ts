/**
 * MobileNetV2 with Keras' layer names (so Keras/tfjs weights map by name),
 * optionally dilated like segmentation_models_pytorch does for DeepLabV3:
 * a stage that would halve the resolution past the output stride keeps it and
 * dilates every convolution in that stage instead.
 */
import type * as tf from '@tensorflow/tfjs';
import { makeDivisible, type LayerKit } from './layers.ts';

type Sym = tf.SymbolicTensor;

// Keras MobileNetV2: expansion, output channels, repeats, first stride.
const BLOCKS: [number, number, number, number][] = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

const BN = { epsilon: 1e-3, momentum: 0.9 };

export interface EncoderOutput {
  features: Sym;
  channels: number;
}

export function mobileNetV2(kit: LayerKit, input: Sym, alpha: number, outputStride: 8 | 16): EncoderOutput {
  const first = makeDivisible(32 * alpha);
  let x = kit.zeroPad(input, 'Conv1_pad', [[0, 1], [0, 1]]);
  x = kit.conv(x, { name: 'Conv1', filters: first, kernel: 3, stride: 2, padding: 'valid' });
  x = kit.bn(x, { name: 'bn_Conv1', ...BN });
  x = kit.relu(x, 'Conv1_relu', 6);

  let inChannels = first;
  let stride = 2;
  let rate = 1;
  let index = 0;
  for (const [expansion, channels, repeats, firstStride] of BLOCKS) {
    const out = makeDivisible(channels * alpha);
    for (let r = 0; r < repeats; r++) {
      let s = r === 0 ? firstStride : 1;
      if (s === 2 && stride >= outputStride) {
        // smp's replace_strides_with_dilation: the stage keeps its resolution
        // and all its convolutions, the formerly strided one included, dilate.
        rate *= 2;
        s = 1;
      } else if (s === 2) {
        stride *= 2;
      }
      x = kit.dilateStage(x, rate, `block_${index}_regrid`);
      x = invertedResidual(kit, x, { inChannels, out, expansion, stride: s, rate, index });
      inChannels = out;
      index++;
    }
  }

  // Keras keeps the last conv at 1280 for alpha <= 1.
  const last = alpha > 1 ? makeDivisible(1280 * alpha) : 1280;
  x = kit.conv(x, { name: 'Conv_1', filters: last, kernel: 1 });
  x = kit.bn(x, { name: 'Conv_1_bn', ...BN });
  x = kit.relu(x, 'out_relu', 6);
  x = kit.undilate(x, 'encoder_ungrid');
  return { features: x, channels: last };
}

function invertedResidual(
  kit: LayerKit,
  input: Sym,
  b: { inChannels: number; out: number; expansion: number; stride: number; rate: number; index: number },
): Sym {
  const prefix = b.index === 0 ? 'expanded_conv_' : `block_${b.index}_`;
  let x = input;
  if (b.index > 0) {
    x = kit.conv(x, { name: `${prefix}expand`, filters: b.expansion * b.inChannels, kernel: 1 });
    x = kit.bn(x, { name: `${prefix}expand_BN`, ...BN });
    x = kit.relu(x, `${prefix}expand_relu`, 6);
  }
  if (b.stride === 2) {
    x = kit.zeroPad(x, `${prefix}pad`, [[0, 1], [0, 1]]);
    x = kit.depthwise(x, { name: `${prefix}depthwise`, kernel: 3, stride: 2, padding: 'valid' });
  } else {
    x = kit.depthwise(x, { name: `${prefix}depthwise`, kernel: 3, rate: b.rate });
  }
  x = kit.bn(x, { name: `${prefix}depthwise_BN`, ...BN });
  x = kit.relu(x, `${prefix}depthwise_relu`, 6);
  x = kit.conv(x, { name: `${prefix}project`, filters: b.out, kernel: 1 });
  if (b.inChannels === b.out && b.stride === 1) return kit.bnAdd(x, { name: `${prefix}project_BN`, ...BN }, input, `${prefix}add`);
  return kit.bn(x, { name: `${prefix}project_BN`, ...BN });
}
