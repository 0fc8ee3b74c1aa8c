/**
 * albumentations CLAHE on RGB uint8: OpenCV's 8-bit Lab (sRGB, D65; L scaled
 * to 0..255), contrast-limited adaptive histogram equalisation of L with
 * OpenCV's tiling, clipping and bilinear blending of tile lookups, back to RGB.
 */
import type { RgbImage } from '../io.ts';
import { borderIndex } from './sampling.ts';

const LINEAR_FROM_BYTE = Float64Array.from({ length: 256 }, (_, v) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});

/** sRGB encoding of a linear value in [0, 1], quantised on 4096 steps (less than a byte apart). */
const GAMMA_STEPS = 4095;
const BYTE_FROM_LINEAR = Uint8Array.from({ length: GAMMA_STEPS + 1 }, (_, i) => {
  const c = i / GAMMA_STEPS;
  return Math.round(255 * (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055));
});

const WHITE_X = 0.950456;
const WHITE_Z = 1.088754;
const EPSILON = 0.008856;
const KAPPA = 903.3;

function labF(t: number): number {
  return t > EPSILON ? Math.cbrt(t) : 7.787 * t + 16 / 116;
}

/**
 * labF on [0, 1.1] (X/Xn, Y, Z/Zn of 8-bit sRGB stay below 1.0001) tabulated
 * for linear interpolation, as OpenCV does: off by under 1e-4, a hundredth
 * of an 8-bit step of a or b, and three cube roots a pixel cheaper.
 */
const LAB_F_STEPS = 2048;
const LAB_F_RANGE = 1.1;
const LAB_F_TABLE = Float64Array.from({ length: LAB_F_STEPS + 2 }, (_, i) => labF((i * LAB_F_RANGE) / LAB_F_STEPS));

function labFTabulated(t: number): number {
  const position = (t * LAB_F_STEPS) / LAB_F_RANGE;
  const i = Math.floor(position);
  const f = position - i;
  return LAB_F_TABLE[i] * (1 - f) + LAB_F_TABLE[i + 1] * f;
}

function labFInverse(f: number): number {
  return f > 0.206893 ? f * f * f : (f - 16 / 116) / 7.787;
}

function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

function encode(linear: number): number {
  const c = linear <= 0 ? 0 : linear >= 1 ? 1 : linear;
  return BYTE_FROM_LINEAR[Math.round(c * GAMMA_STEPS)];
}

/**
 * OpenCV CLAHE of one 8-bit plane. Sizes not divisible by the grid are
 * padded (reflect101, bottom and right) for the histograms, as OpenCV does.
 */
export function claheChannel(
  plane: Uint8Array,
  width: number,
  height: number,
  clipLimit: number,
  tilesX = 8,
  tilesY = 8,
): Uint8Array {
  const divisible = width % tilesX === 0 && height % tilesY === 0;
  const paddedWidth = divisible ? width : width + tilesX - (width % tilesX);
  const paddedHeight = divisible ? height : height + tilesY - (height % tilesY);
  const tileWidth = paddedWidth / tilesX;
  const tileHeight = paddedHeight / tilesY;
  const tileArea = tileWidth * tileHeight;
  const limit = clipLimit > 0 ? Math.max(Math.floor((clipLimit * tileArea) / 256), 1) : 0;
  const lutScale = 255 / tileArea;

  const rows = Int32Array.from({ length: paddedHeight }, (_, y) => borderIndex(y, height, 'reflect101') * width);
  const columns = Int32Array.from({ length: paddedWidth }, (_, x) => borderIndex(x, width, 'reflect101'));
  const luts = new Uint8Array(tilesX * tilesY * 256);
  const hist = new Int32Array(256);
  for (let ty = 0; ty < tilesY; ty++) {
    for (let tx = 0; tx < tilesX; tx++) {
      hist.fill(0);
      for (let y = ty * tileHeight; y < (ty + 1) * tileHeight; y++) {
        for (let x = tx * tileWidth; x < (tx + 1) * tileWidth; x++) hist[plane[rows[y] + columns[x]]]++;
      }
      if (limit > 0) {
        let clipped = 0;
        for (let i = 0; i < 256; i++) {
          if (hist[i] > limit) {
            clipped += hist[i] - limit;
            hist[i] = limit;
          }
        }
        const batch = Math.floor(clipped / 256);
        let residual = clipped - batch * 256;
        for (let i = 0; i < 256; i++) hist[i] += batch;
        const residualStep = residual > 0 ? Math.max(Math.floor(256 / residual), 1) : 1;
        for (let i = 0; i < 256 && residual > 0; i += residualStep, residual--) hist[i]++;
      }
      const lut = (ty * tilesX + tx) * 256;
      for (let i = 0, sum = 0; i < 256; i++) {
        sum += hist[i];
        luts[lut + i] = toByte(sum * lutScale);
      }
    }
  }

  // Each pixel blends the lookups of the four tiles whose centres surround it.
  const left = new Int32Array(width);
  const right = new Int32Array(width);
  const rightWeight = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const f = x / tileWidth - 0.5;
    const t = Math.floor(f);
    left[x] = Math.max(t, 0) * 256;
    right[x] = Math.min(t + 1, tilesX - 1) * 256;
    rightWeight[x] = f - t;
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const f = y / tileHeight - 0.5;
    const t = Math.floor(f);
    const bottomWeight = f - t;
    const top = Math.max(t, 0) * tilesX * 256;
    const bottom = Math.min(t + 1, tilesY - 1) * tilesX * 256;
    for (let x = 0; x < width; x++) {
      const v = plane[y * width + x];
      const xa = rightWeight[x];
      const upper = luts[top + left[x] + v] * (1 - xa) + luts[top + right[x] + v] * xa;
      const lower = luts[bottom + left[x] + v] * (1 - xa) + luts[bottom + right[x] + v] * xa;
      out[y * width + x] = toByte(upper * (1 - bottomWeight) + lower * bottomWeight);
    }
  }
  return out;
}

/** CLAHE of the lightness only, so hues are kept (albumentations on RGB). */
export function clahe(image: RgbImage, clipLimit: number, tilesX = 8, tilesY = 8): RgbImage {
  const { width, height, data } = image;
  const n = width * height;
  const lightness = new Uint8Array(n);
  const aPlane = new Uint8Array(n);
  const bPlane = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = LINEAR_FROM_BYTE[data[i * 3]];
    const g = LINEAR_FROM_BYTE[data[i * 3 + 1]];
    const b = LINEAR_FROM_BYTE[data[i * 3 + 2]];
    const y = 0.212671 * r + 0.71516 * g + 0.072169 * b;
    const fx = labFTabulated((0.412453 * r + 0.35758 * g + 0.180423 * b) / WHITE_X);
    const fy = labFTabulated(y);
    const fz = labFTabulated((0.019334 * r + 0.119193 * g + 0.950227 * b) / WHITE_Z);
    const l = y > EPSILON ? 116 * fy - 16 : KAPPA * y;
    lightness[i] = toByte((l * 255) / 100);
    aPlane[i] = toByte(500 * (fx - fy) + 128);
    bPlane[i] = toByte(200 * (fy - fz) + 128);
  }
  const equalised = claheChannel(lightness, width, height, clipLimit, tilesX, tilesY);
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const l = (equalised[i] * 100) / 255;
    let y: number;
    let fy: number;
    if (l <= EPSILON * KAPPA) {
      y = l / KAPPA;
      fy = 7.787 * y + 16 / 116;
    } else {
      fy = (l + 16) / 116;
      y = fy * fy * fy;
    }
    const x = labFInverse(fy + (aPlane[i] - 128) / 500) * WHITE_X;
    const z = labFInverse(fy - (bPlane[i] - 128) / 200) * WHITE_Z;
    out[i * 3] = encode(3.240479 * x - 1.53715 * y - 0.498535 * z);
    out[i * 3 + 1] = encode(-0.969256 * x + 1.875991 * y + 0.041556 * z);
    out[i * 3 + 2] = encode(0.055648 * x - 0.204043 * y + 1.057311 * z);
  }
  return { width, height, data: out };
}
