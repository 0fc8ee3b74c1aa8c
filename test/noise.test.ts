import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Jimp, ResizeStrategy } from 'jimp';
import { ConfigError } from '../src/core/errors.ts';
import type { BinaryMask, RgbImage } from '../src/core/io.ts';
import { Rng } from '../src/core/random.ts';
import {
  DISTORTION_KINDS,
  NOISE_STEPS,
  applyNoise,
  brightnessContrast,
  clahe,
  coarseDropout,
  elasticTransform,
  flipHorizontal,
  flipVertical,
  gaussianBlur,
  gaussianNoise,
  gridDistortion,
  hueSaturationValue,
  medianBlur,
  motionBlur,
  noNoise,
  opticalDistortion,
  paperNoise,
  resize,
  shiftScaleRotate,
  shiftScaleRotateMatrix,
  transpose,
  type DistortionKind,
  type ImageAndMask,
  type NoiseConfig,
  type NoiseStep,
} from '../src/core/noise/chain.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const isic2018 = path.join(datasetsRoot, 'isic2018');
const SIZE = 64;
const OUT = { width: SIZE, height: SIZE };

/** Decodes a file with jimp, resized to SIZE x SIZE (the mask by nearest neighbour). */
async function loadResized(file: string, mode: ResizeStrategy): Promise<{ width: number; height: number; rgba: Uint8Array }> {
  const picture = await Jimp.read(file);
  picture.resize({ w: SIZE, h: SIZE, mode });
  return { width: SIZE, height: SIZE, rgba: new Uint8Array(picture.bitmap.data) };
}

let real: ImageAndMask;

beforeAll(async () => {
  const photo = await loadResized(
    path.join(isic2018, 'ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg'),
    ResizeStrategy.BILINEAR,
  );
  const truth = await loadResized(
    path.join(isic2018, 'ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png'),
    ResizeStrategy.NEAREST_NEIGHBOR,
  );
  const n = SIZE * SIZE;
  const image = new Uint8Array(n * 3);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    image.set(photo.rgba.subarray(i * 4, i * 4 + 3), i * 3);
    mask[i] = truth.rgba[i * 4] > 127 ? 1 : 0;
  }
  real = { image: { width: SIZE, height: SIZE, data: image }, mask: { width: SIZE, height: SIZE, data: mask } };
});

const onlyStep = (step: NoiseStep, distortion: DistortionKind = 'optical', p = 1): NoiseConfig => ({
  ...paperNoise(distortion),
  probabilities: Object.fromEntries(NOISE_STEPS.map((s) => [s, s === step ? p : 0])),
});

const run = (config: NoiseConfig, seed: number, sample: ImageAndMask = real) =>
  applyNoise(sample.image, sample.mask, config, new Rng(seed), OUT);

const isBinary = (mask: BinaryMask) => mask.data.every((v) => v === 0 || v === 1);
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
const lesionCount = (mask: BinaryMask) => mask.data.reduce((sum, v) => sum + v, 0);

/** An image that is the mask painted white on black: where it is bright, the mask must be 1. */
function maskAsImage(mask: BinaryMask): ImageAndMask {
  const data = new Uint8Array(mask.data.length * 3);
  mask.data.forEach((v, i) => data.fill(v * 255, i * 3, i * 3 + 3));
  return { image: { width: mask.width, height: mask.height, data }, mask };
}

/** Share of pixels where (image red > 127) agrees with the mask. */
function agreement({ image, mask }: ImageAndMask): number {
  let agree = 0;
  mask!.data.forEach((v, i) => {
    if ((image.data[i * 3] > 127 ? 1 : 0) === v) agree++;
  });
  return agree / mask!.data.length;
}

function luminanceStd(image: RgbImage): number {
  const n = image.width * image.height;
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const y = 0.299 * image.data[i * 3] + 0.587 * image.data[i * 3 + 1] + 0.114 * image.data[i * 3 + 2];
    sum += y;
    sq += y * y;
  }
  return Math.sqrt(sq / n - (sum / n) ** 2);
}

/** Sum of |4 v - neighbours| over the red channel: how much fine detail is left. */
function detail(image: RgbImage): number {
  const { width, height, data } = image;
  let total = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const at = (dx: number, dy: number) => data[((y + dy) * width + x + dx) * 3];
      total += Math.abs(4 * at(0, 0) - at(-1, 0) - at(1, 0) - at(0, -1) - at(0, 1));
    }
  }
  return total;
}

/** Every step and distortion, as the chain runs it alone at probability 1. */
interface Case {
  step: NoiseStep;
  distortion: DistortionKind;
  label: string;
}
const CASES: Case[] = NOISE_STEPS.flatMap((step): Case[] =>
  step === 'distortion'
    ? DISTORTION_KINDS.map((distortion) => ({ step, distortion, label: `distortion ${distortion}` }))
    : [{ step, distortion: 'optical', label: step }],
);
const DETERMINISTIC: readonly NoiseStep[] = ['transpose', 'verticalFlip', 'horizontalFlip'];

describe('each augmentation in the chain', () => {
  it.each(CASES)('$label: keeps the shape, a binary mask, the mask for photometric steps', ({ step, distortion }) => {
    const result = run(onlyStep(step, distortion), 7);
    expect(result.applied).toEqual([step]);
    expect(result.image.width).toBe(SIZE);
    expect(result.image.height).toBe(SIZE);
    expect(result.image.data.length).toBe(SIZE * SIZE * 3);
    expect(result.mask!.data.length).toBe(SIZE * SIZE);
    expect(isBinary(result.mask!)).toBe(true);
    const geometric = !['brightnessContrast', 'blurOrNoise', 'clahe', 'hueSaturationValue'].includes(step);
    const movesMask = geometric && distortion !== 'coarse-dropout';
    if (!movesMask) expect(same(result.mask!.data, real.mask!.data)).toBe(true);
    expect(same(result.image.data, real.image.data)).toBe(false);
  });

  it.each(CASES)('$label: the same seed gives the same bytes, another seed other bytes', ({ step, distortion }) => {
    const a = run(onlyStep(step, distortion), 11);
    const b = run(onlyStep(step, distortion), 11);
    expect(same(a.image.data, b.image.data)).toBe(true);
    expect(same(a.mask!.data, b.mask!.data)).toBe(true);
    if (DETERMINISTIC.includes(step)) {
      // No parameters to draw: the seed decides whether it fires (p 0.5).
      const outcomes = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((seed) => run(onlyStep(step, distortion, 0.5), seed).applied.length));
      expect(outcomes).toEqual(new Set([0, 1]));
    } else {
      // OpenCV's CLAHE limit is in pixels per bin: at 64 px (8 x 8 tiles of 64 pixels) every clip in [1, 4] rounds to 1.
      const sample = step === 'clahe' ? resize(real, 256, 256) : real;
      const outputs = [12, 13, 14].map((seed) => run(onlyStep(step, distortion), seed, sample).image.data);
      expect(outputs.some((c) => !same(outputs[0], c))).toBe(true);
    }
  });

  it.each(CASES)('$label: at probability 0 the chain is the plain resize', ({ step, distortion }) => {
    const result = run(onlyStep(step, distortion, 0), 5);
    const plain = resize(real, SIZE, SIZE);
    expect(result.applied).toEqual([]);
    expect(same(result.image.data, plain.image.data)).toBe(true);
    expect(same(result.mask!.data, plain.mask!.data)).toBe(true);
  });

  it.each(CASES.filter(({ step }) => ['transpose', 'verticalFlip', 'horizontalFlip', 'distortion', 'shiftScaleRotate'].includes(step)))(
    '$label: moves image and mask together',
    ({ step, distortion }) => {
      if (distortion === 'coarse-dropout' && step === 'distortion') return;
      const results = [1, 2, 3].map((seed) => run(onlyStep(step, distortion), seed, maskAsImage(real.mask!)));
      const own = results.map((r) => agreement(r as ImageAndMask));
      const unmoved = results.map((r) => agreement({ image: r.image, mask: real.mask }));
      for (const a of own) expect(a).toBeGreaterThan(0.985);
      // ...and they did move: against the unmoved mask the image agrees less.
      expect(own.some((a, i) => a > unmoved[i])).toBe(true);
    },
  );
});

describe('the whole chain', () => {
  it.each(DISTORTION_KINDS)('paper noise with %s: deterministic per seed, binary masks, resized output', (kind) => {
    const out = { width: 40, height: 48 };
    const seen = new Set<string>();
    for (let seed = 0; seed < 6; seed++) {
      const a = applyNoise(real.image, real.mask, paperNoise(kind), new Rng(seed), out);
      const b = applyNoise(real.image, real.mask, paperNoise(kind), new Rng(seed), out);
      expect(same(a.image.data, b.image.data)).toBe(true);
      expect(same(a.mask!.data, b.mask!.data)).toBe(true);
      expect([a.image.width, a.image.height, a.mask!.width, a.mask!.height]).toEqual([40, 48, 40, 48]);
      expect(isBinary(a.mask!)).toBe(true);
      expect(a.applied.every((step, i) => i === 0 || NOISE_STEPS.indexOf(step) > NOISE_STEPS.indexOf(a.applied[i - 1]))).toBe(true);
      seen.add(a.applied.join());
    }
    expect(seen.size).toBeGreaterThan(1);
  });

  it("preset 'none' only resizes", () => {
    const result = applyNoise(real.image, real.mask, noNoise(), new Rng(3), { width: 32, height: 24 });
    const plain = resize(real, 32, 24);
    expect(result.applied).toEqual([]);
    expect(same(result.image.data, plain.image.data)).toBe(true);
    expect(same(result.mask!.data, plain.mask!.data)).toBe(true);
  });

  it('works without a mask', () => {
    const result = applyNoise(real.image, undefined, paperNoise('grid'), new Rng(9), OUT);
    expect(result.mask).toBeUndefined();
    expect(result.image.data.length).toBe(SIZE * SIZE * 3);
  });

  it('rejects bad configurations with a ConfigError', () => {
    const bad = { ...paperNoise(), probabilities: { clahe: 1.5 } };
    expect(() => run(bad, 1)).toThrow(ConfigError);
    const small: BinaryMask = { width: 8, height: 8, data: new Uint8Array(64) };
    expect(() => applyNoise(real.image, small, paperNoise(), new Rng(1), OUT)).toThrow(ConfigError);
    expect(() => applyNoise(real.image, real.mask, paperNoise(), new Rng(1), { width: 0, height: 5 })).toThrow(ConfigError);
  });
});

describe('geometric transforms', () => {
  it('flipping twice and transposing twice give the sample back', () => {
    for (const twice of [flipVertical, flipHorizontal, transpose]) {
      const back = twice(twice(real));
      expect(same(back.image.data, real.image.data)).toBe(true);
      expect(same(back.mask!.data, real.mask!.data)).toBe(true);
    }
  });

  it('transpose swaps the axes of image and mask alike', () => {
    const wide = resize(real, 20, 12);
    const t = transpose(wide);
    expect([t.image.width, t.image.height, t.mask!.width, t.mask!.height]).toEqual([12, 20, 12, 20]);
    for (let y = 0; y < 12; y++) {
      for (let x = 0; x < 20; x++) {
        expect(t.mask!.data[x * 12 + y]).toBe(wide.mask!.data[y * 20 + x]);
        expect(t.image.data[(x * 12 + y) * 3 + 1]).toBe(wide.image.data[(y * 20 + x) * 3 + 1]);
      }
    }
  });

  it('flips mirror pixels', () => {
    const v = flipVertical(real);
    const h = flipHorizontal(real);
    expect(v.mask!.data[0]).toBe(real.mask!.data[(SIZE - 1) * SIZE]);
    expect(h.image.data.subarray(0, 3)).toEqual(real.image.data.subarray((SIZE - 1) * 3, SIZE * 3));
  });

  it('shift-scale-rotate puts the lesion where the image moved, with a zero border', () => {
    const data = new Uint8Array(SIZE * SIZE * 3);
    const mask = new Uint8Array(SIZE * SIZE);
    for (let y = 20; y < 24; y++) {
      for (let x = 14; x < 18; x++) {
        data.fill(255, (y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3);
        mask[y * SIZE + x] = 1;
      }
    }
    const marked: ImageAndMask = { image: { width: SIZE, height: SIZE, data }, mask: { width: SIZE, height: SIZE, data: mask } };
    const params = { angle: 30, scale: 1.1, dx: 0.1, dy: -0.05 };
    const moved = shiftScaleRotate(marked, params);
    // Where the block's centre should land, by the forward matrix.
    const [a, b, c, d, e, f] = shiftScaleRotateMatrix(SIZE, SIZE, params);
    const ex = a * 15.5 + b * 21.5 + c;
    const ey = d * 15.5 + e * 21.5 + f;
    const centroid = (weights: (i: number) => number) => {
      let sx = 0;
      let sy = 0;
      let sw = 0;
      for (let i = 0; i < SIZE * SIZE; i++) {
        const w = weights(i);
        sx += w * (i % SIZE);
        sy += w * Math.floor(i / SIZE);
        sw += w;
      }
      return [sx / sw, sy / sw];
    };
    const [mx, my] = centroid((i) => moved.mask!.data[i]);
    const [ix, iy] = centroid((i) => moved.image.data[i * 3]);
    expect(Math.hypot(mx - ex, my - ey)).toBeLessThan(0.8);
    expect(Math.hypot(ix - ex, iy - ey)).toBeLessThan(0.5);
    expect(moved.mask!.data[Math.round(ey) * SIZE + Math.round(ex)]).toBe(1);
    expect(lesionCount(moved.mask!)).toBeGreaterThan(12);

    // Shifted right by 10 %: the first columns come from outside and are 0.
    const shifted = shiftScaleRotate(real, { angle: 0, scale: 1, dx: 0.1, dy: 0 });
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < 6; x++) {
        expect(shifted.image.data[(y * SIZE + x) * 3]).toBe(0);
        expect(shifted.mask!.data[y * SIZE + x]).toBe(0);
      }
    }
  });

  it('resize keeps masks binary and aligned with the image', () => {
    const painted = maskAsImage(real.mask!);
    for (const [w, h] of [[32, 32], [100, 90], [17, 41]]) {
      const r = resize(painted, w, h);
      expect(isBinary(r.mask!)).toBe(true);
      expect(agreement(r)).toBeGreaterThan(0.97);
    }
  });
});

describe('distortions', () => {
  it('optical distortion with k = 0 is the identity; k > 0 changes the sample, moving image and mask alike', () => {
    const still = opticalDistortion(real, { k: 0, dx: 0, dy: 0 });
    expect(same(still.image.data, real.image.data)).toBe(true);
    expect(same(still.mask!.data, real.mask!.data)).toBe(true);
    const painted = maskAsImage(real.mask!);
    for (const k of [-1, 0.6, 1]) {
      const warped = opticalDistortion(painted, { k, dx: 0, dy: 0 });
      expect(same(warped.mask!.data, real.mask!.data)).toBe(false);
      expect(agreement(warped)).toBeGreaterThan(0.985);
      expect(agreement({ image: warped.image, mask: real.mask })).toBeLessThan(agreement(warped));
    }
  });

  it('grid distortion stretches the cells by their steps', () => {
    const painted = maskAsImage(real.mask!);
    const wide = gridDistortion(painted, { numSteps: 5, stepsX: [2, 2, 2, 2, 2, 2], stepsY: [1, 1, 1, 1, 1, 1] });
    // Every cell reads twice its width of source: the left half of the output spans the whole source width.
    const ramp: ImageAndMask = { image: { width: SIZE, height: 1, data: Uint8Array.from({ length: SIZE * 3 }, (_, i) => Math.floor(i / 3) * 4) } };
    const stretched = gridDistortion(ramp, { numSteps: 5, stepsX: [2, 2, 2, 2, 2, 2], stepsY: [1, 1, 1, 1, 1, 1] });
    expect(stretched.image.data[12 * 3]).toBeCloseTo(24 * 4, -1);
    expect(isBinary(wide.mask!)).toBe(true);
    expect(agreement(wide)).toBeGreaterThan(0.985);
  });

  it('elastic transform is seeded and keeps the mask on the image', () => {
    const painted = maskAsImage(real.mask!);
    const params = { alpha: 3, sigma: 50, alphaAffine: 50 };
    const a = elasticTransform(painted, params, new Rng(4));
    const b = elasticTransform(painted, params, new Rng(4));
    expect(same(a.mask!.data, b.mask!.data)).toBe(true);
    expect(same(a.mask!.data, painted.mask!.data)).toBe(false);
    expect(agreement(a)).toBeGreaterThan(0.985);
    const strong = elasticTransform(painted, { alpha: 40, sigma: 4, alphaAffine: 0 }, new Rng(5));
    expect(agreement(strong)).toBeGreaterThan(0.97);
    expect(isBinary(strong.mask!)).toBe(true);
  });

  it('coarse dropout zeroes the holes in the image and leaves the mask alone', () => {
    const holes = [
      { x: 3, y: 5, width: 12, height: 12 },
      { x: 50, y: 40, width: 12, height: 12 },
    ];
    const dropped = coarseDropout(real, holes);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const inHole = holes.some((h) => x >= h.x && x < h.x + h.width && y >= h.y && y < h.y + h.height);
        const i = (y * SIZE + x) * 3;
        const expected = inHole ? [0, 0, 0] : Array.from(real.image.data.subarray(i, i + 3));
        expect(Array.from(dropped.image.data.subarray(i, i + 3))).toEqual(expected);
      }
    }
    expect(same(dropped.mask!.data, real.mask!.data)).toBe(true);
    // In the chain: six holes of 20 % x 20 % (12 x 12 at 64 px) somewhere in the image.
    const chained = run(onlyStep('distortion', 'coarse-dropout'), 2);
    const black = chained.image.data.filter((v, i) => i % 3 === 0 && v === 0 && chained.image.data[i + 1] === 0).length;
    expect(black).toBeGreaterThanOrEqual(144);
    expect(black).toBeLessThanOrEqual(6 * 144);
  });
});

describe('photometric transforms', () => {
  it('brightness and contrast follow v -> alpha v + 255 beta, clipped and truncated', () => {
    const flat: RgbImage = { width: 3, height: 1, data: Uint8Array.from([0, 10, 100, 200, 250, 255, 128, 64, 32]) };
    const out = brightnessContrast(flat, 1.2, -0.1);
    expect(Array.from(out.data)).toEqual(Array.from(flat.data, (v) => Math.max(0, Math.min(255, Math.floor(v * 1.2 - 25.5)))));
  });

  it('CLAHE raises the contrast of a low-contrast image, more with a higher clip limit', () => {
    // 256 px: tiles of 32 x 32 whose limits are 6 and 16 per bin (at 64 px both would round to 1).
    const large = resize(real, 256, 256).image;
    const dull: RgbImage = { ...large, data: large.data.map((v) => 100 + (v >> 3)) };
    const before = luminanceStd(dull);
    const mild = luminanceStd(clahe(dull, 1.5));
    const strong = luminanceStd(clahe(dull, 4));
    expect(mild).toBeGreaterThan(before * 1.2);
    expect(strong).toBeGreaterThan(mild * 1.2);
  });

  it('CLAHE keeps greys grey (it equalises lightness only)', () => {
    const grey: RgbImage = { ...real.image, data: new Uint8Array(real.image.data.length) };
    for (let i = 0; i < SIZE * SIZE; i++) grey.data.fill(real.image.data[i * 3], i * 3, i * 3 + 3);
    const out = clahe(grey, 4);
    for (let i = 0; i < SIZE * SIZE; i++) {
      expect(Math.abs(out.data[i * 3] - out.data[i * 3 + 1])).toBeLessThanOrEqual(2);
      expect(Math.abs(out.data[i * 3 + 2] - out.data[i * 3 + 1])).toBeLessThanOrEqual(2);
    }
  });

  it('a hue shift turns red towards yellow but leaves grey pixels alone', () => {
    const pixels: RgbImage = { width: 3, height: 1, data: Uint8Array.from([200, 40, 40, 128, 128, 128, 0, 0, 0]) };
    const out = hueSaturationValue(pixels, 10, 0, 0);
    expect(Array.from(out.data.subarray(3))).toEqual([128, 128, 128, 0, 0, 0]);
    const [r, g, b] = out.data;
    // OpenCV hue 10 = 20 degrees: red stays max, green rises, blue stays min.
    expect(r).toBeGreaterThanOrEqual(199);
    expect(b).toBeLessThanOrEqual(41);
    expect(g).toBeGreaterThan(80);
    expect(g).toBeLessThan(110);
    // Saturation down to nothing makes everything grey; value shifts move all channels.
    const washed = hueSaturationValue(real.image, 0, -255, 0);
    for (let i = 0; i < washed.data.length; i += 3) {
      expect(washed.data[i]).toBe(washed.data[i + 1]);
      expect(washed.data[i + 1]).toBe(washed.data[i + 2]);
    }
    expect(Array.from(hueSaturationValue(pixels, 0, 0, 10).data.subarray(3, 6))).toEqual([138, 138, 138]);
  });

  it('blurs remove fine detail; median removes an isolated speck', () => {
    const sharp = detail(real.image);
    expect(detail(gaussianBlur(real.image, 5, 1))).toBeLessThan(sharp * 0.7);
    expect(detail(medianBlur(real.image, 5))).toBeLessThan(sharp * 0.7);
    expect(detail(motionBlur(real.image, { size: 5, x0: 0, y0: 2, x1: 4, y1: 2 }))).toBeLessThan(sharp * 0.8);

    const speck: RgbImage = { width: 9, height: 9, data: new Uint8Array(243) };
    speck.data.fill(255, 40 * 3, 41 * 3);
    expect(medianBlur(speck, 3).data.every((v) => v === 0)).toBe(true);
    expect(gaussianBlur(speck, 3, 0.8).data[40 * 3]).toBeLessThan(255);
  });

  it('a horizontal motion blur smears along rows only', () => {
    // Vertical stripes get mixed, horizontal stripes do not.
    const stripes = (vertical: boolean): RgbImage => ({
      width: 8,
      height: 8,
      data: Uint8Array.from({ length: 192 }, (_, i) => (((vertical ? (i / 3) % 8 : (i / 24)) | 0) % 2) * 200),
    });
    const line = { size: 3, x0: 0, y0: 1, x1: 2, y1: 1 };
    const horizontal = stripes(false);
    expect(same(motionBlur(horizontal, line).data, horizontal.data)).toBe(true);
    expect(same(motionBlur(stripes(true), line).data, stripes(true).data)).toBe(false);
  });

  it('gaussian noise has the requested spread', () => {
    const grey: RgbImage = { width: SIZE, height: SIZE, data: new Uint8Array(SIZE * SIZE * 3).fill(128) };
    const sigma = Math.sqrt(30);
    const noisy = gaussianNoise(grey, sigma, new Rng(8));
    const values = Array.from(noisy.data, (v) => v - 128);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
    // Truncation to bytes lowers the mean by about half a level.
    expect(mean).toBeCloseTo(-0.5, 0);
    expect(Math.abs(std - sigma)).toBeLessThan(0.3);
  });
});
