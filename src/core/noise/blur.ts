/**
 * The blurs of step 5 (albumentations MotionBlur, MedianBlur, GaussianBlur),
 * on interleaved 8-bit RGB. Borders as OpenCV: reflect101 for the linear
 * filters, replicate for the median.
 */
import type { RgbImage } from '../io.ts';
import { padImage } from './sampling.ts';

function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

export interface MotionBlurParams {
  /** Odd kernel side. */
  size: number;
  /** End points of the blur line inside the size x size kernel. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** The pixels cv2.line(thickness=1, 8-connected) draws from (x0, y0) to (x1, y1). */
function linePixels({ x0, y0, x1, y1 }: MotionBlurParams): Array<[number, number]> {
  const pixels: Array<[number, number]> = [];
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  let x = x0;
  let y = y0;
  for (;;) {
    pixels.push([x, y]);
    if (x === x1 && y === y1) return pixels;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y += sy;
    }
  }
}

/**
 * albumentations MotionBlur: cv2.filter2D (a correlation anchored at the
 * kernel centre, border reflect101) with the mean of the pixels of a line.
 */
export function motionBlur(image: RgbImage, p: MotionBlurParams): RgbImage {
  const { width, height } = image;
  const radius = (p.size - 1) / 2;
  const padded = padImage(image, radius, 'reflect101');
  const paddedWidth = width + 2 * radius;
  const pixels = linePixels(p);
  // Offsets from the output pixel's position in the padded image to each kernel pixel.
  const offsets = Int32Array.from(pixels, ([x, y]) => ((y - radius) * paddedWidth + (x - radius)) * 3);
  const weight = 1 / pixels.length;
  const out = new Uint8Array(width * height * 3);
  for (let y = 0, o = 0; y < height; y++) {
    for (let x = 0; x < width; x++, o += 3) {
      const base = ((y + radius) * paddedWidth + x + radius) * 3;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < offsets.length; k++) {
        const s = base + offsets[k];
        r += padded[s];
        g += padded[s + 1];
        b += padded[s + 2];
      }
      out[o] = toByte(r * weight);
      out[o + 1] = toByte(g * weight);
      out[o + 2] = toByte(b * weight);
    }
  }
  return { width, height, data: out };
}

/** OpenCV getGaussianKernel; sigma <= 0 means OpenCV's default for the size. */
function gaussianKernel(size: number, sigma: number): Float64Array {
  const s = sigma > 0 ? sigma : 0.3 * ((size - 1) * 0.5 - 1) + 0.8;
  const half = (size - 1) / 2;
  const weights = Float64Array.from({ length: size }, (_, i) => Math.exp(-((i - half) ** 2) / (2 * s * s)));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}

/** cv2.GaussianBlur with a square odd kernel and sigmaX = sigmaY = sigma (border reflect101), separable. */
export function gaussianBlur(image: RgbImage, size: number, sigma: number): RgbImage {
  const { width, height } = image;
  const kernel = gaussianKernel(size, sigma);
  const radius = (size - 1) / 2;
  const padded = padImage(image, radius, 'reflect101');
  const paddedWidth = width + 2 * radius;
  const rows = height + 2 * radius;
  // Horizontal pass over every padded row, so the vertical pass needs no border handling.
  const across = new Float32Array(width * rows * 3);
  for (let y = 0, o = 0; y < rows; y++) {
    for (let x = 0; x < width; x++, o += 3) {
      const base = (y * paddedWidth + x) * 3;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < size; k++) {
        const s = base + k * 3;
        r += padded[s] * kernel[k];
        g += padded[s + 1] * kernel[k];
        b += padded[s + 2] * kernel[k];
      }
      across[o] = r;
      across[o + 1] = g;
      across[o + 2] = b;
    }
  }
  const out = new Uint8Array(width * height * 3);
  const rowStride = width * 3;
  for (let i = 0; i < out.length; i++) {
    let v = 0;
    for (let k = 0; k < size; k++) v += across[i + k * rowStride] * kernel[k];
    out[i] = toByte(v);
  }
  return { width, height, data: out };
}

/**
 * cv2.medianBlur, per channel, replicate border. Huang's running histogram:
 * sliding right swaps one kernel column and the median moves a few bins.
 */
export function medianBlur(image: RgbImage, size: number): RgbImage {
  const { width, height } = image;
  const radius = (size - 1) / 2;
  const half = (size * size) >> 1;
  const padded = padImage(image, radius, 'replicate');
  const stride = (width + 2 * radius) * 3;
  const out = new Uint8Array(width * height * 3);
  const hist = new Int32Array(256);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      // Window of output (x, y): padded columns x..x+size-1, rows y..y+size-1.
      const top = y * stride + c;
      hist.fill(0);
      for (let dy = 0; dy < size; dy++) {
        for (let dx = 0; dx < size; dx++) hist[padded[top + dy * stride + dx * 3]]++;
      }
      // The median m: at most `half` values below it, more than `half` up to it.
      let m = 0;
      let below = 0;
      while (below + hist[m] <= half) below += hist[m++];
      out[y * width * 3 + c] = m;
      for (let x = 1; x < width; x++) {
        const leaving = top + (x - 1) * 3;
        const entering = top + (x + size - 1) * 3;
        for (let dy = 0; dy < size; dy++) {
          const gone = padded[leaving + dy * stride];
          const come = padded[entering + dy * stride];
          hist[gone]--;
          if (gone < m) below--;
          hist[come]++;
          if (come < m) below++;
        }
        while (below > half) below -= hist[--m];
        while (below + hist[m] <= half) below += hist[m++];
        out[(y * width + x) * 3 + c] = m;
      }
    }
  }
  return { width, height, data: out };
}
