/**
 * What a researcher waits for: from choosing the shared PH2 folder to the
 * first point on the loss chart, with the quick preset as it comes (backend
 * auto, which here, where headless Chromium's only WebGPU adapter is
 * SwiftShader, must pick wasm and say why).
 * The time is printed for the record, not asserted (speed belongs to
 * benchmarks); the test asserts that the point arrives from real data.
 */
import { expect, test } from '@playwright/test';
import path from 'node:path';
import { presetCard } from '../src/core/config.ts';
import { datasets } from './helpers.ts';

test('PH2 folder to the first loss point with the quick preset', async ({ page }) => {
  test.setTimeout(240_000);
  await page.goto('/');
  const card = { ...presetCard('quick'), name: 'e2e-first-point' };
  expect(card.backend).toBe('auto');
  const started = Date.now();
  await page.getByTestId('folder-input').setInputFiles(path.join(datasets, 'ph2'));
  await expect(page.getByTestId('summary-totals')).toContainText('32 labeled pairs');
  const indexed = Date.now();
  await page.getByTestId('tab-configure').click();
  await page.getByTestId('card-json').fill(JSON.stringify(card));
  await page.getByTestId('card-import').click();
  await expect(page.getByTestId('import-error')).toHaveCount(0);
  await page.getByTestId('start-run').click();
  const status = page.getByTestId('run-status');
  await expect(page.getByTestId('run-backend')).toContainText('WebAssembly on the CPU');
  await expect(status).toContainText('chosen automatically; the only WebGPU adapter is a software one (SwiftShader), slower than WebAssembly here');
  await expect(status).not.toContainText('graphics card');
  await expect(page.getByTestId('chart-loss')).not.toHaveAttribute('data-points', '0', { timeout: 200_000 });
  const first = Date.now();
  console.log(`PH2 folder -> summary ${((indexed - started) / 1000).toFixed(1)} s; -> first loss point ${((first - started) / 1000).toFixed(1)} s (quick preset, wasm)`);
});
