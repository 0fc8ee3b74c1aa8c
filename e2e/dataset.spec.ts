/**
 * Opening data: the real PH2 folder through the folder input (the fallback
 * every browser has), and the built-in synthetic demo.
 */
import { expect, test } from '@playwright/test';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { presetCard } from '../src/core/config.ts';
import { collectErrors, datasets, offOrigin, recordRequests, repoRoot, snap } from './helpers.ts';

test('a PH2 folder opened through the folder input is recognised with all 32 pairs', async ({ page, baseURL }) => {
  const errors = collectErrors(page);
  const requests = recordRequests(page);
  await page.goto('/');
  await page.getByTestId('folder-input').setInputFiles(path.join(datasets, 'ph2'));

  const summary = page.getByTestId('summary');
  await expect(summary).toBeVisible();
  await expect(page.getByTestId('summary-totals')).toContainText('32 labeled pairs');
  const row = page.getByTestId('set-row');
  await expect(row).toHaveCount(1);
  await expect(row.getByTestId('set-layout')).toHaveText('PH2');
  await expect(row.getByTestId('set-labeled')).toHaveText('32');
  await expect(page.getByTestId('no-strays')).toBeVisible();
  // Thumbnails decode in the worker, with the mask overlay on top.
  await expect(page.getByTestId('thumbnails').locator('li')).toHaveCount(32);
  await expect(page.getByTestId('split-preview')).toContainText('train');
  await snap(page, 'dataset-ph2');

  expect(offOrigin(requests, baseURL!)).toEqual([]);
  expect(errors).toEqual([]);
});

test('the synthetic demo loads, labeled as synthetic', async ({ page }) => {
  const errors = collectErrors(page);
  await page.goto('/');
  await page.getByTestId('open-demo').click();
  await expect(page.getByTestId('synthetic-badge')).toHaveText('synthetic demo data');
  await expect(page.getByTestId('summary-totals')).toContainText('24 labeled pairs');
  await expect(page.getByTestId('summary-totals')).toContainText('24 unlabeled images');
  await expect(page.getByTestId('thumbnails').locator('li')).toHaveCount(36);
  await snap(page, 'dataset-demo');

  await page.getByTestId('tab-configure').click();
  await expect(page.getByTestId('capabilities')).toContainText('WebGPU');
  // Headless Chromium's only WebGPU adapter is SwiftShader.
  await expect(page.getByTestId('cap-webgpu-software')).toHaveText('(a software adapter, SwiftShader: slower than WebAssembly, so auto trains on WebAssembly)');
  // An imported card that breaks a rule is refused, naming the field.
  await page.getByTestId('card-json').fill(JSON.stringify({ ...presetCard('quick'), model: { ...presetCard('quick').model, inputSize: 100 } }));
  await page.getByTestId('card-import').click();
  await expect(page.getByTestId('import-error')).toContainText('model.inputSize');
  // 24 pairs less 10 for validation and 7 for test leave 7 training images: Start says so before any run starts.
  const quick = presetCard('quick');
  const small = { ...quick, train: { ...quick.train, batchSize: 8 }, data: { ...quick.data, split: { kind: 'fractions', val: 0.4, test: 0.3 } } };
  await page.getByTestId('card-json').fill(JSON.stringify(small));
  await page.getByTestId('card-import').click();
  await expect(page.getByTestId('start-blocked')).toHaveText('7 training images are fewer than one batch of 8: lower the batch size, or hold out fewer images (Dataset view, Split).');
  await expect(page.getByTestId('start-run')).toBeDisabled();
  await page.getByRole('button', { name: 'Use batch size 7' }).click();
  await expect(page.getByTestId('start-blocked')).toHaveCount(0);
  await expect(page.getByTestId('start-run')).toBeEnabled();
  await page.getByTestId('augment').click();
  await expect(page.getByTestId('augmentation').locator('figure')).toHaveCount(7);
  await snap(page, 'configure');
  expect(errors).toEqual([]);
});

test('the page loads no TensorFlow.js, and its CSP blocks connections to other origins', async ({ page }) => {
  // tfjs registers these flags; only the worker's bundle may hold them.
  const html = await readFile(path.join(repoRoot, 'dist/index.html'), 'utf8');
  const entry = /<script type="module"[^>]*src="\/([^"]+)"/.exec(html)![1];
  const pageBundle = await readFile(path.join(repoRoot, 'dist', entry), 'utf8');
  expect(pageBundle).not.toContain('IS_BROWSER');
  expect(pageBundle).not.toContain('WEBGL_VERSION');

  await page.goto('/');
  const blocked = await page.evaluate(async () => {
    const violation = new Promise<string>((resolve) =>
      document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), { once: true }),
    );
    await fetch('https://example.com/').catch(() => undefined);
    return violation;
  });
  expect(blocked).toBe('connect-src');
});

test('files dropped on the page open through the drop handler', async ({ page }) => {
  const errors = collectErrors(page);
  await page.goto('/');
  await expect(page.getByTestId('synthetic-badge')).toBeVisible();
  // A drop built in the page carries Files but neither handles nor entries (a browser limit):
  // the handler falls back to the files themselves.
  await page.evaluate(async () => {
    const png = async (mask: boolean) => {
      const canvas = new OffscreenCanvas(24, 24);
      const ctx = canvas.getContext('2d')!;
      ctx.fillStyle = mask ? '#000' : '#d9a58c';
      ctx.fillRect(0, 0, 24, 24);
      ctx.fillStyle = mask ? '#fff' : '#4a2c20';
      ctx.fillRect(8, 8, 8, 8);
      return canvas.convertToBlob({ type: 'image/png' });
    };
    const transfer = new DataTransfer();
    transfer.items.add(new File([await png(false)], 'mole.png', { type: 'image/png' }));
    transfer.items.add(new File([await png(true)], 'mole_mask.png', { type: 'image/png' }));
    window.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, cancelable: true }));
    window.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, cancelable: true }));
  });
  await expect(page.getByTestId('summary-totals')).toContainText('1 labeled pairs');
  await expect(page.getByTestId('set-layout')).toHaveText('images beside their _mask files');
  expect(errors).toEqual([]);
});
