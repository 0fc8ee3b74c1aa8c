/**
 * The browser's PixelDecoder: createImageBitmap decodes JPEG, PNG and BMP
 * off the main thread and resizes in 8 bits ('high' quality for photographs,
 * 'pixelated' = nearest for masks, so they stay binary); an OffscreenCanvas
 * hands back the RGBA bytes. Colour-space conversion is off so the bytes
 * are the file's own, as the Node host's jimp decoder gives them.
 */
import { DecodeError } from '../core/errors.ts';
import { type ImageFormat, inspectImage } from '../core/image-header.ts';
import type { DecodeRequest, Decoded, PixelDecoder } from '../core/io.ts';

const MIME_TYPES: Record<ImageFormat, string> = { JPEG: 'image/jpeg', PNG: 'image/png', BMP: 'image/bmp' };

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

/**
 * Full-size bitmap of a file's bytes; a bad file rejects with a DecodeError
 * naming it. The header is checked first, as the Node host does, so a file
 * declaring more pixels than any host decodes never reaches the browser's
 * decoder.
 */
export async function decodeBitmap(path: string, bytes: Uint8Array): Promise<ImageBitmap> {
  const { format } = inspectImage(path, bytes);
  try {
    return await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: MIME_TYPES[format] }), EXACT);
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
