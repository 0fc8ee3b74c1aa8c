/**
 * The four distortions of step 6, as albumentations 1.1.0 defines them.
 * Optical, grid and elastic warp image and mask together (border
 * reflect101); coarse dropout blanks the image only.
 */
import type { Rng } from '../random.ts';
import {
  affineMap,
  borderIndex,
  emptyMap,
  remap,
  type Affine,
  type CoordinateMap,
  type ImageAndMask,
} from './sampling.ts';

export interface OpticalDistortionParams {
  /** Barrel (k < 0 pulls the corners in) or pincushion coefficient, used for k1 and k2. */
  k: number;
  /** Shift of the distortion centre in pixels. */
  dx: number;
  dy: number;
}

/**
 * albumentations optical_distortion: OpenCV's undistortion map of a camera
 * with fx = width, fy = height and distortion [k, k, 0, 0, 0]. The output
 * pixel at normalised offset (x, y) from the centre reads the source at
 * centre + (x, y) * (1 + k r^2 + k r^4) * (width, height). OpenCV puts the
 * output's centre at (w - 1) / 2 and the source's at w / 2, half a pixel of
 * shift at k = 0; both are (w - 1) / 2 here so that k = 0 is the identity.
 */
export function opticalDistortion(sample: ImageAndMask, p: OpticalDistortionParams): ImageAndMask {
  const { width, height } = sample.image;
  const cx = (width - 1) / 2 + p.dx;
  const cy = (height - 1) / 2 + p.dy;
  const map = emptyMap(width, height);
  for (let v = 0, i = 0; v < height; v++) {
    const y = (v - cy) / height;
    for (let u = 0; u < width; u++, i++) {
      const x = (u - cx) / width;
      const r2 = x * x + y * y;
      const radial = 1 + p.k * r2 + p.k * r2 * r2;
      map.x[i] = cx + x * radial * width;
      map.y[i] = cy + y * radial * height;
    }
  }
  return remap(sample, map, 'reflect101');
}

export interface GridDistortionParams {
  numSteps: number;
  /** numSteps + 1 relative cell widths (1 = unchanged), as albumentations draws 1 + U(-limit, limit). */
  stepsX: readonly number[];
  stepsY: readonly number[];
}

/** np.linspace(start, stop, count) written into `into` from `offset`. */
function linspaceInto(into: Float32Array, offset: number, start: number, stop: number, count: number): void {
  for (let i = 0; i < count; i++) {
    into[offset + i] = count === 1 ? start : start + ((stop - start) * i) / (count - 1);
  }
}

/** albumentations grid_distortion's per-axis source coordinates: cell i spans steps[i] cells of the source. */
function gridAxis(size: number, numSteps: number, steps: readonly number[]): Float32Array {
  const coords = new Float32Array(size);
  const step = Math.floor(size / numSteps);
  // Fewer pixels than cells: albumentations would collapse the axis onto pixel 0; keep it instead.
  if (step === 0) return coords.map((_, i) => i);
  let prev = 0;
  for (let idx = 0; idx <= numSteps; idx++) {
    const start = idx * step;
    let end = start + step;
    let cur: number;
    if (end > size) {
      end = size;
      cur = size;
    } else {
      cur = prev + step * steps[idx];
    }
    linspaceInto(coords, start, prev, cur, end - start);
    prev = cur;
  }
  return coords;
}

/** albumentations GridDistortion: the image is cut into numSteps cells per axis, each stretched by its step. */
export function gridDistortion(sample: ImageAndMask, p: GridDistortionParams): ImageAndMask {
  const { width, height } = sample.image;
  const xs = gridAxis(width, p.numSteps, p.stepsX);
  const ys = gridAxis(height, p.numSteps, p.stepsY);
  const map = emptyMap(width, height);
  for (let v = 0, i = 0; v < height; v++) {
    for (let u = 0; u < width; u++, i++) {
      map.x[i] = xs[u];
      map.y[i] = ys[v];
    }
  }
  return remap(sample, map, 'reflect101');
}

export interface ElasticParams {
  /** Displacement scale in pixels. */
  alpha: number;
  /** Smoothness of the displacement field, in pixels. */
  sigma: number;
  /** Each of the three anchor points of the random affine moves up to this many pixels per axis. */
  alphaAffine: number;
}

/**
 * Three box passes per axis whose combined variance equals sigma^2 (the
 * classic near-Gaussian filter), scipy's "reflect" border. scipy's exact
 * Gaussian would cost 8 sigma + 1 taps per pixel; at albumentations'
 * default sigma = 50 the field is far below a pixel either way.
 */
function smoothField(field: Float32Array, width: number, height: number, sigma: number): void {
  const passes = 3;
  const ideal = Math.sqrt((12 * sigma * sigma) / passes + 1);
  let lower = Math.floor(ideal);
  if (lower % 2 === 0) lower--;
  const upper = lower + 2;
  const lowerCount = Math.round(
    (12 * sigma * sigma - passes * lower * lower - 4 * passes * lower - 3 * passes) / (-4 * lower - 4),
  );
  for (let pass = 0; pass < passes; pass++) {
    const radius = ((pass < lowerCount ? lower : upper) - 1) / 2;
    if (radius < 1) continue;
    boxPass(field, width, height, 1, width, radius);
    boxPass(field, height, width, width, 1, radius);
  }
}

/** Running-sum box filter along lines of length n (element stride `step`, lines `lineStride` apart). */
function boxPass(
  field: Float32Array,
  n: number,
  lines: number,
  step: number,
  lineStride: number,
  radius: number,
): void {
  const norm = 1 / (2 * radius + 1);
  // The line with its reflected margins; one spare slot so the last slide reads in range.
  const source = new Int32Array(n + 2 * radius + 1);
  const line = new Float32Array(source.length);
  for (let i = 0; i < source.length; i++) source[i] = borderIndex(i - radius, n, 'reflect') * step;
  for (let l = 0; l < lines; l++) {
    const base = l * lineStride;
    for (let i = 0; i < line.length; i++) line[i] = field[base + source[i]];
    let sum = 0;
    for (let i = 0; i <= 2 * radius; i++) sum += line[i];
    for (let i = 0; i < n; i++) {
      field[base + i * step] = sum * norm;
      sum += line[i + 2 * radius + 1] - line[i];
    }
  }
}

function displacementField(width: number, height: number, p: ElasticParams, rng: Rng): Float32Array {
  const field = new Float32Array(width * height);
  for (let i = 0; i < field.length; i++) field[i] = rng.next() * 2 - 1;
  smoothField(field, width, height, p.sigma);
  for (let i = 0; i < field.length; i++) field[i] *= p.alpha;
  return field;
}

/** OpenCV getAffineTransform: the affine that takes the three points `from` to `to`. */
function affineFromPoints(from: readonly number[][], to: readonly number[][]): Affine {
  const [[x0, y0], [x1, y1], [x2, y2]] = from;
  const det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1);
  const solve = (t0: number, t1: number, t2: number): [number, number, number] => [
    (t0 * (y1 - y2) + t1 * (y2 - y0) + t2 * (y0 - y1)) / det,
    (t0 * (x2 - x1) + t1 * (x0 - x2) + t2 * (x1 - x0)) / det,
    (t0 * (x1 * y2 - x2 * y1) + t1 * (x2 * y0 - x0 * y2) + t2 * (x0 * y1 - x1 * y0)) / det,
  ];
  const [a, b, c] = solve(to[0][0], to[1][0], to[2][0]);
  const [d, e, f] = solve(to[0][1], to[1][1], to[2][1]);
  return [a, b, c, d, e, f];
}

/**
 * albumentations elastic_transform (approximate=False): first a random
 * affine that moves three anchor points around the centre by up to
 * alphaAffine pixels, then a per-pixel displacement of smoothed uniform
 * noise times alpha. Both passes border reflect101.
 */
export function elasticTransform(sample: ImageAndMask, p: ElasticParams, rng: Rng): ImageAndMask {
  const { width, height } = sample.image;
  // albumentations builds the anchors from (h // 2, w // 2) used as (x, y) points.
  const c0 = Math.floor(height / 2);
  const c1 = Math.floor(width / 2);
  const side = Math.floor(Math.min(height, width) / 3);
  const anchors = [
    [c0 + side, c1 + side],
    [c0 + side, c1 - side],
    [c0 - side, c1 - side],
  ];
  const moved = anchors.map(([x, y]) => [
    x + rng.uniform(-p.alphaAffine, p.alphaAffine),
    y + rng.uniform(-p.alphaAffine, p.alphaAffine),
  ]);
  const affined = remap(sample, affineMap(affineFromPoints(anchors, moved), width, height), 'reflect101');

  const dx = displacementField(width, height, p, rng);
  const dy = displacementField(width, height, p, rng);
  const map: CoordinateMap = { width, height, x: dx, y: dy };
  for (let v = 0, i = 0; v < height; v++) {
    for (let u = 0; u < width; u++, i++) {
      map.x[i] += u;
      map.y[i] += v;
    }
  }
  return remap(affined, map, 'reflect101');
}

/** A rectangle [x, x + width) x [y, y + height) in pixels. */
export interface Hole {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** albumentations CoarseDropout (mask_fill_value None): holes filled with 0 in the image, the mask untouched. */
export function coarseDropout(sample: ImageAndMask, holes: readonly Hole[]): ImageAndMask {
  const { width, height, data } = sample.image;
  const out = data.slice();
  for (const hole of holes) {
    const x0 = Math.max(0, hole.x);
    const x1 = Math.min(width, hole.x + hole.width);
    const y0 = Math.max(0, hole.y);
    const y1 = Math.min(height, hole.y + hole.height);
    for (let y = y0; y < y1; y++) out.fill(0, (y * width + x0) * 3, (y * width + x1) * 3);
  }
  return {
    image: { width, height, data: out },
    mask: sample.mask && { ...sample.mask, data: sample.mask.data.slice() },
  };
}
