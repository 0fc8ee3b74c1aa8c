/**
 * The core's mask PNG encoder, which both hosts write masks with: what
 * another decoder (jimp, and zlib on the raw stream) reads back is the mask,
 * for real ground truth and for the shapes that stress its runs.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { Jimp } from 'jimp';
import { describe, expect, it } from 'vitest';
import type { BinaryMask } from '../src/core/io.ts';
import { maskPng } from '../src/core/image/png.ts';
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
