/**
 * `predict` and `eval` through the real CLI (child processes), with a tiny
 * seeded model saved as `train` exports one, on the shared data sets. Every
 * expected number is computed here, independently of the code under test.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Jimp } from 'jimp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSample } from '../src/core/dataset/loader.ts';
import { resizeAndThreshold } from '../src/core/image/resize.ts';
import { Rng } from '../src/core/random.ts';
import { imagesToBatch } from '../src/core/dataset/samples.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { JimpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { saveLayersModel } from '../src/node/model-files.ts';
import { encodePng } from './helpers/corpus.ts';
import { cli, type Outcome } from './helpers/cli.ts';
import { datasetsRoot, seededWeights, setWeightValues, tinyConfig } from './helpers/tf-node.ts';

const SIZE = 64;
const THRESHOLD = 0.5;
const PH2 = path.join(datasetsRoot, 'ph2');
const ISIC2018 = path.join(datasetsRoot, 'isic2018');
const ISIC_GT = path.join(ISIC2018, 'ISIC2018_Task1_Training_GroundTruth');
const BIG_ISIC = path.join(ISIC2018, 'ISIC2018_Task1-2_Training_Input', 'ISIC_0000377.jpg');
/** The PH2 case the model is calibrated on, so that about half of it is lesion. */
const CALIBRATION = { id: 'IMD004', image: 'ph2/PH2 Dataset images/IMD004/IMD004_Dermoscopic_Image/IMD004.bmp', mask: 'ph2/PH2 Dataset images/IMD004/IMD004_lesion/IMD004_lesion.bmp' };

/** Grey value of every pixel, and the PNG colour type (0 = greyscale). */
async function readPng(file: string): Promise<{ width: number; height: number; grey: Uint8Array; colourType: number }> {
  const bytes = readFileSync(file);
  const image = await Jimp.fromBuffer(bytes);
  const { width, height, data } = image.bitmap;
  const grey = new Uint8Array(width * height);
  for (let i = 0; i < grey.length; i++) grey[i] = data[i * 4];
  return { width, height, grey, colourType: bytes[25] };
}

const lesionPixels = (grey: Uint8Array): number => grey.reduce((n, v) => n + (v > 127 ? 1 : 0), 0);

let work: string;
let modelDir: string;
/** The calibration image's logits at the model's input size, computed in this process. */
let calibrationLogits: Float32Array;
let calibrationTruth: Uint8Array;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'lesion-cli-eval-'));
  modelDir = path.join(work, 'model');
  await tf.setBackend('cpu');
  const model = buildDeepLabV3(tinyConfig('mobilenetv2', { inputSize: SIZE }), 'export', 2024);
  setWeightValues(model, seededWeights(model, 2024));
  const sample = await loadSample({ ...CALIBRATION, set: 'ph2', layout: 'ph2', split: 'unspecified' }, new FsFileSource([PH2]), new JimpDecoder(), { width: SIZE, height: SIZE });
  const predictOne = (): Float32Array => tf.tidy(() => (model.predict(tf.tensor4d(imagesToBatch([sample.image]), [1, SIZE, SIZE, 3])) as tf.Tensor).dataSync() as Float32Array);
  // Shift the head's bias so the calibration image's median logit sits on the threshold:
  // a constant added before the final bilinear upsampling moves every logit by as much.
  const sorted = Float32Array.from(predictOne()).sort();
  const head = model.getLayer('head');
  const [kernel, bias] = head.getWeights();
  const shifted = tf.add(bias, THRESHOLD - sorted[sorted.length >> 1]);
  head.setWeights([kernel, shifted]);
  shifted.dispose();
  calibrationLogits = predictOne();
  calibrationTruth = sample.mask!.data;
  await saveLayersModel(model, modelDir, { format: 'lesion-studio-model/1', inputSize: SIZE, logitThreshold: THRESHOLD });
  model.dispose();
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('resizeAndThreshold', () => {
  it('matches tf.image.resizeBilinear with half-pixel centres, up and down', () => {
    const rng = new Rng(5);
    const map = { width: 7, height: 5, data: Float32Array.from({ length: 35 }, () => rng.normal()) };
    for (const [width, height] of [[23, 17], [7, 5], [3, 2], [40, 4]]) {
      const reference = tf.tidy(() =>
        tf.image.resizeBilinear(tf.tensor4d(map.data, [1, 5, 7, 1]), [height, width], false, true).dataSync(),
      );
      const mask = resizeAndThreshold(map, width, height, 0.1);
      expect([mask.width, mask.height]).toEqual([width, height]);
      let compared = 0;
      for (let i = 0; i < reference.length; i++) {
        if (Math.abs(reference[i] - 0.1) < 1e-5) continue;
        expect(mask.data[i]).toBe(reference[i] >= 0.1 ? 1 : 0);
        compared++;
      }
      expect(compared).toBeGreaterThan(reference.length - 2);
    }
  });
});

describe('lesion-studio predict', () => {
  let outcome: Outcome;
  let out: string;
  let extra: string;

  beforeAll(async () => {
    out = path.join(work, 'predicted');
    // A plain folder beside the PH2 layout: a full-size ISIC photograph, a broken file, and
    // a PH2 image again, whose id then occurs in two sets: masks go to one folder per set.
    extra = path.join(work, 'loose');
    mkdirSync(extra);
    symlinkSync(BIG_ISIC, path.join(extra, 'big.jpg'));
    symlinkSync(path.join(datasetsRoot, CALIBRATION.image), path.join(extra, `${CALIBRATION.id}.bmp`));
    writeFileSync(path.join(extra, 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5]));
    symlinkSync(path.join(work, 'moved-away.jpg'), path.join(extra, 'lost.jpg'));
    // Several folders after one flag, as the usage's `--images <dir>...` says.
    outcome = await cli('predict', '--model', modelDir, '--images', PH2, extra, '--out', out, '--backend', 'cpu');
  });

  it('writes one 0/255 greyscale mask per image at its original size and skips the broken one by name', async () => {
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(outcome.stderr).toMatch(/warning: skipped .*broken\.jpg/);
    expect(outcome.stderr).toContain(`warning: loose/lost.jpg: symbolic link to ${path.join(work, 'moved-away.jpg')}, which does not exist; no mask written for it`);
    expect(outcome.stderr).toMatch(/wrote 34 masks/);
    const cases = readdirSync(path.join(PH2, 'PH2 Dataset images'));
    expect(cases).toHaveLength(32);
    expect(readdirSync(out).sort()).toEqual(['loose', 'ph2']);
    expect(readdirSync(path.join(out, 'ph2')).sort()).toEqual(cases.map((id) => `${id}_segmentation.png`).sort());
    expect(readdirSync(path.join(out, 'loose')).sort()).toEqual([`${CALIBRATION.id}_segmentation.png`, 'big_segmentation.png']);

    const decoder = new JimpDecoder();
    const sources = [
      ...cases.map((id) => [`ph2/${id}`, path.join(PH2, 'PH2 Dataset images', id, `${id}_Dermoscopic_Image`, `${id}.bmp`)]),
      ['loose/big', BIG_ISIC],
    ];
    for (const [name, file] of sources) {
      const image = await decoder.decode({ path: file, bytes: readFileSync(file) });
      const mask = await readPng(path.join(out, `${name}_segmentation.png`));
      expect([mask.width, mask.height], name).toEqual([image.sourceWidth, image.sourceHeight]);
      expect(mask.colourType, name).toBe(0);
      expect(mask.grey.every((v) => v === 0 || v === 255), name).toBe(true);
    }
    const big = await readPng(path.join(out, 'loose/big_segmentation.png'));
    expect([big.width, big.height]).toEqual([3072, 2304]);
    // The same image in two sets: the same mask twice.
    const twice = [`ph2/${CALIBRATION.id}`, `loose/${CALIBRATION.id}`].map((name) => readFileSync(path.join(out, `${name}_segmentation.png`)));
    expect(twice[0].equals(twice[1])).toBe(true);
  });

  it('is the model\'s logits resized bilinearly to the original size and thresholded', async () => {
    const mask = await readPng(path.join(out, `ph2/${CALIBRATION.id}_segmentation.png`));
    const reference = tf.tidy(() =>
      tf.image.resizeBilinear(tf.tensor4d(calibrationLogits, [1, SIZE, SIZE, 1]), [mask.height, mask.width], false, true).dataSync(),
    );
    let lesion = 0;
    for (let i = 0; i < reference.length; i++) {
      if (reference[i] >= THRESHOLD) lesion++;
      if (Math.abs(reference[i] - THRESHOLD) < 1e-4) continue;
      if (mask.grey[i] !== (reference[i] >= THRESHOLD ? 255 : 0)) throw new Error(`pixel ${i}: mask ${mask.grey[i]}, logit ${reference[i]}`);
    }
    // The calibration makes the mask far from trivial.
    expect(lesion / reference.length).toBeGreaterThan(0.2);
    expect(lesion / reference.length).toBeLessThan(0.8);
  });

  it('writes masks that eval --pred scores against the ground truth, printed as a table', async () => {
    const { code, stdout, stderr } = await cli('eval', '--pred', out, '--data', PH2);
    expect(code, stderr).toBe(0);
    expect(stderr).not.toMatch(/no prediction/);
    expect(stdout).toMatch(/^scored at full resolution; percentages, each with its 95 % interval over images/);
    expect(stdout).toMatch(/\nph2\s+32\s/);
    expect(stdout).toMatch(/\noverall\s+32\s/);
  });
});

describe('lesion-studio eval --pred (full resolution, ISIC style)', () => {
  let pred: string;
  /** Lesion pixel count, pixel count and size of every ISIC 2018 ground truth, by id, read here. */
  const truth = new Map<string, { lesion: number; pixels: number; width: number; height: number }>();
  const truthFile = (id: string): string => path.join(ISIC_GT, `${id}_segmentation.png`);
  /** A folder of predictions: the ground truth itself, but for the ids given, written as given. */
  const predictionsFolder = (name: string, written: Record<string, Uint8Array>): string => {
    const dir = path.join(work, name);
    mkdirSync(dir);
    for (const id of truth.keys()) {
      const target = path.join(dir, `${id}_segmentation.png`);
      if (written[id]) writeFileSync(target, written[id]);
      else symlinkSync(truthFile(id), target);
    }
    return dir;
  };
  const perImageOf = (stdout: string) => new Map(JSON.parse(stdout).overall.perImage.map((p: { id: string }) => [p.id, p]));

  beforeAll(async () => {
    pred = path.join(work, 'gt-as-pred');
    mkdirSync(pred);
    for (const name of readdirSync(ISIC_GT)) {
      const id = name.replace(/_segmentation\.png$/i, '');
      symlinkSync(path.join(ISIC_GT, name), path.join(pred, `${id}_segmentation.png`));
      const png = await readPng(path.join(ISIC_GT, name));
      truth.set(id, { lesion: lesionPixels(png.grey), pixels: png.grey.length, width: png.width, height: png.height });
    }
  });

  it('scores the ground truth itself as perfect on every metric', async () => {
    const { code, stdout, stderr } = await cli('eval', '--pred', pred, '--data', ISIC2018, '--json');
    expect(code, stderr).toBe(0);
    expect(stderr).not.toMatch(/warning/);
    const report = JSON.parse(stdout);
    expect(Object.keys(report.sets)).toEqual(['isic2018']);
    for (const r of [report.sets.isic2018, report.overall]) {
      expect(r).toMatchObject({ images: truth.size, lesionIoU: 1, dice: 1, thresholdedJaccard: 1, paperMIoU: 1, pooledMIoU: 1 });
      expect(r.perImage).toHaveLength(truth.size);
      expect(r.perImage.every((p: { lesionIoU: number; dice: number }) => p.lesionIoU === 1 && p.dice === 1)).toBe(true);
    }
  });

  it('takes several --data folders after one flag and scores every labeled image of each', async () => {
    const { code, stdout, stderr } = await cli('eval', '--pred', pred, '--data', ISIC2018, PH2, '--json');
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout);
    expect(Object.keys(report.sets)).toEqual(['isic2018', 'ph2']);
    expect(report.sets.isic2018).toMatchObject({ images: truth.size, lesionIoU: 1 });
    expect(report.sets.ph2).toMatchObject({ images: 32, lesionIoU: 0 });
    expect(report.overall.images).toBe(truth.size + 32);
    expect(stderr).toContain('no prediction for ph2 IMD004');
  });

  it('reads 0/1 predictions as it reads 0/1 ground truth: scored, with the same warning naming the file', async () => {
    const [id8, id16] = [...truth.keys()].sort().slice(5, 7);
    const bits = async (id: string) => {
      const png = await readPng(truthFile(id));
      return { ...png, bits: png.grey.map((v) => (v > 127 ? 1 : 0)) };
    };
    const [t8, t16] = [await bits(id8), await bits(id16)];
    const dir = predictionsFolder('zero-one', {
      [id8]: encodePng(t8.bits, t8.width, t8.height, 0, 8),
      [id16]: encodePng(Uint16Array.from(t16.bits), t16.width, t16.height, 0, 16),
    });
    symlinkSync(path.join(work, 'moved-away.png'), path.join(dir, 'ISIC_0000001_segmentation.png'));
    const { code, stdout, stderr } = await cli('eval', '--pred', dir, '--data', ISIC2018, '--json');
    expect(code, stderr).toBe(0);
    expect(stderr).toContain(`warning: zero-one/${id8}_segmentation.png: mask is stored as 0/1 instead of 0/255; 1 taken as lesion`);
    expect(perImageOf(stdout).get(id8)).toMatchObject({ id: id8, lesionIoU: 1, dice: 1 });
    expect(stderr).toContain(`warning: zero-one/ISIC_0000001_segmentation.png: symbolic link to ${path.join(work, 'moved-away.png')}, which does not exist`);
    // The decoder brings 16-bit samples to 8 bits first; however it reads 0/1 there, the file is named.
    expect(stderr).toMatch(new RegExp(`warning: zero-one/${id16}_segmentation\\.png: mask (is stored as 0/1|is empty)`));
  });

  it('names a prediction at another scale and scores it resized; refuses, by name, one of another aspect ratio and exits 1', async () => {
    const [transposed, halved] = [...truth.keys()].sort().slice(7, 9);
    const t = await readPng(truthFile(transposed));
    const turned = new Uint8Array(t.grey.length);
    for (let y = 0; y < t.height; y++) for (let x = 0; x < t.width; x++) turned[x * t.height + y] = t.grey[y * t.width + x];
    const h = await readPng(truthFile(halved));
    const [hw, hh] = [h.width >> 1, h.height >> 1];
    const half = new Uint8Array(hw * hh);
    for (let y = 0; y < hh; y++) for (let x = 0; x < hw; x++) half[y * hw + x] = h.grey[2 * y * h.width + 2 * x];
    const dir = predictionsFolder('resized', {
      [transposed]: encodePng(turned, t.height, t.width, 0, 8),
      [halved]: encodePng(half, hw, hh, 0, 8),
    });

    const { code, stdout, stderr } = await cli('eval', '--pred', dir, '--data', ISIC2018, '--json');
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(
      `error: resized/${transposed}_segmentation.png: prediction is ${t.height}x${t.width} but its ground truth is ${t.width}x${t.height}, ` +
        'another aspect ratio (transposed, rotated or cropped?); not scored, counted as an empty mask',
    );
    expect(stderr).toContain(`note: resized/${halved}_segmentation.png: prediction is ${hw}x${hh} but its ground truth is ${h.width}x${h.height}; resized to it with nearest neighbour`);
    expect(stderr).toContain('error: 1 prediction had another aspect ratio than its ground truth (named above); it counts as an empty mask in these scores');
    expect(stderr.match(/^note: /gm)).toHaveLength(1);
    // The scores are still printed, nothing else changed.
    const byId = perImageOf(stdout);
    expect(byId.get(transposed)).toMatchObject({ id: transposed, lesionIoU: 0, dice: 0, confusion: { tp: 0, fp: 0, fn: lesionPixels(t.grey) } });
    expect((byId.get(halved) as { lesionIoU: number }).lesionIoU).toBeGreaterThan(0.95);
    expect((byId.get(halved) as { lesionIoU: number }).lesionIoU).toBeLessThan(1);
    expect(JSON.parse(stdout).overall.images).toBe(truth.size);
  });

  it('counts an empty mask (at another resolution) and a missing one as predicting no lesion, and names the missing one', async () => {
    const [emptied, missing] = [...truth.keys()].sort().slice(3, 5);
    const { width, height } = truth.get(emptied)!;
    rmSync(path.join(pred, `${emptied}_segmentation.png`));
    writeFileSync(path.join(pred, `${emptied}.png`), await new Jimp({ width: width >> 1, height: height >> 1, color: 0x000000ff }).getBuffer('image/png'));
    rmSync(path.join(pred, `${missing}_segmentation.png`));

    // One batch for the whole set, so the paper's batch-pooled mIoU equals the pooled one.
    const { code, stdout, stderr } = await cli('eval', '--pred', pred, '--data', ISIC2018, '--json', '--batch', '100');
    expect(code, stderr).toBe(0);
    expect(stderr).toContain(`no prediction for isic2018 ${missing}`);
    expect(stderr).not.toContain(`no prediction for isic2018 ${emptied}`);
    expect(stderr).toContain(`${emptied}.png: prediction is ${width >> 1}x${height >> 1} but its ground truth is ${width}x${height}; resized to it`);

    const all = [...truth.values()];
    const lesion = all.reduce((n, t) => n + t.lesion, 0);
    const pixels = all.reduce((n, t) => n + t.pixels, 0);
    const lost = truth.get(emptied)!.lesion + truth.get(missing)!.lesion;
    const tp = lesion - lost;
    const tn = pixels - lesion;
    const lesionIoU = tp / lesion;
    const r = JSON.parse(stdout).overall;
    expect(r.images).toBe(truth.size);
    expect(r.lesionIoU).toBeCloseTo(lesionIoU, 12);
    expect(r.dice).toBeCloseTo((2 * tp) / (2 * tp + lost), 12);
    expect(r.thresholdedJaccard).toBeCloseTo((truth.size - 2) / truth.size, 12);
    expect(r.pooledMIoU).toBeCloseTo((lesionIoU + tn / (tn + lost)) / 2, 12);
    expect(r.paperMIoU).toBeCloseTo(r.pooledMIoU, 12);
    const byId = new Map(r.perImage.map((p: { id: string }) => [p.id, p]));
    expect(byId.get(emptied)).toMatchObject({ id: emptied, lesionIoU: 0, dice: 0, confusion: { tp: 0, fp: 0, fn: truth.get(emptied)!.lesion } });
    expect(byId.get(missing)).toMatchObject({ id: missing, lesionIoU: 0, dice: 0, confusion: { tp: 0, fp: 0, fn: truth.get(missing)!.lesion } });
    // One batch of every image: each image's counts add up to the pooled figures.
    expect(r.perImage.every((p: { batch: number }) => p.batch === 0)).toBe(true);
  });
});

describe('lesion-studio eval --model', () => {
  it('prints one JSON document with every metric per set and overall, and an entry for every image', async () => {
    const { code, stdout, stderr } = await cli('eval', '--model', modelDir, '--data', PH2, '--json', '--backend', 'cpu');
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout);
    const fields = ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice', 'thresholdedJaccard', 'images', 'ci95', 'perImage'];
    expect(Object.keys(report.sets)).toEqual(['ph2']);
    for (const r of [report.sets.ph2, report.overall]) {
      expect(Object.keys(r).sort()).toEqual([...fields].sort());
      for (const f of fields.slice(0, 5)) {
        expect(r[f]).toBeGreaterThanOrEqual(0);
        expect(r[f]).toBeLessThanOrEqual(1);
        // Every figure has its interval, around it.
        expect(r.ci95[f][0]).toBeLessThanOrEqual(r[f]);
        expect(r.ci95[f][1]).toBeGreaterThanOrEqual(r[f]);
      }
      expect(r.images).toBe(32);
      expect(r.perImage.map((p: { id: string }) => p.id).sort()).toEqual(readdirSync(path.join(PH2, 'PH2 Dataset images')).sort());
    }

    // The calibration image's score, from this process's own prediction at the model's input size.
    let [tp, fp, fn] = [0, 0, 0];
    calibrationLogits.forEach((logit, i) => {
      const p = logit >= THRESHOLD;
      const t = calibrationTruth[i] === 1;
      if (p && t) tp++;
      else if (p) fp++;
      else if (t) fn++;
    });
    const scored = report.sets.ph2.perImage.find((p: { id: string }) => p.id === CALIBRATION.id);
    expect(scored.lesionIoU).toBeCloseTo(tp / (tp + fp + fn), 6);
    expect(scored.dice).toBeCloseTo((2 * tp) / (2 * tp + fp + fn), 6);
  });
});
