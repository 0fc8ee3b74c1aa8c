/**
 * The mask editor's operations, free of TensorFlow.js and the DOM so that the
 * Svelte editor and the unit tests run the very same code.
 *
 * Coordinates are continuous image pixels: pixel (x, y) covers [x, x+1) x
 * [y, y+1) and its centre is (x + 0.5, y + 0.5). Every operation decides a
 * pixel by its centre, so a brush of radius r at any zoom paints the pixels a
 * person sees under the disc, and the tests can state expected masks exactly.
 */
import type { BinaryMask } from '../io.ts';

export interface Point {
  x: number;
  y: number;
}

export function emptyMask(width: number, height: number): BinaryMask {
  return { width, height, data: new Uint8Array(width * height) };
}

/**
 * Sets every pixel whose centre lies within `radius` of the segment a-b: the
 * union of discs stamped along it, without gaps however fast the pointer moved.
 * A segment of zero length is one disc. Value 1 paints lesion, 0 erases.
 */
export function strokeSegment(mask: BinaryMask, a: Point, b: Point, radius: number, value: 0 | 1): void {
  const { width, height, data } = mask;
  const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - radius));
  const x1 = Math.min(width - 1, Math.ceil(Math.max(a.x, b.x) + radius));
  const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - radius));
  const y1 = Math.min(height - 1, Math.ceil(Math.max(a.y, b.y) + radius));
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const length2 = dx * dx + dy * dy;
  const r2 = radius * radius;
  for (let y = y0; y <= y1; y++) {
    const cy = y + 0.5;
    for (let x = x0; x <= x1; x++) {
      const cx = x + 0.5;
      // The nearest point of the segment to the pixel's centre.
      const t = length2 === 0 ? 0 : Math.max(0, Math.min(1, ((cx - a.x) * dx + (cy - a.y) * dy) / length2));
      const ex = cx - (a.x + t * dx);
      const ey = cy - (a.y + t * dy);
      if (ex * ex + ey * ey <= r2) data[y * width + x] = value;
    }
  }
}

/** A polyline of pointer samples, painted segment by segment (one sample: one disc). */
export function strokePath(mask: BinaryMask, points: Point[], radius: number, value: 0 | 1): void {
  if (points.length === 1) strokeSegment(mask, points[0], points[0], radius, value);
  for (let i = 1; i < points.length; i++) strokeSegment(mask, points[i - 1], points[i], radius, value);
}

/**
 * Fills holes: background that cannot reach the image border through
 * 4-connected background pixels becomes lesion. (4-connectivity for the
 * background, so a diagonal gap in a lesion's outline does not leak.)
 */
export function fillHoles(mask: BinaryMask): void {
  const { width, height, data } = mask;
  const outside = new Uint8Array(width * height);
  const stack: number[] = [];
  const seed = (i: number): void => {
    if (data[i] === 0 && outside[i] === 0) {
      outside[i] = 1;
      stack.push(i);
    }
  };
  for (let x = 0; x < width; x++) {
    seed(x);
    seed((height - 1) * width + x);
  }
  for (let y = 0; y < height; y++) {
    seed(y * width);
    seed(y * width + width - 1);
  }
  while (stack.length > 0) {
    const i = stack.pop()!;
    const x = i % width;
    if (x > 0) seed(i - 1);
    if (x < width - 1) seed(i + 1);
    if (i >= width) seed(i - width);
    if (i < (height - 1) * width) seed(i + width);
  }
  for (let i = 0; i < data.length; i++) if (outside[i] === 0) data[i] = 1;
}

/**
 * Rasterises a closed polygon (a lasso is one with many vertices) with the
 * even-odd rule: a pixel is inside when a ray from its centre crosses the
 * outline an odd number of times, so a self-crossing lasso leaves its
 * doubly-wound parts out, as SVG's fill-rule="evenodd" does. Crossings are
 * computed per row at the pixel centres' height (half-open edges, so a vertex
 * on the scanline counts once).
 */
export function fillPolygon(mask: BinaryMask, polygon: Point[], value: 0 | 1): void {
  if (polygon.length < 3) return;
  const { width, height, data } = mask;
  const ys = polygon.map((p) => p.y);
  const yStart = Math.max(0, Math.floor(Math.min(...ys)));
  const yEnd = Math.min(height - 1, Math.ceil(Math.max(...ys)));
  const crossings: number[] = [];
  for (let y = yStart; y <= yEnd; y++) {
    const cy = y + 0.5;
    crossings.length = 0;
    for (let i = 0; i < polygon.length; i++) {
      const p = polygon[i];
      const q = polygon[(i + 1) % polygon.length];
      if ((p.y <= cy && q.y > cy) || (q.y <= cy && p.y > cy)) {
        crossings.push(p.x + ((cy - p.y) / (q.y - p.y)) * (q.x - p.x));
      }
    }
    crossings.sort((a, b) => a - b);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      // Pixels whose centre x + 0.5 lies in [left, right).
      const from = Math.max(0, Math.ceil(crossings[k] - 0.5));
      const to = Math.min(width - 1, Math.ceil(crossings[k + 1] - 0.5) - 1);
      for (let x = from; x <= to; x++) data[y * width + x] = value;
    }
  }
}

export function lesionPixels(mask: BinaryMask): number {
  let n = 0;
  for (let i = 0; i < mask.data.length; i++) n += mask.data[i];
  return n;
}

/** The pixels one edit changed, with their values before and after. */
interface Diff {
  index: Uint32Array;
  before: Uint8Array;
  after: Uint8Array;
}

/**
 * Undo and redo as diffs: an edit (a whole stroke, a fill, a polygon) is
 * bracketed by begin() and commit(), and only the pixels it changed are kept,
 * so a long session on a 1024 px image holds kilobytes, not a full copy per step.
 */
export class MaskHistory {
  private readonly undoStack: Diff[] = [];
  private readonly redoStack: Diff[] = [];
  private snapshot: Uint8Array | undefined;

  constructor(readonly mask: BinaryMask, private readonly limit = 200) {}

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }

  get canRedo(): boolean {
    return this.redoStack.length > 0;
  }

  begin(): void {
    this.snapshot = this.mask.data.slice();
  }

  /** Returns whether the edit changed anything; one that did not is not an undo step. */
  commit(): boolean {
    const before = this.snapshot;
    this.snapshot = undefined;
    if (!before) throw new Error('MaskHistory.commit without begin');
    const data = this.mask.data;
    const changed: number[] = [];
    for (let i = 0; i < data.length; i++) if (data[i] !== before[i]) changed.push(i);
    if (changed.length === 0) return false;
    const index = Uint32Array.from(changed);
    this.undoStack.push({ index, before: Uint8Array.from(changed, (i) => before[i]), after: Uint8Array.from(changed, (i) => data[i]) });
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack.length = 0;
    return true;
  }

  /** Replaces the whole mask (start from empty, from the pseudo-label) as one undoable edit. */
  replace(data: Uint8Array): boolean {
    if (data.length !== this.mask.data.length) throw new Error(`mask of ${data.length} pixels given for a ${this.mask.width}x${this.mask.height} image`);
    this.begin();
    this.mask.data.set(data);
    return this.commit();
  }

  undo(): boolean {
    const diff = this.undoStack.pop();
    if (!diff) return false;
    for (let k = 0; k < diff.index.length; k++) this.mask.data[diff.index[k]] = diff.before[k];
    this.redoStack.push(diff);
    return true;
  }

  redo(): boolean {
    const diff = this.redoStack.pop();
    if (!diff) return false;
    for (let k = 0; k < diff.index.length; k++) this.mask.data[diff.index[k]] = diff.after[k];
    this.undoStack.push(diff);
    return true;
  }
}
