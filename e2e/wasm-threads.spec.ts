/**
 * The wasm backend's threads: in the cross-origin isolated studio it trains
 * with one thread per logical core; served without isolation it falls back
 * to one thread and says why. Both train a small teacher to a finite loss,
 * and the time per step of each is printed (not asserted: the machine is
 * shared).
 */
import { expect, test, type Page } from '@playwright/test';
import { presetCard, type RunCard } from '../src/core/config.ts';
import { collectErrors, runCard, stepEvents } from './helpers.ts';

/** A teacher only, just enough to see that it trains. */
function tinyWasmCard(name: string): RunCard {
  const card = smallWasmCard(name);
  return { ...card, model: { ...card.model, width: 0.25, inputSize: 32, asppChannels: 16 }, train: { ...card.train, epochs: 1, batchSize: 2 } };
}

/** A teacher only, small enough for seconds per step on two slow cores, big enough for threads to matter. */
function smallWasmCard(name: string): RunCard {
  const card = presetCard('quick');
  return {
    ...card,
    name,
    backend: 'wasm',
    model: { ...card.model, width: 0.5, inputSize: 96, asppChannels: 32, init: 'random', outputStride: 16, atrousRates: [1, 2, 3] },
    train: { ...card.train, epochs: 2, batchSize: 4, readEverySteps: 1, checkpointEverySteps: 100 },
    data: { split: { kind: 'fractions', val: 0.2, test: 0.2 }, unlabeledPerLabeled: 0.5, labeledFraction: 1 },
    student: { ...card.student, rounds: 0 },
  };
}

async function trainOnDemo(page: Page, card: RunCard): Promise<void> {
  await page.getByTestId('open-demo').click();
  await expect(page.getByTestId('summary-totals')).toContainText('24 labeled pairs');
  await runCard(page, card);
}

/** Median milliseconds per step, leaving out the first (kernel set-up and warm-up). */
function msPerStep(steps: { imagesPerSecond: number }[], batchSize: number): number {
  const ms = steps.slice(1).map((s) => (1000 * batchSize) / s.imagesPerSecond).sort((a, b) => a - b);
  return ms[Math.floor(ms.length / 2)];
}

const measured: { threads?: number; threaded?: number; single?: number } = {};

test('in the cross-origin isolated studio, wasm trains with one thread per logical core', async ({ page }) => {
  test.setTimeout(360_000);
  const errors = collectErrors(page);
  const card = smallWasmCard('e2e-wasm-threads');
  await page.goto('/');
  expect(await page.evaluate(() => self.crossOriginIsolated)).toBe(true);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  test.skip(cores < 2, 'one logical core: nothing to thread');

  await trainOnDemo(page, card);
  const title = (await page.getByTestId('run-backend').textContent()) ?? '';
  const threads = Number(/SIMD, (\d+) threads\)/.exec(title)?.[1]);
  // tfjs starts at most 8 helper threads.
  expect(threads, title).toBe(Math.min(cores, 8));
  await expect(page.getByTestId('run-status')).not.toContainText('one thread because');

  const steps = await stepEvents(page);
  expect(steps.length).toBeGreaterThan(1);
  for (const step of steps) expect(Number.isFinite(step.loss)).toBe(true);
  measured.threads = threads;
  measured.threaded = msPerStep(steps, card.train.batchSize);
  console.log(`wasm, ${threads} threads: ${measured.threaded.toFixed(0)} ms per step (${steps.length} steps)`);
  expect(errors).toEqual([]);
});

test('served without cross-origin isolation, wasm trains with one thread and says why', async ({ page }) => {
  test.setTimeout(360_000);
  const errors = collectErrors(page);
  const card = smallWasmCard('e2e-wasm-one-thread');
  // The same build, its page served without the two isolation headers.
  await page.route('/', async (route) => {
    const response = await route.fetch();
    const headers = { ...response.headers() };
    delete headers['cross-origin-opener-policy'];
    delete headers['cross-origin-embedder-policy'];
    await route.fulfill({ response, headers });
  });
  await page.goto('/');
  expect(await page.evaluate(() => self.crossOriginIsolated)).toBe(false);

  await trainOnDemo(page, card);
  await expect(page.getByTestId('run-backend')).toContainText('SIMD, one thread');
  await expect(page.getByTestId('run-status')).toContainText('one thread because the page is not cross-origin isolated');

  const steps = await stepEvents(page);
  expect(steps.length).toBeGreaterThan(1);
  for (const step of steps) expect(Number.isFinite(step.loss)).toBe(true);
  measured.single = msPerStep(steps, card.train.batchSize);
  console.log(`wasm, one thread: ${measured.single.toFixed(0)} ms per step (${steps.length} steps)`);
  if (measured.threaded !== undefined) {
    console.log(`speed-up with ${measured.threads} threads: ${(measured.single / measured.threaded).toFixed(2)}x`);
  }
  expect(errors).toEqual([]);
});

test('when the threaded build cannot load its script, wasm trains with one thread and says why', async ({ page }) => {
  test.setTimeout(180_000);
  const errors = collectErrors(page);
  // The helper threads import the factory's raw script; without it they fail to start.
  await page.route(/\/assets\/tfjs-backend-wasm-threaded-simd-[^/]*\.js$/, (route) => route.abort());
  await page.goto('/');
  expect(await page.evaluate(() => self.crossOriginIsolated)).toBe(true);

  await trainOnDemo(page, tinyWasmCard('e2e-wasm-threads-failed'));
  await expect(page.getByTestId('run-backend')).toContainText('SIMD, one thread');
  await expect(page.getByTestId('run-status')).toContainText("one thread because its threaded build failed (a helper thread failed: Uncaught NetworkError: Failed to execute 'importScripts'");
  // The trainer was not restarted by the failed threads' errors: the run went on in the same worker.
  await expect(page.getByTestId('run-log')).not.toContainText('The trainer stopped');
  const steps = await stepEvents(page);
  expect(steps.length).toBeGreaterThan(0);
  for (const step of steps) expect(Number.isFinite(step.loss)).toBe(true);
  // The only errors are the helper threads' own, each failing to load the blocked script.
  for (const error of errors) expect(error).toContain("Failed to execute 'importScripts'");
});
