/**
 * Training end to end on the synthetic demo with tiny cards: all four
 * stages on the wasm backend with charts, results, pseudo-labels in
 * IndexedDB, a model export that plain tfjs loads (printing the main thread's
 * long tasks) and no off-origin request; a run that survives a reload; and a WebGPU run.
 */
import { expect, test, type Page } from '@playwright/test';
import * as tf from '@tensorflow/tfjs';
import { readFile } from 'node:fs/promises';
import { presetCard, type BackendChoice, type RunCard } from '../src/core/config.ts';
import path from 'node:path';
import { collectErrors, datasets, offOrigin, printLongTasks, readZip, recordRequests, runStoreKeys, snap } from './helpers.ts';

function tinyCard(backend: BackendChoice, overrides: { epochs?: number; rounds?: number; labeledFraction?: number } = {}): RunCard {
  const card = presetCard('quick');
  return {
    ...card,
    name: `e2e-${backend}`,
    backend,
    model: { ...card.model, width: 0.25, inputSize: 32, asppChannels: 16, init: 'random', outputStride: 16, atrousRates: [1, 2, 3] },
    train: { ...card.train, epochs: overrides.epochs ?? 1, batchSize: 2, readEverySteps: 1, checkpointEverySteps: 2 },
    data: { split: { kind: 'fractions', val: 0.2, test: 0.2 }, unlabeledPerLabeled: 0.5, labeledFraction: overrides.labeledFraction ?? 1 },
    pseudo: { ...card.pseudo, minLesionFraction: 0 },
    student: { ...card.student, rounds: overrides.rounds ?? 2 },
  };
}

/** Long main-thread tasks, recorded from the moment the page loads. */
async function watchLongTasks(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const w = window as unknown as { longTasks: number[][] };
    w.longTasks = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) w.longTasks.push([Math.round(entry.startTime), Math.round(entry.duration)]);
    }).observe({ type: 'longtask', buffered: true });
  });
}

async function openDemoAndStart(page: Page, card: RunCard): Promise<void> {
  await page.goto('/');
  await page.getByTestId('open-demo').click();
  await expect(page.getByTestId('summary-totals')).toContainText('24 labeled pairs');
  await page.getByTestId('tab-configure').click();
  await page.getByTestId('card-json').fill(JSON.stringify(card));
  await page.getByTestId('card-import').click();
  await expect(page.getByTestId('import-error')).toHaveCount(0);
  await expect(page.locator('#knob-name')).toHaveValue(card.name);
  await page.evaluate(() => ((window as unknown as { longTasks: number[][] }).longTasks = [[Math.round(performance.now()), 0]]));
  await page.getByTestId('start-run').click();
}

const status = (page: Page) => page.getByTestId('run-status');

test("every knob off the paper's value offers the paper's back in one click", async ({ page }) => {
  const card = presetCard('quick');
  const edited: RunCard = { ...card, train: { ...card.train, loss: 'dice', lrSchedule: 'poly', warmupEpochs: 1 }, eval: { ...card.eval, tta: 'flips' } };
  await page.goto('/');
  await page.getByTestId('open-demo').click();
  await page.getByTestId('tab-configure').click();
  await page.getByTestId('card-json').fill(JSON.stringify(edited));
  await page.getByTestId('card-import').click();
  await expect(page.locator('#knob-train-lrSchedule')).toHaveValue('poly');
  await page.getByTestId('knob-train-lrSchedule-paper').click();
  await expect(page.locator('#knob-train-lrSchedule')).toHaveValue('constant');
  await expect(page.getByTestId('knob-train-lrSchedule-paper')).toHaveCount(0);
  await page.getByTestId('knob-eval-tta-paper').click();
  await expect(page.locator('#knob-eval-tta')).toHaveValue('none');
  await page.getByTestId('knob-train-warmupEpochs-paper').click();
  await expect(page.locator('#knob-train-warmupEpochs')).toHaveValue('0');
  // The paper's own value shows no such button.
  await expect(page.getByTestId('knob-train-loss-paper')).toHaveCount(0);
});

test('a tiny run goes through all four stages on wasm, and its model exports to plain tfjs', { tag: '@timing' }, async ({ page, baseURL }) => {
  test.setTimeout(600_000);
  const errors = collectErrors(page);
  const requests = recordRequests(page);
  await watchLongTasks(page);
  await openDemoAndStart(page, tinyCard('wasm'));

  await expect(page.getByTestId('run-status')).toContainText('WebAssembly');
  await expect(status(page)).toHaveAttribute('data-status', 'running');
  await expect(page.getByTestId('chart-loss')).not.toHaveAttribute('data-points', '0', { timeout: 120_000 });
  await expect(status(page)).toHaveAttribute('data-status', 'completed', { timeout: 480_000 });
  // Read before any screenshot: a full-page capture relayouts the page in one long task of its own.
  const longTasks = await page.evaluate(() => (window as unknown as { longTasks: number[][] }).longTasks);
  // A figure, not a test: a task's length depends on the machine's load (CI's 2 cores saw 53-58 ms).
  printLongTasks('main-thread tasks during a tiny four-stage wasm run', longTasks.map(([, ms]) => ms).filter((ms) => ms > 0));
  for (const stage of ['teacher', 'pseudo-teacher', 'student', 'pseudo-student', 'student-star']) {
    await expect(page.getByTestId(`stage-${stage}`)).toHaveAttribute('data-status', 'completed');
  }
  await expect(page.getByTestId('chart-metrics')).toHaveAttribute('data-points', '3');
  expect(Number(await page.getByTestId('chart-loss').getAttribute('data-points'))).toBeGreaterThanOrEqual(3);
  await snap(page, 'train-completed');

  await page.getByTestId('tab-results').click();
  const table = page.getByTestId('results-table');
  await expect(table).toContainText('Student*');
  await expect(table.locator('tbody tr').first()).toContainText('%');
  await page.getByTestId('gallery-load').click();
  await expect(page.getByTestId('gallery-item').first()).toBeVisible();
  await page.getByTestId('pseudo-load').click();
  await expect(page.getByTestId('pseudo-item').first()).toBeVisible();
  await page.getByTestId('pseudo-item').first().getByLabel('reject').check();
  await expect(page.getByTestId('pseudo-item').first()).toHaveClass(/rejected/);
  await snap(page, 'results');

  // Pseudo-labels live in IndexedDB, under the run's prefix.
  const keys = await runStoreKeys(page);
  expect(keys.filter((k) => k.startsWith('pseudo/')).length).toBeGreaterThan(0);
  // The review's rejection is stored where the pipeline reads it for later students.
  expect(keys.some((k) => k.endsWith('/rejected'))).toBe(true);

  await page.getByTestId('tab-predict').click();
  await page.getByTestId('predict-input').setInputFiles(path.join(datasets, 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg'));
  await expect(page.getByTestId('prediction')).toContainText('ISIC_0000013_segmentation.png');
  await snap(page, 'predict');

  await page.getByTestId('tab-storage').click();
  await expect(page.getByTestId('storage-runs')).toContainText('e2e-wasm');
  await snap(page, 'storage');

  await page.getByTestId('tab-export').click();
  await page.getByLabel(/the downloads folder/).check();
  const save = async (button: string): Promise<Map<string, Buffer>> => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId(button).click()]);
    expect(download.suggestedFilename()).toMatch(/\.zip$/);
    return readZip(await readFile((await download.path())!));
  };
  const modelZip = await save('export-model');
  await expect(page.getByTestId('export-message')).toContainText('Saved 3 files');
  const metrics = await save('export-metrics');
  expect([...metrics.keys()].some((name) => name.endsWith('-metrics.csv'))).toBe(true);
  const pseudo = await save('export-pseudo');
  expect([...pseudo.keys()].some((name) => name.endsWith('/pseudo-labels.csv'))).toBe(true);
  expect([...pseudo.keys()].filter((name) => /\/masks\/synthetic_u\d+_segmentation\.png$/.test(name)).length).toBeGreaterThan(0);
  await snap(page, 'export');
  const files = new Map([...modelZip].map(([name, bytes]) => [name.slice(name.lastIndexOf('/') + 1), bytes]));
  const modelJson = JSON.parse(files.get('model.json')!.toString());
  const weights = files.get('weights.bin')!;
  const metadata = JSON.parse(files.get('metadata.json')!.toString());
  expect(metadata.inputSize).toBe(32);
  await tf.setBackend('cpu');
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: modelJson.modelTopology,
      weightSpecs: modelJson.weightsManifest[0].weights,
      weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
    }),
  );
  const out = model.predict(tf.zeros([1, 32, 32, 3])) as tf.Tensor;
  expect(out.shape).toEqual([1, 32, 32, 1]);
  expect(Number.isFinite((await out.data())[0])).toBe(true);

  // Deleting the run frees its storage.
  page.once('dialog', (dialog) => void dialog.accept());
  await page.getByTestId('tab-storage').click();
  await page.getByTestId('storage-runs').getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByTestId('storage-runs')).toHaveCount(0);
  expect(await runStoreKeys(page)).toEqual([]);

  expect(offOrigin(requests, baseURL!)).toEqual([]);
  expect(errors).toEqual([]);
});

test('a run interrupted by a reload resumes from its checkpoint and completes', async ({ page }) => {
  test.setTimeout(600_000);
  const errors = collectErrors(page);
  await openDemoAndStart(page, tinyCard('wasm', { epochs: 5, rounds: 0 }));
  await expect(page.getByTestId('last-checkpoint')).toContainText('Last checkpoint:', { timeout: 240_000 });
  await page.getByTestId('pause').click();
  await expect(status(page)).toHaveAttribute('data-status', 'paused');
  await page.getByTestId('resume').click();
  await expect(status(page)).toHaveAttribute('data-status', 'running');
  await page.reload();

  await expect(page.getByTestId('resume-interrupted')).toBeVisible();
  await snap(page, 'resume-banner');
  await page.getByTestId('resume-interrupted').click();
  await expect(status(page)).toHaveAttribute('data-status', 'completed', { timeout: 480_000 });
  await expect(page.getByTestId('run-log')).toContainText('resumed');
  // The chart history from before the reload came back with the resumed run.
  expect(Number(await page.getByTestId('chart-metrics').getAttribute('data-points'))).toBeGreaterThanOrEqual(3);
  expect(errors).toEqual([]);
});

test('a tiny teacher trains on WebGPU', async ({ page }) => {
  test.setTimeout(600_000);
  const errors = collectErrors(page);
  await openDemoAndStart(page, tinyCard('webgpu', { rounds: 0, labeledFraction: 0.3 }));
  // The card forces WebGPU: it gets SwiftShader, headless Chromium's only adapter, and no claim of a graphics card.
  await expect(page.getByTestId('run-backend')).toHaveText('WebGPU on a software adapter (SwiftShader): the CPU trains the model, slower than WebAssembly');
  await expect(page.getByTestId('run-status')).toContainText('(chosen in the run card)');
  await expect(page.getByTestId('step-progress')).toContainText('step 1 of', { timeout: 240_000 });
  await snap(page, 'train-running');
  await expect(status(page)).toHaveAttribute('data-status', 'completed', { timeout: 540_000 });
  await expect(page.getByTestId('stage-teacher')).toHaveAttribute('data-status', 'completed');
  await expect(page.getByTestId('chart-metrics')).toHaveAttribute('data-points', '1');
  await snap(page, 'train-webgpu');
  expect(errors).toEqual([]);
});
