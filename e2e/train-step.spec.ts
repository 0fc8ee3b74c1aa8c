/**
 * A seeded training step gives the same loss in the studio as in the CLI: the
 * code of e2e/train-step-entry.ts on real ISIC and PH2 pairs, in Node with the
 * Node host's decoder and in a worker of Chromium with the studio's, both on
 * tfjs's cpu backend.
 */
import { expect, test } from '@playwright/test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'vite';
import type { Sample } from '../src/core/dataset/layouts.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { datasets, repoRoot } from './helpers.ts';
import { seededStepLosses } from './train-step-entry.ts';

const samples: Sample[] = [
  ['ISIC_0000013', 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg', 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png'],
  ['IMD004', 'ph2/PH2 Dataset images/IMD004/IMD004_Dermoscopic_Image/IMD004.bmp', 'ph2/PH2 Dataset images/IMD004/IMD004_lesion/IMD004_lesion.bmp'],
].map(([id, image, mask]) => ({ id, image, mask, set: 'shared', layout: 'isic2018', split: 'train' }));

/** Relative: the hosts decode these files to the same bytes, so only float32 evaluation order could differ, and both run the same JavaScript kernels. */
const LOSS_TOLERANCE = 1e-5;

test('one seeded training step on real pairs gives the same loss before and after it in the studio as in Node', async ({ page }) => {
  // The cpu backend in both hosts: minutes on a busy machine, not a figure this test judges.
  test.setTimeout(900_000);
  const output = await build({
    configFile: false,
    logLevel: 'silent',
    build: { write: false, minify: false, lib: { entry: path.join(repoRoot, 'e2e/train-step-entry.ts'), formats: ['iife'], name: 'studioStep' } },
  });
  const bundle = (Array.isArray(output) ? output[0] : (output as Exclude<typeof output, { close(): unknown }>)).output[0].code;
  const files: Record<string, string> = {};
  for (const s of samples) for (const file of [s.image, s.mask!]) files[file] = readFileSync(path.join(datasets, file)).toString('base64');

  const studio = await page.evaluate(
    async ({ source, files, samples }) => {
      const worker = new Worker(
        URL.createObjectURL(
          new Blob(
            [
              `${source}
self.onmessage = async ({ data }) => {
  try {
    self.postMessage(await studioStep.seededStepLosses(new studioStep.BitmapDecoder(), data.files, data.samples));
  } catch (error) {
    self.postMessage(error.message);
  }
};`,
            ],
            { type: 'text/javascript' },
          ),
        ),
      );
      const bytes = Object.fromEntries(Object.entries(files).map(([name, base64]) => [name, Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))]));
      const reply = await new Promise<number[] | string>((resolve) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.postMessage({ files: bytes, samples });
      });
      worker.terminate();
      return reply;
    },
    { source: bundle, files, samples },
  );
  if (typeof studio === 'string') throw new Error(`the studio's step failed: ${studio}`);
  const node = await seededStepLosses(new SharpDecoder(), Object.fromEntries(Object.entries(files).map(([name, base64]) => [name, new Uint8Array(Buffer.from(base64, 'base64'))])), samples);
  console.log(`Dice loss before / after one step: studio ${studio.join(' / ')}, Node ${node.join(' / ')}`);
  expect(node[1]).not.toBe(node[0]);
  for (let i = 0; i < 2; i++) expect(Math.abs(studio[i] - node[i]) / Math.abs(node[i])).toBeLessThanOrEqual(LOSS_TOLERANCE);
});
