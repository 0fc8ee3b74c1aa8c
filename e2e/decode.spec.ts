/**
 * The studio's decoding (src/worker/decode.ts under the core's decodeImage,
 * bundled and run in a worker of the system's Chromium) against the Node
 * host's on the same files: ISIC JPEGs, PH2 BMPs and PNG masks at full size
 * and resized give the same pixels in both, a JPEG stored as RGB too, and
 * mask PNGs are written to the same bytes; BMP variants jimp used to garble
 * decode to the same pixels in both, EXIF orientation is ignored as in Node,
 * and a PNG bomb is refused from its header before Chromium allocates it.
 */
import { expect, test, type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Jimp } from 'jimp';
import { build } from 'vite';
import { decodeImage } from '../src/core/image/decode.ts';
import { maskPng } from '../src/core/image/png.ts';
import type { Resize } from '../src/core/image/decode.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { encodeBmp, encodeRle, indexRows, quantise121, quantise332 } from '../test/helpers/bmp.ts';
import { encodeJpeg, encodePngBomb, withExifOrientation, withPngExifOrientation } from '../test/helpers/corpus.ts';
import { datasets, repoRoot } from './helpers.ts';

interface WorkerDecoded {
  width: number;
  height: number;
  sourceWidth: number;
  sourceHeight: number;
  orientation: number;
  data: Buffer;
}

const node = new SharpDecoder();
let bundle: string;

test.beforeAll(async () => {
  const output = await build({
    configFile: false,
    logLevel: 'silent',
    build: { write: false, minify: false, lib: { entry: path.join(repoRoot, 'e2e/decode-entry.ts'), formats: ['iife'], name: 'studioDecode' } },
  });
  bundle = (Array.isArray(output) ? output[0] : (output as Exclude<typeof output, { close(): unknown }>)).output[0].code;
});

/** decodeImage with a BitmapDecoder in a dedicated worker, as the trainer worker calls it; an error comes back as its message. */
async function decodeInWorker(page: Page, file: string, bytes: Uint8Array, resize?: Resize): Promise<WorkerDecoded | string> {
  const result = await page.evaluate(
    async ({ source, file, base64, resize }) => {
      const worker = new Worker(
        URL.createObjectURL(
          new Blob(
            [
              `${source}
self.onmessage = async ({ data }) => {
  try {
    const d = await studioDecode.decodeImage(new studioDecode.BitmapDecoder(), data.path, data.bytes, data.resize);
    self.postMessage({ width: d.pixels.width, height: d.pixels.height, sourceWidth: d.sourceWidth, sourceHeight: d.sourceHeight, orientation: d.orientation, data: d.pixels.data });
  } catch (error) {
    self.postMessage(error.message);
  }
};`,
            ],
            { type: 'text/javascript' },
          ),
        ),
      );
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const reply = await new Promise<unknown>((resolve) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.postMessage({ path: file, bytes, resize });
      });
      worker.terminate();
      if (typeof reply === 'string') return reply;
      const decoded = reply as { width: number; height: number; sourceWidth: number; sourceHeight: number; orientation: number; data: Uint8ClampedArray };
      let binary = '';
      for (let i = 0; i < decoded.data.length; i += 0x8000) binary += String.fromCharCode(...decoded.data.subarray(i, i + 0x8000));
      return { ...decoded, data: btoa(binary) };
    },
    { source: bundle, file, base64: Buffer.from(bytes).toString('base64'), resize },
  );
  return typeof result === 'string' ? result : { ...result, data: Buffer.from(result.data, 'base64') };
}

function decoded(result: WorkerDecoded | string): WorkerDecoded {
  if (typeof result === 'string') throw new Error(`the studio's decoder refused the file: ${result}`);
  return result;
}

const ph2Image = path.join(datasets, 'ph2/PH2 Dataset images/IMD004/IMD004_Dermoscopic_Image/IMD004.bmp');
const isicImage = path.join(datasets, 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg');
const isicMask = path.join(datasets, 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png');

test('RLE8, RLE4 and OS/2 BMPs written from a PH2 photograph decode to the same pixels in the studio as in Node', async ({ page }) => {
  const { bitmap } = await Jimp.fromBuffer(readFileSync(ph2Image));
  const { width, height } = bitmap;
  const rgb = { width, height, data: new Uint8Array(width * height * 3) };
  for (let i = 0; i < width * height; i++) rgb.data.set(bitmap.data.subarray(i * 4, i * 4 + 3), i * 3);
  const q8 = quantise332(rgb);
  const q4 = quantise121(rgb);
  const skipped = (x: number, y: number) => (x >= 100 && x < 460 && y >= 200 && y < 210) || (x >= width - 68 && y < 40);
  const files: [string, Uint8Array][] = [
    ['rle8.bmp', encodeBmp({ width, height, bits: 8, compression: 1, palette: q8.palette, data: encodeRle(q8.indices, width, height, false, skipped) })],
    ['rle4.bmp', encodeBmp({ width, height, bits: 4, compression: 2, palette: q4.palette, data: encodeRle(q4.indices, width, height, true, skipped) })],
    ['os2.bmp', encodeBmp({ width, height, headerSize: 12, bits: 8, palette: q8.palette, data: indexRows(q8.indices, width, height, 8) })],
  ];
  for (const [file, bytes] of files) {
    const studio = decoded(await decodeInWorker(page, file, bytes));
    const { pixels } = await decodeImage(node, file, bytes);
    expect([studio.width, studio.height], file).toEqual([width, height]);
    expect(Buffer.compare(studio.data, Buffer.from(pixels.data)), file).toBe(0);
  }
});

test('EXIF orientation is ignored in the studio as in Node: a JPEG and a PNG marked as turned keep their stored pixels', async ({ page }) => {
  const jpeg = new Uint8Array(readFileSync(isicImage));
  const plain = decoded(await decodeInWorker(page, 'plain.jpg', jpeg));
  const turned = decoded(await decodeInWorker(page, 'turned.jpg', withExifOrientation(jpeg, 6)));
  expect([plain.sourceWidth, plain.sourceHeight, plain.orientation]).toEqual([1022, 767, 1]);
  expect([turned.sourceWidth, turned.sourceHeight, turned.orientation]).toEqual([1022, 767, 6]);
  expect(Buffer.compare(turned.data, plain.data)).toBe(0);

  const png = new Uint8Array(readFileSync(isicMask));
  const mask = decoded(await decodeInWorker(page, 'turned.png', withPngExifOrientation(png, 8)));
  const { pixels } = await decodeImage(node, 'mask.png', png);
  expect([mask.sourceWidth, mask.sourceHeight, mask.orientation]).toEqual([1022, 767, 8]);
  expect(Buffer.compare(mask.data, Buffer.from(pixels.data))).toBe(0);
});

/** Mean and largest absolute difference over the R, G, B samples of two RGBA buffers of one size. */
function difference(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    if ((i & 3) === 3) continue;
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / ((a.length / 4) * 3), max };
}

const TRAINING_SIZE: Resize = { width: 256, height: 256, filter: 'bilinear' };
const MASK_SIZE: Resize = { width: 256, height: 256, filter: 'nearest' };
const photographs = [
  'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg',
  'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000160.jpg',
  'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000377.jpg',
  'isic2017/ISIC-2017_Validation_Data/ISIC_0001852.jpg',
  'isic2017/ISIC-2017_Validation_Data/ISIC_0012099.jpg',
  'ph2/PH2 Dataset images/IMD004/IMD004_Dermoscopic_Image/IMD004.bmp',
  'ph2/PH2 Dataset images/IMD008/IMD008_Dermoscopic_Image/IMD008.bmp',
];
const masks = [
  'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png',
  'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000377_segmentation.png',
  'isic2017/ISIC-2017_Validation_Part1_GroundTruth/ISIC_0001852_segmentation.png',
  'ph2/PH2 Dataset images/IMD004/IMD004_lesion/IMD004_lesion.bmp',
];

/**
 * The tolerance for photographs: sharp and Chromium both decode JPEG with
 * libjpeg-turbo's accurate integer IDCT and fancy upsampling, and on every
 * ISIC JPEG of the shared data sets gave the same bytes when this was
 * written (against jpeg-js: mean 0.57, max 61). One grey level anywhere, and
 * a mean far under that, leaves room for a libjpeg-turbo update on one side.
 */
const PHOTO_TOLERANCE = { mean: 0.02, max: 1 };

test('ISIC JPEGs and PH2 BMPs give the same pixels in the studio as in Node, at full size and at the training size', async ({ page }) => {
  for (const file of photographs) {
    const bytes = new Uint8Array(readFileSync(path.join(datasets, file)));
    for (const resize of [undefined, TRAINING_SIZE]) {
      const studio = decoded(await decodeInWorker(page, file, bytes, resize));
      const { pixels, sourceWidth, sourceHeight } = await decodeImage(node, file, bytes, resize);
      expect([studio.width, studio.height, studio.sourceWidth, studio.sourceHeight], file).toEqual([pixels.width, pixels.height, sourceWidth, sourceHeight]);
      const { mean, max } = difference(studio.data, new Uint8Array(pixels.data.buffer, pixels.data.byteOffset, pixels.data.length));
      console.log(`${path.basename(file)} ${resize ? `at ${resize.width}x${resize.height}` : `at ${sourceWidth}x${sourceHeight}`}: mean ${mean.toFixed(4)}, max ${max}`);
      expect(mean, file).toBeLessThanOrEqual(PHOTO_TOLERANCE.mean);
      expect(max, file).toBeLessThanOrEqual(PHOTO_TOLERANCE.max);
    }
  }
});

test('ISIC PNG and PH2 BMP masks give exactly the same pixels in the studio as in Node, at full size and resized', async ({ page }) => {
  for (const file of masks) {
    const bytes = new Uint8Array(readFileSync(path.join(datasets, file)));
    for (const resize of [undefined, MASK_SIZE]) {
      const studio = decoded(await decodeInWorker(page, file, bytes, resize));
      const { pixels } = await decodeImage(node, file, bytes, resize);
      expect([studio.width, studio.height], file).toEqual([pixels.width, pixels.height]);
      expect(Buffer.compare(studio.data, Buffer.from(pixels.data)), file).toBe(0);
    }
  }
});

test('a JPEG stored as RGB (Adobe marker, transform 0) gives the same pixels in the studio as in Node', async ({ page }) => {
  const { pixels: photo } = await decodeImage(node, 'photo.jpg', new Uint8Array(readFileSync(isicImage)), { width: 192, height: 144, filter: 'bilinear' });
  const planes = [0, 1, 2].map((c) => Uint8Array.from({ length: 192 * 144 }, (_, i) => photo.data[i * 4 + c]));
  const rgb = encodeJpeg(planes, 192, 144, { adobe: true });
  const studio = decoded(await decodeInWorker(page, 'rgb.jpg', rgb));
  const { pixels } = await decodeImage(node, 'rgb.jpg', rgb);
  expect(Buffer.compare(studio.data, Buffer.from(pixels.data))).toBe(0);
  // Read as YCbCr the channels would be tens of levels off the planes they hold.
  expect(difference(studio.data, new Uint8Array(photo.data)).mean).toBeLessThan(2);
});

test('a mask PNG is written to the same bytes in the studio as in Node', async ({ page }) => {
  const { pixels } = await decodeImage(node, 'mask.png', new Uint8Array(readFileSync(isicMask)));
  const mask = { width: pixels.width, height: pixels.height, data: Uint8Array.from({ length: pixels.width * pixels.height }, (_, i) => (pixels.data[i * 4] > 127 ? 1 : 0)) };
  const base64 = await page.evaluate(
    async ({ source, width, height, bits }) => {
      const worker = new Worker(URL.createObjectURL(new Blob([`${source}\nself.onmessage = ({ data }) => self.postMessage(studioDecode.maskPng(data));`], { type: 'text/javascript' })));
      const png = await new Promise<Uint8Array>((resolve) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.postMessage({ width, height, data: Uint8Array.from(atob(bits), (c) => c.charCodeAt(0)) });
      });
      worker.terminate();
      let binary = '';
      for (let i = 0; i < png.length; i += 0x8000) binary += String.fromCharCode(...png.subarray(i, i + 0x8000));
      return btoa(binary);
    },
    { source: bundle, width: mask.width, height: mask.height, bits: Buffer.from(mask.data).toString('base64') },
  );
  expect(Buffer.from(base64, 'base64').equals(Buffer.from(maskPng(mask)))).toBe(true);
});

test('a PNG declaring 30000x30000 in under 200 bytes is refused from its header, naming the file', async ({ page }) => {
  expect(await decodeInWorker(page, 'masks/bomb.png', encodePngBomb(30000))).toBe(
    'masks/bomb.png: PNG too large to decode (at most 100 megapixels; it declares 30000x30000)',
  );
});
