/**
 * What a researcher waits for: from choosing the shared PH2 folder to the
 * first point on the loss chart, with the quick preset as it comes (backend
 * auto). On a machine whose Chromium has a real GPU adapter, auto must train
 * on it and say so; where its only adapter is a software one (SwiftShader on
 * these CPU machines), it must pick wasm and say why.
 * The time is printed for the record, not asserted (speed belongs to
 * benchmarks); the test asserts that the point arrives from real data.
 */
import { expect, test } from '@playwright/test';
import path from 'node:path';
import { softwareAdapter, type AdapterInfoLike } from '../src/core/backends/adapter.ts';
import { presetCard } from '../src/core/config.ts';
import { datasets } from './helpers.ts';

test('PH2 folder to the first loss point with the quick preset', async ({ page }) => {
  test.setTimeout(240_000);
  await page.goto('/');
  const adapter = await page.evaluate(async (): Promise<AdapterInfoLike | null> => {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info: AdapterInfoLike } | null> } }).gpu;
    const found = await gpu?.requestAdapter();
    if (!found) return null;
    const { vendor, architecture, device, description, isFallbackAdapter } = found.info;
    return { vendor, architecture, device, description, isFallbackAdapter };
  });
  const hardware = adapter !== null && softwareAdapter(adapter) === undefined;
  console.log(`first-point: Chromium's WebGPU adapter is ${adapter ? JSON.stringify(adapter) : 'absent'}: expecting ${hardware ? 'WebGPU on the graphics card' : 'wasm'}`);
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
  if (hardware) {
    await expect(page.getByTestId('run-backend')).toContainText('WebGPU: your graphics card trains the model');
  } else {
    await expect(page.getByTestId('run-backend')).toContainText('WebAssembly on the CPU');
    if (adapter) await expect(status).toContainText(`chosen automatically; the only WebGPU adapter is a software one (${softwareAdapter(adapter)}), slower than WebAssembly here`);
    await expect(status).not.toContainText('graphics card');
  }
  await expect(page.getByTestId('chart-loss')).not.toHaveAttribute('data-points', '0', { timeout: 200_000 });
  const first = Date.now();
  console.log(`PH2 folder -> summary ${((indexed - started) / 1000).toFixed(1)} s; -> first loss point ${((first - started) / 1000).toFixed(1)} s (quick preset, ${hardware ? 'WebGPU' : 'wasm'})`);
});
