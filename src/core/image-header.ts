/**
 * What an image file says about itself before any pixel is decoded: its
 * format (by content, not by name) and its declared size. Both hosts check
 * these first, so that a file declaring a 30000x30000 image in 200 bytes is
 * refused before a decoder allocates it.
 */
import { readBmpHeader } from './bmp.ts';
import { DecodeError } from './errors.ts';

export type ImageFormat = 'JPEG' | 'PNG' | 'BMP';

/** jpeg-js's own limit, which the hosts apply to every format alike. */
export const MAX_MEGAPIXELS = 100;

export interface ImageHeader {
  format: ImageFormat;
  /** The size the header declares; undefined when it cannot be read (the decoder then says why). */
  width?: number;
  height?: number;
}

/** By content, not by name: a .jpg that is really a PNG still decodes. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'JPEG';
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'PNG';
  if (bytes[0] === 0x42 && bytes[1] === 0x4d) return 'BMP';
  return undefined;
}

/**
 * The checks both hosts make before decoding: an empty file, a file that is
 * no image, an image over MAX_MEGAPIXELS, a BMP variant no host decodes.
 * Each throws a DecodeError naming the file.
 */
export function inspectImage(path: string, bytes: Uint8Array): ImageHeader {
  if (bytes.length === 0) throw new DecodeError(path, 'the file is empty (0 bytes)', 'empty-file');
  const format = sniffFormat(bytes);
  if (!format) throw new DecodeError(path, 'not a JPEG, PNG or BMP image', 'unsupported-format');
  const header = format === 'JPEG' ? readJpeg(bytes) : format === 'PNG' ? readPng(bytes) : readBmp(path, bytes);
  const { width, height } = header;
  if (width !== undefined && height !== undefined && width * height > MAX_MEGAPIXELS * 1e6) {
    throw new DecodeError(path, `${format} too large to decode (at most ${MAX_MEGAPIXELS} megapixels; it declares ${width}x${height})`, 'unsupported-format');
  }
  return header;
}

/** Markers up to the first scan, for the frame header's size. */
function readJpeg(bytes: Uint8Array): ImageHeader {
  const header: ImageHeader = { format: 'JPEG' };
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) break;
    const marker = bytes[at + 1];
    // Fill bytes before a marker, and markers without a length.
    if (marker === 0xff) {
      at++;
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) break;
    const end = at + 2 + ((bytes[at + 2] << 8) | bytes[at + 3]);
    if (end > bytes.length) break;
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame && end - at >= 9 && header.width === undefined) {
      const height = (bytes[at + 5] << 8) | bytes[at + 6];
      // Height 0 means "given later, in a DNL marker": unknown here.
      if (height > 0) {
        header.height = height;
        header.width = (bytes[at + 7] << 8) | bytes[at + 8];
      }
    }
    at = end;
  }
  return header;
}

/** The IHDR chunk, which must come first. */
function readPng(bytes: Uint8Array): ImageHeader {
  if (bytes.length < 24 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') return { format: 'PNG' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { format: 'PNG', width: view.getUint32(16), height: view.getUint32(20) };
}

function readBmp(path: string, bytes: Uint8Array): ImageHeader {
  const { width, height } = readBmpHeader(path, bytes);
  return { format: 'BMP', width, height };
}
