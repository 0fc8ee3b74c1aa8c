/**
 * The studio's decoder (src/worker/decode.ts, bundled and run in a worker of
 * the system's Chromium) against the Node host's on the same files: BMP
 * variants jimp used to garble decode to the same pixels in both, EXIF
 * orientation is ignored as in Node, and a PNG bomb is refused from its
 * header before Chromium allocates it.
 */
import { expect, test, type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Jimp } from 'jimp';
import { build } from 'vite';
import { JimpDecoder } from '../src/node/decode.ts';
import { encodeBmp, encodeRle, indexRows, quantise121, quantise332 } from '../test/helpers/bmp.ts';
import { encodePngBomb, withExifOrientation, withPngExifOrientation } from '../test/helpers/corpus.ts';
import { datasets, repoRoot } from './helpers.ts';

interface WorkerDecoded {
  width: number;
  height: number;
  sourceWidth: number;
  sourceHeight: number;
  orientation: number;
  data: Buffer;
}

const node = new JimpDecoder();
let bundle: string;

test.beforeAll(async () => {
  const output = await build({
    configFile: false,
    logLevel: 'silent',
    build: { write: false, minify: false, lib: { entry: path.join(repoRoot, 'src/worker/decode.ts'), formats: ['iife'], name: 'studioDecode' } },
  });
  bundle = (Array.isArray(output) ? output[0] : (output as Exclude<typeof output, { close(): unknown }>)).output[0].code;
});

/** BitmapDecoder.decode in a dedicated worker, as the trainer worker calls it; an error comes back as its message. */
async function decodeInWorker(page: Page, file: string, bytes: Uint8Array): Promise<WorkerDecoded | string> {
  const result = await page.evaluate(
    async ({ source, file, base64 }) => {
      const worker = new Worker(
        URL.createObjectURL(
          new Blob(
            [
              `${source}
self.onmessage = async ({ data }) => {
  try {
    const d = await new studioDecode.BitmapDecoder().decode(data);
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
        worker.postMessage({ path: file, bytes });
      });
      worker.terminate();
      if (typeof reply === 'string') return reply;
      const decoded = reply as { width: number; height: number; sourceWidth: number; sourceHeight: number; orientation: number; data: Uint8ClampedArray };
      let binary = '';
      for (let i = 0; i < decoded.data.length; i += 0x8000) binary += String.fromCharCode(...decoded.data.subarray(i, i + 0x8000));
      return { ...decoded, data: btoa(binary) };
    },
    { source: bundle, file, base64: Buffer.from(bytes).toString('base64') },
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
    const { pixels } = await node.decode({ path: file, bytes });
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
  const { pixels } = await node.decode({ path: 'mask.png', bytes: png });
  expect([mask.sourceWidth, mask.sourceHeight, mask.orientation]).toEqual([1022, 767, 8]);
  expect(Buffer.compare(mask.data, Buffer.from(pixels.data))).toBe(0);
});

test('a PNG declaring 30000x30000 in under 200 bytes is refused from its header, naming the file', async ({ page }) => {
  expect(await decodeInWorker(page, 'masks/bomb.png', encodePngBomb(30000))).toBe(
    'masks/bomb.png: PNG too large to decode (at most 100 megapixels; it declares 30000x30000)',
  );
});
