/**
 * PNG through fast-png, in the core, so that the studio and the CLI read
 * every PNG (masks, predictions, the odd PNG photograph) to the same pixels
 * and write the same bytes for the same mask: the hosts' own codecs cannot
 * promise either (Chromium brings 16-bit samples to 8 bits before the page
 * sees them, and Node's zlib and the browser's canvas compress differently).
 */
import { convertIndexedToRgb, decode, encode } from 'fast-png';
import { DecodeError } from '../errors.ts';
import type { BinaryMask, RgbaPixels } from '../io.ts';

/**
 * 8-bit RGBA of any PNG: grey, grey and alpha, RGB, RGBA, palette, 1 to 16
 * bits. Gamma and colour profiles are not applied (Chromium is told not to
 * apply them either). A 16-bit file's samples are taken as stored when all of
 * them fit in 8 bits (a mask saved from a 0/1 or 0/255 array as uint16, the
 * way masks end up 16-bit, reads as numpy and the ISIC scorer read it), and
 * scaled by 255/65535 otherwise.
 */
export function decodePng(path: string, bytes: Uint8Array): RgbaPixels {
  let png: ReturnType<typeof decode>;
  try {
    png = decode(bytes);
  } catch (error) {
    throw new DecodeError(path, `corrupt or truncated PNG (${error instanceof Error ? error.message : String(error)})`);
  }
  const { width, height } = png;
  const count = width * height;
  let samples: ArrayLike<number>;
  let channels = png.channels;
  if (png.palette) {
    samples = convertIndexedToRgb(png);
    channels = png.palette[0]?.length ?? 3;
  } else if (png.depth === 16) {
    samples = toEightBits(png.data as Uint16Array);
  } else if (png.depth < 8) {
    samples = unpackGrey(png.data as Uint8Array, width, height, png.depth);
  } else {
    samples = png.data;
  }
  if (samples.length < count * channels) throw new DecodeError(path, `corrupt or truncated PNG (${samples.length} samples for ${width}x${height}x${channels})`);
  const data = new Uint8Array(count * 4);
  const colour = channels >= 3;
  const alpha = channels === 2 || channels === 4;
  for (let i = 0, at = 0; i < count; i++, at += channels) {
    const r = samples[at];
    data[i * 4] = r;
    data[i * 4 + 1] = colour ? samples[at + 1] : r;
    data[i * 4 + 2] = colour ? samples[at + 2] : r;
    data[i * 4 + 3] = alpha ? samples[at + channels - 1] : 255;
  }
  return { width, height, data };
}

function toEightBits(samples: Uint16Array): Uint8Array {
  let max = 0;
  for (let i = 0; i < samples.length; i++) if (samples[i] > max) max = samples[i];
  const out = new Uint8Array(samples.length);
  const scale = max <= 255 ? 1 : 1 / 257;
  for (let i = 0; i < samples.length; i++) out[i] = Math.round(samples[i] * scale);
  return out;
}

/** Greyscale at 1, 2 or 4 bits, rows padded to a byte, scaled to 0..255 (1 bit: 0 and 255). */
function unpackGrey(packed: Uint8Array, width: number, height: number, depth: number): Uint8Array {
  const out = new Uint8Array(width * height);
  const stride = Math.ceil((width * depth) / 8);
  const top = (1 << depth) - 1;
  const scale = 255 / top;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const value = (packed[y * stride + (bit >> 3)] >> (8 - depth - (bit & 7))) & top;
      out[y * width + x] = Math.round(value * scale);
    }
  }
  return out;
}

/** A 0/1 mask (any non-zero byte is lesion) as an 8-bit greyscale PNG of 0 and 255, the ISIC ground truth's format. */
export function maskPng(mask: BinaryMask): Uint8Array {
  const { width, height, data } = mask;
  if (data.length !== width * height) throw new RangeError(`mask of ${width}x${height} holds ${data.length} values`);
  // A plain loop: Uint8Array.from with a mapping function took seconds on a 7-megapixel mask.
  const grey = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) grey[i] = data[i] ? 255 : 0;
  return encode({ width, height, data: grey, depth: 8, channels: 1 });
}
