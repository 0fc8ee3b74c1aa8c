import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { MobileNetV2Model } from 'nsfwjs/models/mobilenet_v2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSample, type LoadedSample } from '../src/core/dataset/loader.ts';
import { paperCard } from '../src/core/config.ts';
import { ConfigError, LesionError } from '../src/core/errors.ts';
import { softDiceLoss } from '../src/core/training/losses.ts';
import { buildDeepLabV3, copyWeights, countParameters, type ModelConfig } from '../src/core/model/deeplab.ts';
import {
  applyEncoderWeights,
  loadNsfwjsMobileNetV2,
  MOBILENETV2_PROVENANCE,
  weightsByLayerName,
  type NamedWeights,
} from '../src/core/model/pretrained.ts';
import { imagesToBatch, masksToBatch } from '../src/core/dataset/samples.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { loadLayersModel, saveLayersModel } from '../src/node/model-files.ts';
import { datasetsRoot, relativeError, repoRoot, seededWeights, setWeightValues, tinyConfig } from './helpers/tf-node.ts';

const ISIC_IDS = ['ISIC_0000013', 'ISIC_0000015', 'ISIC_0000160', 'ISIC_0000161'];

async function isicSamples(size: number): Promise<LoadedSample[]> {
  const source = new FsFileSource([path.join(datasetsRoot, 'isic2018')]);
  const decoder = new SharpDecoder();
  return Promise.all(
    ISIC_IDS.map((id) =>
      loadSample(
        {
          id,
          set: 'isic2018',
          layout: 'isic2018',
          split: 'train',
          image: `isic2018/ISIC2018_Task1-2_Training_Input/${id}.jpg`,
          mask: `isic2018/ISIC2018_Task1_Training_GroundTruth/${id}_segmentation.png`,
        },
        source,
        decoder,
        { width: size, height: size },
      ),
    ),
  );
}

function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i] / n; mb += b[i] / n; }
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

/** The paper card's model at 128 px: the default the studio trains. */
const DEFAULT_CONFIG: ModelConfig = { ...paperCard().model, inputSize: 128 };

describe('the default DeepLabV3-MobileNetV2 with the ImageNet-derived encoder', () => {
  let model: tf.LayersModel;
  let imagenet: NamedWeights;
  let applied: { loaded: string[]; missing: string[] };

  beforeAll(async () => {
    await tf.setBackend('cpu');
    model = buildDeepLabV3(DEFAULT_CONFIG, 'train', paperCard().seed);
    imagenet = await loadNsfwjsMobileNetV2(DEFAULT_CONFIG);
    applied = applyEncoderWeights(model, imagenet);
  });
  afterAll(() => {
    model.dispose();
    tf.dispose([...imagenet.values()]);
  });

  it('has about 12.7 M parameters (smp counts 12.6 M without batch-norm statistics) and full-size logits', () => {
    const statistics = model.nonTrainableWeights.reduce((n, w) => n + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0);
    expect(countParameters(model)).toBeGreaterThan(12.6e6);
    expect(countParameters(model)).toBeLessThan(12.8e6);
    expect(countParameters(model) - statistics).toBeGreaterThan(12.5e6);
    const logits = tf.tidy(() => (model.predict(tf.zeros([1, 128, 128, 3])) as tf.Tensor).shape);
    expect(logits).toEqual([1, 128, 128, 1]);
  });

  it('loads every encoder layer, and nothing of nsfwjs but its classifier head stays unused', () => {
    expect(applied.missing).toEqual([]);
    // Keras MobileNetV2 without top: Conv1, 2 convolutions in block 0, 3 in each
    // of blocks 1-16, Conv_1: 52 convolutions, each with its batch norm.
    expect(applied.loaded).toHaveLength(104);
    expect(applied.loaded).toEqual(expect.arrayContaining(['Conv1', 'bn_Conv1', 'expanded_conv_depthwise', 'block_16_project_BN', 'Conv_1_bn']));
    const used = new Set(applied.loaded.flatMap((name) => model.getLayer(name).weights.map((w) => `${name}/${w.originalName.split('/').pop()}`)));
    const unused = [...imagenet.keys()].filter((key) => !used.has(key));
    expect(unused.every((key) => key.startsWith('dense_'))).toBe(true);
    expect(used.size).toBe(imagenet.size - unused.length);
  });

  it('holds exactly the dequantised values of the uint8 shard', async () => {
    for (const name of applied.loaded) {
      const layer = model.getLayer(name);
      layer.getWeights().forEach((value, i) => {
        const key = `${name}/${layer.weights[i].originalName.split('/').pop()}`;
        expect(relativeError(value.dataSync(), imagenet.get(key)!.dataSync()), key).toBe(0);
      });
    }
    // Independently of tfjs's decoder: every value is min + k * scale, k in 0..255.
    const json = (await MobileNetV2Model.modelJson()) as unknown as { default: tf.io.ModelJSON };
    const spec = json.default.weightsManifest[0].weights.find((w) => w.name === 'Conv1/kernel')!;
    const { min, scale } = spec.quantization as { min: number; scale: number };
    const steps = [...model.getLayer('Conv1').getWeights()[0].dataSync()].map((v) => (v - min) / scale);
    expect(steps.every((k) => Math.abs(k - Math.round(k)) < 1e-3 && k > -1e-3 && k < 255 + 1e-3)).toBe(true);
    expect(new Set(steps.map(Math.round)).size).toBeGreaterThan(100);
  });

  it('computes ImageNet-like features on real dermoscopy images: batch statistics track the stored ones', async () => {
    // A kernel, a batch-norm parameter or the input range mapped wrongly would
    // decorrelate the activations from the moving statistics saved with them.
    const samples = await isicSamples(128);
    const probe = tf.model({
      inputs: model.inputs,
      outputs: ['Conv1', 'block_3_expand'].map((name) => model.getLayer(name).output as tf.SymbolicTensor),
    });
    const [conv1, block3] = tf.tidy(() => {
      const x = tf.tensor4d(imagesToBatch(samples.map((s) => s.image)), [4, 128, 128, 3]);
      return (probe.predict(x) as tf.Tensor[]).map((f) => {
        const { mean, variance } = tf.moments(f, [0, 1, 2]);
        return { mean: mean.dataSync(), logVariance: tf.log(tf.add(variance, 1e-6)).dataSync() };
      });
    });
    const stored = (bn: string) => ({
      mean: imagenet.get(`${bn}/moving_mean`)!.dataSync(),
      logVariance: tf.tidy(() => tf.log(tf.add(imagenet.get(`${bn}/moving_variance`)!, 1e-6)).dataSync()),
    });
    expect(pearson(conv1.mean, stored('bn_Conv1').mean)).toBeGreaterThan(0.6);
    expect(pearson(conv1.logVariance, stored('bn_Conv1').logVariance)).toBeGreaterThan(0.95);
    expect(pearson(block3.logVariance, stored('block_3_expand_BN').logVariance)).toBeGreaterThan(0.7);
  });

  it('names its provenance honestly', () => {
    expect(MOBILENETV2_PROVENANCE).toMatch(/nsfwjs 4\.4\.0/);
    expect(MOBILENETV2_PROVENANCE).toMatch(/block_10_project_BN/);
    expect(MOBILENETV2_PROVENANCE).toMatch(/fine-tuned/);
  });
});

describe('encoder initialisation errors and user-supplied weights', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('refuses widths and encoders the built-in weights do not have', async () => {
    await expect(loadNsfwjsMobileNetV2({ encoder: 'mobilenetv2', width: 0.35 })).rejects.toBeInstanceOf(ConfigError);
    await expect(loadNsfwjsMobileNetV2({ encoder: 'resnet34', width: 1 })).rejects.toThrow(/user-supplied/);
  });

  it('names the layer whose shape does not fit', () => {
    const model = buildDeepLabV3(tinyConfig('mobilenetv2', { width: 0.35 }), 'train', 0);
    const kernel = tf.zeros([3, 3, 3, 32]);
    try {
      expect(() => applyEncoderWeights(model, new Map([['Conv1/kernel', kernel]]))).toThrow(/layer Conv1: pretrained Conv1\/kernel has shape \[3,3,3,32\] but the model expects \[3,3,3,16\]/);
    } finally {
      model.dispose();
      kernel.dispose();
    }
  });

  it('loads a user ResNet-34 layers model by torchvision-style names, and rejects a layer with a missing parameter', () => {
    const config = tinyConfig('resnet34');
    const user = buildDeepLabV3(config, 'export', 5);
    const target = buildDeepLabV3(config, 'train', 5);
    try {
      setWeightValues(user, seededWeights(user, 5));
      const weights = weightsByLayerName(user);
      const { loaded, missing } = applyEncoderWeights(target, weights);
      expect(missing).toEqual([]);
      expect(loaded).toEqual(expect.arrayContaining(['conv1', 'bn1', 'layer1_0_conv1', 'layer4_2_bn2', 'layer2_0_downsample_0']));
      expect(loaded.some((name) => name.startsWith('aspp') || name.startsWith('decoder') || name === 'head')).toBe(false);
      for (const name of loaded) {
        const ours = target.getLayer(name).getWeights();
        user.getLayer(name).getWeights().forEach((w, i) => expect(relativeError(ours[i].dataSync(), w.dataSync())).toBe(0));
      }
      weights.delete('bn1/moving_mean');
      expect(() => applyEncoderWeights(target, weights)).toThrow(LesionError);
      expect(() => applyEncoderWeights(target, weights)).toThrow(/layer bn1: the pretrained weights lack bn1\/moving_mean/);
    } finally {
      user.dispose();
      target.dispose();
    }
  });
});

describe('initial weights', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('depend on the seed and the layer alone: the export build starts as the training build, another ASPP leaves the encoder as it was', () => {
    // Output stride 8 at 64 px: atrous ASPP layers and dilated depthwise layers differ between the two builds.
    const config = tinyConfig('mobilenetv2', { width: 0.35 });
    const train = buildDeepLabV3(config, 'train', 7);
    const exported = buildDeepLabV3(config, 'export', 7);
    const wider = buildDeepLabV3({ ...config, asppChannels: 24 }, 'train', 7);
    try {
      const expectSameStart = (a: tf.LayersModel, b: tf.LayersModel, names: string[]) => {
        expect(names.length).toBeGreaterThan(0);
        for (const name of names) {
          const ours = a.getLayer(name).getWeights();
          b.getLayer(name).getWeights().forEach((w, i) => expect(relativeError(ours[i].dataSync(), w.dataSync()), name).toBe(0));
        }
      };
      const withWeights = (m: tf.LayersModel) => m.layers.filter((l) => l.weights.length > 0).map((l) => l.name);
      expectSameStart(train, exported, withWeights(exported));
      expectSameStart(train, wider, withWeights(wider).filter((name) => !/^(aspp_|decoder|head)/.test(name)));
    } finally {
      [train, exported, wider].forEach((m) => m.dispose());
    }
  });
});

describe('a tiny model trained on real ISIC 2018 images', () => {
  // The cpu backend's convolution filter gradient runs ~20 s per step of this
  // model on these machines; wasm with the training kernels, whose gradients
  // equal cpu's (wasm-training.test.ts), runs the same steps in ~1 s.
  beforeAll(async () => {
    await initNodeBackend('wasm');
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('lowers its Dice loss within 15 SGD steps', async () => {
    const config = tinyConfig('mobilenetv2', { width: 0.35, inputSize: 64 });
    const samples = await isicSamples(64);
    const model = buildDeepLabV3(config, 'train', 1);
    const optimizer = tf.train.momentum(0.05, 0.9);
    const x = tf.tensor4d(imagesToBatch(samples.map((s) => s.image)), [4, 64, 64, 3]);
    const y = tf.tensor4d(masksToBatch(samples.map((s) => s.mask!)), [4, 64, 64, 1]);
    try {
      setWeightValues(model, seededWeights(model, 1));
      expect(tf.sum(y).dataSync()[0]).toBeGreaterThan(0);
      const losses: number[] = [];
      for (let step = 0; step < 15; step++) {
        const loss = optimizer.minimize(() => softDiceLoss(model.apply(x, { training: true }) as tf.Tensor, y), true)!;
        losses.push((await loss.data())[0]);
        loss.dispose();
      }
      const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
      const first = mean(losses.slice(0, 3));
      const last = mean(losses.slice(-3));
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(last, `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`).toBeLessThan(first * 0.9);
    } finally {
      model.dispose();
      optimizer.dispose();
      tf.dispose([x, y]);
    }
  });
});

describe('the export build on disk', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lesion-model-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // MobileNetV2 at output stride 8 has dilated depthwise layers (rates 2 and 4).
  const config = tinyConfig('mobilenetv2', { width: 0.35 });
  const input = Float32Array.from({ length: 64 * 64 * 3 }, (_, i) => (Math.sin(i * 0.37) + 1) / 2);

  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('round-trips predictions and metadata through saveLayersModel and loadLayersModel', async () => {
    const train = buildDeepLabV3(config, 'train', 3);
    const exported = buildDeepLabV3(config, 'export', 3);
    setWeightValues(train, seededWeights(train, 3));
    copyWeights(train, exported);
    const metadata = { format: 'lesion-studio-model/1', inputSize: 64, threshold: 0.5 };
    await saveLayersModel(exported, dir, metadata);
    const loaded = await loadLayersModel<typeof metadata>(dir);
    try {
      expect(loaded.metadata).toEqual(metadata);
      const [before, after, trained] = tf.tidy(() => {
        const x = tf.tensor4d(input, [1, 64, 64, 3]);
        return [exported, loaded.model, train].map((m) => (m.predict(x) as tf.Tensor).dataSync() as Float32Array);
      });
      expect(relativeError(after, before)).toBe(0);
      expect(relativeError(after, trained)).toBeLessThan(1e-4);
      writeFileSync(path.join(dir, 'expected.json'), JSON.stringify([...after]));
    } finally {
      [train, exported, loaded.model].forEach((m) => m.dispose());
    }
  });

  it('uses no custom layer class, so plain tfjs in a fresh process loads it and predicts the same', () => {
    const topology = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8')).modelTopology;
    const classes = new Set<string>();
    JSON.stringify(topology, (key, value) => {
      if (key === 'class_name') classes.add(value as string);
      return value;
    });
    for (const custom of ['AtrousConv2D', 'BatchNorm', 'SpaceToBatch', 'BatchToSpace']) expect(classes).not.toContain(custom);

    const script = `
      import * as tf from '@tensorflow/tfjs';
      import { readFileSync } from 'node:fs';
      const dir = process.argv[1];
      const json = JSON.parse(readFileSync(dir + '/model.json', 'utf8'));
      const bytes = readFileSync(dir + '/weights.bin');
      const weightData = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      await tf.setBackend('cpu');
      const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights, weightData }));
      const input = Float32Array.from({ length: 64 * 64 * 3 }, (_, i) => (Math.sin(i * 0.37) + 1) / 2);
      const out = model.predict(tf.tensor4d(input, [1, 64, 64, 3])).dataSync();
      console.log(JSON.stringify([...out]));
    `;
    const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script, dir], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const plain = JSON.parse(stdout.trim().split('\n').pop()!) as number[];
    const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as number[];
    expect(relativeError(plain, expected)).toBeLessThan(1e-6);
  });
});
