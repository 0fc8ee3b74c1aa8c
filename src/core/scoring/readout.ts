/**
 * How a model's logits become a lesion mask: the threshold, test-time
 * augmentation, and nnU-Net's post-processing (the largest lesion, its holes
 * filled), which a stage keeps only when it scored better on its validation
 * images. Every consumer (validation, test, eval, predict, pseudo-labels,
 * the label queue, the fine-tune and the simulated loop) reads masks through
 * one Readout, so they agree on what the model says.
 */
import { fillHoles } from '../active/mask-edit.ts';
import type { RunCard } from '../config.ts';
import { binariseLogits } from './metrics.ts';

/** The lesion probability averaged over: the image alone (none); it and its mirror (hflip, pseudo.flipTta); it and its horizontal, vertical and double flips (flips). */
export type TtaKind = 'none' | 'hflip' | 'flips';

export interface Readout {
  logitThreshold: number;
  tta: TtaKind;
  /** Keep the largest lesion and fill its holes. */
  postprocess: boolean;
}

/** The readout a stage of this card uses; `postprocess` is the stage's validated decision (none before it is made). */
export function readoutOf(card: Pick<RunCard, 'eval'>, postprocess = false): Readout {
  return { logitThreshold: card.eval.logitThreshold, tta: card.eval.tta, postprocess };
}

/**
 * The mask's largest 8-connected lesion component with its holes filled
 * (background not 4-connected to the border). A dermoscopic image shows one
 * lesion, so stray specks and holes are errors; an empty mask stays empty.
 * Returns a new 0/1 mask.
 */
export function largestLesionFilled(mask: Uint8Array, width: number, height: number): Uint8Array {
  const n = width * height;
  const label = new Int32Array(n);
  const queue = new Int32Array(n);
  let best = 0;
  let bestSize = 0;
  let next = 0;
  for (let start = 0; start < n; start++) {
    if (!mask[start] || label[start]) continue;
    const id = ++next;
    let head = 0;
    let tail = 0;
    queue[tail++] = start;
    label[start] = id;
    while (head < tail) {
      const p = queue[head++];
      const x = p % width;
      const y = (p - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (mask[q] && !label[q]) {
            label[q] = id;
            queue[tail++] = q;
          }
        }
      }
    }
    if (tail > bestSize) {
      bestSize = tail;
      best = id;
    }
  }
  const out = new Uint8Array(n);
  if (best === 0) return out;
  for (let p = 0; p < n; p++) out[p] = label[p] === best ? 1 : 0;
  // The mask editor's own fill: background that cannot reach the border is the lesion's hole.
  fillHoles({ width, height, data: out });
  return out;
}

/** The 0/1 mask of logits at their own size, read as `readout` says (its TTA is already in the logits). */
export function readMask(logits: Float32Array, width: number, height: number, readout: Pick<Readout, 'logitThreshold' | 'postprocess'>): Uint8Array {
  const mask = binariseLogits(logits, readout.logitThreshold);
  return readout.postprocess ? largestLesionFilled(mask, width, height) : mask;
}
