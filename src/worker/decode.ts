/**
 * The browser's PixelDecoder: createImageBitmap decodes JPEG, PNG and BMP
 * off the main thread and resizes in 8 bits ('high' quality for photographs,
 * 'pixelated' = nearest for masks, so they stay binary); an OffscreenCanvas
 * hands back the RGBA bytes. Colour-space conversion is off so the bytes
 * are the file's own, as the Node host's decoder gives them.
 */
import { DecodeError } from '../core/errors.ts';
import { type ImageFormat, inspectImage, withoutExif } from '../core/image/image-header.ts';
import type { DecodeRequest, Decoded, PixelDecoder } from '../core/io.ts';

const MIME_TYPES: Record<ImageFormat, string> = { JPEG: 'image/jpeg', PNG: 'image/png', BMP: 'image/bmp' };

const EXACT: ImageBitmapOptions = { premultiplyAlpha: 'none', colorSpaceConversion: 'none' };

export class BitmapDecoder implements PixelDecoder {
  async decode({ path, bytes, resize }: DecodeRequest): Promise<Decoded> {
    const { bitmap, orientation } = await decodeFile(path, bytes);
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
      return { pixels, sourceWidth, sourceHeight, orientation };
    } finally {
      bitmap.close();
    }
  }
}

/** Full-size bitmap of a file's bytes, as stored; a bad file rejects with a DecodeError naming it. */
export async function decodeBitmap(path: string, bytes: Uint8Array): Promise<ImageBitmap> {
  return (await decodeFile(path, bytes)).bitmap;
}

/**
 * The header is checked first, as the Node host does, so a file declaring
 * more pixels than any host decodes never reaches the browser's decoder; the
 * EXIF blocks go, since Chromium applies their orientation even when told
 * imageOrientation: 'none'.
 */
async function decodeFile(path: string, bytes: Uint8Array): Promise<{ bitmap: ImageBitmap; orientation: number }> {
  const header = inspectImage(path, bytes);
  const stored = withoutExif(bytes, header) as Uint8Array<ArrayBuffer>;
  try {
    const bitmap = await createImageBitmap(new Blob([stored], { type: MIME_TYPES[header.format] }), EXACT);
    return { bitmap, orientation: header.orientation };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new DecodeError(path, `corrupt or truncated ${header.format} (${reason})`);
  }
}

export function bitmapPixels(bitmap: ImageBitmap): { width: number; height: number; data: Uint8ClampedArray } {
  const { width, height } = bitmap;
  const context = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true })!;
  context.drawImage(bitmap, 0, 0);
  return { width, height, data: context.getImageData(0, 0, width, height).data };
}
