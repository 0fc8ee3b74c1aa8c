import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Jimp, ResizeStrategy } from 'jimp';
import { afterAll, describe, expect, it } from 'vitest';
import { binariseMask, loadSample, sameAspect } from '../src/core/dataset/loader.ts';
import { PixelCache } from '../src/core/dataset/samples.ts';
import type { Sample } from '../src/core/dataset/layouts.ts';
import { DecodeError, LesionError } from '../src/core/errors.ts';
import type { FileSource, RgbaPixels } from '../src/core/io.ts';
import { decodeImage } from '../src/core/image/decode.ts';
import { resizeRgba } from '../src/core/image/resize.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { encodeJpeg, withExifOrientation } from './helpers/corpus.ts';
import { datasetsRoot } from './helpers/datasets.ts';
import { MemoryStore } from './helpers/memory-store.ts';

const datasets = datasetsRoot;
const decoder = new SharpDecoder();

const isicImage = 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg';
const isicMask = 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png';
const ph2Image = 'ph2/PH2 Dataset images/IMD004/IMD004_Dermoscopic_Image/IMD004.bmp';
const ph2Mask = 'ph2/PH2 Dataset images/IMD004/IMD004_lesion/IMD004_lesion.bmp';
const fullImage = 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000377.jpg';
const fullMask = 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000377_segmentation.png';

const bytesOf = (file: string) => new Uint8Array(readFileSync(path.join(datasets, file)));

function distinctValues(pixels: RgbaPixels): Set<number> {
  const values = new Set<number>();
  for (let i = 0; i < pixels.data.length; i += 4) values.add(pixels.data[i]);
  return values;
}

function channelMeans(pixels: RgbaPixels): number[] {
  const sums = [0, 0, 0];
  for (let i = 0; i < pixels.data.length; i += 4) for (let c = 0; c < 3; c++) sums[c] += pixels.data[i + c];
  return sums.map((sum) => sum / (pixels.width * pixels.height));
}

/** BMP header fields, read here independently of the decoder. */
function bmpHeader(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    offset: view.getUint32(10, true),
    width: view.getInt32(18, true),
    height: view.getInt32(22, true),
    bits: view.getUint16(28, true),
  };
}

describe('SharpDecoder on the real files', () => {
  it('decodes an ISIC JPEG at the size of its mask (read from the PNG header)', async () => {
    const maskBytes = bytesOf(isicMask);
    const view = new DataView(maskBytes.buffer, maskBytes.byteOffset);
    const { pixels, sourceWidth, sourceHeight } = await decodeImage(decoder, isicImage, bytesOf(isicImage));
    expect([sourceWidth, sourceHeight]).toEqual([view.getUint32(16), view.getUint32(20)]);
    expect([pixels.width, pixels.height, pixels.data.length]).toEqual([sourceWidth, sourceHeight, sourceWidth * sourceHeight * 4]);
    expect(distinctValues(pixels).size).toBeGreaterThan(50);
  });

  it('decodes an ISIC PNG mask to exactly 0 and 255', async () => {
    const { pixels } = await decodeImage(decoder, isicMask, bytesOf(isicMask));
    expect(distinctValues(pixels)).toEqual(new Set([0, 255]));
  });

  it('decodes a PH2 24-bit BMP in RGB order, top row first', async () => {
    const bytes = bytesOf(ph2Image);
    const header = bmpHeader(bytes);
    expect(header.bits).toBe(24);
    const { pixels } = await decodeImage(decoder, ph2Image, bytes);
    expect([pixels.width, pixels.height]).toEqual([header.width, Math.abs(header.height)]);
    // Bottom-up rows: the image's top row is the file's last row; pixels are stored B, G, R.
    const rowBytes = Math.ceil((header.width * 3) / 4) * 4;
    const top = header.offset + (header.height - 1) * rowBytes;
    for (const x of [0, 1, 300]) {
      const at = top + x * 3;
      expect([...pixels.data.slice(x * 4, x * 4 + 4)]).toEqual([bytes[at + 2], bytes[at + 1], bytes[at], 255]);
    }
  });

  it('decodes a PH2 1-bit BMP mask pixel for pixel', async () => {
    const bytes = bytesOf(ph2Mask);
    const header = bmpHeader(bytes);
    expect(header.bits).toBe(1);
    const { pixels } = await decodeImage(decoder, ph2Mask, bytes);
    const palette = [bytes[54], bytes[58]]; // blue byte of each palette entry: 0 and 255
    const rowBytes = Math.ceil(header.width / 32) * 4;
    let mismatches = 0;
    let lesion = 0;
    for (let y = 0; y < header.height; y++) {
      const row = header.offset + (header.height - 1 - y) * rowBytes;
      for (let x = 0; x < header.width; x++) {
        const bit = (bytes[row + (x >> 3)] >> (7 - (x & 7))) & 1;
        const decoded = pixels.data[(y * header.width + x) * 4];
        if (decoded !== palette[bit]) mismatches++;
        if (decoded === 255) lesion++;
      }
    }
    expect(mismatches).toBe(0);
    expect(lesion).toBeGreaterThan(0);
    expect(lesion).toBeLessThan(header.width * header.height);
  });

  it('decodes and resizes a full-size 3072x2304 original without losing its colours or lesion area', async () => {
    const bytes = bytesOf(fullImage);
    const full = await decodeImage(decoder, fullImage, bytes);
    const small = await decodeImage(decoder, fullImage, bytes, { width: 256, height: 256, filter: 'bilinear' });
    expect([small.sourceWidth, small.sourceHeight, small.pixels.width, small.pixels.height]).toEqual([3072, 2304, 256, 256]);
    const fullMeans = channelMeans(full.pixels);
    channelMeans(small.pixels).forEach((mean, c) => expect(Math.abs(mean - fullMeans[c])).toBeLessThan(0.5));
    // The filter weighs the 12x9 block under a target pixel most: its mean is close to that pixel.
    for (const [x, y] of [[40, 60], [128, 128], [200, 30]]) {
      let sum = 0;
      for (let sy = y * 9; sy < y * 9 + 9; sy++) for (let sx = x * 12; sx < x * 12 + 12; sx++) sum += full.pixels.data[(sy * 3072 + sx) * 4];
      expect(Math.abs(small.pixels.data[(y * 256 + x) * 4] - sum / 108)).toBeLessThan(6);
    }

    const maskBytes = bytesOf(fullMask);
    const mask = await decodeImage(decoder, fullMask, maskBytes, { width: 256, height: 256, filter: 'nearest' });
    const fullMaskPixels = (await decodeImage(decoder, fullMask, maskBytes)).pixels;
    expect(distinctValues(mask.pixels)).toEqual(new Set([0, 255]));
    const area = (pixels: RgbaPixels) => countAbove(pixels, 127) / (pixels.width * pixels.height);
    expect(Math.abs(area(mask.pixels) - area(fullMaskPixels))).toBeLessThan(0.005);
  });
});

describe('a JPEG stored as RGB (Adobe APP14 marker, transform 0)', () => {
  it('decodes to its own R, G and B planes, not as YCbCr: each channel equals that plane alone as a greyscale JPEG', async () => {
    const { pixels: photo } = await decodeImage(decoder, isicImage, bytesOf(isicImage), { width: 256, height: 192, filter: 'bilinear' });
    const { width, height } = photo;
    const planes = [0, 1, 2].map((c) => Uint8Array.from({ length: width * height }, (_, i) => photo.data[i * 4 + c]));
    const rgb = encodeJpeg(planes, width, height, { adobe: true });
    // Same encoder, same table, same blocks: with no colour transform a decoder must give these bytes exactly.
    const greys = await Promise.all(planes.map(async (plane, c) => (await decodeImage(decoder, `plane-${c}.jpg`, encodeJpeg([plane], width, height))).pixels));
    const { pixels } = await decodeImage(decoder, 'rgb.jpg', rgb);
    expect([pixels.width, pixels.height]).toEqual([width, height]);
    let mismatches = 0;
    let error = 0;
    for (let i = 0; i < width * height; i++) {
      for (let c = 0; c < 3; c++) {
        if (pixels.data[i * 4 + c] !== greys[c].data[i * 4]) mismatches++;
        error += Math.abs(pixels.data[i * 4 + c] - planes[c][i]);
      }
    }
    expect(mismatches).toBe(0);
    // And the planes are the photograph's, within what quality-90 quantisation costs (read as YCbCr, as jpeg-js does, they are 56 levels off).
    expect(error / (width * height * 3)).toBeLessThan(2);
  });
});

function countAbove(pixels: RgbaPixels, threshold: number): number {
  let n = 0;
  for (let i = 0; i < pixels.data.length; i += 4) if (pixels.data[i] > threshold) n++;
  return n;
}

describe('resizeRgba', () => {
  const grey = (values: number[], width: number): RgbaPixels => ({
    width,
    height: values.length / width,
    data: new Uint8Array(values.flatMap((v) => [v, v, v, 255])),
  });
  const firstChannel = (pixels: RgbaPixels) => [...pixels.data].filter((_, i) => i % 4 === 0);

  it('upsamples bilinearly with half-pixel centres', () => {
    expect(firstChannel(resizeRgba(grey([0, 255], 2), 4, 1, 'bilinear'))).toEqual([0, 64, 191, 255]);
  });

  it('widens the triangle by the scale when shrinking, as PIL and torchvision antialias do', () => {
    // Halving: target centre 1.0 sees source centres 0.5, 1.5, 2.5 at weights 0.75, 0.75, 0.25 (normalised).
    expect(firstChannel(resizeRgba(grey([10, 10, 200, 200], 4), 2, 1, 'bilinear'))).toEqual([37, 173]);
  });

  it('keeps a flat image flat at any size', () => {
    const flat = grey(new Array(35).fill(77), 7);
    expect(new Set(firstChannel(resizeRgba(flat, 3, 2, 'bilinear')))).toEqual(new Set([77]));
    expect(new Set(firstChannel(resizeRgba(flat, 11, 13, 'bilinear')))).toEqual(new Set([77]));
  });

  it('keeps only source values with nearest', () => {
    const resized = resizeRgba(grey([0, 255, 0, 255, 0, 255], 3), 7, 5, 'nearest');
    expect(new Set(firstChannel(resized))).toEqual(new Set([0, 255]));
    expect(firstChannel(resized).slice(0, 7)).toEqual([0, 0, 255, 255, 255, 0, 0]);
  });
});

describe('bad files', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lesion-decode-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const real = bytesOf(isicImage);
  writeFileSync(path.join(dir, 'empty.jpg'), new Uint8Array(0));
  writeFileSync(path.join(dir, 'text.jpg'), 'this is a text file, not a JPEG\n');
  writeFileSync(path.join(dir, 'truncated.jpg'), real.subarray(0, Math.floor(real.length / 2)));
  const source = new FsFileSource([dir]);
  const root = path.basename(dir);

  async function decodeError(name: string): Promise<DecodeError> {
    const file = `${root}/${name}`;
    const error = await decodeImage(decoder, file, await source.read(file)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DecodeError);
    expect((error as DecodeError).file).toBe(file);
    expect((error as DecodeError).message).toContain(file);
    return error as DecodeError;
  }

  it('a 0-byte file is an empty-file error', async () => {
    expect((await decodeError('empty.jpg')).code).toBe('empty-file');
  });

  it('text named .jpg is not an image', async () => {
    const error = await decodeError('text.jpg');
    expect(error.code).toBe('unsupported-format');
    expect(error.message).toMatch(/not a JPEG, PNG or BMP/);
  });

  it('a truncated JPEG is a decode error that says so', async () => {
    const error = await decodeError('truncated.jpg');
    expect(error.code).toBe('decode');
    expect(error.message).toMatch(/corrupt or truncated JPEG/);
  });

  it('reaches loadSample callers unchanged', async () => {
    const sample: Sample = { id: 'truncated', set: 's', layout: 'unlabeled', split: 'unspecified', image: `${root}/truncated.jpg` };
    await expect(loadSample(sample, source, decoder, { width: 64, height: 64 })).rejects.toThrow(DecodeError);
  });

  it('a missing file is a read error naming it', async () => {
    const error = await source.read(`${root}/missing.jpg`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LesionError);
    expect((error as LesionError).code).toBe('read');
    expect((error as LesionError).message).toBe(`${root}/missing.jpg: no such file or folder`);
  });
});

/** Real files plus masks made here from real masks, addressed like a FileSource. */
class MemorySource implements FileSource {
  constructor(private readonly files: Map<string, Uint8Array>) {}
  async list(): Promise<string[]> {
    return [...this.files.keys()];
  }
  async read(file: string): Promise<Uint8Array> {
    const bytes = this.files.get(file);
    if (!bytes) throw new LesionError('read', 'no such file', file);
    return bytes;
  }
}

describe('loadSample', () => {
  const size = { width: 128, height: 128 };
  const pair: Sample = { id: 'ISIC_0000013', set: 'isic2018', layout: 'isic2018', split: 'train', image: isicImage, mask: isicMask };

  /** The real mask re-encoded as PNG, recoloured and optionally resized. */
  async function maskVariant(recolour: (value: number, i: number) => number, resizeTo?: { w: number; h: number }) {
    const mask = await Jimp.fromBuffer(Buffer.from(bytesOf(isicMask)));
    if (resizeTo) mask.resize({ ...resizeTo, mode: ResizeStrategy.NEAREST_NEIGHBOR });
    const data = mask.bitmap.data;
    for (let i = 0; i < data.length; i += 4) data[i] = data[i + 1] = data[i + 2] = recolour(data[i], i / 4);
    return new Uint8Array(await mask.getBuffer('image/png'));
  }

  it('loads a real pair at the target size, RGB and 0/1, without warnings', async () => {
    const source = new FsFileSource([datasets]);
    const prefixed = { ...pair, image: `datasets/${isicImage}`, mask: `datasets/${isicMask}` };
    const loaded = await loadSample(prefixed, source, decoder, size);
    expect(loaded.warnings).toEqual([]);
    expect([loaded.image.width, loaded.image.height, loaded.image.data.length]).toEqual([128, 128, 128 * 128 * 3]);
    expect(loaded.mask!.data.length).toBe(128 * 128);
    expect(new Set(loaded.mask!.data)).toEqual(new Set([0, 1]));
    const reference = await decodeImage(decoder, isicMask, bytesOf(isicMask), { ...size, filter: 'nearest' });
    expect(loaded.mask!.data.every((v, i) => v === reference.pixels.data[i * 4] / 255)).toBe(true);
    expect([loaded.sourceWidth, loaded.sourceHeight]).toEqual([reference.sourceWidth, reference.sourceHeight]);
  });

  it('warns about a mask of another size, naming it, and still lines it up', async () => {
    const image = await decodeImage(decoder, isicImage, bytesOf(isicImage));
    const smaller = await maskVariant((v) => v, { w: 400, h: 300 });
    const source = new MemorySource(new Map([[isicImage, bytesOf(isicImage)], ['small_mask.png', smaller]]));
    const loaded = await loadSample({ ...pair, mask: 'small_mask.png' }, source, decoder, size);
    expect(loaded.warnings).toEqual([
      {
        file: 'small_mask.png',
        message: `small_mask.png: mask is 400x300 but its image is ${image.sourceWidth}x${image.sourceHeight}; resized to 128x128 with nearest neighbour`,
      },
    ]);
    const exact = await loadSample(pair, new MemorySource(new Map([[isicImage, bytesOf(isicImage)], [isicMask, bytesOf(isicMask)]])), decoder, size);
    const agree = loaded.mask!.data.filter((v, i) => v === exact.mask!.data[i]).length;
    expect(agree / loaded.mask!.data.length).toBeGreaterThan(0.98);
  });

  it('binarises a grey mask at >128, as the ISIC scorer does, and warns', async () => {
    // Lesion at 200, background at 0 with every 7th pixel at 60.
    const grey = await maskVariant((v, i) => (v > 128 ? 200 : i % 7 === 0 ? 60 : 0));
    const files = new Map([[isicImage, bytesOf(isicImage)], ['grey.png', grey], [isicMask, bytesOf(isicMask)]]);
    const loaded = await loadSample({ ...pair, mask: 'grey.png' }, new MemorySource(files), decoder, size);
    const exact = await loadSample(pair, new MemorySource(files), decoder, size);
    expect(loaded.warnings).toHaveLength(1);
    expect(loaded.warnings[0].message).toMatch(/^grey\.png: mask is not binary \(\d+ of 16384 pixels are neither 0 nor 255\); binarised at >128$/);
    expect(loaded.mask!.data).toEqual(exact.mask!.data);
  });

  it('counts 129 as lesion and 127 and 128 as background, the ISIC scorer\'s `> 128` (128 is where two binary masks averaged tie)', async () => {
    expect(binariseMask({ width: 3, height: 1, data: Uint8Array.from([127, 127, 127, 255, 128, 128, 128, 255, 129, 129, 129, 255]) }).mask.data).toEqual(Uint8Array.from([0, 0, 1]));
    // The real mask with its lesion at 129 and its background at 127 and 128, read as training and eval read masks.
    const ties = await maskVariant((v, i) => (v > 128 ? 129 : i % 2 === 0 ? 128 : 127));
    const files = new Map([[isicImage, bytesOf(isicImage)], ['ties.png', ties], [isicMask, bytesOf(isicMask)]]);
    const loaded = await loadSample({ ...pair, mask: 'ties.png' }, new MemorySource(files), decoder, size);
    const exact = await loadSample(pair, new MemorySource(files), decoder, size);
    expect(loaded.mask!.data).toEqual(exact.mask!.data);
    expect(loaded.mask!.data.some((v) => v === 1)).toBe(true);
    // All at 128: nothing is lesion.
    const flat128 = await maskVariant(() => 128);
    const none = await loadSample({ ...pair, mask: 'flat.png' }, new MemorySource(new Map([[isicImage, bytesOf(isicImage)], ['flat.png', flat128]])), decoder, size);
    expect(none.mask!.data.every((v) => v === 0)).toBe(true);
  });

  it('leaves out, naming both sizes, a pair whose mask is stored rotated by 90°, for training and scoring alike', async () => {
    const image = await decodeImage(decoder, isicImage, bytesOf(isicImage));
    const turned = await Jimp.fromBuffer(Buffer.from(bytesOf(isicMask)));
    turned.rotate(90);
    const files = new Map([[isicImage, bytesOf(isicImage)], ['turned.png', new Uint8Array(await turned.getBuffer('image/png'))]]);
    const problem = `turned.png: mask is ${image.sourceHeight}x${image.sourceWidth} but its image is ${image.sourceWidth}x${image.sourceHeight}, another aspect ratio (rotated, transposed or cropped?); the pair is left out`;
    await expect(loadSample({ ...pair, mask: 'turned.png' }, new MemorySource(files), decoder, size)).rejects.toThrow(problem);
    // The cache training and eval --model read through: skipped, said once, naming the image and the mask.
    const warnings: string[] = [];
    const cache = new PixelCache(new MemorySource(files), decoder, new MemoryStore(), size, (e) => {
      if (e.type === 'warning') warnings.push(e.message);
    });
    expect(await cache.get({ id: pair.id, set: pair.set, image: isicImage, mask: { kind: 'file', path: 'turned.png' } })).toBeUndefined();
    expect(warnings).toEqual([`skipped ${isicImage}: ${problem}`]);
  });

  it('keeps, with a warning, a mask of the same aspect at another size, however its sides were rounded', async () => {
    const image = await decodeImage(decoder, isicImage, bytesOf(isicImage));
    const [w, h] = [image.sourceWidth / 3, image.sourceHeight / 3];
    expect(Number.isInteger(w) && Number.isInteger(h)).toBe(false);
    for (const [mw, mh] of [[Math.round(w), Math.round(h)], [Math.ceil(w), Math.floor(h)], [Math.floor(w), Math.ceil(h)]]) {
      const files = new Map([[isicImage, bytesOf(isicImage)], ['small.png', await maskVariant((v) => v, { w: mw, h: mh })]]);
      const loaded = await loadSample({ ...pair, mask: 'small.png' }, new MemorySource(files), decoder, size);
      expect(loaded.warnings.map((x) => x.message)).toEqual([`small.png: mask is ${mw}x${mh} but its image is ${image.sourceWidth}x${image.sourceHeight}; resized to 128x128 with nearest neighbour`]);
    }
    expect(sameAspect(Math.floor(w), Math.ceil(h), image.sourceWidth, image.sourceHeight)).toBe(true);
    // Ten rows cropped off at full size is not rounding.
    expect(sameAspect(image.sourceWidth, image.sourceHeight - 10, image.sourceWidth, image.sourceHeight)).toBe(false);
  });

  it('reads a 0/1 mask as lesion = 1, with a warning', async () => {
    const zeroOne = await maskVariant((v) => (v > 127 ? 1 : 0));
    const files = new Map([[isicImage, bytesOf(isicImage)], ['01.png', zeroOne], [isicMask, bytesOf(isicMask)]]);
    const loaded = await loadSample({ ...pair, mask: '01.png' }, new MemorySource(files), decoder, size);
    const exact = await loadSample(pair, new MemorySource(files), decoder, size);
    expect(loaded.warnings).toEqual([{ file: '01.png', message: '01.png: mask is stored as 0/1 instead of 0/255; 1 taken as lesion' }]);
    expect(loaded.mask!.data).toEqual(exact.mask!.data);
  });
});

describe('EXIF orientation', () => {
  it('is ignored, with a warning naming the file: an ISIC photograph marked "rotate 90° CW" keeps its stored pixels and its mask still fits', async () => {
    const size = { width: 128, height: 128 };
    const marked = withExifOrientation(bytesOf(isicImage), 6);
    const stored = await decodeImage(decoder, isicImage, bytesOf(isicImage));
    const decoded = await decodeImage(decoder, 'marked.jpg', marked);
    expect([decoded.sourceWidth, decoded.sourceHeight]).toEqual([stored.sourceWidth, stored.sourceHeight]);
    expect(stored.sourceWidth).not.toBe(stored.sourceHeight);
    expect(decoded.pixels.data.every((v, i) => v === stored.pixels.data[i])).toBe(true);

    const files = new Map([['marked.jpg', marked], [isicImage, bytesOf(isicImage)], [isicMask, bytesOf(isicMask)]]);
    const pair: Sample = { id: 'ISIC_0000013', set: 'isic2018', layout: 'isic2018', split: 'train', image: 'marked.jpg', mask: isicMask };
    const loaded = await loadSample(pair, new MemorySource(files), decoder, size);
    expect(loaded.warnings).toEqual([
      { file: 'marked.jpg', message: 'marked.jpg: EXIF orientation 6 (rotate 90° CW) ignored; pixels are used as stored, like the ISIC masks' },
    ]);
    const reference = await loadSample({ ...pair, image: isicImage }, new MemorySource(files), decoder, size);
    expect(reference.warnings).toEqual([]);
    expect(loaded.image.data).toEqual(reference.image.data);
    expect(loaded.mask!.data).toEqual(reference.mask!.data);
  });
});
