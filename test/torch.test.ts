/**
 * python/lesion_studio_torch against the studio: the same weights give the
 * same logits in TensorFlow.js and PyTorch on real images (both encoders,
 * both output strides), and the Python metrics equal src/core/scoring/metrics.ts
 * on the same masks.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSample } from '../src/core/dataset/loader.ts';
import { imagesToBatch } from '../src/core/dataset/samples.ts';
import { buildDeepLabV3, type EncoderName } from '../src/core/model/deeplab.ts';
import { MetricAccumulator, binariseLogits } from '../src/core/scoring/metrics.ts';
import type { RgbImage } from '../src/core/io.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { saveLayersModel } from '../src/node/model-files.ts';
import { datasetsRoot, seededWeights, setWeightValues, tinyConfig } from './helpers/tf-node.ts';
import { python, torchPython } from './helpers/torch.ts';

const SIZE = 64;
const IMAGES = [
  { root: 'isic2018', image: 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg', mask: 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png' },
  { root: 'isic2018', image: 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000160.jpg', mask: 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000160_segmentation.png' },
  { root: 'ph2', image: 'ph2/PH2 Dataset images/IMD367/IMD367_Dermoscopic_Image/IMD367.bmp', mask: 'ph2/PH2 Dataset images/IMD367/IMD367_lesion/IMD367_lesion.bmp' },
];

describe.skipIf(!torchPython)('PyTorch replica of the studio model', () => {
  let dir: string;
  let images: RgbImage[];
  let masks: Uint8Array[];

  beforeAll(async () => {
    await initNodeBackend('cpu');
    dir = mkdtempSync(path.join(tmpdir(), 'torch-parity-'));
    const source = new FsFileSource(['isic2018', 'ph2'].map((r) => path.join(datasetsRoot, r)));
    const loaded = await Promise.all(IMAGES.map((s, i) => loadSample({ id: String(i), set: s.root, layout: 'isic2018', split: 'train', image: s.image, mask: s.mask }, source, new SharpDecoder(), { width: SIZE, height: SIZE })));
    images = loaded.map((l) => l.image);
    masks = loaded.map((l) => l.mask!.data);
    writeFileSync(path.join(dir, 'pixels.bin'), Buffer.concat(images.map((i) => i.data)));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [EncoderName, 8 | 16, 'unit' | 'symmetric'][] = [
    ['mobilenetv2', 8, 'symmetric'],
    ['mobilenetv2', 16, 'unit'],
    ['resnet34', 8, 'unit'],
    ['resnet34', 16, 'symmetric'],
  ];
  it.each(cases)('%s at output stride %i gives the tfjs logits (max abs difference <= 1e-4)', async (encoder, outputStride, inputRange) => {
    const config = tinyConfig(encoder, { outputStride, inputRange, inputSize: SIZE });
    const model = buildDeepLabV3(config, 'export', 7);
    const modelDir = path.join(dir, `${encoder}-${outputStride}`);
    let expected: Float32Array;
    try {
      const weights = seededWeights(model, 11);
      const predict = (): Float32Array => tf.tidy(() => (model.predict(tf.tensor4d(imagesToBatch(images), [images.length, SIZE, SIZE, 3])) as tf.Tensor).dataSync() as Float32Array);
      setWeightValues(model, weights);
      // Random residual stacks reach logits in the hundreds, where float32's own spacing is 6e-5;
      // the head (then linear upsampling) is scaled to a trained model's range, |logit| <= 8.
      const scale = 8 / Math.max(...predict().map(Math.abs));
      for (const i of model.weights.flatMap((w, i) => (w.originalName.startsWith('head/') ? [i] : []))) weights[i] = weights[i].map((v) => v * scale);
      setWeightValues(model, weights);
      await saveLayersModel(model, modelDir);
      expected = predict();
    } finally {
      model.dispose();
    }
    const out = path.join(modelDir, 'torch-logits.bin');
    python(
      `import json, sys, numpy as np, torch
from lesion_studio_torch.model import DeepLabV3
from lesion_studio_torch.tfjs_io import load_weights
a = json.load(sys.stdin)
model = DeepLabV3(a['config']).eval()
load_weights(model, a['modelDir'])
x = np.fromfile(a['pixels'], np.uint8).reshape(-1, a['size'], a['size'], 3)
with torch.no_grad():
    y = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
y.permute(0, 2, 3, 1).numpy().astype('<f4').tofile(a['out'])`,
      JSON.stringify({ config, modelDir, pixels: path.join(dir, 'pixels.bin'), size: SIZE, out }),
    );
    const actual = new Float32Array(readFileSync(out).buffer.slice(0));
    expect(actual.length).toBe(expected.length);
    let worst = 0;
    for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
    // Logits of a seeded random model spread over several units: a shifted pad or a wrong interpolation moves them by far more.
    const spread = Math.max(...expected) - Math.min(...expected);
    expect(spread).toBeGreaterThan(2);
    expect(worst).toBeLessThanOrEqual(1e-4);
  });

  it('scores masks exactly as src/core/scoring/metrics.ts does (1e-9)', () => {
    // Predictions that differ from the truths in several ways: shifted, thresholded noise, empty, full.
    const preds = [
      masks[0].map((_, i) => masks[0][(i + 5) % masks[0].length]),
      binariseLogits(Float32Array.from(images[1].data.filter((_, i) => i % 3 === 0), (v) => (v - 128) / 32), 0.5),
      new Uint8Array(SIZE * SIZE),
      new Uint8Array(SIZE * SIZE).fill(1),
    ];
    const truths = [masks[0], masks[1], masks[2], new Uint8Array(SIZE * SIZE)];
    const batches = [[0, 1, 2], [3]];
    const accumulator = new MetricAccumulator();
    for (const b of batches) accumulator.addBatch(b.map((i) => preds[i]), b.map((i) => truths[i]));
    const { perImage: _perImage, ...expected } = accumulator.report();
    const actual = JSON.parse(python(
      `import json, sys, numpy as np
from lesion_studio_torch.metrics import MetricAccumulator
a = json.load(sys.stdin)
acc = MetricAccumulator()
for b in a['batches']:
    acc.add_batch([np.array(a['preds'][i], np.uint8) for i in b], [np.array(a['truths'][i], np.uint8) for i in b])
print(json.dumps(acc.summary()))`,
      JSON.stringify({ preds: preds.map((p) => [...p]), truths: truths.map((t) => [...t]), batches }),
    )) as typeof expected;
    expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
    for (const key of Object.keys(expected) as (keyof typeof expected)[]) expect(Math.abs(actual[key] - expected[key])).toBeLessThanOrEqual(1e-9);
    // Not a degenerate case: the four figures differ from each other and from 0 and 1.
    expect(new Set([expected.paperMIoU, expected.pooledMIoU, expected.lesionIoU, expected.dice, expected.thresholdedJaccard]).size).toBe(5);
  });
});
