/**
 * The core's PNG codec (fast-png), which both hosts read and write masks
 * with: what another decoder (jimp, and zlib on the raw stream) reads back is
 * the mask, for real ground truth and awkward shapes; and what it reads from
 * palette and 1-bit files is what sharp (libvips) reads; a 16-bit mask of 0/1
 * reads as its 8-bit twin.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { Jimp } from 'jimp';
import { describe, expect, it } from 'vitest';
import type { BinaryMask } from '../src/core/io.ts';
import sharp from 'sharp';
import { readMask } from '../src/core/dataset/loader.ts';
import { decodePng, maskPng } from '../src/core/image/png.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { encodePng } from './helpers/corpus.ts';
import { datasetsRoot } from './helpers/datasets.ts';

async function decoded(png: Uint8Array): Promise<BinaryMask & { colourType: number }> {
  const image = await Jimp.fromBuffer(Buffer.from(png));
  const { width, height, data } = image.bitmap;
  const mask = new Uint8Array(width * height);
  let other = 0;
  for (let i = 0; i < mask.length; i++) {
    if (data[i * 4] !== 0 && data[i * 4] !== 255) other++;
    mask[i] = data[i * 4] === 255 ? 1 : 0;
  }
  expect(other).toBe(0);
  return { width, height, data: mask, colourType: png[25] };
}

async function groundTruth(file: string): Promise<BinaryMask> {
  const image = await Jimp.fromBuffer(readFileSync(file));
  const { width, height, data } = image.bitmap;
  const mask = new Uint8Array(width * height);
  for (let i = 0; i < mask.length; i++) mask[i] = data[i * 4] > 127 ? 1 : 0;
  return { width, height, data: mask };
}

describe('maskPng', () => {
  it.each(['ISIC_0000013', 'ISIC_0000377'])('writes the ISIC ground truth %s as 8-bit greyscale that jimp reads back exactly', async (id) => {
    const truth = await groundTruth(path.join(datasetsRoot, 'isic2018/ISIC2018_Task1_Training_GroundTruth', `${id}_segmentation.png`));
    const lesion = truth.data.reduce((n, v) => n + v, 0);
    expect(lesion).toBeGreaterThan(0);
    expect(lesion).toBeLessThan(truth.data.length);
    const back = await decoded(maskPng(truth));
    expect(back.colourType).toBe(0);
    expect([back.width, back.height]).toEqual([truth.width, truth.height]);
    expect(Buffer.from(back.data).equals(Buffer.from(truth.data))).toBe(true);
  });

  it.each([
    ['one column', 1, 700, (_x: number, y: number) => y % 300 < 150],
    ['one row longer than a deflate match', 1000, 1, (x: number) => x > 3 && x < 990],
    ['all lesion', 300, 17, () => true],
    ['a checkerboard (no runs at all)', 37, 29, (x: number, y: number) => (x + y) % 2 === 0],
  ])('reads back exactly: %s', async (_name, width, height, lesion) => {
    const data = new Uint8Array(width * height);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = lesion(x, y) ? 1 : 0;
    const png = maskPng({ width, height, data });
    const back = await decoded(png);
    expect(Buffer.from(back.data).equals(Buffer.from(data))).toBe(true);
    // zlib agrees on the stream itself (its Adler-32 checksum included): rows of a filter byte and 0/255 differences.
    const idatLength = new DataView(png.buffer, png.byteOffset).getUint32(33);
    expect(inflateSync(png.subarray(41, 41 + idatLength)).length).toBe(height * (width + 1));
  });

  it('leaves the mask as it was given', () => {
    const data = Uint8Array.from([0, 1, 1, 0, 1, 0]);
    maskPng({ width: 3, height: 2, data });
    expect([...data]).toEqual([0, 1, 1, 0, 1, 0]);
  });
});

describe('decodePng', () => {
  const truthFile = path.join(datasetsRoot, 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png');

  it('reads a 16-bit mask of 0/1 as its 8-bit twin: the same mask, the same warning', async () => {
    const truth = await groundTruth(truthFile);
    const eight = encodePng(truth.data, truth.width, truth.height, 0, 8);
    const sixteen = encodePng(Uint16Array.from(truth.data), truth.width, truth.height, 0, 16);
    expect(sixteen[24]).toBe(16);
    const decoder = new SharpDecoder();
    const [a, b] = [await readMask('m.png', eight, decoder), await readMask('m.png', sixteen, decoder)];
    expect(Buffer.from(b.mask.data).equals(Buffer.from(truth.data))).toBe(true);
    expect(Buffer.from(a.mask.data).equals(Buffer.from(truth.data))).toBe(true);
    expect(b.warnings).toEqual(['m.png: mask is stored as 0/1 instead of 0/255; 1 taken as lesion']);
    expect(a.warnings).toEqual(b.warnings);
  });

  it('scales 16-bit samples that use the 16-bit range to the nearest 8-bit level', () => {
    const width = 64;
    const samples = Uint16Array.from({ length: width * 3 * 8 }, (_, i) => (i * 2039) % 65536);
    const ours = decodePng('deep.png', encodePng(samples, width, 8, 2, 16));
    let mismatches = 0;
    for (let i = 0; i < width * 8; i++) {
      for (let c = 0; c < 3; c++) if (ours.data[i * 4 + c] !== Math.round(samples[i * 3 + c] / 257)) mismatches++;
      if (ours.data[i * 4 + 3] !== 255) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it.each([
    ['a 256-colour palette', { palette: true, colours: 256 }],
    ['a 2-colour (1-bit) palette', { palette: true, colours: 2 }],
  ])('reads %s PNG of a real photograph as sharp does', async (_name, options) => {
    const photo = path.join(datasetsRoot, 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg');
    const png = new Uint8Array(await sharp(photo).resize(160, 120).png(options).toBuffer());
    expect(png[25]).toBe(3); // colour type 3: palette
    const ours = decodePng('palette.png', png);
    const theirs = await sharp(png).toColourspace('srgb').ensureAlpha().raw().toBuffer();
    expect([ours.width, ours.height]).toEqual([160, 120]);
    expect(Buffer.from(ours.data).equals(theirs)).toBe(true);
  });

  it('names the file and the problem for a truncated PNG', () => {
    const png = encodePng(new Uint8Array(64 * 64), 64, 64, 0, 8);
    expect(() => decodePng('masks/cut.png', png.subarray(0, 50))).toThrow(/^masks\/cut\.png: corrupt or truncated PNG \(/);
  });
});
