/**
 * Pictures the worker hands to the page: photographs, mask overlays,
 * contours and error maps as ImageBitmaps (transferred, never copied).
 * Colours are chosen to stay apart for colour-blind viewers (blue/orange),
 * and every overlay is translucent so the lesion under it stays visible.
 */
import type { BinaryMask, RgbImage } from '../core/io.ts';

type Rgba = readonly [number, number, number, number];

export const COLOURS = {
  truth: [255, 255, 255, 255] as Rgba,
  truthFill: [255, 196, 0, 50] as Rgba,
  truthLine: [255, 196, 0, 255] as Rgba,
  prediction: [40, 120, 255, 90] as Rgba,
  predictionLine: [40, 120, 255, 255] as Rgba,
  falsePositive: [255, 140, 0, 200] as Rgba,
  falseNegative: [170, 60, 220, 200] as Rgba,
};

function toBitmap(width: number, height: number, rgba: Uint8ClampedArray<ArrayBuffer>): ImageBitmap {
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d')!.putImageData(new ImageData(rgba, width, height), 0, 0);
  return canvas.transferToImageBitmap();
}

export function rgbBitmap(image: RgbImage): ImageBitmap {
  const n = image.width * image.height;
  const rgba = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    rgba[i * 4] = image.data[i * 3];
    rgba[i * 4 + 1] = image.data[i * 3 + 1];
    rgba[i * 4 + 2] = image.data[i * 3 + 2];
    rgba[i * 4 + 3] = 255;
  }
  return toBitmap(image.width, image.height, rgba);
}

/** Lesion pixels whose 4-neighbourhood leaves the lesion (or the image). */
export function contour(mask: BinaryMask): Uint8Array {
  const { width, height, data } = mask;
  const edge = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!data[i]) continue;
      const outside =
        x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
        !data[i - 1] || !data[i + 1] || !data[i - width] || !data[i + width];
      if (outside) edge[i] = 1;
    }
  }
  return edge;
}

interface Layer {
  pixels: Uint8Array;
  colour: Rgba;
}

/** Paints layers in order (later ones on top) over a transparent canvas. */
function paint(width: number, height: number, layers: Layer[]): ImageBitmap {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (const { pixels, colour } of layers) {
    for (let i = 0; i < pixels.length; i++) {
      if (!pixels[i]) continue;
      rgba.set(colour, i * 4);
    }
  }
  return toBitmap(width, height, rgba);
}

/** A mask as a translucent fill with a solid outline. */
export function maskOverlay(mask: BinaryMask, fill: Rgba = COLOURS.truthFill, line: Rgba = COLOURS.truthLine): ImageBitmap {
  return paint(mask.width, mask.height, [
    { pixels: mask.data, colour: fill },
    { pixels: contour(mask), colour: line },
  ]);
}

/** The prediction filled, the ground truth as an outline on top. */
export function comparisonOverlay(prediction: BinaryMask, truth: BinaryMask): ImageBitmap {
  return paint(truth.width, truth.height, [
    { pixels: prediction.data, colour: COLOURS.prediction },
    { pixels: contour(prediction), colour: COLOURS.predictionLine },
    { pixels: contour(truth), colour: COLOURS.truth },
  ]);
}

/** False positives and false negatives only; correct pixels stay clear. */
export function errorOverlay(prediction: BinaryMask, truth: BinaryMask): ImageBitmap {
  const fp = new Uint8Array(truth.data.length);
  const fn = new Uint8Array(truth.data.length);
  for (let i = 0; i < fp.length; i++) {
    if (prediction.data[i] && !truth.data[i]) fp[i] = 1;
    else if (!prediction.data[i] && truth.data[i]) fn[i] = 1;
  }
  return paint(truth.width, truth.height, [
    { pixels: fp, colour: COLOURS.falsePositive },
    { pixels: fn, colour: COLOURS.falseNegative },
  ]);
}

/** Longest side `size`, aspect kept, at least one pixel each way. */
export function fitWithin(width: number, height: number, size: number): { width: number; height: number } {
  const scale = size / Math.max(width, height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}
