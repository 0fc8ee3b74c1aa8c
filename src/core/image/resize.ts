/**
 * Resizing for masks. Bilinear resampling of a one-channel float map (a model's logits at its
 * input size) to another size, thresholded as it goes: the output is a 0/1
 * mask, produced row by row from two interpolated rows of floats, so a
 * prediction for a 6000x4000 photograph never exists as 24 M floats.
 *
 * Sampling follows tf.image.resizeBilinear with halfPixelCenters (PyTorch's
 * align_corners=False): pixel centres at half-integers, edges clamped.
 */
import type { BinaryMask } from '../io.ts';

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
