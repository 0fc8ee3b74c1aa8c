/**
 * The Node host decodes every BMP variant the studio's Chromium decodes, to
 * the pixels the file holds: real PH2 photographs written here as RLE8, RLE4,
 * OS/2, 16-bit, 32-bit with bit masks and top-down files, each compared pixel
 * for pixel with the colours its encoder put in; and the variants no host
 * decodes are refused with a message that names the file and the variant.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Jimp } from 'jimp';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../src/core/errors.ts';
import type { RgbaPixels } from '../src/core/io.ts';
import { decodeImage } from '../src/core/image/decode.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { bmpRows, encodeBmp, encodeRle, indexRows, quantise121, quantise332, type Rgb } from './helpers/bmp.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const decoder = new SharpDecoder();
const ph2 = (id: string) => path.join(datasetsRoot, 'ph2', 'PH2 Dataset images', id, `${id}_Dermoscopic_Image`, `${id}.bmp`);

/** The 24-bit PH2 original, as jimp reads a plain BMP. */
async function photograph(id: string): Promise<Rgb> {
  const { bitmap } = await Jimp.fromBuffer(readFileSync(ph2(id)));
  const data = new Uint8Array(bitmap.width * bitmap.height * 3);
  for (let i = 0; i < bitmap.width * bitmap.height; i++) data.set(bitmap.data.subarray(i * 4, i * 4 + 3), i * 3);
  return { width: bitmap.width, height: bitmap.height, data };
}

const source = await photograph('IMD004');
const { width, height } = source;

/** Opaque RGBA of an RGB image, with `black` pixels (those RLE data skips, as Chromium shows them) at 0, 0, 0. */
function rgba(pixels: Rgb, black: (x: number, y: number) => boolean = () => false): Uint8Array {
  const out = new Uint8Array(pixels.width * pixels.height * 4);
  for (let y = 0; y < pixels.height; y++) {
    for (let x = 0; x < pixels.width; x++) {
      const i = y * pixels.width + x;
      out.set(black(x, y) ? [0, 0, 0, 255] : [...pixels.data.subarray(i * 3, i * 3 + 3), 255], i * 4);
    }
  }
  return out;
}

async function decode(name: string, bytes: Uint8Array): Promise<RgbaPixels> {
  const { pixels } = await decodeImage(decoder, name, bytes);
  expect([pixels.width, pixels.height]).toEqual([width, height]);
  return pixels;
}

/** Pixels that differ, so a failure says how many rather than printing 1.7 million bytes. */
function mismatches(actual: RgbaPixels, expected: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < expected.length; i += 4) {
    if (actual.data[i] !== expected[i] || actual.data[i + 1] !== expected[i + 1] || actual.data[i + 2] !== expected[i + 2] || actual.data[i + 3] !== expected[i + 3]) n++;
  }
  return n;
}

/** Each channel cut to `bits` bits and widened back to 8 the way a decoder must: v * 255 / (2^bits - 1), rounded. */
function levels(pixels: Rgb, bits: [number, number, number]): { raw: Uint8Array; rgb: Rgb } {
  const raw = new Uint8Array(pixels.data.length);
  const data = new Uint8Array(pixels.data.length);
  pixels.data.forEach((v, i) => {
    const top = 2 ** bits[i % 3] - 1;
    raw[i] = Math.round((v * top) / 255);
    data[i] = Math.round((raw[i] * 255) / top);
  });
  return { raw, rgb: { ...pixels, data } };
}

describe('BMP variants written from a real PH2 photograph', () => {
  it('RLE8, with runs, absolute runs, deltas and ends of line over skipped pixels', async () => {
    const { indices, palette, quantised } = quantise332(source);
    // A block jumped by deltas mid-row, and a corner whose rows end early.
    const skipped = (x: number, y: number) => (x >= 100 && x < 460 && y >= 200 && y < 210) || (x >= width - 68 && y < 40);
    const data = encodeRle(indices, width, height, false, skipped);
    const bytes = encodeBmp({ width, height, bits: 8, compression: 1, palette, data });
    expect(mismatches(await decode('rle8.bmp', bytes), rgba(quantised, skipped))).toBe(0);
  });

  it('RLE4 with a 16-colour palette', async () => {
    const { indices, palette, quantised } = quantise121(source);
    const skipped = (x: number, y: number) => x >= 300 && x < 333 && y >= 50 && y < 53;
    const bytes = encodeBmp({ width, height, bits: 4, compression: 2, palette, data: encodeRle(indices, width, height, true, skipped) });
    expect(mismatches(await decode('rle4.bmp', bytes), rgba(quantised, skipped))).toBe(0);
  });

  it('OS/2 1.x (12-byte header, 3-byte palette entries)', async () => {
    const { indices, palette, quantised } = quantise332(source);
    const bytes = encodeBmp({ width, height, headerSize: 12, bits: 8, palette, data: indexRows(indices, width, height, 8) });
    expect(mismatches(await decode('os2.bmp', bytes), rgba(quantised))).toBe(0);
  });

  it('16 bits, 5-5-5 by default', async () => {
    const { raw, rgb } = levels(source, [5, 5, 5]);
    const data = bmpRows(width, height, 16, false, (x, y, out, at) => {
      const i = (y * width + x) * 3;
      const value = (raw[i] << 10) | (raw[i + 1] << 5) | raw[i + 2];
      out.set([value & 0xff, value >> 8], at);
    });
    expect(mismatches(await decode('rgb555.bmp', encodeBmp({ width, height, bits: 16, data })), rgba(rgb))).toBe(0);
  });

  it('16 bits, 5-6-5 bit fields after a 40-byte header', async () => {
    const { raw, rgb } = levels(source, [5, 6, 5]);
    const data = bmpRows(width, height, 16, false, (x, y, out, at) => {
      const i = (y * width + x) * 3;
      const value = (raw[i] << 11) | (raw[i + 1] << 5) | raw[i + 2];
      out.set([value & 0xff, value >> 8], at);
    });
    const bytes = encodeBmp({ width, height, bits: 16, compression: 3, masks: [0xf800, 0x7e0, 0x1f, 0], data });
    expect(mismatches(await decode('rgb565.bmp', bytes), rgba(rgb))).toBe(0);
  });

  it('32 bits, R-G-B-A bit fields in a V5 header, with alpha', async () => {
    const alpha = (x: number, y: number) => 1 + ((x * 7 + y * 3) % 255);
    const data = bmpRows(width, height, 32, false, (x, y, out, at) => {
      const i = (y * width + x) * 3;
      // Little-endian 0xRRGGBBAA.
      out.set([alpha(x, y), source.data[i + 2], source.data[i + 1], source.data[i]], at);
    });
    const bytes = encodeBmp({ width, height, headerSize: 124, bits: 32, compression: 3, masks: [0xff000000, 0xff0000, 0xff00, 0xff], data });
    const expected = rgba(source);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) expected[(y * width + x) * 4 + 3] = alpha(x, y);
    expect(mismatches(await decode('rgba.bmp', bytes), expected)).toBe(0);
  });

  it('32 bits without bit fields in a 40-byte header: the fourth byte is not alpha', async () => {
    const data = bmpRows(width, height, 32, false, (x, y, out, at) => {
      const i = (y * width + x) * 3;
      out.set([source.data[i + 2], source.data[i + 1], source.data[i], (x * 13) & 0xff], at);
    });
    expect(mismatches(await decode('bgrx.bmp', encodeBmp({ width, height, bits: 32, data })), rgba(source))).toBe(0);
  });

  it('4 bits, uncompressed, top-down, in a V4 header', async () => {
    const { indices, palette, quantised } = quantise121(source);
    const bytes = encodeBmp({ width, height, headerSize: 108, bits: 4, palette, topDown: true, data: indexRows(indices, width, height, 4, true) });
    expect(mismatches(await decode('top-down-4bit.bmp', bytes), rgba(quantised))).toBe(0);
  });
});

describe('BMP files no host decodes', () => {
  const { indices, palette } = quantise332({ width: 8, height: 2, data: source.data.subarray(0, 8 * 2 * 3) });
  const small = (spec: Partial<Parameters<typeof encodeBmp>[0]>) =>
    encodeBmp({ width: 8, height: 2, bits: 8, palette, data: indexRows(indices, 8, 2, 8), ...spec });

  async function refusal(name: string, bytes: Uint8Array): Promise<DecodeError> {
    const error = await decodeImage(decoder, name, bytes).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DecodeError);
    expect((error as DecodeError).file).toBe(name);
    return error as DecodeError;
  }

  it('a JPEG inside a BMP is refused, saying so', async () => {
    const error = await refusal('jpeg-inside.bmp', small({ bits: 0, compression: 4, palette: undefined }));
    expect(error.message).toBe('jpeg-inside.bmp: unsupported BMP compression 4 (JPEG inside BMP)');
    expect(error.code).toBe('unsupported-format');
  });

  it('an OS/2 2.x header is refused, naming it', async () => {
    const bytes = small({});
    new DataView(bytes.buffer).setUint32(14, 64, true);
    expect((await refusal('os2v2.bmp', bytes)).message).toBe('os2v2.bmp: unsupported BMP header size 64 (OS/2 2.x)');
  });

  it('rows cut short are truncated pixel data', async () => {
    const bytes = small({});
    const error = await refusal('short.bmp', bytes.subarray(0, bytes.length - 3));
    expect(error.message).toBe('short.bmp: truncated BMP pixel data (13 of 16 bytes)');
    expect(error.code).toBe('decode');
  });

  it('RLE data without its end-of-bitmap marker is truncated pixel data', async () => {
    const rle = encodeRle(indices, 8, 2, false);
    const error = await refusal('no-end.bmp', small({ compression: 1, data: rle.subarray(0, rle.length - 2) }));
    expect(error.message).toBe('no-end.bmp: truncated BMP pixel data (the RLE data ends before its end-of-bitmap marker)');
  });
});
