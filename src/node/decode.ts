/**
 * The Node host's PixelDecoder. JPEG goes through sharp, whose libvips reads
 * it with libjpeg-turbo (mozjpeg's decoder) as Chromium does: on all 98 ISIC
 * JPEGs of the shared data sets the two give the same bytes, where jpeg-js
 * (jimp's) was off by 0.57 grey levels on average and 61 at worst, and read
 * a JPEG stored as RGB (Adobe marker, transform 0) as YCbCr. BMP goes
 * through the core's reader, which decodes every BMP Chromium does to the
 * same pixels. The core does the rest (image/decode.ts).
 */
import sharp, { type OutputInfo } from 'sharp';
import { decodeBmp } from '../core/image/bmp.ts';
import { DecodeError } from '../core/errors.ts';
import { MAX_MEGAPIXELS } from '../core/image/image-header.ts';
import type { DecodeRequest, PixelDecoder, RgbaPixels } from '../core/io.ts';

export class SharpDecoder implements PixelDecoder {
  async decode({ path, bytes, format }: DecodeRequest): Promise<RgbaPixels> {
    if (format === 'BMP') return decodeBmp(path, bytes);
    try {
      return await decodeJpeg(bytes);
    } catch (error) {
      throw new DecodeError(path, `corrupt or truncated JPEG (${error instanceof Error ? error.message : String(error)})`);
    }
  }
}

async function decodeJpeg(bytes: Uint8Array): Promise<RgbaPixels> {
  // No colour management: Chromium is told colorSpaceConversion 'none', and
  // a warning (a truncated scan) fails as Chromium's decoder fails.
  const options = { ignoreIcc: true, failOn: 'warning', limitInputPixels: MAX_MEGAPIXELS * 1e6 } as const;
  const image = sharp(bytes, options);
  const { channels } = await image.metadata();
  if (channels === 4) return cmykToRgba(await image.pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true }));
  const { data, info } = await image.toColourspace('srgb').ensureAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, info.width * info.height * 4) };
}

/**
 * libvips would turn CMYK into sRGB through an ICC profile; Chromium (and
 * Photoshop's own preview) multiplies the inks out instead, which is what
 * the pixels mean when no profile is applied. libvips hands the inks
 * uninverted, whatever the Adobe marker stored.
 */
function cmykToRgba({ data, info }: { data: Buffer; info: OutputInfo }): RgbaPixels {
  const count = info.width * info.height;
  const out = new Uint8Array(count * 4);
  for (let i = 0; i < count; i++) {
    const k = 255 - data[i * 4 + 3];
    for (let c = 0; c < 3; c++) out[i * 4 + c] = Math.round(((255 - data[i * 4 + c]) * k) / 255);
    out[i * 4 + 3] = 255;
  }
  return { width: info.width, height: info.height, data: out };
}
