/**
 * The bad-input corpus: real dermoscopic images and masks from the shared data
 * sets, re-encoded in every awkward way a user's folder can hold them, written
 * into a given folder so that the Node tests and the browser end-to-end tests
 * read the same files. Each case says what must come of it: the true pixels
 * when it must decode, or the file its message must name and the problem the
 * message must state.
 *
 * Formats jimp cannot write (greyscale and CMYK JPEG, 16-bit PNG, 8-bit and
 * top-down BMP) are encoded here, with the smallest encoder that is still a
 * valid file of that kind.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { Jimp, ResizeStrategy } from 'jimp';
import JPEG from 'jpeg-js';
import { concatBytes } from '../../src/core/image/bytes.ts';
import { Rng } from '../../src/core/random.ts';
import { bmpRows, encodeBmp, indexRows, quantise332, type Rgb } from './bmp.ts';

export type Outcome = 'decodes' | 'warns' | 'skipped';

/** What a file really holds, for checking what it decodes to. */
export interface TruePixels {
  width: number;
  height: number;
  rgbAt(x: number, y: number): [number, number, number];
  /** Mean absolute difference per channel allowed: 0 for lossless files, more for JPEG. */
  meanError: number;
}

export interface CorpusCase {
  /** What is awkward about it, in a few words. */
  name: string;
  /** Paths relative to the corpus folder. */
  image: string;
  mask?: string;
  outcome: Outcome;
  /** The file a warning or skip message must name. */
  file?: string;
  /** What that message must say about the problem. */
  problem?: RegExp;
  /** The image's pixels, for cases that decode. */
  truth?: TruePixels;
  /** The binary mask (1 = lesion) at the mask file's size, for cases with a usable mask. */
  maskTruth?: { width: number; height: number; data: Uint8Array };
}

export interface Corpus {
  cases: CorpusCase[];
  /** Files the layouts must report as strays, with what the stray's detail must say. */
  strays: { path: string; kind: 'duplicate-id' | 'unsupported-file'; detail: RegExp }[];
  /** Files the layouts must pass over silently (metadata, hidden files). */
  ignored: string[];
}

export interface CorpusOptions {
  /** Unrelated files put among the images (10,000 by default). */
  unrelatedFiles?: number;
  /** Whether to write the 30-megapixel JPEG (about 1 MB on disk, seconds to encode). */
  largeImage?: boolean;
}

const SOURCE_IMAGE = 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg';
const SOURCE_MASK = 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png';
const OTHER_IMAGE = 'isic2017/ISIC-2017_Validation_Data/ISIC_0001852.jpg';
/** Small enough that every case decodes in milliseconds. */
const WIDTH = 96;
const HEIGHT = 72;
export const LARGE_WIDTH = 6400;
export const LARGE_HEIGHT = 4800;

const IMAGES = 'lesions/images';
const MASKS = 'lesions/masks';
/** A stem of 200+ characters with accents and an emoji, under the 255-byte limit of most file systems. */
export const LONG_STEM = `lésion-très-longue-🩺-${'x'.repeat(180)}-fin`;
export const UNICODE_STEM = '病変-Läsion-ñandú-🔬';

/**
 * Writes the corpus into `dir` (created if missing). Three cases describe the
 * state after `mutateAfterIndexing`: a file deleted, one replaced and one
 * half-rewritten between listing the folder and reading it.
 */
export async function writeBadInputCorpus(datasetsRoot: string, dir: string, options: CorpusOptions = {}): Promise<Corpus> {
  const { unrelatedFiles = 10_000, largeImage = true } = options;
  const write = (relative: string, bytes: Uint8Array | string) => {
    const target = path.join(dir, relative);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  };

  const image = await loadRgb(path.join(datasetsRoot, SOURCE_IMAGE), 'bilinear');
  const mask = await loadRgb(path.join(datasetsRoot, SOURCE_MASK), 'nearest');
  const maskBits = binary(mask);
  const imageJpeg = encodeRgbJpeg(image, 95);
  const maskPng = encodePng8(mask);
  const lossy = (pixels: Rgb, meanError: number): TruePixels => ({ ...truthOf(pixels), meanError });

  const cases: CorpusCase[] = [];
  /** A pair in lesions/: `stem.ext` among the images, `stem.png` among the masks. */
  const pair = (name: string, stem: string, ext: string, bytes: Uint8Array, rest: Omit<CorpusCase, 'name' | 'image' | 'mask'>, maskBytes = maskPng) => {
    const entry: CorpusCase = { name, image: `${IMAGES}/${stem}.${ext}`, mask: `${MASKS}/${stem}.png`, ...rest };
    write(entry.image, bytes);
    write(entry.mask!, maskBytes);
    cases.push(entry);
    return entry;
  };
  const good = { outcome: 'decodes' as const, truth: lossy(image, 3), maskTruth: maskBits };

  pair('a clean pair (reference)', 'clean', 'jpg', imageJpeg, good);
  pair('truncated JPEG', 'truncated', 'jpg', imageJpeg.subarray(0, imageJpeg.length >> 1), {
    outcome: 'skipped',
    problem: /corrupt or truncated JPEG/,
  });
  pair('0-byte file', 'empty', 'jpg', new Uint8Array(0), { outcome: 'skipped', problem: /the file is empty \(0 bytes\)/ });
  pair('text file named .jpg', 'text', 'jpg', new TextEncoder().encode('ISIC_0000013,melanoma\nthis is a note, not a photograph\n'), {
    outcome: 'skipped',
    problem: /not a JPEG, PNG or BMP image/,
  });

  // Alpha varies over the whole range; the colour under it must come through untouched.
  const alpha = new Jimp({ width: WIDTH, height: HEIGHT });
  for (let i = 0; i < WIDTH * HEIGHT; i++) {
    alpha.bitmap.data.set(image.data.subarray(i * 3, i * 3 + 3), i * 4);
    alpha.bitmap.data[i * 4 + 3] = (i * 37) % 256;
  }
  pair('PNG with alpha', 'alpha', 'png', new Uint8Array(await alpha.getBuffer('image/png')), { ...good, truth: truthOf(image) });

  // The low byte is filled too, so a decoder that read it instead of the high byte would show.
  const deep = new Uint16Array(WIDTH * HEIGHT * 3);
  for (let i = 0; i < deep.length; i++) deep[i] = Math.min(65535, Math.max(0, image.data[i] * 257 + ((i * 101) % 129) - 64));
  const deepTruth: Rgb = { width: WIDTH, height: HEIGHT, data: Uint8Array.from(deep, (v) => Math.round(v / 257)) };
  pair('16-bit PNG', 'sixteen-bit', 'png', encodePng(deep, WIDTH, HEIGHT, 2, 16), { ...good, truth: truthOf(deepTruth) });

  const grey = greyOf(image);
  pair('greyscale JPEG', 'greyscale', 'jpg', encodeJpeg([channel(grey, 0)], WIDTH, HEIGHT), { ...good, truth: lossy(grey, 2) });

  const cmyk = cmykPlanes(image);
  pair('CMYK JPEG (Adobe)', 'cmyk', 'jpg', encodeJpeg(cmyk, WIDTH, HEIGHT, { adobe: true }), { ...good, truth: lossy(image, 4) });
  pair('CMYK JPEG without the Adobe marker', 'cmyk-plain', 'jpg', encodeJpeg(cmyk, WIDTH, HEIGHT), {
    outcome: 'skipped',
    problem: /CMYK JPEG is not supported/,
  });

  pair('JPEG over 100 megapixels (12000x9000 in its frame header)', 'oversized', 'jpg', withFrameSize(imageJpeg, 12000, 9000), {
    outcome: 'skipped',
    problem: /JPEG too large to decode \(at most 100 megapixels; it declares 12000x9000\)/,
  });

  pair('PNG decompression bomb as a mask (30000x30000 declared in under 200 bytes)', 'mask-bomb', 'jpg', imageJpeg, {
    outcome: 'skipped',
    file: `${MASKS}/mask-bomb.png`,
    problem: /PNG too large to decode \(at most 100 megapixels; it declares 30000x30000\)/,
  }, encodePngBomb(30000));

  pair('BMP declaring 30000x30000 (RLE8, under 100 bytes)', 'bomb', 'bmp', encodeBmp({ width: 30000, height: 30000, bits: 8, compression: 1, palette: new Uint8Array(3), data: new Uint8Array([0, 1]) }), {
    outcome: 'skipped',
    problem: /BMP too large to decode \(at most 100 megapixels; it declares 30000x30000\)/,
  });

  // Chromium (both) and jimp (the JPEG) would turn these a quarter turn; masks drawn on the stored grid would no longer fit.
  pair('JPEG with EXIF orientation 6', 'exif-rotated', 'jpg', withExifOrientation(imageJpeg, 6), {
    ...good,
    outcome: 'warns',
    file: `${IMAGES}/exif-rotated.jpg`,
    problem: /EXIF orientation 6 \(rotate 90° CW\) ignored; pixels are used as stored, like the ISIC masks$/,
  });
  pair('PNG with an eXIf chunk, orientation 8', 'exif-png', 'png', withPngExifOrientation(encodePng8(image), 8), {
    ...good,
    truth: truthOf(image),
    outcome: 'warns',
    file: `${IMAGES}/exif-png.png`,
    problem: /EXIF orientation 8 \(rotate 270° CW\) ignored; pixels are used as stored, like the ISIC masks$/,
  });

  const { indices, palette, quantised } = quantise332(image);
  pair('8-bit palette BMP', 'palette', 'bmp', encodeBmp8(indices, palette, WIDTH, HEIGHT), { ...good, truth: truthOf(quantised) });

  // Marked corners: red top-left, blue bottom-right, so a flipped decode cannot pass.
  const marked: Rgb = { ...image, data: image.data.slice() };
  marked.data.set([255, 0, 0], 0);
  marked.data.set([0, 0, 255], (WIDTH * HEIGHT - 1) * 3);
  pair('BMP stored top-down (negative height)', 'top-down', 'bmp', encodeBmp24(marked, { topDown: true }), { ...good, truth: truthOf(marked) });

  const withMask = (name: string, stem: string, maskBytes: Uint8Array, problem: RegExp, maskTruth = maskBits) =>
    pair(name, stem, 'jpg', imageJpeg, { ...good, outcome: 'warns', file: `${MASKS}/${stem}.png`, problem, maskTruth }, maskBytes);

  const smallMask = await loadRgb(path.join(datasetsRoot, SOURCE_MASK), 'nearest', WIDTH / 2, HEIGHT / 2);
  withMask(
    'mask of another size than its image',
    'mask-other-size',
    encodePng8(smallMask),
    new RegExp(`mask is ${WIDTH / 2}x${HEIGHT / 2} but its image is ${WIDTH}x${HEIGHT}`),
    binary(smallMask),
  );
  const flat = (value: number): Rgb => ({ width: WIDTH, height: HEIGHT, data: new Uint8Array(WIDTH * HEIGHT * 3).fill(value) });
  withMask('mask all 0', 'mask-empty', encodePng8(flat(0)), /mask is empty/, binary(flat(0)));
  withMask('mask all 255', 'mask-full', encodePng8(flat(255)), /mask covers the whole image/, binary(flat(255)));
  // Lesion at 200, background at 0 with every 7th pixel at 60: binarised at >128 it is the true mask.
  const greyMask = recolour(mask, (v, i) => (v > 127 ? [200, 200, 200] : i % 7 === 0 ? [60, 60, 60] : [0, 0, 0]));
  withMask('mask with grey levels', 'mask-grey', encodePng8(greyMask), /mask is not binary/);
  const rgbMask = recolour(mask, (v) => (v > 127 ? [255, 32, 0] : [0, 0, 96]));
  withMask('RGB (colour) mask', 'mask-rgb', encodePng8(rgbMask), /mask is in colour/);
  pair('0-byte mask file', 'mask-0-bytes', 'jpg', imageJpeg, {
    outcome: 'skipped',
    file: `${MASKS}/mask-0-bytes.png`,
    problem: /the file is empty \(0 bytes\)/,
  }, new Uint8Array(0));

  pair('file deleted after indexing', 'gone', 'jpg', imageJpeg, { outcome: 'skipped', problem: /no such file or folder/ });
  pair('file replaced after indexing', 'changed', 'jpg', imageJpeg, { ...good, truth: lossy(mirror(image), 3) });
  pair('file half-rewritten after indexing', 'rewritten', 'jpg', imageJpeg, { outcome: 'skipped', problem: /corrupt or truncated JPEG/ });

  pair('non-ASCII file name', UNICODE_STEM, 'jpg', imageJpeg, good);
  pair('very long file name (200+ characters, emoji, accents)', LONG_STEM, 'jpg', imageJpeg, good);

  const nest = Array.from({ length: 20 }, (_, i) => `level-${String(i + 1).padStart(2, '0')}`).join('/');
  const deepCase: CorpusCase = { name: 'nested 20 folders deep', image: `deep/${nest}/images/nested.jpg`, mask: `deep/${nest}/masks/nested.png`, ...good };
  write(deepCase.image, imageJpeg);
  write(deepCase.mask!, maskPng);
  cases.push(deepCase);

  // The same id again in the val split of the same data set: the first path wins.
  const strays: Corpus['strays'] = [];
  const kept = pair('duplicate id (the copy that is kept)', 'duplicate', 'jpg', imageJpeg, good);
  write('lesions/val/images/duplicate.jpg', encodeRgbJpeg(mirror(image), 95));
  write('lesions/val/masks/duplicate.png', maskPng);
  strays.push({ path: 'lesions/val/images/duplicate.jpg', kind: 'duplicate-id', detail: new RegExp(`already taken by .*${escapeRegExp(kept.image)}`) });

  if (largeImage) {
    // A smooth gradient: any pixel of the resized image is known without a full-size reference.
    const large = { width: LARGE_WIDTH, height: LARGE_HEIGHT, data: Buffer.alloc(LARGE_WIDTH * LARGE_HEIGHT * 4, 255) };
    const gradient = (x: number, y: number): [number, number, number] => [
      Math.round((x * 255) / (LARGE_WIDTH - 1)),
      Math.round((y * 255) / (LARGE_HEIGHT - 1)),
      Math.round(((x + y) * 255) / (LARGE_WIDTH + LARGE_HEIGHT - 2)),
    ];
    for (let y = 0, at = 0; y < LARGE_HEIGHT; y++) {
      for (let x = 0; x < LARGE_WIDTH; x++, at += 4) {
        const [r, g, b] = gradient(x, y);
        large.data[at] = r;
        large.data[at + 1] = g;
        large.data[at + 2] = b;
      }
    }
    const entry: CorpusCase = {
      name: '30-megapixel JPEG (unlabeled)',
      image: 'large/huge.jpg',
      outcome: 'decodes',
      truth: { width: LARGE_WIDTH, height: LARGE_HEIGHT, rgbAt: gradient, meanError: 2 },
    };
    write(entry.image, new Uint8Array(JPEG.encode(large, 90).data));
    cases.push(entry);
  }

  const ignored = ['lesions/images/.DS_Store', 'lesions/masks/.DS_Store', 'lesions/images/._clean.jpg', 'lesions/images/Thumbs.db'];
  for (const file of ignored) write(file, 'Mac and Windows folder debris\n');
  const rng = new Rng(0x5eed);
  for (let i = 0; i < unrelatedFiles; i++) {
    const n = String(i).padStart(5, '0');
    const kind = i % 4;
    if (kind === 0) ignored.push(`${IMAGES}/notes-${n}.txt`);
    else if (kind === 1) ignored.push(`${IMAGES}/meta-${n}.json`);
    else {
      // Random names with no extension or one that is not an image: not ours to guess at.
      const stem = Array.from({ length: 10 }, () => rng.pick([...'abcdefghijklmnopqrstuvwxyz0123456789'])).join('');
      const file = `${IMAGES}/${stem}-${n}${kind === 2 ? '' : '.tif'}`;
      strays.push({ path: file, kind: 'unsupported-file', detail: /not a JPEG, PNG or BMP image/ });
      write(file, `unrelated ${i}\n`);
      continue;
    }
    write(ignored[ignored.length - 1], `{"unrelated": ${i}}\n`);
  }

  for (const entry of cases) {
    if (entry.outcome === 'skipped' && entry.file === undefined) entry.file = entry.image;
  }
  return { cases, strays, ignored };
}

/** What happens to three files between listing the folder and reading it. */
export async function mutateAfterIndexing(datasetsRoot: string, dir: string): Promise<void> {
  const image = await loadRgb(path.join(datasetsRoot, SOURCE_IMAGE), 'bilinear');
  rmSync(path.join(dir, IMAGES, 'gone.jpg'));
  writeFileSync(path.join(dir, IMAGES, 'changed.jpg'), encodeRgbJpeg(mirror(image), 95));
  const other = encodeRgbJpeg(await loadRgb(path.join(datasetsRoot, OTHER_IMAGE), 'bilinear'), 95);
  writeFileSync(path.join(dir, IMAGES, 'rewritten.jpg'), other.subarray(0, other.length >> 1));
}

// ---- pixels -------------------------------------------------------------------

async function loadRgb(file: string, filter: 'bilinear' | 'nearest', width = WIDTH, height = HEIGHT): Promise<Rgb> {
  const jimp = await Jimp.fromBuffer(readFileSync(file));
  jimp.resize({ w: width, h: height, mode: filter === 'nearest' ? ResizeStrategy.NEAREST_NEIGHBOR : ResizeStrategy.BILINEAR });
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(jimp.bitmap.data.subarray(i * 4, i * 4 + 3), i * 3);
  return { width, height, data };
}

function truthOf(pixels: Rgb): TruePixels {
  return {
    width: pixels.width,
    height: pixels.height,
    meanError: 0,
    rgbAt: (x, y) => {
      const at = (y * pixels.width + x) * 3;
      return [pixels.data[at], pixels.data[at + 1], pixels.data[at + 2]];
    },
  };
}

function binary(mask: Rgb): { width: number; height: number; data: Uint8Array } {
  const data = new Uint8Array(mask.width * mask.height);
  for (let i = 0; i < data.length; i++) data[i] = mask.data[i * 3] > 127 ? 1 : 0;
  return { width: mask.width, height: mask.height, data };
}

function recolour(pixels: Rgb, colour: (value: number, i: number) => [number, number, number]): Rgb {
  const data = new Uint8Array(pixels.data.length);
  for (let i = 0; i < pixels.width * pixels.height; i++) data.set(colour(pixels.data[i * 3], i), i * 3);
  return { ...pixels, data };
}

function mirror(pixels: Rgb): Rgb {
  const data = new Uint8Array(pixels.data.length);
  for (let y = 0; y < pixels.height; y++) {
    for (let x = 0; x < pixels.width; x++) {
      const from = (y * pixels.width + x) * 3;
      data.set(pixels.data.subarray(from, from + 3), (y * pixels.width + pixels.width - 1 - x) * 3);
    }
  }
  return { ...pixels, data };
}

/** ITU-R BT.601 luma, as JPEG's own colour transform uses. */
function greyOf(pixels: Rgb): Rgb {
  return recolour(pixels, (_, i) => {
    const [r, g, b] = pixels.data.subarray(i * 3, i * 3 + 3);
    const y = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    return [y, y, y];
  });
}

function channel(pixels: Rgb, c: number): Uint8Array {
  return Uint8Array.from({ length: pixels.width * pixels.height }, (_, i) => pixels.data[i * 3 + c]);
}

/** Full black generation, stored inverted as Photoshop writes Adobe CMYK. */
function cmykPlanes(pixels: Rgb): Uint8Array[] {
  const count = pixels.width * pixels.height;
  const planes = [0, 1, 2, 3].map(() => new Uint8Array(count));
  for (let i = 0; i < count; i++) {
    const rgb = pixels.data.subarray(i * 3, i * 3 + 3);
    const max = Math.max(...rgb);
    for (let c = 0; c < 3; c++) planes[c][i] = max === 0 ? 255 : Math.round((rgb[c] * 255) / max);
    planes[3][i] = max;
  }
  return planes;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---- encoders -----------------------------------------------------------------

/** The same JPEG with another size in its baseline frame header (SOF0). */
function withFrameSize(jpeg: Uint8Array, width: number, height: number): Uint8Array {
  const out = jpeg.slice();
  const view = new DataView(out.buffer);
  for (let at = 2; at < out.length; at += 2 + view.getUint16(at + 2)) {
    if (out[at + 1] === 0xc0) {
      view.setUint16(at + 5, height);
      view.setUint16(at + 7, width);
      return out;
    }
  }
  throw new Error('no baseline frame header');
}

/** A big-endian TIFF structure whose first IFD holds one tag, Orientation, as cameras write it in EXIF. */
function orientationTiff(orientation: number): Uint8Array {
  return new Uint8Array([0x4d, 0x4d, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0, 0, 0, 0, 0]);
}

/** The same JPEG with an APP1 "Exif" segment saying `orientation`, first after SOI as cameras write it. */
export function withExifOrientation(jpeg: Uint8Array, orientation: number): Uint8Array {
  const body = concatBytes([new TextEncoder().encode('Exif\0\0'), orientationTiff(orientation)]);
  const segment = concatBytes([new Uint8Array([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 0xff]), body]);
  return concatBytes([jpeg.subarray(0, 2), segment, jpeg.subarray(2)]);
}

/** The same PNG with an eXIf chunk saying `orientation`, right after IHDR. */
export function withPngExifOrientation(png: Uint8Array, orientation: number): Uint8Array {
  const afterHeader = 8 + 12 + 13;
  return concatBytes([png.subarray(0, afterHeader), pngChunk('eXIf', orientationTiff(orientation)), png.subarray(afterHeader)]);
}

function encodeRgbJpeg(pixels: Rgb, quality: number): Uint8Array {
  const data = Buffer.alloc(pixels.width * pixels.height * 4, 255);
  for (let i = 0; i < pixels.width * pixels.height; i++) data.set(pixels.data.subarray(i * 3, i * 3 + 3), i * 4);
  return new Uint8Array(JPEG.encode({ data, width: pixels.width, height: pixels.height }, quality).data);
}

function encodePng8(pixels: Rgb): Uint8Array {
  return encodePng(pixels.data, pixels.width, pixels.height, 2, 8);
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Unfiltered rows in one IDAT: colour type 2 (RGB) or 0 (grey), 8 or 16 bits a sample. */
export function encodePng(samples: Uint8Array | Uint16Array, width: number, height: number, colourType: 0 | 2, bitDepth: 8 | 16): Uint8Array {
  const channels = colourType === 2 ? 3 : 1;
  const bytesPerSample = bitDepth / 8;
  const rowBytes = width * channels * bytesPerSample;
  const raw = new Uint8Array((rowBytes + 1) * height);
  const view = new DataView(raw.buffer);
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < width * channels; i++) {
      const at = y * (rowBytes + 1) + 1 + i * bytesPerSample;
      const value = samples[y * width * channels + i];
      if (bitDepth === 16) view.setUint16(at, value);
      else raw[at] = value;
    }
  }
  return pngFile(width, height, bitDepth, colourType, deflateSync(raw));
}

function pngChunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/** Signature, IHDR, one IDAT holding `compressed` as it is, IEND. */
function pngFile(width: number, height: number, bitDepth: 8 | 16, colourType: 0 | 2, compressed: Uint8Array): Uint8Array {
  const header = new Uint8Array(13);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  header.set([bitDepth, colourType, 0, 0, 0], 8);
  return concatBytes([
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', new Uint8Array(compressed)),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

/**
 * A valid grey PNG header declaring `side`x`side` over a deflate stream of
 * four zero rows (under 200 bytes): decoders that trust the header allocate
 * the whole declared image before finding the data short.
 */
export function encodePngBomb(side: number): Uint8Array {
  return pngFile(side, side, 8, 0, deflateSync(new Uint8Array((side + 1) * 4)));
}

function encodeBmp24(pixels: Rgb, { topDown }: { topDown: boolean }): Uint8Array {
  const { width, height } = pixels;
  const data = bmpRows(width, height, 24, topDown, (x, y, out, at) => {
    const from = (y * width + x) * 3;
    out.set([pixels.data[from + 2], pixels.data[from + 1], pixels.data[from]], at);
  });
  return encodeBmp({ width, height, bits: 24, topDown, data });
}

function encodeBmp8(indices: Uint8Array, palette: Uint8Array, width: number, height: number): Uint8Array {
  return encodeBmp({ width, height, bits: 8, palette, data: indexRows(indices, width, height, 8) });
}

const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42,
  49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];
/** The JPEG standard's luminance table (Annex K), natural order, scaled to quality 90 below. */
const LUMA_QUANT = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
  18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112,
  100, 103, 99,
];
/**
 * Fixed-length Huffman codes keep the encoder short: every DC category gets 4
 * bits, every AC run/size symbol 8 bits (162 symbols of 256 codes, so no code
 * is all ones, as the standard requires).
 */
const DC_SYMBOLS = Array.from({ length: 12 }, (_, i) => i);
const AC_SYMBOLS = [0x00, 0xf0, ...Array.from({ length: 160 }, (_, i) => (Math.floor(i / 10) << 4) | ((i % 10) + 1))];
const DCT_COS = Float64Array.from({ length: 64 }, (_, i) => {
  const u = i >> 3;
  const x = i & 7;
  return (u === 0 ? Math.SQRT1_2 : 1) * Math.cos(((2 * x + 1) * u * Math.PI) / 16) / 2;
});

/**
 * Baseline JPEG of 1 (grey), 3 or 4 (CMYK) full-resolution components, one
 * quantisation table, fixed-length Huffman tables. With `adobe`, an APP14
 * marker with transform 0 says the planes are stored as they are: RGB for
 * three, CMYK stored inverted for four; without it, three planes mean YCbCr.
 */
export function encodeJpeg(planes: Uint8Array[], width: number, height: number, { adobe = false } = {}): Uint8Array {
  const quant = LUMA_QUANT.map((q) => Math.min(255, Math.max(1, Math.floor((q * 20 + 50) / 100))));
  const n = planes.length;
  const segment = (marker: number, body: number[]) => [0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body];
  const bits = (count: number, length: number) => Array.from({ length: 16 }, (_, i) => (i === length - 1 ? count : 0));
  const headers = [
    0xff, 0xd8,
    ...(adobe ? segment(0xee, [...new TextEncoder().encode('Adobe'), 0, 100, 0, 0, 0, 0, 0]) : []),
    ...segment(0xdb, [0, ...ZIGZAG.map((k) => quant[k])]),
    ...segment(0xc0, [8, height >> 8, height & 0xff, width >> 8, width & 0xff, n, ...planes.flatMap((_, c) => [c + 1, 0x11, 0])]),
    ...segment(0xc4, [0x00, ...bits(DC_SYMBOLS.length, 4), ...DC_SYMBOLS, 0x10, ...bits(AC_SYMBOLS.length, 8), ...AC_SYMBOLS]),
    ...segment(0xda, [n, ...planes.flatMap((_, c) => [c + 1, 0x00]), 0, 63, 0]),
  ];

  const out: number[] = [];
  let buffer = 0;
  let filled = 0;
  const put = (value: number, length: number) => {
    for (let i = length - 1; i >= 0; i--) {
      buffer = (buffer << 1) | ((value >> i) & 1);
      if (++filled === 8) {
        out.push(buffer);
        if (buffer === 0xff) out.push(0); // byte stuffing
        buffer = 0;
        filled = 0;
      }
    }
  };
  const category = (v: number) => (v === 0 ? 0 : 32 - Math.clz32(Math.abs(v)));
  const amplitude = (v: number, size: number) => (v >= 0 ? v : v + (1 << size) - 1);

  const predictors = new Array<number>(n).fill(0);
  const block = new Float64Array(64);
  const rows = new Float64Array(64);
  for (let by = 0; by < height; by += 8) {
    for (let bx = 0; bx < width; bx += 8) {
      planes.forEach((plane, c) => {
        // Edge blocks repeat the last row and column.
        for (let i = 0; i < 64; i++) {
          const x = Math.min(width - 1, bx + (i & 7));
          const y = Math.min(height - 1, by + (i >> 3));
          block[i] = plane[y * width + x] - 128;
        }
        for (let y = 0; y < 8; y++) {
          for (let u = 0; u < 8; u++) {
            let s = 0;
            for (let x = 0; x < 8; x++) s += DCT_COS[u * 8 + x] * block[y * 8 + x];
            rows[y * 8 + u] = s;
          }
        }
        const coefficients = new Int32Array(64);
        for (let v = 0; v < 8; v++) {
          for (let u = 0; u < 8; u++) {
            let s = 0;
            for (let y = 0; y < 8; y++) s += DCT_COS[v * 8 + y] * rows[y * 8 + u];
            coefficients[v * 8 + u] = Math.round(s / quant[v * 8 + u]);
          }
        }
        const dc = coefficients[0] - predictors[c];
        predictors[c] = coefficients[0];
        const dcSize = category(dc);
        put(dcSize, 4);
        put(amplitude(dc, dcSize), dcSize);
        let run = 0;
        for (let k = 1; k < 64; k++) {
          const value = coefficients[ZIGZAG[k]];
          if (value === 0) {
            run++;
            continue;
          }
          for (; run > 15; run -= 16) put(AC_SYMBOLS.indexOf(0xf0), 8);
          const size = category(value);
          put(AC_SYMBOLS.indexOf((run << 4) | size), 8);
          put(amplitude(value, size), size);
          run = 0;
        }
        if (run > 0) put(AC_SYMBOLS.indexOf(0x00), 8);
      });
    }
  }
  if (filled > 0) put(0x7f, 8 - filled); // pad with ones
  return new Uint8Array([...headers, ...out, 0xff, 0xd9]);
}

