/**
 * The one sampler behind every geometric warp of the noise chain: a warp is a
 * coordinate map (for each output pixel, where to read in the source), and
 * the image is read through it bilinearly while the mask is read through the
 * very same map by nearest neighbour, so both move together and the mask
 * stays exactly 0/1. Coordinates follow OpenCV: pixel centres at integers.
 */
import type { BinaryMask, RgbImage } from '../io.ts';

/** An image with its (optional) mask, the unit that geometric steps move together. */
export interface ImageAndMask {
  image: RgbImage;
  mask?: BinaryMask;
}

/**
 * How reads outside the source are answered, as OpenCV names them:
 * reflect101 `gfedcb|abcdefgh|gfedcba`, reflect `fedcba|abcdefgh|hgfedcba`
 * (scipy's "reflect"), replicate `aaaaaa|abcdefgh|hhhhhhh`, constant 0.
 */
export type BorderMode = 'reflect101' | 'reflect' | 'replicate' | 'constant';

/** The in-range index that `i` reads under `border`, or -1 for the constant border. */
export function borderIndex(i: number, n: number, border: BorderMode): number {
  if (i >= 0 && i < n) return i;
  switch (border) {
    case 'constant':
      return -1;
    case 'replicate':
      return i < 0 ? 0 : n - 1;
    case 'reflect101': {
      if (n === 1) return 0;
      const period = 2 * (n - 1);
      const m = ((i % period) + period) % period;
      return m < n ? m : period - m;
    }
    case 'reflect': {
      const period = 2 * n;
      const m = ((i % period) + period) % period;
      return m < n ? m : period - 1 - m;
    }
  }
}

/** For each output pixel (row-major), the source position to read. */
export interface CoordinateMap {
  width: number;
  height: number;
  x: Float32Array;
  y: Float32Array;
}

export function emptyMap(width: number, height: number): CoordinateMap {
  return { width, height, x: new Float32Array(width * height), y: new Float32Array(width * height) };
}

/** Row-major 2x3 matrix [a, b, c, d, e, f]: x' = a x + b y + c, y' = d x + e y + f. */
export type Affine = [number, number, number, number, number, number];

export function invertAffine([a, b, c, d, e, f]: Affine): Affine {
  const det = a * e - b * d;
  const ia = e / det;
  const ib = -b / det;
  const id = -d / det;
  const ie = a / det;
  return [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)];
}

/** The map of OpenCV's warpAffine: `forward` takes source points to output points. */
export function affineMap(forward: Affine, width: number, height: number): CoordinateMap {
  const [a, b, c, d, e, f] = invertAffine(forward);
  const map = emptyMap(width, height);
  for (let v = 0, i = 0; v < height; v++) {
    for (let u = 0; u < width; u++, i++) {
      map.x[i] = a * u + b * v + c;
      map.y[i] = d * u + e * v + f;
    }
  }
  return map;
}

/** Bilinear read of an interleaved 8-bit image through `map`, rounded like OpenCV's remap. */
export function remapImage(src: RgbImage, map: CoordinateMap, border: BorderMode): RgbImage {
  const { width: w, height: h, data: s } = src;
  const n = map.width * map.height;
  const out = new Uint8Array(n * 3);
  const mx = map.x;
  const my = map.y;
  for (let i = 0, o = 0; i < n; i++, o += 3) {
    const x = mx[i];
    const y = my[i];
    const x0 = Math.floor(x);
    const y0 = Math.floor(y);
    const fx = x - x0;
    const fy = y - y0;
    let p00: number;
    let p01: number;
    let p10: number;
    let p11: number;
    if (x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1) {
      p00 = (y0 * w + x0) * 3;
      p01 = p00 + 3;
      p10 = p00 + w * 3;
      p11 = p10 + 3;
    } else {
      const ix0 = borderIndex(x0, w, border);
      const ix1 = borderIndex(x0 + 1, w, border);
      const iy0 = borderIndex(y0, h, border);
      const iy1 = borderIndex(y0 + 1, h, border);
      p00 = ix0 < 0 || iy0 < 0 ? -1 : (iy0 * w + ix0) * 3;
      p01 = ix1 < 0 || iy0 < 0 ? -1 : (iy0 * w + ix1) * 3;
      p10 = ix0 < 0 || iy1 < 0 ? -1 : (iy1 * w + ix0) * 3;
      p11 = ix1 < 0 || iy1 < 0 ? -1 : (iy1 * w + ix1) * 3;
      if (p00 < 0 || p01 < 0 || p10 < 0 || p11 < 0) {
        out[o] = blendOrZero(s, p00, p01, p10, p11, 0, fx, fy);
        out[o + 1] = blendOrZero(s, p00, p01, p10, p11, 1, fx, fy);
        out[o + 2] = blendOrZero(s, p00, p01, p10, p11, 2, fx, fy);
        continue;
      }
    }
    const gx = 1 - fx;
    const gy = 1 - fy;
    out[o] = (s[p00] * gx + s[p01] * fx) * gy + (s[p10] * gx + s[p11] * fx) * fy + 0.5;
    out[o + 1] = (s[p00 + 1] * gx + s[p01 + 1] * fx) * gy + (s[p10 + 1] * gx + s[p11 + 1] * fx) * fy + 0.5;
    out[o + 2] = (s[p00 + 2] * gx + s[p01 + 2] * fx) * gy + (s[p10 + 2] * gx + s[p11 + 2] * fx) * fy + 0.5;
  }
  return { width: map.width, height: map.height, data: out };
}

/** One channel of a bilinear blend where taps at -1 (constant border) read 0. */
function blendOrZero(
  s: Uint8Array,
  p00: number,
  p01: number,
  p10: number,
  p11: number,
  c: number,
  fx: number,
  fy: number,
): number {
  const v00 = p00 < 0 ? 0 : s[p00 + c];
  const v01 = p01 < 0 ? 0 : s[p01 + c];
  const v10 = p10 < 0 ? 0 : s[p10 + c];
  const v11 = p11 < 0 ? 0 : s[p11 + c];
  return (v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy + 0.5;
}

/** Nearest-neighbour read of a mask through `map`: the source pixel closest to each position. */
export function remapMask(src: BinaryMask, map: CoordinateMap, border: BorderMode): BinaryMask {
  const { width: w, height: h, data: s } = src;
  const n = map.width * map.height;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let ix = Math.round(map.x[i]);
    let iy = Math.round(map.y[i]);
    if (ix < 0 || ix >= w) ix = borderIndex(ix, w, border);
    if (iy < 0 || iy >= h) iy = borderIndex(iy, h, border);
    out[i] = ix < 0 || iy < 0 ? 0 : s[iy * w + ix];
  }
  return { width: map.width, height: map.height, data: out };
}

export function remap(sample: ImageAndMask, map: CoordinateMap, border: BorderMode): ImageAndMask {
  return {
    image: remapImage(sample.image, map, border),
    mask: sample.mask && remapMask(sample.mask, map, border),
  };
}

/** The image with `radius` extra pixels on every side, filled by `border` (OpenCV copyMakeBorder). */
export function padImage(image: RgbImage, radius: number, border: BorderMode): Uint8Array {
  const { width, height, data } = image;
  const paddedWidth = width + 2 * radius;
  const out = new Uint8Array(paddedWidth * (height + 2 * radius) * 3);
  const columns = new Int32Array(paddedWidth);
  for (let x = 0; x < paddedWidth; x++) columns[x] = borderIndex(x - radius, width, border);
  for (let y = 0, o = 0; y < height + 2 * radius; y++) {
    const row = borderIndex(y - radius, height, border);
    for (let x = 0; x < paddedWidth; x++, o += 3) {
      if (row < 0 || columns[x] < 0) continue;
      const s = (row * width + columns[x]) * 3;
      out[o] = data[s];
      out[o + 1] = data[s + 1];
      out[o + 2] = data[s + 2];
    }
  }
  return out;
}
