/**
 * Where the real test images live. The tests, e2e specs and benchmarks read
 * ISIC 2018, ISIC 2017 and PH2 in their official layouts from one folder,
 * which is never committed (the images' licences and size): by default
 * `../shared/datasets` beside the checkout, or LESION_STUDIO_DATASETS.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '../..');

export const datasetsRoot = path.resolve(repoRoot, process.env.LESION_STUDIO_DATASETS ?? '../shared/datasets');

const EXPECTED = ['isic2018', 'isic2017', 'ph2', 'MANIFEST.csv'];

/** Throws one message that says what is missing and how to point the tests at the images. */
export function requireDatasets(): void {
  const missing = EXPECTED.filter((name) => !existsSync(path.join(datasetsRoot, name)));
  if (missing.length === 0) return;
  throw new Error(
    `The test images are missing: ${datasetsRoot} lacks ${missing.join(', ')}. ` +
      'The tests train and score on real ISIC 2018, ISIC 2017 and PH2 images in their official layouts ' +
      '(see the README, "Test data"). Put them at ../shared/datasets beside this checkout, ' +
      'or set LESION_STUDIO_DATASETS to the folder that holds isic2018/, isic2017/, ph2/ and MANIFEST.csv.',
  );
}
