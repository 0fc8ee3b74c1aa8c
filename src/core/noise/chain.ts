/**
 * The Noisy Student "noise": the paper's training augmentation chain as its
 * official code runs it (albumentations 1.1.0, see
 * shared/reference/paper-protocol.md), on 8-bit typed arrays, every random
 * draw from the caller's Rng so a seed reproduces a sample byte for byte.
 *
 * Parameters in pixels (blur kernels, elastic sigma and affine range) act on
 * the resolution handed in, as albumentations' do; the official code ran
 * them on the full-size photographs, before its final resize.
 */
import { ConfigError } from '../errors.ts';
import type { BinaryMask, RgbImage } from '../io.ts';
import type { Rng } from '../random.ts';
import { gaussianBlur, medianBlur, motionBlur } from './blur.ts';
import { clahe } from './clahe.ts';
import { coarseDropout, elasticTransform, gridDistortion, opticalDistortion, type Hole } from './distortions.ts';
import { flipHorizontal, flipVertical, resize, shiftScaleRotate, transpose } from './geometric.ts';
import { brightnessContrast, gaussianNoise, hueSaturationValue } from './photometric.ts';
import type { ImageAndMask } from './sampling.ts';

export { gaussianBlur, medianBlur, motionBlur, type MotionBlurParams } from './blur.ts';
export { clahe, claheChannel } from './clahe.ts';
export {
  coarseDropout,
  elasticTransform,
  gridDistortion,
  opticalDistortion,
  type ElasticParams,
  type GridDistortionParams,
  type Hole,
  type OpticalDistortionParams,
} from './distortions.ts';
export {
  flipHorizontal,
  flipVertical,
  resize,
  shiftScaleRotate,
  shiftScaleRotateMatrix,
  transpose,
  type ShiftScaleRotateParams,
} from './geometric.ts';
export { brightnessContrast, gaussianNoise, hueSaturationValue } from './photometric.ts';
export type { ImageAndMask } from './sampling.ts';

export type DistortionKind = 'optical' | 'grid' | 'elastic' | 'coarse-dropout';

export type NoiseStep =
  | 'transpose'
  | 'verticalFlip'
  | 'horizontalFlip'
  | 'brightnessContrast'
  | 'blurOrNoise'
  | 'distortion'
  | 'clahe'
  | 'hueSaturationValue'
  | 'shiftScaleRotate';

export interface NoiseConfig {
  /** 'paper': the chain below; 'none': resize only. */
  preset: 'paper' | 'none';
  /** Step 6: the official code picks one distortion per run. */
  distortion: DistortionKind;
  /** Overrides of the paper's per-step probabilities. */
  probabilities?: Partial<Record<NoiseStep, number>>;
}

/** The steps in the order they run, with the official probabilities. */
export const PAPER_PROBABILITIES: Readonly<Record<NoiseStep, number>> = {
  transpose: 0.5,
  verticalFlip: 0.5,
  horizontalFlip: 0.5,
  brightnessContrast: 0.75,
  blurOrNoise: 0.7,
  distortion: 0.7,
  clahe: 0.7,
  hueSaturationValue: 0.5,
  shiftScaleRotate: 0.85,
};

export const NOISE_STEPS = Object.keys(PAPER_PROBABILITIES) as readonly NoiseStep[];

export const DISTORTION_KINDS: readonly DistortionKind[] = ['optical', 'grid', 'elastic', 'coarse-dropout'];

/** The ranges the official code passes to albumentations (its own defaults where it passes none). */
export const PAPER_LIMITS = {
  brightness: 0.2,
  contrast: 0.2,
  /** MotionBlur(blur_limit=5) and MedianBlur(blur_limit=5): kernel 3 or 5. */
  blurSizes: [3, 5],
  /** GaussianBlur(blur_limit=(3, 5), sigma_limit=1): sigma uniform in [0, 1]. */
  gaussianSigma: 1,
  /** GaussNoise(var_limit=(5, 30)) on the 0..255 scale. */
  noiseVariance: [5, 30],
  /** OpticalDistortion(distort_limit=1.0); its shift_limit 0.05 is rounded to whole pixels, i.e. always 0. */
  opticalK: 1,
  gridSteps: 5,
  gridLimit: 1,
  /** ElasticTransform(alpha=3) with the defaults sigma=50, alpha_affine=50. */
  elastic: { alpha: 3, sigma: 50, alphaAffine: 50 },
  /**
   * CoarseDropout(max_holes=6, max_height=max_width=0.2 x size): with min_*
   * left None albumentations 1.1.0 sets them to the max, so always exactly 6
   * holes of exactly 20 % x 20 % (not "up to").
   */
  dropoutHoles: 6,
  dropoutSize: 0.2,
  /** CLAHE(clip_limit=4.0): clip uniform in [1, 4], 8 x 8 tiles. */
  claheClip: [1, 4],
  claheTiles: 8,
  hue: 10,
  saturation: 20,
  value: 10,
  shift: 0.1,
  scale: 0.1,
  rotateDegrees: 15,
} as const;

export function paperNoise(distortion: DistortionKind = 'optical'): NoiseConfig {
  return { preset: 'paper', distortion };
}

export function noNoise(): NoiseConfig {
  return { preset: 'none', distortion: 'optical' };
}

export interface NoiseResult {
  image: RgbImage;
  mask?: BinaryMask;
  /** The steps that fired, in order. */
  applied: NoiseStep[];
}

const L = PAPER_LIMITS;

/** albumentations OneOf over four children of equal weight, the chosen one forced. */
function blurOrNoise(image: RgbImage, rng: Rng): RgbImage {
  switch (rng.int(0, 3)) {
    case 0: {
      const size = rng.pick(L.blurSizes);
      const x0 = rng.int(0, size - 1);
      const x1 = rng.int(0, size - 1);
      let y0: number;
      let y1: number;
      if (x0 === x1) {
        // random.sample(range(size), 2): two distinct rows, so the line is never a dot.
        y0 = rng.int(0, size - 1);
        y1 = rng.int(0, size - 2);
        if (y1 >= y0) y1++;
      } else {
        y0 = rng.int(0, size - 1);
        y1 = rng.int(0, size - 1);
      }
      return motionBlur(image, { size, x0, y0, x1, y1 });
    }
    case 1:
      return medianBlur(image, rng.pick(L.blurSizes));
    case 2: {
      // randrange(3, 6), even sizes bumped as albumentations does: 3 w.p. 1/3, else 5.
      const drawn = rng.int(3, 5);
      const size = drawn % 2 === 1 ? drawn : (drawn + 1) % 6;
      return gaussianBlur(image, size, rng.uniform(0, L.gaussianSigma));
    }
    default:
      return gaussianNoise(image, Math.sqrt(rng.uniform(L.noiseVariance[0], L.noiseVariance[1])), rng);
  }
}

function distortion(sample: ImageAndMask, kind: DistortionKind, rng: Rng): ImageAndMask {
  const { width, height } = sample.image;
  switch (kind) {
    case 'optical':
      return opticalDistortion(sample, { k: rng.uniform(-L.opticalK, L.opticalK), dx: 0, dy: 0 });
    case 'grid': {
      const steps = (): number[] =>
        Array.from({ length: L.gridSteps + 1 }, () => 1 + rng.uniform(-L.gridLimit, L.gridLimit));
      return gridDistortion(sample, { numSteps: L.gridSteps, stepsX: steps(), stepsY: steps() });
    }
    case 'elastic':
      return elasticTransform(sample, L.elastic, rng);
    case 'coarse-dropout': {
      const holeWidth = Math.floor(width * L.dropoutSize);
      const holeHeight = Math.floor(height * L.dropoutSize);
      const holes: Hole[] = Array.from({ length: L.dropoutHoles }, () => {
        const y = rng.int(0, height - holeHeight);
        const x = rng.int(0, width - holeWidth);
        return { x, y, width: holeWidth, height: holeHeight };
      });
      return coarseDropout(sample, holes);
    }
  }
}

function onImage(sample: ImageAndMask, change: (image: RgbImage) => RgbImage): ImageAndMask {
  return { image: change(sample.image), mask: sample.mask };
}

const STEP_APPLIERS: Record<NoiseStep, (s: ImageAndMask, rng: Rng, kind: DistortionKind) => ImageAndMask> = {
  transpose: (s) => transpose(s),
  verticalFlip: (s) => flipVertical(s),
  horizontalFlip: (s) => flipHorizontal(s),
  brightnessContrast: (s, rng) => {
    const alpha = 1 + rng.uniform(-L.contrast, L.contrast);
    const beta = rng.uniform(-L.brightness, L.brightness);
    return onImage(s, (image) => brightnessContrast(image, alpha, beta));
  },
  blurOrNoise: (s, rng) => onImage(s, (image) => blurOrNoise(image, rng)),
  distortion: (s, rng, kind) => distortion(s, kind, rng),
  clahe: (s, rng) => {
    const clip = rng.uniform(L.claheClip[0], L.claheClip[1]);
    return onImage(s, (image) => clahe(image, clip, L.claheTiles, L.claheTiles));
  },
  hueSaturationValue: (s, rng) => {
    const hue = rng.uniform(-L.hue, L.hue);
    const saturation = rng.uniform(-L.saturation, L.saturation);
    const value = rng.uniform(-L.value, L.value);
    return onImage(s, (image) => hueSaturationValue(image, hue, saturation, value));
  },
  shiftScaleRotate: (s, rng) =>
    shiftScaleRotate(s, {
      angle: rng.uniform(-L.rotateDegrees, L.rotateDegrees),
      scale: rng.uniform(1 - L.scale, 1 + L.scale),
      dx: rng.uniform(-L.shift, L.shift),
      dy: rng.uniform(-L.shift, L.shift),
    }),
};

function validate(image: RgbImage, mask: BinaryMask | undefined, config: NoiseConfig, out: { width: number; height: number }): void {
  if (!Number.isInteger(out.width) || !Number.isInteger(out.height) || out.width < 1 || out.height < 1) {
    throw new ConfigError('noise.outputSize', `must be positive integers, got ${out.width}x${out.height}`);
  }
  if (image.data.length !== image.width * image.height * 3) {
    throw new ConfigError('noise.image', `holds ${image.data.length} bytes, not ${image.width}x${image.height}x3`);
  }
  if (mask && (mask.width !== image.width || mask.height !== image.height)) {
    throw new ConfigError('noise.mask', `is ${mask.width}x${mask.height}, the image ${image.width}x${image.height}`);
  }
  if (!DISTORTION_KINDS.includes(config.distortion)) {
    throw new ConfigError('noise.distortion', `unknown kind "${config.distortion}"`);
  }
  for (const [step, p] of Object.entries(config.probabilities ?? {})) {
    if (!(step in PAPER_PROBABILITIES)) throw new ConfigError(`noise.probabilities.${step}`, 'unknown step');
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
      throw new ConfigError(`noise.probabilities.${step}`, `must be in [0, 1], got ${p}`);
    }
  }
}

/**
 * Runs the chain on one sample and resizes to `out`. Each step first draws
 * whether it fires, then (only if it does) its parameters, all from `rng`.
 */
export function applyNoise(
  image: RgbImage,
  mask: BinaryMask | undefined,
  config: NoiseConfig,
  rng: Rng,
  out: { width: number; height: number },
): NoiseResult {
  validate(image, mask, config, out);
  let sample: ImageAndMask = { image, mask };
  const applied: NoiseStep[] = [];
  if (config.preset === 'paper') {
    for (const step of NOISE_STEPS) {
      const p = config.probabilities?.[step] ?? PAPER_PROBABILITIES[step];
      if (!rng.chance(p)) continue;
      sample = STEP_APPLIERS[step](sample, rng, config.distortion);
      applied.push(step);
    }
  }
  const resized = resize(sample, out.width, out.height);
  return { image: resized.image, mask: resized.mask, applied };
}
