/**
 * What an image file says about itself before any pixel is decoded: its
 * format (by content, not by name), its declared size and its EXIF
 * orientation. Both hosts check these first, so that a file declaring a
 * 30000x30000 image in 200 bytes is refused before a decoder allocates it,
 * and so that both hand their decoder the same bytes.
 */
import { readBmpHeader } from './bmp.ts';
import { DecodeError } from '../errors.ts';

export type ImageFormat = 'JPEG' | 'PNG' | 'BMP';

/** The largest image any host decodes, every format alike (jpeg-js's limit when Node used it, kept so that both hosts refuse the same files). */
export const MAX_MEGAPIXELS = 100;

export interface ImageHeader {
  format: ImageFormat;
  /** The size the header declares; undefined when it cannot be read (the decoder then says why). */
  width?: number;
  height?: number;
  /** Bits per sample (PNG, JPEG) or per pixel (BMP), as declared; a 16-bit PNG mask is read at 16 bits. */
  bitDepth?: number;
  /** JPEG only: the frame's component count (1 grey, 3 colour, 4 CMYK). */
  components?: number;
  /** JPEG only: the Adobe APP14 marker's colour transform (0 none, 1 YCbCr, 2 YCCK), when the file has one. */
  adobeTransform?: number;
  /** EXIF Orientation, 1 (as stored) to 8; 1 when the file carries none. */
  orientation: number;
  /** [start, end) byte ranges of the EXIF blocks (JPEG APP1 "Exif" segments, PNG eXIf chunks). */
  exif: [number, number][];
}

/** By content, not by name: a .jpg that is really a PNG still decodes. */
function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
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

/**
 * The same file without its EXIF blocks. Browsers apply the EXIF orientation
 * whatever createImageBitmap is told (Chromium 156 treats imageOrientation
 * 'none' as 'from-image'); without the blocks every decoder returns the
 * pixels as stored, the grid ISIC masks are drawn on.
 */
export function withoutExif(bytes: Uint8Array, header: ImageHeader): Uint8Array {
  if (header.exif.length === 0) return bytes;
  const kept = bytes.length - header.exif.reduce((n, [start, end]) => n + end - start, 0);
  const out = new Uint8Array(kept);
  let from = 0;
  let at = 0;
  for (const [start, end] of header.exif) {
    out.set(bytes.subarray(from, start), at);
    at += start - from;
    from = end;
  }
  out.set(bytes.subarray(from), at);
  return out;
}

/** Markers up to the first scan: the frame header's size, and every APP1 "Exif" segment. */
function readJpeg(bytes: Uint8Array): ImageHeader {
  const header: ImageHeader = { format: 'JPEG', orientation: 1, exif: [] };
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
      header.bitDepth = bytes[at + 4];
      if (end - at >= 10) header.components = bytes[at + 9];
    }
    if (marker === 0xee && end - at >= 16 && String.fromCharCode(...bytes.subarray(at + 4, at + 9)) === 'Adobe') {
      header.adobeTransform = bytes[at + 15];
    }
    if (marker === 0xe1 && isExif(bytes, at + 4, end)) {
      header.exif.push([at, end]);
      if (header.orientation === 1) header.orientation = tiffOrientation(bytes.subarray(at + 10, end));
    }
    at = end;
  }
  return header;
}

/** IHDR for the size; every eXIf chunk, even one after the image data, which the format allows a decoder to honour. */
function readPng(bytes: Uint8Array): ImageHeader {
  const header: ImageHeader = { format: 'PNG', orientation: 1, exif: [] };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 8;
  while (at + 12 <= bytes.length) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]);
    const end = at + 12 + length;
    if (end > bytes.length) break;
    if (type === 'IHDR' && length >= 9) {
      header.width = view.getUint32(at + 8);
      header.height = view.getUint32(at + 12);
      header.bitDepth = bytes[at + 16];
    } else if (type === 'eXIf') {
      header.exif.push([at, end]);
      if (header.orientation === 1) header.orientation = tiffOrientation(bytes.subarray(at + 8, at + 8 + length));
    } else if (type === 'IEND') {
      break;
    }
    at = end;
  }
  return header;
}

function readBmp(path: string, bytes: Uint8Array): ImageHeader {
  const { width, height, bits } = readBmpHeader(path, bytes);
  return { format: 'BMP', width, height, bitDepth: bits, orientation: 1, exif: [] };
}

function isExif(bytes: Uint8Array, start: number, end: number): boolean {
  return end - start >= 6 && String.fromCharCode(...bytes.subarray(start, start + 4)) === 'Exif' && bytes[start + 4] === 0 && bytes[start + 5] === 0;
}

/** The Orientation tag (0x0112, one SHORT) of a TIFF structure's first IFD, as browsers read it; 1 when absent or invalid. */
function tiffOrientation(tiff: Uint8Array): number {
  if (tiff.length < 8) return 1;
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const order = String.fromCharCode(tiff[0], tiff[1]);
  if (order !== 'II' && order !== 'MM') return 1;
  const little = order === 'II';
  if (view.getUint16(2, little) !== 42) return 1;
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > tiff.length) return 1;
  const entries = view.getUint16(ifd, little);
  for (let i = 0; i < entries; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) break;
    if (view.getUint16(entry, little) !== 0x0112) continue;
    if (view.getUint16(entry + 2, little) !== 3 || view.getUint32(entry + 4, little) < 1) return 1;
    const value = view.getUint16(entry + 8, little);
    return value >= 1 && value <= 8 ? value : 1;
  }
  return 1;
}
