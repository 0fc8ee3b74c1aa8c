/**
 * Resizing, the one implementation both hosts use. Decoded photographs and
 * masks in 8-bit RGBA (resizeRgba), so that no full-size float copy of a
 * 24-megapixel original ever exists, and no host's own scaler (Chromium's
 * 'high' quality, a Node library's) makes the studio and the CLI train on
 * different pixels.
 *
 * Bilinear resampling of a one-channel float map (a model's logits at its
 * input size) to another size, thresholded as it goes: the output is a 0/1
 * mask, produced row by row from two interpolated rows of floats, so a
 * prediction for a 6000x4000 photograph never exists as 24 M floats.
 *
 * Sampling follows tf.image.resizeBilinear with halfPixelCenters (PyTorch's
 * align_corners=False): pixel centres at half-integers, edges clamped.
 */
import { ConfigError } from '../errors.ts';
import type { BinaryMask, ResizeFilter, RgbaPixels } from '../io.ts';

export interface FloatMap {
  width: number;
  height: number;
  data: Float32Array;
}

/** For each target index along one axis: the two source indices it blends and the weight of the second. */
interface AxisTaps {
  lo: Int32Array;
  hi: Int32Array;
  frac: Float64Array;
}

function axisTaps(srcSize: number, dstSize: number): AxisTaps {
  const scale = srcSize / dstSize;
  const lo = new Int32Array(dstSize);
  const hi = new Int32Array(dstSize);
  const frac = new Float64Array(dstSize);
  for (let i = 0; i < dstSize; i++) {
    const at = Math.max(0, (i + 0.5) * scale - 0.5);
    lo[i] = Math.min(Math.floor(at), srcSize - 1);
    hi[i] = Math.min(lo[i] + 1, srcSize - 1);
    frac[i] = at - lo[i];
  }
  return { lo, hi, frac };
}

/** The map resized to width x height; a pixel is 1 where the interpolated value is >= threshold. */
export function resizeAndThreshold(map: FloatMap, width: number, height: number, threshold: number): BinaryMask {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`target size must be positive integers, got ${width}x${height}`);
  }
  if (map.data.length !== map.width * map.height) {
    throw new RangeError(`map of ${map.width}x${map.height} holds ${map.data.length} values`);
  }
  const src = map.data;
  const across = axisTaps(map.width, width);
  const down = axisTaps(map.height, height);
  const fillRow = (row: Float64Array, srcY: number): void => {
    const base = srcY * map.width;
    for (let x = 0; x < width; x++) {
      const a = src[base + across.lo[x]];
      row[x] = a + (src[base + across.hi[x]] - a) * across.frac[x];
    }
  };

  // The two source rows, interpolated across, that the current target row blends.
  let upper = new Float64Array(width);
  let lower = new Float64Array(width);
  let upperY = -1;
  let lowerY = -1;
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const [y0, y1, fy] = [down.lo[y], down.hi[y], down.frac[y]];
    if (upperY !== y0 && lowerY === y0) {
      [upper, lower] = [lower, upper];
      [upperY, lowerY] = [lowerY, upperY];
    }
    if (upperY !== y0) {
      fillRow(upper, y0);
      upperY = y0;
    }
    if (lowerY !== y1) {
      fillRow(lower, y1);
      lowerY = y1;
    }
    const out = y * width;
    for (let x = 0; x < width; x++) {
      const top = upper[x];
      data[out + x] = top + (lower[x] - top) * fy >= threshold ? 1 : 0;
    }
  }
  return { width, height, data };
}

/** Nearest-neighbour resize, so a mask stays exactly 0/1 (a stored pseudo-label has no logits left to interpolate). */
export function resizeMask(mask: BinaryMask, width: number, height: number): BinaryMask {
  if (mask.width === width && mask.height === height) return mask;
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(mask.height - 1, Math.floor(((y + 0.5) * mask.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(mask.width - 1, Math.floor(((x + 0.5) * mask.width) / width));
      data[y * width + x] = mask.data[sy * mask.width + sx];
    }
  }
  return { width, height, data };
}

/**
 * 8-bit RGBA resize. 'nearest' picks the source pixel under each target
 * pixel's centre (masks keep their exact values). 'bilinear' is the triangle
 * filter with half-pixel centres, widened by the scale factor when shrinking
 * (as PIL does) so that a 12x reduction averages instead of aliasing.
 */
export function resizeRgba(source: RgbaPixels, width: number, height: number, filter: ResizeFilter): RgbaPixels {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ConfigError('resize', `width and height must be positive integers, got ${width}x${height}`);
  }
  if (width === source.width && height === source.height) return source;
  return filter === 'nearest' ? resizeNearest(source, width, height) : resizeLinear(source, width, height);
}

function resizeNearest(source: RgbaPixels, width: number, height: number): RgbaPixels {
  const { data: src, width: srcWidth, height: srcHeight } = source;
  const data = new Uint8Array(width * height * 4);
  const columns = new Int32Array(width);
  for (let x = 0; x < width; x++) columns[x] = Math.min(srcWidth - 1, Math.floor(((x + 0.5) * srcWidth) / width)) * 4;
  for (let y = 0; y < height; y++) {
    const srcRow = Math.min(srcHeight - 1, Math.floor(((y + 0.5) * srcHeight) / height)) * srcWidth * 4;
    let out = y * width * 4;
    for (let x = 0; x < width; x++) {
      const at = srcRow + columns[x];
      data[out++] = src[at];
      data[out++] = src[at + 1];
      data[out++] = src[at + 2];
      data[out++] = src[at + 3];
    }
  }
  return { width, height, data };
}

/** For each target position: the first source index it reads and the weights of its taps. */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  /** `stride` weights per target position, normalised to sum 1. */
  weights: Float64Array;
  stride: number;
}

function linearTaps(srcSize: number, dstSize: number): Taps {
  const scale = srcSize / dstSize;
  const radius = Math.max(scale, 1);
  const stride = Math.ceil(radius) * 2 + 1;
  const first = new Int32Array(dstSize);
  const count = new Int32Array(dstSize);
  const weights = new Float64Array(dstSize * stride);
  for (let i = 0; i < dstSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - radius));
    const hi = Math.min(srcSize, Math.ceil(centre + radius));
    let total = 0;
    for (let j = lo; j < hi; j++) {
      const w = Math.max(0, 1 - Math.abs(j + 0.5 - centre) / radius);
      weights[i * stride + j - lo] = w;
      total += w;
    }
    for (let j = 0; j < hi - lo; j++) weights[i * stride + j] /= total;
    first[i] = lo;
    count[i] = hi - lo;
  }
  return { first, count, weights, stride };
}

/** Two separable passes (width, then height) through an 8-bit width x srcHeight buffer. */
function resizeLinear(source: RgbaPixels, width: number, height: number): RgbaPixels {
  const { data: src, width: srcWidth, height: srcHeight } = source;
  const across = linearTaps(srcWidth, width);
  const between = new Uint8Array(width * srcHeight * 4);
  for (let y = 0; y < srcHeight; y++) {
    const row = y * srcWidth * 4;
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      const base = x * across.stride;
      for (let t = 0; t < across.count[x]; t++) {
        const w = across.weights[base + t];
        const at = row + (across.first[x] + t) * 4;
        r += w * src[at];
        g += w * src[at + 1];
        b += w * src[at + 2];
        a += w * src[at + 3];
      }
      const out = (y * width + x) * 4;
      // Weights are non-negative and sum to 1: +0.5 then the Uint8 store's truncation rounds within 0..255.
      between[out] = r + 0.5;
      between[out + 1] = g + 0.5;
      between[out + 2] = b + 0.5;
      between[out + 3] = a + 0.5;
    }
  }

  const down = linearTaps(srcHeight, height);
  const data = new Uint8Array(width * height * 4);
  const rowLength = width * 4;
  const sum = new Float64Array(rowLength);
  for (let y = 0; y < height; y++) {
    sum.fill(0);
    const base = y * down.stride;
    for (let t = 0; t < down.count[y]; t++) {
      const w = down.weights[base + t];
      const row = (down.first[y] + t) * rowLength;
      for (let i = 0; i < rowLength; i++) sum[i] += w * between[row + i];
    }
    const out = y * rowLength;
    for (let i = 0; i < rowLength; i++) data[out + i] = sum[i] + 0.5;
  }
  return { width, height, data };
}
