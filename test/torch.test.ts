/**
 * python/lesion_studio_torch against the studio: the same weights give the
 * same logits in TensorFlow.js and PyTorch on real images (both encoders,
 * both output strides, and through the flips TTA), and the Python metrics,
 * losses, learning-rate schedule and largest-lesion post-processing equal
 * src/core's on the same inputs.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSample } from '../src/core/dataset/loader.ts';
import { imagesToBatch } from '../src/core/dataset/samples.ts';
import { parseRunCard, quickCard, type RunCard } from '../src/core/config.ts';
import { buildDeepLabV3, type EncoderName, type ModelConfig } from '../src/core/model/deeplab.ts';
import { MetricAccumulator, binariseLogits } from '../src/core/scoring/metrics.ts';
import { predictLogits } from '../src/core/scoring/predict.ts';
import { largestLesionFilled, type TtaKind } from '../src/core/scoring/readout.ts';
import { lossByName } from '../src/core/training/losses.ts';
import { learningRateScale } from '../src/core/training/optim.ts';
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
  /**
   * A seeded model of `config` saved to `modelDir`, and its tfjs logits on the images per TTA. Random
   * residual stacks reach logits in the hundreds, where float32's own spacing is 6e-5; the head (then
   * linear upsampling) is scaled to a trained model's range, |logit| <= 8.
   */
  async function savedModel(config: ModelConfig, modelDir: string, ttas: TtaKind[]): Promise<Float32Array[]> {
    const model = buildDeepLabV3(config, 'export', 7);
    try {
      const weights = seededWeights(model, 11);
      const predict = (): Float32Array => tf.tidy(() => (model.predict(tf.tensor4d(imagesToBatch(images), [images.length, SIZE, SIZE, 3])) as tf.Tensor).dataSync() as Float32Array);
      setWeightValues(model, weights);
      const scale = 8 / Math.max(...predict().map(Math.abs));
      for (const i of model.weights.flatMap((w, i) => (w.originalName.startsWith('head/') ? [i] : []))) weights[i] = weights[i].map((v) => v * scale);
      setWeightValues(model, weights);
      await saveLayersModel(model, modelDir);
      const out: Float32Array[] = [];
      for (const tta of ttas) {
        const perImage = await predictLogits(model, images, { batchSize: images.length, tta });
        out.push(Float32Array.from(perImage.flatMap((l) => [...l])));
      }
      return out;
    } finally {
      model.dispose();
    }
  }

  function maxAbsDifference(a: Float32Array, b: Float32Array): number {
    expect(a.length).toBe(b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    return worst;
  }

  it.each(cases)('%s at output stride %i gives the tfjs logits (max abs difference <= 1e-4)', async (encoder, outputStride, inputRange) => {
    const config = tinyConfig(encoder, { outputStride, inputRange, inputSize: SIZE });
    const modelDir = path.join(dir, `${encoder}-${outputStride}`);
    const [expected] = await savedModel(config, modelDir, ['none']);
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
    // Logits of a seeded random model spread over several units: a shifted pad or a wrong interpolation moves them by far more.
    const spread = Math.max(...expected) - Math.min(...expected);
    expect(spread).toBeGreaterThan(2);
    expect(maxAbsDifference(actual, expected)).toBeLessThanOrEqual(1e-4);
  });

  it('reads predictions through the flips TTA (eval.tta) and the horizontal one (pseudo.flipTta) as predict.ts does (1e-4)', async () => {
    const config = tinyConfig('mobilenetv2', { outputStride: 8, inputRange: 'symmetric', inputSize: SIZE });
    const modelDir = path.join(dir, 'tta');
    const ttas: TtaKind[] = ['none', 'hflip', 'flips'];
    const expected = await savedModel(config, modelDir, ttas);
    const out = path.join(modelDir, 'torch-tta.bin');
    python(
      `import json, sys, numpy as np
from lesion_studio_torch.model import DeepLabV3
from lesion_studio_torch.readout import predict_logits
from lesion_studio_torch.tfjs_io import load_weights
a = json.load(sys.stdin)
model = DeepLabV3(a['config']).eval()
load_weights(model, a['modelDir'])
x = np.fromfile(a['pixels'], np.uint8).reshape(-1, a['size'], a['size'], 3)
np.concatenate([predict_logits(model, list(x), tta, 'cpu').ravel() for tta in a['ttas']]).astype('<f4').tofile(a['out'])`,
      JSON.stringify({ config, modelDir, pixels: path.join(dir, 'pixels.bin'), size: SIZE, ttas, out }),
    );
    const all = new Float32Array(readFileSync(out).buffer.slice(0));
    const per = expected[0].length;
    ttas.forEach((tta, k) => expect(maxAbsDifference(all.subarray(k * per, (k + 1) * per), expected[k]), tta).toBeLessThanOrEqual(1e-4));
    // The flips change the logits (a model blind to them would pass with any TTA).
    expect(maxAbsDifference(expected[2], expected[0])).toBeGreaterThan(0.1);
    expect(maxAbsDifference(expected[2], expected[1])).toBeGreaterThan(0.1);
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
  it('scales the learning rate per step as learningRateScale does, into the optimisers\' rate', () => {
    const cards: RunCard['train'][] = [
      // 5 steps an epoch: 0.5 epochs is 2.5 steps, which JavaScript rounds to 3 (Python's round would say 2).
      { ...quickCard().train, lrSchedule: 'poly', warmupEpochs: 0.5, epochs: 4 },
      { ...quickCard().train, lrSchedule: 'poly', warmupEpochs: 1, epochs: 3, optimizer: { kind: 'sgd', lr: 0.006, momentum: 0.81, weightDecay: 0.02 } },
      { ...quickCard().train, lrSchedule: 'constant', warmupEpochs: 2, epochs: 3 },
      // Warm-up longer than the stage: clamped to all but the last step.
      { ...quickCard().train, lrSchedule: 'poly', warmupEpochs: 9, epochs: 2 },
    ];
    const stepsPerEpoch = 5;
    const expected = cards.map((train) => Array.from({ length: train.epochs * stepsPerEpoch }, (_, step) => learningRateScale(train, step, train.epochs * stepsPerEpoch, stepsPerEpoch)));
    const actual = JSON.parse(python(
      `import json, sys, torch
from lesion_studio_torch.training import learning_rate_scale, make_optimizer, set_learning_rate
a = json.load(sys.stdin)
out = []
for train in a['cards']:
    total = train['epochs'] * a['stepsPerEpoch']
    optimizer = make_optimizer({'train': train}, [torch.nn.Parameter(torch.zeros(1))])
    rows = []
    for step in range(total):
        scale = learning_rate_scale(train, step, total, a['stepsPerEpoch'])
        set_learning_rate(optimizer, {'train': train}, scale)
        rows.append([scale, optimizer.param_groups[0]['lr']])
    out.append(rows)
print(json.dumps(out))`,
      JSON.stringify({ cards, stepsPerEpoch }),
    )) as [number, number][][];
    cards.forEach((train, c) => {
      expect(actual[c]).toHaveLength(expected[c].length);
      actual[c].forEach(([scale, lr], step) => {
        expect(Math.abs(scale - expected[c][step]), `card ${c} step ${step}`).toBeLessThanOrEqual(1e-12);
        expect(Math.abs(lr - train.optimizer.lr * expected[c][step])).toBeLessThanOrEqual(1e-15);
      });
    });
    // Not degenerate: warm-up rises, poly decays, constant stays.
    expect(expected[0].slice(0, 4)).toEqual([0.25, 0.5, 0.75, 1]);
    expect(expected[0][19]).toBeLessThan(0.1);
    expect(expected[2].slice(10)).toEqual([1, 1, 1, 1, 1]);
  });

  it('computes the dice, bce and dice+bce losses and their gradients as losses.ts does, on real masks', () => {
    // Logits from the images' red channel, targets the expert masks; a second batch without any lesion pixel.
    const logits = Float32Array.from(images.flatMap((i) => [...i.data.filter((_, k) => k % 3 === 0)]), (v) => (v - 128) / 32);
    const batches = [Float32Array.from(masks.flatMap((m) => [...m])), new Float32Array(logits.length)];
    const shape: [number, number, number, number] = [images.length, SIZE, SIZE, 1];
    const names = ['dice', 'bce', 'dice+bce'] as const;
    const expected = names.flatMap((name) => batches.map((targets) => tf.tidy(() => {
      const loss = lossByName(name, { posWeight: 1.25 });
      const y = tf.tensor4d(targets, shape);
      const { value, grad } = tf.valueAndGrad((x: tf.Tensor) => loss(x, y))(tf.tensor4d(logits, shape));
      return { value: value.dataSync()[0], grad: grad.dataSync() as Float32Array };
    })));
    writeFileSync(path.join(dir, 'loss-in.bin'), Buffer.from(Float32Array.from([...logits, ...batches[0], ...batches[1]]).buffer));
    const out = path.join(dir, 'loss-out.bin');
    const values = JSON.parse(python(
      `import json, sys, numpy as np, torch
from lesion_studio_torch.training import Solo, loss_function
a = json.load(sys.stdin)
data = np.fromfile(a['in'], '<f4').reshape(3, *a['shape'])
grads, values = [], []
for name in a['names']:
    for targets in (data[1], data[2]):
        x = torch.tensor(data[0], requires_grad=True)
        surrogate, value = loss_function({'loss': name, 'posWeight': 1.25}, Solo())(x, torch.tensor(targets))
        surrogate.backward()
        values.append(float(value))
        grads.append(x.grad.numpy().ravel())
np.concatenate(grads).astype('<f4').tofile(a['out'])
print(json.dumps(values))`,
      JSON.stringify({ in: path.join(dir, 'loss-in.bin'), out, shape, names }),
    )) as number[];
    const grads = new Float32Array(readFileSync(out).buffer.slice(0));
    const per = logits.length;
    expected.forEach((e, k) => {
      const label = `${names[Math.floor(k / 2)]}, batch ${k % 2}`;
      expect(Math.abs(values[k] - e.value), label).toBeLessThanOrEqual(1e-6);
      // Relative to the largest component; Dice on a batch without lesion pixels has none at all (smp's indicator).
      const largest = Math.max(...e.grad.map(Math.abs));
      expect(maxAbsDifference(grads.subarray(k * per, (k + 1) * per), e.grad), label).toBeLessThanOrEqual(1e-5 * largest);
    });
    // dice+bce is the sum of the two, and not a zero: the masks are real lesions.
    expect(Math.abs(expected[4].value - expected[0].value - expected[2].value)).toBeLessThanOrEqual(1e-6);
    expect(expected[0].value).toBeGreaterThan(0.05);
    expect(Math.max(...expected[1].grad.map(Math.abs))).toBe(0);
  });

  it('keeps the largest lesion with its holes filled exactly as readout.ts does (OpenCV components)', () => {
    const cases: { name: string; mask: Uint8Array; speck?: number; hole?: number }[] = [];
    masks.forEach((original, m) => {
      const mask = Uint8Array.from(original);
      const at = (x: number, y: number): number => y * SIZE + x;
      const all = (x0: number, y0: number, r: number, v: number): boolean => {
        for (let y = y0 - r; y <= y0 + r; y++) for (let x = x0 - r; x <= x0 + r; x++) if (x < 0 || y < 0 || x >= SIZE || y >= SIZE || mask[at(x, y)] !== v) return false;
        return true;
      };
      // A 2x2 speck in the background, away from the lesion; a 3x3 hole well inside it.
      const speck = [...Array(SIZE * SIZE).keys()].find((p) => all(p % SIZE, Math.floor(p / SIZE), 3, 0))!;
      const hole = [...Array(SIZE * SIZE).keys()].find((p) => all(p % SIZE, Math.floor(p / SIZE), 3, 1))!;
      expect(speck, `mask ${m} has room for a speck`).toBeDefined();
      expect(hole, `mask ${m} has room for a hole`).toBeDefined();
      for (const d of [0, 1, SIZE, SIZE + 1]) mask[speck + d] = 1;
      for (const dy of [-1, 0, 1]) for (const dx of [-1, 0, 1]) mask[hole + dy * SIZE + dx] = 0;
      cases.push({ name: IMAGES[m].image, mask, speck, hole });
    });
    // Two equal squares (the first in raster order is kept); a ring whose inside meets the outside only diagonally (a hole under 4-connectivity); empty; full.
    const squares = new Uint8Array(SIZE * SIZE);
    const ring = new Uint8Array(SIZE * SIZE);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        if ((y >= 40 && y < 45 && x >= 3 && x < 8) || (y >= 10 && y < 15 && x >= 50 && x < 55)) squares[y * SIZE + x] = 1;
        const edge = Math.max(Math.abs(x - 30), Math.abs(y - 30));
        if (edge === 10 && !(x === 40 && y === 40)) ring[y * SIZE + x] = 1;
      }
    }
    ring[41 * SIZE + 41] = 1;
    cases.push({ name: 'two equal squares', mask: squares }, { name: 'ring', mask: ring }, { name: 'empty', mask: new Uint8Array(SIZE * SIZE) }, { name: 'full', mask: new Uint8Array(SIZE * SIZE).fill(1) });
    const expected = cases.map((c) => largestLesionFilled(c.mask, SIZE, SIZE));
    const actual = JSON.parse(python(
      `import json, sys, numpy as np
from lesion_studio_torch.readout import largest_lesion_filled
a = json.load(sys.stdin)
print(json.dumps([largest_lesion_filled(np.array(m, np.uint8).reshape(a['size'], a['size'])).ravel().tolist() for m in a['masks']]))`,
      JSON.stringify({ masks: cases.map((c) => [...c.mask]), size: SIZE }),
    )) as number[][];
    cases.forEach((c, k) => expect(actual[k], c.name).toEqual([...expected[k]]));
    // Not degenerate: the real masks lose their speck and get their hole back; the ring is filled.
    for (const [k, c] of cases.entries()) {
      if (c.speck === undefined) continue;
      expect(expected[k][c.speck], c.name).toBe(0);
      expect(expected[k][c.hole!], c.name).toBe(1);
    }
    expect(expected[4][30 * SIZE + 30]).toBe(1);
    expect(expected[3][42 * SIZE + 5]).toBe(0);
  });
  it('reads the card as parseRunCard does (legacy init name, defaults of older cards) and refuses, naming the field, a knob it does not run', () => {
    const card = quickCard();
    const older = JSON.parse(JSON.stringify({ ...card, model: { ...card.model, init: 'imagenet' } })) as Record<string, Record<string, unknown>>;
    delete older.train.lrSchedule;
    delete older.train.warmupEpochs;
    delete older.eval.tta;
    delete older.eval.postprocess;
    const bad = (field: string, value: unknown): unknown => {
      const copy = JSON.parse(JSON.stringify(card)) as Record<string, Record<string, unknown>>;
      const [section, key] = field.split('.');
      copy[section][key] = value;
      return copy;
    };
    const refusals: [unknown, string][] = [
      [bad('train.loss', 'focal'), "card train.loss: 'focal' is not run here (it runs dice, bce, dice+bce)"],
      [bad('train.lrSchedule', 'cosine'), "card train.lrSchedule: 'cosine' is not run here (it runs constant, poly)"],
      [bad('eval.tta', 'hflip'), "card eval.tta: 'hflip' is not run here (it runs none, flips)"],
      [bad('eval.postprocess', 'always'), "card eval.postprocess: 'always' is not run here (it runs none, auto)"],
      [bad('model.init', 'imagenet21k'), "card model.init: 'imagenet21k' is not run here (it runs nsfwjs, imagenet-through-block10, random, user)"],
      [bad('train.warmupEpochs', -1), 'card train.warmupEpochs: must be a number of epochs >= 0, got -1'],
      [bad('eval.calibrate', true), 'card eval.calibrate: a knob this package does not run (it knows logitThreshold, tta, postprocess); update python/lesion_studio_torch or drop the key'],
    ];
    const answers = JSON.parse(python(
      `import json, sys
from lesion_studio_torch.card import CardError, normalise_card
a = json.load(sys.stdin)
out = [normalise_card(a['older'])]
for card in a['bad']:
    try:
        normalise_card(card)
        out.append(None)
    except CardError as error:
        out.append(str(error))
print(json.dumps(out))`,
      JSON.stringify({ older, bad: refusals.map(([c]) => c) }),
    )) as [RunCard, ...(string | null)[]];
    const [read, ...messages] = answers;
    expect(read).toEqual(parseRunCard(older));
    expect(read.model.init).toBe('nsfwjs');
    expect(read.eval).toMatchObject({ tta: 'none', postprocess: 'none' });
    expect(messages).toEqual(refusals.map(([, message]) => message));
  });
  it('decides post-processing on validation as decidePostprocess does, and scores test with the decision', () => {
    // A stand-in model that marks a central disc and a speck in a corner: on real lesions the speck is a false
    // positive, so keeping the largest lesion must score strictly better, be kept, and be what test scores use.
    const items = IMAGES.map((s, i) => ({ id: String(i), set: s.root, path: path.join(datasetsRoot, s.image), mask_path: path.join(datasetsRoot, s.mask) }));
    const card = { ...quickCard(), model: { ...quickCard().model, inputSize: SIZE }, train: { ...quickCard().train, batchSize: 2 }, eval: { logitThreshold: 0.5, tta: 'none', postprocess: 'auto' } };
    const answer = JSON.parse(python(
      `import json, sys, torch
from lesion_studio_torch.run import decide_postprocess, evaluate
a = json.load(sys.stdin)
class Stub(torch.nn.Module):
    def forward(self, x):
        n, _, h, w = x.shape
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        marked = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2) | ((yy < 3) & (xx < 3))
        return torch.where(marked, 5.0, -5.0).expand(n, 1, h, w).clone()
model = Stub()
decision = decide_postprocess(model, a['items'], a['card'], 'cpu')
plain, _ = evaluate(model, a['items'], a['card'], 'cpu')
kept, _ = evaluate(model, a['items'], a['card'], 'cpu', postprocess=True)
none = decide_postprocess(model, a['items'], {**a['card'], 'eval': {**a['card']['eval'], 'postprocess': 'none'}}, 'cpu')
print(json.dumps({'decision': decision, 'plain': plain['lesionIoU'], 'kept': kept['lesionIoU'], 'none': none}))`,
      JSON.stringify({ items, card }),
    )) as { decision: { applied: boolean; valLesionIoU: { without: number; with: number } }; plain: number; kept: number; none: null };
    expect(answer.decision.applied).toBe(true);
    expect(answer.decision.valLesionIoU.with).toBeGreaterThan(answer.decision.valLesionIoU.without);
    expect(answer.decision.valLesionIoU.without).toBe(answer.plain);
    expect(answer.decision.valLesionIoU.with).toBe(answer.kept);
    expect(answer.none).toBeNull();
  });
});
