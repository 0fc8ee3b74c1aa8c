/**
 * Decode throughput of the Node host (SharpDecoder, then the core's resize): full-size ISIC JPEGs and
 * PH2 BMPs, decoded and resized to the training size as the sample loader
 * asks. Files are read first, so the figures exclude the disk.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { recogniseDatasets } from '../src/core/dataset/layouts.ts';
import { decodeImage } from '../src/core/image/decode.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { DATASETS } from './tasks.ts';

export interface DecodeGroup {
  name: string;
  files: string[];
}

export interface DecodeResult {
  name: string;
  files: number;
  decodes: number;
  /** Mean size of the originals, in megapixels. */
  megapixels: number;
  msPerImage: number;
  imagesPerSecond: number;
}

/** The three full-size ISIC photographs of the test data, and the first `ph2Count` PH2 images. */
export async function decodeGroups(ph2Count: number): Promise<DecodeGroup[]> {
  const ph2 = recogniseDatasets(await new FsFileSource([DATASETS.ph2]).list()).sets.flatMap((s) => s.labeled);
  return [
    {
      name: 'ISIC JPEG 3072x2304',
      files: ['ISIC_0000377', 'ISIC_0001100'].map((id) => path.join(DATASETS.isic2018, 'ISIC2018_Task1-2_Training_Input', `${id}.jpg`)),
    },
    { name: 'ISIC JPEG 4288x2848', files: [path.join(DATASETS.isic2017, 'ISIC-2017_Validation_Data', 'ISIC_0014162.jpg')] },
    // Sample paths start with the root folder's name ('ph2/...').
    { name: 'PH2 BMP ~767x576', files: ph2.slice(0, ph2Count).map((s) => path.join(path.dirname(DATASETS.ph2), s.image)) },
  ];
}

export async function timeDecoding(group: DecodeGroup, size: number, repeats: number): Promise<DecodeResult> {
  const decoder = new SharpDecoder();
  const files = await Promise.all(group.files.map(async (file) => ({ path: file, bytes: new Uint8Array(await readFile(file)) })));
  let pixels = 0;
  let elapsed = 0;
  for (let r = 0; r < repeats; r++) {
    for (const file of files) {
      const started = performance.now();
      const decoded = await decodeImage(decoder, file.path, file.bytes, { width: size, height: size, filter: 'bilinear' });
      elapsed += performance.now() - started;
      if (r === 0) pixels += decoded.sourceWidth * decoded.sourceHeight;
    }
  }
  const decodes = files.length * repeats;
  return {
    name: group.name,
    files: files.length,
    decodes,
    megapixels: pixels / files.length / 1e6,
    msPerImage: elapsed / decodes,
    imagesPerSecond: (1000 * decodes) / elapsed,
  };
}
