/**
 * Pixel-value steps (albumentations RandomBrightnessContrast, GaussNoise,
 * HueSaturationValue) on 8-bit RGB; they never touch the mask. Like
 * albumentations on uint8, results are clipped to 0..255 and truncated.
 */
import type { RgbImage } from '../io.ts';
import type { Rng } from '../random.ts';

function mapThroughLut(image: RgbImage, lut: Uint8Array): RgbImage {
  const data = new Uint8Array(image.data.length);
  for (let i = 0; i < data.length; i++) data[i] = lut[image.data[i]];
  return { width: image.width, height: image.height, data };
}

/** Truncation of the clipped value, numpy's clip(...).astype(uint8). */
function clipToByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.floor(v);
}

/**
 * v -> alpha v + beta 255 (brightness_by_max=True): alpha is the contrast
 * factor (1 +- contrast_limit), beta the brightness shift as a fraction of 255.
 */
export function brightnessContrast(image: RgbImage, alpha: number, beta: number): RgbImage {
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = clipToByte(v * alpha + beta * 255);
  return mapThroughLut(image, lut);
}

/** Adds independent N(0, sigma^2) noise to every channel of every pixel (GaussNoise, per_channel). */
export function gaussianNoise(image: RgbImage, sigma: number, rng: Rng): RgbImage {
  const src = image.data;
  const data = new Uint8Array(src.length);
  // Marsaglia's polar method: two independent normals per accepted pair, no trigonometry.
  for (let i = 0; i < src.length; i += 2) {
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * rng.next() - 1;
      v = 2 * rng.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const scale = sigma * Math.sqrt((-2 * Math.log(s)) / s);
    data[i] = clipToByte(src[i] + u * scale);
    if (i + 1 < src.length) data[i + 1] = clipToByte(src[i + 1] + v * scale);
  }
  return { width: image.width, height: image.height, data };
}

/** OpenCV COLOR_RGB2HSV for 8 bits: H in 0..180 (degrees / 2), S and V in 0..255. */
function rgbToHsv(r: number, g: number, b: number, hsv: Float64Array): void {
  const v = Math.max(r, g, b);
  const diff = v - Math.min(r, g, b);
  const s = v === 0 ? 0 : Math.round((diff * 255) / v);
  let h = 0;
  if (diff !== 0) {
    if (v === r) h = ((g - b) * 60) / diff;
    else if (v === g) h = 120 + ((b - r) * 60) / diff;
    else h = 240 + ((r - g) * 60) / diff;
    if (h < 0) h += 360;
  }
  hsv[0] = Math.round(h / 2);
  hsv[1] = s;
  hsv[2] = v;
}

/** OpenCV COLOR_HSV2RGB for 8 bits, written to `out` at `o`. */
function hsvToRgb(h: number, s: number, v: number, out: Uint8Array, o: number): void {
  if (s === 0) {
    out[o] = out[o + 1] = out[o + 2] = v;
    return;
  }
  const sat = s / 255;
  let sector = (h * 6) / 180;
  sector -= 6 * Math.floor(sector / 6);
  const i = Math.floor(sector) % 6;
  const f = sector - Math.floor(sector);
  const p = Math.round(v * (1 - sat));
  const q = Math.round(v * (1 - sat * f));
  const t = Math.round(v * (1 - sat * (1 - f)));
  switch (i) {
    case 0:
      return setRgb(out, o, v, t, p);
    case 1:
      return setRgb(out, o, q, v, p);
    case 2:
      return setRgb(out, o, p, v, t);
    case 3:
      return setRgb(out, o, p, q, v);
    case 4:
      return setRgb(out, o, t, p, v);
    default:
      return setRgb(out, o, v, p, q);
  }
}

function setRgb(out: Uint8Array, o: number, r: number, g: number, b: number): void {
  out[o] = r;
  out[o + 1] = g;
  out[o + 2] = b;
}

/**
 * albumentations HueSaturationValue on uint8: shifts in OpenCV's HSV units
 * (hue 0..180, i.e. half degrees; saturation and value 0..255), applied as
 * lookup tables: hue wraps modulo 180, the others clip; all truncate.
 */
export function hueSaturationValue(image: RgbImage, hue: number, saturation: number, value: number): RgbImage {
  const hueLut = new Uint8Array(256);
  const satLut = new Uint8Array(256);
  const valLut = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    hueLut[i] = Math.floor((((i + hue) % 180) + 180) % 180);
    satLut[i] = clipToByte(i + saturation);
    valLut[i] = clipToByte(i + value);
  }
  const src = image.data;
  const data = new Uint8Array(src.length);
  const hsv = new Float64Array(3);
  for (let o = 0; o < src.length; o += 3) {
    rgbToHsv(src[o], src[o + 1], src[o + 2], hsv);
    hsvToRgb(hueLut[hsv[0]], satLut[hsv[1]], valLut[hsv[2]], data, o);
  }
  return { width: image.width, height: image.height, data };
}
