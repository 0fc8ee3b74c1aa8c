/**
 * The browser's PixelDecoder: createImageBitmap decodes JPEG and BMP off the
 * main thread at full size, and an OffscreenCanvas hands back the RGBA bytes;
 * the core reads PNG and does every resize (image/decode.ts), as in Node.
 * Colour-space conversion is off so the bytes are the file's own, as the
 * Node host's decoder gives them. decodeBitmap serves the pictures the page
 * shows, which Chromium may scale itself.
 */
import { DecodeError } from '../core/errors.ts';
import { type ImageFormat, inspectImage, withoutExif } from '../core/image/image-header.ts';
import type { DecodeRequest, PixelDecoder, RgbaPixels } from '../core/io.ts';

const MIME_TYPES: Record<ImageFormat, string> = { JPEG: 'image/jpeg', PNG: 'image/png', BMP: 'image/bmp' };

const EXACT: ImageBitmapOptions = { premultiplyAlpha: 'none', colorSpaceConversion: 'none' };

export class BitmapDecoder implements PixelDecoder {
  async decode({ path, bytes, format }: DecodeRequest): Promise<RgbaPixels> {
    const bitmap = await bitmapOf(path, bytes as Uint8Array<ArrayBuffer>, format);
    try {
      return bitmapPixels(bitmap);
    } finally {
      bitmap.close();
    }
  }
}

/**
 * Full-size bitmap of a file's bytes, as stored; a bad file rejects with a
 * DecodeError naming it. The header is checked first, as the core does, so a
 * file declaring more pixels than any host decodes never reaches the
 * browser's decoder; the EXIF blocks go, since Chromium applies their
 * orientation even when told imageOrientation: 'none'.
 */
export async function decodeBitmap(path: string, bytes: Uint8Array): Promise<ImageBitmap> {
  const header = inspectImage(path, bytes);
  return bitmapOf(path, withoutExif(bytes, header) as Uint8Array<ArrayBuffer>, header.format);
}

async function bitmapOf(path: string, bytes: Uint8Array<ArrayBuffer>, format: ImageFormat): Promise<ImageBitmap> {
  try {
    return await createImageBitmap(new Blob([bytes], { type: MIME_TYPES[format] }), EXACT);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new DecodeError(path, `corrupt or truncated ${format} (${reason})`);
  }
}

export function bitmapPixels(bitmap: ImageBitmap): { width: number; height: number; data: Uint8ClampedArray } {
  const { width, height } = bitmap;
  const context = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true })!;
  context.drawImage(bitmap, 0, 0);
  return { width, height, data: context.getImageData(0, 0, width, height).data };
}
