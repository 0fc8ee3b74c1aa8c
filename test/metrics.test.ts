import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Jimp } from 'jimp';
import {
  MetricAccumulator,
  binariseLogits,
  confusion,
  lesionDice,
  lesionJaccard,
  macroIoU,
  thresholdJaccard,
} from '../src/core/scoring/metrics.ts';
import { LesionError } from '../src/core/errors.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const datasets = datasetsRoot;

const u8 = (...v: number[]) => Uint8Array.from(v);

describe('confusion and binarisation', () => {
  it('counts the four cells', () => {
    expect(confusion(u8(1, 1, 0, 0, 1, 0), u8(1, 0, 1, 0, 0, 0))).toEqual({ tp: 1, fp: 2, fn: 1, tn: 2 });
  });

  it('treats 255 as lesion like 1', () => {
    expect(confusion(u8(255, 0), u8(1, 255))).toEqual({ tp: 1, fp: 0, fn: 1, tn: 0 });
  });

  it('rejects masks of different sizes', () => {
    expect(() => confusion(u8(1, 0), u8(1))).toThrow(RangeError);
  });

  it('thresholds raw logits with >=, no sigmoid', () => {
    const logits = Float32Array.from([-3, 0, 0.49, 0.5, 0.6, 4]);
    expect(Array.from(binariseLogits(logits))).toEqual([0, 0, 0, 1, 1, 1]);
    expect(Array.from(binariseLogits(logits, 0))).toEqual([0, 1, 1, 1, 1, 1]);
  });
});

describe('scores from one confusion', () => {
  const c = { tp: 1, fp: 2, fn: 1, tn: 2 };

  it('macro IoU averages lesion and background IoU', () => {
    // lesion 1/(1+2+1), background 2/(2+2+1)
    expect(macroIoU(c)).toBeCloseTo((1 / 4 + 2 / 5) / 2, 12);
  });

  it('macro IoU scores a class absent from prediction and target as 0', () => {
    expect(macroIoU(confusion(u8(0, 0, 0), u8(0, 0, 0)))).toBe(0.5);
    expect(macroIoU(confusion(u8(1, 1), u8(1, 1)))).toBe(0.5);
  });

  it('lesion Jaccard and Dice', () => {
    expect(lesionJaccard(c)).toBeCloseTo(1 / 4, 12);
    expect(lesionDice(c)).toBeCloseTo(2 / 5, 12);
  });

  it('follows the ISIC scorer on empty masks', () => {
    const bothEmpty = confusion(u8(0, 0), u8(0, 0));
    const predEmpty = confusion(u8(0, 0), u8(1, 0));
    const maskEmpty = confusion(u8(0, 1), u8(0, 0));
    expect([lesionJaccard(bothEmpty), lesionDice(bothEmpty)]).toEqual([1, 1]);
    expect([lesionJaccard(predEmpty), lesionDice(predEmpty)]).toEqual([0, 0]);
    expect([lesionJaccard(maskEmpty), lesionDice(maskEmpty)]).toEqual([0, 0]);
  });

  it('zeroes a Jaccard below 0.65 and keeps one at or above it', () => {
    expect(thresholdJaccard(0.6499)).toBe(0);
    expect(thresholdJaccard(0.65)).toBe(0.65);
    expect(thresholdJaccard(0.9)).toBe(0.9);
  });
});

describe('MetricAccumulator', () => {
  it('weights per-batch macro IoU by batch size and pools the rest over the set', () => {
    const acc = new MetricAccumulator();
    // batch A: a1 tp1 fp1 tn2; a2 all background
    acc.addBatch([u8(1, 1, 0, 0), u8(0, 0, 0, 0)], [u8(1, 0, 0, 0), u8(0, 0, 0, 0)], ['a1', 'a2']);
    // batch B: no lesion anywhere, so its lesion IoU is torchmetrics' absent score 0
    acc.addBatch([u8(0, 0, 0, 0)], [u8(0, 0, 0, 0)], ['b1']);
    const r = acc.report();

    const batchA = (1 / 2 + 6 / 7) / 2; // tp1 fp1 fn0 tn6
    const batchB = (0 + 1) / 2;
    expect(r.images).toBe(3);
    expect(r.paperMIoU).toBeCloseTo((2 * batchA + 1 * batchB) / 3, 12);
    expect(r.pooledMIoU).toBeCloseTo((1 / 2 + 10 / 11) / 2, 12); // tp1 fp1 fn0 tn10
    expect(r.lesionIoU).toBeCloseTo(1 / 2, 12);
    expect(r.dice).toBeCloseTo(2 / 3, 12);
    // per-image Jaccard 0.5 -> 0, then 1 and 1 (both empty)
    expect(r.thresholdedJaccard).toBeCloseTo(2 / 3, 12);
    // Each image keeps its own counts and its batch, for resampling (bootstrap.ts).
    expect(r.perImage).toEqual([
      { id: 'a1', lesionIoU: 0.5, dice: 2 / 3, confusion: { tp: 1, fp: 1, fn: 0, tn: 2 }, batch: 0 },
      { id: 'a2', lesionIoU: 1, dice: 1, confusion: { tp: 0, fp: 0, fn: 0, tn: 4 }, batch: 0 },
      { id: 'b1', lesionIoU: 1, dice: 1, confusion: { tp: 0, fp: 0, fn: 0, tn: 4 }, batch: 1 },
    ]);
  });

  it('paper mIoU depends on batch composition, pooled mIoU does not', () => {
    const preds = [u8(1, 1, 0, 0), u8(0, 0, 0, 0), u8(0, 1, 1, 0)];
    const targets = [u8(1, 0, 0, 0), u8(0, 0, 0, 0), u8(0, 1, 1, 1)];
    const together = new MetricAccumulator();
    together.addBatch(preds, targets);
    const apart = new MetricAccumulator();
    for (let i = 0; i < preds.length; i++) apart.addBatch([preds[i]], [targets[i]]);
    const a = together.report();
    const b = apart.report();
    expect(a.pooledMIoU).toBeCloseTo(b.pooledMIoU, 12);
    expect(a.paperMIoU).toBeCloseTo(a.pooledMIoU, 12); // a single batch is the pooled confusion
    expect(Math.abs(a.paperMIoU - b.paperMIoU)).toBeGreaterThan(0.05);
    expect(b.perImage.map((s) => s.id)).toEqual(['0', '1', '2']);
  });

  it('reports NaN before any image and names the image whose sizes differ', () => {
    const acc = new MetricAccumulator();
    expect(Number.isNaN(acc.report().paperMIoU)).toBe(true);
    expect(acc.report().images).toBe(0);
    expect(() => acc.addBatch([u8(1, 0)], [u8(1)], ['ISIC_1'])).toThrow(LesionError);
    expect(() => acc.addBatch([u8(1, 0)], [u8(1)], ['ISIC_1'])).toThrow(/ISIC_1/);
    expect(() => acc.addBatch([u8(1)], [])).toThrow(RangeError);
  });

  it('scores a real ISIC 2018 mask against a shifted copy of itself', async () => {
    const file = path.join(
      datasets,
      'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png',
    );
    const image = await Jimp.read(file);
    const { width, height, data } = image.bitmap;
    const mask = new Uint8Array(width * height);
    for (let i = 0; i < mask.length; i++) mask[i] = data[i * 4] > 128 ? 1 : 0;

    const dx = 23;
    const dy = 11;
    const shifted = new Uint8Array(mask.length);
    for (let y = dy; y < height; y++) {
      for (let x = dx; x < width; x++) shifted[y * width + x] = mask[(y - dy) * width + (x - dx)];
    }

    // Expected values by counting on coordinates, independently of confusion().
    const at = (x: number, y: number) => mask[y * width + x] === 1;
    let inMask = 0;
    let inShifted = 0;
    let both = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (at(x, y)) inMask++;
        const source = x >= dx && y >= dy && at(x - dx, y - dy);
        if (source) inShifted++;
        if (source && at(x, y)) both++;
      }
    }
    expect(inMask).toBeGreaterThan(0);
    expect(both).toBeGreaterThan(0);
    expect(both).toBeLessThan(inMask);
    const lesionIoU = both / (inMask + inShifted - both);
    const pixels = width * height;
    const backgroundIoU = (pixels - (inMask + inShifted - both)) / (pixels - both);

    const acc = new MetricAccumulator();
    acc.addBatch([shifted], [mask], ['ISIC_0000013']);
    const r = acc.report();
    expect(r.lesionIoU).toBeCloseTo(lesionIoU, 12);
    expect(r.perImage[0].lesionIoU).toBeCloseTo(lesionIoU, 12);
    expect(r.dice).toBeCloseTo((2 * both) / (inMask + inShifted), 12);
    expect(r.paperMIoU).toBeCloseTo((lesionIoU + backgroundIoU) / 2, 12);
    expect(r.thresholdedJaccard).toBe(lesionIoU < 0.65 ? 0 : lesionIoU);
  });
});
