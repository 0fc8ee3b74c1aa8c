/**
 * Encoder initialisations that need no network: the Keras MobileNetV2 shipped
 * inside the nsfwjs npm package, or any tfjs layers model whose layer names
 * match ours (a user's converted ResNet-34, see resnet34.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, LesionError } from '../errors.ts';
import type { ModelConfig } from './deeplab.ts';

export const MOBILENETV2_PROVENANCE =
  'Keras MobileNetV2 (alpha 1.0, 224x224) as shipped in the npm package nsfwjs 4.4.0 (MIT licence), ' +
  'weights uint8-quantised. Layers up to block_10_project_BN are kept from the ImageNet initialisation ' +
  '(nsfwjs marks them non-trainable); the later blocks were fine-tuned by the nsfwjs authors on their own ' +
  'image-classification task, so they are not pure ImageNet weights.';

/** Source weights by '<layer>/<param>', e.g. 'Conv1/kernel', 'bn_Conv1/moving_mean'. */
export type NamedWeights = Map<string, tf.Tensor>;

/** Layer names of deeplab.ts's ASPP and decoder: never part of an encoder initialisation. */
const DECODER_PREFIXES = ['aspp_', 'decoder', 'head'];

interface NsfwModelJson {
  modelTopology: unknown;
  weightsManifest: tf.io.WeightsManifestConfig;
}

function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * Decodes nsfwjs's MobileNetV2 weights (dequantised to float32). The caller
 * owns the tensors. Only the models subpath is imported, and lazily, so
 * nsfwjs's main entry never loads and bundlers split the 3.6 MB shard off.
 */
export async function loadNsfwjsMobileNetV2(
  config?: Pick<ModelConfig, 'encoder' | 'width'>,
): Promise<NamedWeights> {
  if (config && config.encoder !== 'mobilenetv2') {
    throw new ConfigError('init', `the built-in ImageNet weights are MobileNetV2's; encoder ${config.encoder} needs user-supplied weights`);
  }
  if (config && config.width !== 1) {
    throw new ConfigError('width', `the built-in ImageNet MobileNetV2 has width 1; width ${config.width} must start from random weights`);
  }
  const { MobileNetV2Model } = await import('nsfwjs/models/mobilenet_v2');
  const jsonModule = (await MobileNetV2Model.modelJson()) as unknown as { default?: NsfwModelJson } & NsfwModelJson;
  const json = jsonModule.default ?? jsonModule;
  const shards = await Promise.all(MobileNetV2Model.weightBundles.map(async (load) => base64ToBytes((await load()).default)));
  const specs = json.weightsManifest.flatMap((group) => group.weights);
  const decoded = tf.io.decodeWeights(shards.map((s) => s.buffer as ArrayBuffer), specs);
  return new Map(Object.entries(decoded));
}

/** MobileNetV2's layers that nsfwjs kept from ImageNet (it froze them): the stem and blocks 0-10. */
const IMAGENET_LAYER = /^(Conv1|bn_Conv1|expanded_conv_|block_([1-9]|10)_)/;

/**
 * The card's built-in encoder weights: all of nsfwjs's, or only its ImageNet
 * layers (the later blocks then keep the seeded draws). The caller owns the tensors.
 */
export async function builtInEncoderWeights(config: Pick<ModelConfig, 'encoder' | 'width' | 'init'>): Promise<NamedWeights> {
  const weights = await loadNsfwjsMobileNetV2(config);
  if (config.init === 'nsfwjs') return weights;
  for (const [key, tensor] of weights) {
    if (!IMAGENET_LAYER.test(key)) {
      tensor.dispose();
      weights.delete(key);
    }
  }
  return weights;
}

/** A loaded tfjs layers model's weights, named the way applyEncoderWeights looks them up. */
export function weightsByLayerName(model: tf.LayersModel): NamedWeights {
  const named: NamedWeights = new Map();
  for (const layer of model.layers) {
    const values = layer.getWeights();
    layer.weights.forEach((w, i) => named.set(`${layer.name}/${paramName(w)}`, values[i]));
  }
  return named;
}

/** 'kernel' for 'Conv1/kernel' (and for the uniquified 'Conv1/kernel_3' a second model gets). */
function paramName(weight: tf.LayerVariable): string {
  return weight.originalName.slice(weight.originalName.lastIndexOf('/') + 1);
}

/**
 * Sets every encoder layer whose name has weights in `source`, param by param
 * (conv: kernel[, bias]; depthwise: depthwise_kernel; batch norm: gamma,
 * beta, moving_mean, moving_variance). `missing` lists the encoder layers
 * with weights that `source` lacks; ASPP and decoder layers are never looked up.
 */
export function applyEncoderWeights(model: tf.LayersModel, source: NamedWeights): { loaded: string[]; missing: string[] } {
  const loaded: string[] = [];
  const missing: string[] = [];
  for (const layer of model.layers) {
    if (layer.weights.length === 0 || DECODER_PREFIXES.some((p) => layer.name.startsWith(p))) continue;
    const keys = layer.weights.map((w) => `${layer.name}/${paramName(w)}`);
    const found = keys.filter((key) => source.has(key));
    if (found.length === 0) {
      missing.push(layer.name);
      continue;
    }
    if (found.length < keys.length) {
      const absent = keys.filter((key) => !source.has(key));
      throw new LesionError('model', `layer ${layer.name}: the pretrained weights lack ${absent.join(', ')}`);
    }
    const values = keys.map((key, i) => {
      const value = source.get(key)!;
      const expected = layer.weights[i].shape;
      if (!tf.util.arraysEqual(value.shape, expected as number[])) {
        throw new LesionError(
          'model',
          `layer ${layer.name}: pretrained ${key} has shape [${value.shape}] but the model expects [${expected}] (a different width or encoder?)`,
        );
      }
      return value;
    });
    layer.setWeights(values);
    loaded.push(layer.name);
  }
  return { loaded, missing };
}
