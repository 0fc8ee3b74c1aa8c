/**
 * Flips, transpose, shift-scale-rotate and resize: they move the image and
 * its mask together (albumentations DualTransform semantics).
 */
import type { BinaryMask, RgbImage } from '../io.ts';
import { affineMap, emptyMap, remap, type Affine, type ImageAndMask } from './sampling.ts';

type Plane = RgbImage | BinaryMask;

/**
 * Moves whole pixels: output pixel (x, y) of an outWidth x outHeight plane
 * takes source pixel `first + x * stepX + y * stepY` (an index, not bytes).
 */
interface PixelWalk {
  outWidth: number;
  outHeight: number;
  first: number;
  stepX: number;
  stepY: number;
}

function walkPixels<T extends Plane>(plane: T, channels: number, walk: PixelWalk): T {
  const { outWidth, outHeight, first, stepX, stepY } = walk;
  const src = plane.data;
  const out = new Uint8Array(src.length);
  for (let y = 0, o = 0; y < outHeight; y++) {
    let s = (first + y * stepY) * channels;
    for (let x = 0; x < outWidth; x++, s += stepX * channels) {
      for (let c = 0; c < channels; c++) out[o++] = src[s + c];
    }
  }
  return { ...plane, width: outWidth, height: outHeight, data: out };
}

function walkBoth(sample: ImageAndMask, walk: PixelWalk): ImageAndMask {
  return {
    image: walkPixels(sample.image, 3, walk),
    mask: sample.mask && walkPixels(sample.mask, 1, walk),
  };
}

/** Swaps rows and columns (albumentations Transpose): output (x, y) = input (y, x). */
export function transpose(sample: ImageAndMask): ImageAndMask {
  const { width, height } = sample.image;
  return walkBoth(sample, { outWidth: height, outHeight: width, first: 0, stepX: width, stepY: 1 });
}

/** Upside down (albumentations VerticalFlip). */
export function flipVertical(sample: ImageAndMask): ImageAndMask {
  const { width, height } = sample.image;
  return walkBoth(sample, { outWidth: width, outHeight: height, first: (height - 1) * width, stepX: 1, stepY: -width });
}

/** Mirror left-right (albumentations HorizontalFlip). */
export function flipHorizontal(sample: ImageAndMask): ImageAndMask {
  const { width, height } = sample.image;
  return walkBoth(sample, { outWidth: width, outHeight: height, first: width - 1, stepX: -1, stepY: width });
}

export interface ShiftScaleRotateParams {
  /** Degrees, counter-clockwise on screen (OpenCV getRotationMatrix2D). */
  angle: number;
  /** Zoom factor, 1 = unchanged. */
  scale: number;
  /** Shifts as fractions of the width / height. */
  dx: number;
  dy: number;
}

/** The forward (source -> output) matrix of albumentations' shift_scale_rotate. */
export function shiftScaleRotateMatrix(width: number, height: number, p: ShiftScaleRotateParams): Affine {
  // getRotationMatrix2D about (w/2, h/2), albumentations' centre, then the shift.
  const cx = width / 2;
  const cy = height / 2;
  const rad = (p.angle * Math.PI) / 180;
  const alpha = p.scale * Math.cos(rad);
  const beta = p.scale * Math.sin(rad);
  return [
    alpha,
    beta,
    (1 - alpha) * cx - beta * cy + p.dx * width,
    -beta,
    alpha,
    beta * cx + (1 - alpha) * cy + p.dy * height,
  ];
}

/** Albumentations ShiftScaleRotate with border_mode=0: what leaves the frame is lost, what enters is 0. */
export function shiftScaleRotate(sample: ImageAndMask, p: ShiftScaleRotateParams): ImageAndMask {
  const { width, height } = sample.image;
  return remap(sample, affineMap(shiftScaleRotateMatrix(width, height, p), width, height), 'constant');
}

/**
 * Resize to width x height: bilinear for the image as OpenCV's INTER_LINEAR
 * (half-pixel centres, edge clamped, no antialiasing). The mask reads the
 * nearest source pixel of the same centre (OpenCV's INTER_NEAREST_EXACT),
 * so the two cannot drift half a pixel apart.
 */
export function resize(sample: ImageAndMask, width: number, height: number): ImageAndMask {
  const { width: sw, height: sh } = sample.image;
  if (sw === width && sh === height) {
    return {
      image: { width, height, data: sample.image.data.slice() },
      mask: sample.mask && { width, height, data: sample.mask.data.slice() },
    };
  }
  const map = emptyMap(width, height);
  const sx = sw / width;
  const sy = sh / height;
  for (let v = 0, i = 0; v < height; v++) {
    const y = (v + 0.5) * sy - 0.5;
    for (let u = 0; u < width; u++, i++) {
      map.x[i] = (u + 0.5) * sx - 0.5;
      map.y[i] = y;
    }
  }
  return remap(sample, map, 'replicate');
}
