/**
 * The one way both hosts turn an image file into pixels at a size: the
 * header is checked, the EXIF blocks cut out, PNG decoded here (fast-png),
 * JPEG and BMP by the host at full size (sharp in Node and Chromium in the
 * browser, both libjpeg-turbo), then resized here. Whatever differs between
 * the hosts is therefore only the JPEG decoder itself, and on the ISIC
 * JPEGs the two give the same bytes.
 */
import { DecodeError } from '../errors.ts';
import type { Decoded, PixelDecoder, ResizeFilter } from '../io.ts';
import { inspectImage, withoutExif } from './image-header.ts';
import { decodePng } from './png.ts';
import { resizeRgba } from './resize.ts';

export interface Resize {
  width: number;
  height: number;
  filter: ResizeFilter;
}

/** The file's pixels, resized when `resize` is given; a bad file rejects with a DecodeError naming it. */
export async function decodeImage(decoder: PixelDecoder, path: string, bytes: Uint8Array, resize?: Resize): Promise<Decoded> {
  const header = inspectImage(path, bytes);
  // Without the Adobe marker nothing says whether the inks are stored inverted (Photoshop) or not; decoders guess differently.
  if (header.format === 'JPEG' && header.components === 4 && header.adobeTransform === undefined) {
    throw new DecodeError(path, 'CMYK JPEG is not supported without the Adobe marker Photoshop writes; save it as RGB', 'unsupported-format');
  }
  const stored = withoutExif(bytes, header);
  const full = header.format === 'PNG' ? decodePng(path, stored) : await decoder.decode({ path, bytes: stored, format: header.format });
  return {
    pixels: resize ? resizeRgba(full, resize.width, resize.height, resize.filter) : full,
    sourceWidth: full.width,
    sourceHeight: full.height,
    orientation: header.orientation,
  };
}
