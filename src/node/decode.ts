/**
 * The Node host's PixelDecoder: jimp decodes JPEG and PNG (their EXIF blocks
 * cut out first, or it would rotate the image away from its mask), the
 * core's BMP reader every BMP Chromium reads (jimp's garbles RLE and refuses
 * OS/2), to 8-bit RGBA; then the resize below runs in 8-bit too, so a
 * 4288x2848 original never exists as floats.
 */
import { Jimp } from 'jimp';
import { decodeBmp } from '../core/image/bmp.ts';
import { ConfigError, DecodeError } from '../core/errors.ts';
import { type ImageFormat, inspectImage, MAX_MEGAPIXELS, withoutExif } from '../core/image/image-header.ts';
import type { DecodeRequest, Decoded, PixelDecoder, ResizeFilter, RgbaPixels } from '../core/io.ts';

export class JimpDecoder implements PixelDecoder {
  async decode({ path, bytes, resize }: DecodeRequest): Promise<Decoded> {
    const header = inspectImage(path, bytes);
    let pixels = header.format === 'BMP' ? decodeBmp(path, bytes) : await decodeWithJimp(path, header.format, withoutExif(bytes, header));
    const sourceWidth = pixels.width;
    const sourceHeight = pixels.height;
    if (resize) pixels = resizeRgba(pixels, resize.width, resize.height, resize.filter);
    return { pixels, sourceWidth, sourceHeight, orientation: header.orientation };
  }
}

async function decodeWithJimp(path: string, format: ImageFormat, bytes: Uint8Array): Promise<RgbaPixels> {
  try {
    const image = await Jimp.fromBuffer(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), JPEG_OPTIONS);
    const { data, width, height } = image.bitmap;
    return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, width * height * 4) };
  } catch (error) {
    throw describeFailure(path, format, error instanceof Error ? error.message : String(error));
  }
}

/**
 * jpeg-js refuses anything whose working memory it estimates above 512 MB,
 * about 28 megapixels: too little for full-resolution dermoscopy (ISIC holds
 * 6000x4000 originals). With the budget raised, the megapixel limit every
 * format shares is the one that binds.
 */
const JPEG_OPTIONS = { 'image/jpeg': { maxMemoryUsageInMB: 2048, maxResolutionInMP: MAX_MEGAPIXELS } };

/** jpeg-js's terse reasons, turned into what the user can act on. */
function describeFailure(path: string, format: ImageFormat, reason: string): DecodeError {
  if (format === 'JPEG' && /4 components/.test(reason)) {
    return new DecodeError(path, 'CMYK JPEG is not supported without the Adobe marker Photoshop writes; save it as RGB', 'unsupported-format');
  }
  if (/maxResolutionInMP|maxMemoryUsageInMB|allocate enough memory/.test(reason)) {
    return new DecodeError(path, `${format} too large to decode (at most ${MAX_MEGAPIXELS} megapixels; ${reason})`, 'unsupported-format');
  }
  return new DecodeError(path, `corrupt or truncated ${format} (${reason})`);
}

/**
 * 8-bit RGBA resize. 'nearest' picks the source pixel under each target
 * pixel's centre (masks keep their exact values). 'bilinear' is the triangle
 * filter with half-pixel centres, widened by the scale factor when shrinking
 * (as PIL does) so that a 12x reduction averages instead of aliasing.
 */
export function resizeRgba(source: RgbaPixels, width: number, height: number, filter: ResizeFilter): RgbaPixels {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ConfigError('resize', `width and height must be positive integers, got ${width}x${height}`);
  }
  if (width === source.width && height === source.height) return source;
  return filter === 'nearest' ? resizeNearest(source, width, height) : resizeLinear(source, width, height);
}

function resizeNearest(source: RgbaPixels, width: number, height: number): RgbaPixels {
  const { data: src, width: srcWidth, height: srcHeight } = source;
  const data = new Uint8Array(width * height * 4);
  const columns = new Int32Array(width);
  for (let x = 0; x < width; x++) columns[x] = Math.min(srcWidth - 1, Math.floor(((x + 0.5) * srcWidth) / width)) * 4;
  for (let y = 0; y < height; y++) {
    const srcRow = Math.min(srcHeight - 1, Math.floor(((y + 0.5) * srcHeight) / height)) * srcWidth * 4;
    let out = y * width * 4;
    for (let x = 0; x < width; x++) {
      const at = srcRow + columns[x];
      data[out++] = src[at];
      data[out++] = src[at + 1];
      data[out++] = src[at + 2];
      data[out++] = src[at + 3];
    }
  }
  return { width, height, data };
}

/** For each target position: the first source index it reads and the weights of its taps. */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  /** `stride` weights per target position, normalised to sum 1. */
  weights: Float64Array;
  stride: number;
}

function linearTaps(srcSize: number, dstSize: number): Taps {
  const scale = srcSize / dstSize;
  const radius = Math.max(scale, 1);
  const stride = Math.ceil(radius) * 2 + 1;
  const first = new Int32Array(dstSize);
  const count = new Int32Array(dstSize);
  const weights = new Float64Array(dstSize * stride);
  for (let i = 0; i < dstSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - radius));
    const hi = Math.min(srcSize, Math.ceil(centre + radius));
    let total = 0;
    for (let j = lo; j < hi; j++) {
      const w = Math.max(0, 1 - Math.abs(j + 0.5 - centre) / radius);
      weights[i * stride + j - lo] = w;
      total += w;
    }
    for (let j = 0; j < hi - lo; j++) weights[i * stride + j] /= total;
    first[i] = lo;
    count[i] = hi - lo;
  }
  return { first, count, weights, stride };
}

/** Two separable passes (width, then height) through an 8-bit width x srcHeight buffer. */
function resizeLinear(source: RgbaPixels, width: number, height: number): RgbaPixels {
  const { data: src, width: srcWidth, height: srcHeight } = source;
  const across = linearTaps(srcWidth, width);
  const between = new Uint8Array(width * srcHeight * 4);
  for (let y = 0; y < srcHeight; y++) {
    const row = y * srcWidth * 4;
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      const base = x * across.stride;
      for (let t = 0; t < across.count[x]; t++) {
        const w = across.weights[base + t];
        const at = row + (across.first[x] + t) * 4;
        r += w * src[at];
        g += w * src[at + 1];
        b += w * src[at + 2];
        a += w * src[at + 3];
      }
      const out = (y * width + x) * 4;
      // Weights are non-negative and sum to 1: +0.5 then the Uint8 store's truncation rounds within 0..255.
      between[out] = r + 0.5;
      between[out + 1] = g + 0.5;
      between[out + 2] = b + 0.5;
      between[out + 3] = a + 0.5;
    }
  }

  const down = linearTaps(srcHeight, height);
  const data = new Uint8Array(width * height * 4);
  const rowLength = width * 4;
  const sum = new Float64Array(rowLength);
  for (let y = 0; y < height; y++) {
    sum.fill(0);
    const base = y * down.stride;
    for (let t = 0; t < down.count[y]; t++) {
      const w = down.weights[base + t];
      const row = (down.first[y] + t) * rowLength;
      for (let i = 0; i < rowLength; i++) sum[i] += w * between[row + i];
    }
    const out = y * rowLength;
    for (let i = 0; i < rowLength; i++) data[out + i] = sum[i] + 0.5;
  }
  return { width, height, data };
}
