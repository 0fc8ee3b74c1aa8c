/**
 * The browser's PixelDecoder: createImageBitmap decodes JPEG, PNG and BMP
 * off the main thread and resizes in 8 bits ('high' quality for photographs,
 * 'pixelated' = nearest for masks, so they stay binary); an OffscreenCanvas
 * hands back the RGBA bytes. Colour-space conversion is off so the bytes
 * are the file's own, as the Node host's jimp decoder gives them.
 */
import { DecodeError } from '../core/errors.ts';
import type { DecodeRequest, Decoded, PixelDecoder } from '../core/io.ts';

const FORMATS = [
  { name: 'JPEG', type: 'image/jpeg', magic: [0xff, 0xd8, 0xff] },
  { name: 'PNG', type: 'image/png', magic: [0x89, 0x50, 0x4e, 0x47] },
  { name: 'BMP', type: 'image/bmp', magic: [0x42, 0x4d] },
] as const;

/** By content, not by name: a .jpg that is really a PNG still decodes. */
export function imageFormat(bytes: Uint8Array): (typeof FORMATS)[number] | undefined {
  return FORMATS.find((format) => format.magic.every((byte, i) => bytes[i] === byte));
}

const EXACT: ImageBitmapOptions = { premultiplyAlpha: 'none', colorSpaceConversion: 'none' };

export class BitmapDecoder implements PixelDecoder {
  async decode({ path, bytes, resize }: DecodeRequest): Promise<Decoded> {
    const bitmap = await decodeBitmap(path, bytes);
    const sourceWidth = bitmap.width;
    const sourceHeight = bitmap.height;
    try {
      const sized = resize
        ? await createImageBitmap(bitmap, {
            ...EXACT,
            resizeWidth: resize.width,
            resizeHeight: resize.height,
            resizeQuality: resize.filter === 'nearest' ? 'pixelated' : 'high',
          })
        : bitmap;
      const pixels = bitmapPixels(sized);
      if (sized !== bitmap) sized.close();
      return { pixels, sourceWidth, sourceHeight };
    } finally {
      bitmap.close();
    }
  }
}

/** Full-size bitmap of a file's bytes; a bad file rejects with a DecodeError naming it. */
export async function decodeBitmap(path: string, bytes: Uint8Array): Promise<ImageBitmap> {
  if (bytes.length === 0) throw new DecodeError(path, 'the file is empty (0 bytes)', 'empty-file');
  const format = imageFormat(bytes);
  if (!format) throw new DecodeError(path, 'not a JPEG, PNG or BMP image', 'unsupported-format');
  try {
    return await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: format.type }), EXACT);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new DecodeError(path, `corrupt or truncated ${format.name} (${reason})`);
  }
}

export function bitmapPixels(bitmap: ImageBitmap): { width: number; height: number; data: Uint8ClampedArray } {
  const { width, height } = bitmap;
  const context = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true })!;
  context.drawImage(bitmap, 0, 0);
  return { width, height, data: context.getImageData(0, 0, width, height).data };
}
