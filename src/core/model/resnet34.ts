/**
 * ResNet-34 (torchvision's BasicBlock layout), dilated like
 * segmentation_models_pytorch does for DeepLabV3. Layer names follow
 * torchvision's parameter paths with '_' for '.', so a user's converted
 * weights map by name.
 */
import type * as tf from '@tensorflow/tfjs';
import type { LayerKit } from './layers.ts';
import type { EncoderOutput } from './mobilenetv2.ts';

type Sym = tf.SymbolicTensor;

const STAGES: [number, number][] = [
  [64, 3],
  [128, 4],
  [256, 6],
  [512, 3],
];

const BN = { epsilon: 1e-5, momentum: 0.9 };

export function resNet34(kit: LayerKit, input: Sym, width: number, outputStride: 8 | 16): EncoderOutput {
  const stem = Math.max(8, Math.round(64 * width));
  let x = kit.conv(input, { name: 'conv1', filters: stem, kernel: 7, stride: 2 });
  x = kit.bn(x, { name: 'bn1', ...BN });
  x = kit.relu(x, 'relu');
  x = kit.maxPool(x, 'maxpool', 3, 2);

  let inChannels = stem;
  let stride = 4;
  let rate = 1;
  STAGES.forEach(([channels, blocks], stage) => {
    const out = Math.max(8, Math.round(channels * width));
    for (let b = 0; b < blocks; b++) {
      let s = b === 0 && stage > 0 ? 2 : 1;
      if (s === 2 && stride >= outputStride) {
        rate *= 2;
        s = 1;
      } else if (s === 2) {
        stride *= 2;
      }
      x = kit.dilateStage(x, rate, `layer${stage + 1}_${b}_regrid`);
      x = basicBlock(kit, x, { name: `layer${stage + 1}_${b}`, inChannels, out, stride: s, rate });
      inChannels = out;
    }
  });
  x = kit.undilate(x, 'encoder_ungrid');
  return { features: x, channels: inChannels };
}

function basicBlock(
  kit: LayerKit,
  input: Sym,
  b: { name: string; inChannels: number; out: number; stride: number; rate: number },
): Sym {
  let x = kit.conv(input, { name: `${b.name}_conv1`, filters: b.out, kernel: 3, stride: b.stride, rate: b.rate });
  x = kit.bn(x, { name: `${b.name}_bn1`, ...BN });
  x = kit.relu(x, `${b.name}_relu1`);
  x = kit.conv(x, { name: `${b.name}_conv2`, filters: b.out, kernel: 3, rate: b.rate });
  x = kit.bn(x, { name: `${b.name}_bn2`, ...BN });
  let shortcut = input;
  if (b.stride !== 1 || b.inChannels !== b.out) {
    shortcut = kit.conv(input, { name: `${b.name}_downsample_0`, filters: b.out, kernel: 1, stride: b.stride });
    shortcut = kit.bn(shortcut, { name: `${b.name}_downsample_1`, ...BN });
  }
  return kit.relu(kit.add([x, shortcut], `${b.name}_add`), `${b.name}_relu2`);
}
