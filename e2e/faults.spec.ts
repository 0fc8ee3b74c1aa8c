/**
 * Faults and limits, on the built studio with tiny cards: hostile file
 * names, a split preview that must match the run, a diverging loss, a full
 * disk, a crashed or killed worker, two tabs on one run, and a GPU that
 * runs out of memory or is lost. Faults are injected through the test hooks
 * the studio offers in fault-test mode only (`?faults`, README: Reliability).
 */
import { expect, test, type Page } from '@playwright/test';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RunCard } from '../src/core/config.ts';
import type { InjectedFault } from '../src/worker/api.ts';
import { tinyCard } from './cards.ts';
import { collectErrors, snap } from './helpers.ts';

/** `query` adds to fault-test mode, e.g. a shorter heartbeat. */
async function openDemo(page: Page, query = ''): Promise<void> {
  await page.goto(`/?faults${query}`);
  await page.getByTestId('open-demo').click();
  await expect(page.getByTestId('summary-totals')).toContainText('24 labeled pairs');
}

async function importCard(page: Page, card: RunCard): Promise<void> {
  await page.getByTestId('tab-configure').click();
  await page.getByTestId('card-json').fill(JSON.stringify(card));
  await page.getByTestId('card-import').click();
  await expect(page.locator('#knob-name')).toHaveValue(card.name);
}

async function start(page: Page, card: RunCard): Promise<void> {
  await importCard(page, card);
  await page.getByTestId('start-run').click();
  await expect(status(page)).toHaveAttribute('data-status', 'running');
}

const status = (page: Page) => page.getByTestId('run-status');
const log = (page: Page) => page.getByTestId('run-log');

function inject(page: Page, fault: InjectedFault): Promise<void> {
  return page.evaluate(
    (f) => (window as unknown as { lesionStudioFaults: { trainer(): { injectFault(f: unknown): Promise<void> } } }).lesionStudioFaults.trainer().injectFault(f),
    fault,
  );
}

/** The step of the last checkpoint the Train view shows, once there is one. */
async function checkpointStep(page: Page): Promise<number> {
  await expect(page.getByTestId('last-checkpoint')).toContainText('Last checkpoint:', { timeout: 60_000 });
  return shownCheckpoint(page);
}

async function shownCheckpoint(page: Page): Promise<number> {
  return Number(/step (\d+)/.exec((await page.getByTestId('last-checkpoint').textContent()) ?? '')?.[1] ?? 0);
}

/** The step the `nth` resume of a run continued from, as the core logs it (a resumed run's log holds the earlier resumes too). */
async function resumedStep(page: Page, nth = 1): Promise<number> {
  const resumes = async () => [...(await log(page).innerText()).matchAll(/teacher: resumed at epoch \d+, step (\d+) of/g)];
  await expect.poll(async () => (await resumes()).length).toBeGreaterThanOrEqual(nth);
  return Number((await resumes())[nth - 1][1]);
}

const text = (s: string): string => s.replace(/\s+/g, ' ');

test('file names are shown as text, never run as HTML', async ({ page }) => {
  const errors = collectErrors(page);
  const dialogs: string[] = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  const root = path.join(os.tmpdir(), 'lesion-studio-e2e-names');
  const folder = path.join(root, 'hostile');
  await rm(root, { recursive: true, force: true });
  await mkdir(folder, { recursive: true });
  const pixel = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==', 'base64');
  const image = '<img src=x onerror=alert(1)>.jpg';
  const mask = '<svg onload=alert(2)>_mask.png';
  for (const name of ['a.png', 'a_mask.png', 'b.png', 'b_mask.png', image, mask]) await writeFile(path.join(folder, name), pixel);
  try {
    await page.goto('/');
    await page.getByTestId('folder-input').setInputFiles(folder);
    await expect(page.getByTestId('summary-totals')).toContainText('2 labeled pairs');
    await expect(page.getByTestId('strays-image-without-mask')).toContainText(`hostile/${image}`);
    await expect(page.getByTestId('strays-mask-without-image')).toContainText(`hostile/${mask}`);
    await expect(page.getByTestId('thumbnails')).toContainText('<img src=x onerror=alert(1)>');
    // Nothing the names spell became an element or an attribute.
    const injected = await page.evaluate(() => document.querySelectorAll('img[src="x"], svg[onload], [onerror], [onload]').length);
    expect(injected).toBe(0);
    await snap(page, 'faults-file-names');
    expect(dialogs).toEqual([]);
    expect(errors).toEqual([]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('the split preview matches the run, and a diverging loss stops it with a way back', async ({ page }) => {
  const errors = collectErrors(page);
  await openDemo(page);
  const card = tinyCard('e2e-diverge', { labeledFraction: 0.5, epochs: 3 });
  await importCard(page, card);
  await page.getByTestId('tab-dataset').click();
  await expect(page.getByTestId('labels-hidden')).toBeVisible();
  const shown = /(\d+) train · (\d+) validation · (\d+) test · (\d+) of \d+ unlabeled/.exec(text(await page.getByTestId('split-preview').innerText()))!;

  await page.getByTestId('tab-configure').click();
  await page.getByTestId('start-run').click();
  await expect(log(page)).toContainText('split:');
  const ran = /split: (\d+) train, (\d+) val, (\d+) test labeled images; (\d+) unlabeled/.exec(await log(page).innerText())!;
  expect(ran.slice(1)).toEqual(shown.slice(1));

  const saved = await checkpointStep(page);
  await inject(page, { kind: 'nan-weights' });
  await expect(status(page)).toHaveAttribute('data-status', 'failed');
  await expect(page.getByTestId('run-message')).toContainText(/teacher: the (loss became NaN at|weights became non-finite by) step \d+; the run stopped/);
  await expect(page.getByTestId('recovery')).toHaveAttribute('data-failure', 'diverged');
  await expect(page.getByTestId('resume-learning-rate')).toHaveValue('0.0001');
  await expect(page.getByTestId('resume-run')).toHaveText('Resume from the last good checkpoint');
  await snap(page, 'faults-diverged');
  const good = await checkpointStep(page);
  expect(good).toBeGreaterThanOrEqual(saved);

  await page.getByTestId('resume-run').click();
  await expect(log(page)).toContainText('run card changed for this resume: learning rate 0.0001');
  await expect(log(page)).toContainText(new RegExp(`teacher: resumed at epoch \\d+, step ${good} of`));
  await expect(status(page)).toHaveAttribute('data-status', 'completed', { timeout: 120_000 });
  expect(errors).toEqual([]);
});

test('a full disk stops the run with a message, and it resumes from the previous checkpoint', async ({ page }) => {
  const errors = collectErrors(page);
  await openDemo(page);
  // The second write of a latest-checkpoint slot fails: the first checkpoint must stay usable.
  await inject(page, { kind: 'storage-full', after: 1, match: 'ckpt/teacher/latest/' });
  await start(page, tinyCard('e2e-quota'));
  await expect(status(page)).toHaveAttribute('data-status', 'failed', { timeout: 90_000 });
  const saved = await checkpointStep(page);
  expect(saved).toBe(2);
  const message = page.getByTestId('run-message');
  await expect(message).toContainText("the browser's storage is full: the latest checkpoint of the Teacher stage of run e2e-quota-");
  await expect(message).toContainText(/could not be saved\. This site uses [\d.]+ [KMG]?i?B of the [\d.]+ [KMG]?i?B the browser allows it\. Free space by deleting old runs in the Storage view, then resume the run\./);
  await expect(page.getByTestId('recovery')).toHaveAttribute('data-failure', 'storage-full');
  await snap(page, 'faults-storage-full');

  await page.getByTestId('free-space').click();
  await expect(page.getByTestId('storage-full')).toContainText('stopped because storage is full');
  await expect(page.getByTestId('storage-runs')).toContainText('e2e-quota');
  await snap(page, 'faults-storage-view');

  await inject(page, { kind: 'storage-ok' });
  await page.getByTestId('tab-train').click();
  await page.getByTestId('resume-run').click();
  await expect(log(page)).toContainText(`teacher: resumed at epoch 1, step ${saved} of`);
  await expect(status(page)).toHaveAttribute('data-status', 'completed', { timeout: 120_000 });
  expect(errors).toEqual([]);
});

test('a crashed or killed worker is replaced, and the run resumes from its last save', async ({ page }) => {
  const errors = collectErrors(page);
  await openDemo(page, '&heartbeat=8000');
  await start(page, tinyCard('e2e-crash', { epochs: 6 }));
  await checkpointStep(page);

  await inject(page, { kind: 'crash' });
  await expect(page.getByTestId('trainer-stopped')).toContainText('The trainer stopped (an error nothing caught: Uncaught Error: injected crash (fault test hook))');
  await expect(status(page)).toHaveAttribute('data-status', 'interrupted');
  await expect(page.getByTestId('run-message')).toContainText(/a new one has started\. Resume the run from its last checkpoint \(Teacher, step \d+\)\./);
  await expect(page.getByTestId('resume-interrupted')).toBeVisible();
  await snap(page, 'faults-worker-crashed');
  // The page may not have heard of a checkpoint saved just before the crash: never earlier than what it heard.
  const saved = await shownCheckpoint(page);
  await page.getByTestId('resume-interrupted').click();
  const resumed = await resumedStep(page);
  expect(resumed).toBeGreaterThanOrEqual(saved);

  // A worker that ends without a word is noticed by its silence (8 s here; 60 s, or more for slow steps, by default).
  await expect.poll(() => shownCheckpoint(page), { timeout: 60_000 }).toBeGreaterThan(resumed);
  await page.evaluate(() => (window as unknown as { lesionStudioFaults: { killWorker(): void } }).lesionStudioFaults.killWorker());
  await expect(page.getByTestId('trainer-stopped')).toContainText(/The trainer stopped \(it has not answered for \d+ s\)/, { timeout: 40_000 });
  const again = await shownCheckpoint(page);
  await page.getByTestId('resume-interrupted').click();
  expect(await resumedStep(page, 2)).toBeGreaterThanOrEqual(again);
  await page.getByTestId('stop').click();
  await expect(status(page)).toHaveAttribute('data-status', 'cancelled');
  expect(errors.filter((e) => !e.includes('injected crash'))).toEqual([]);
});

test('a run trains in one tab only; another tab follows it read-only', async ({ page, context }) => {
  const errors = collectErrors(page);
  await openDemo(page);
  await start(page, tinyCard('e2e-tabs', { epochs: 10 }));
  await expect(page.getByTestId('step-progress')).toContainText(/step \d+ of/, { timeout: 60_000 });

  const other = await context.newPage();
  const otherErrors = collectErrors(other);
  await other.goto('/?faults');
  await expect(other.getByTestId('elsewhere')).toContainText('Run e2e-tabs is training in another tab of this browser');
  await expect(other.getByTestId('resume-interrupted')).toHaveCount(0);
  await other.getByTestId('tab-storage').click();
  await expect(other.getByTestId('storage-status')).toHaveText('training in another tab');
  await expect(other.getByTestId('storage-runs').getByRole('button', { name: 'Delete' })).toBeDisabled();
  await expect(other.getByTestId('storage-runs').getByRole('button', { name: 'Resume' })).toHaveCount(0);
  const refused = await other.evaluate(async () => {
    const trainer = (window as unknown as { lesionStudioFaults: { trainer(): { listRuns(): Promise<{ runId: string }[]>; resumeRun(id: string, sink: unknown): Promise<unknown> } } }).lesionStudioFaults.trainer();
    const [run] = await trainer.listRuns();
    return trainer.resumeRun(run.runId, undefined).then(() => 'resumed', (error: Error) => error.message);
  });
  expect(refused).toMatch(/is training in another tab of this browser; pause or stop it there/);

  await other.getByTestId('watch-run').click();
  await expect(other.getByTestId('watching')).toContainText('Training in another tab of this browser');
  await expect(other.getByTestId('pause')).toHaveCount(0);
  const stepOf = async () => Number(/step (\d+) of/.exec((await other.getByTestId('step-progress').innerText()))?.[1] ?? 0);
  await expect.poll(stepOf, { timeout: 30_000 }).toBeGreaterThan(0);
  const first = await stepOf();
  await expect.poll(stepOf, { timeout: 30_000 }).toBeGreaterThan(first);
  await snap(other, 'faults-other-tab');

  await page.getByTestId('stop').click();
  await expect(status(other)).toHaveAttribute('data-status', 'cancelled', { timeout: 30_000 });
  await expect(other.getByTestId('elsewhere')).toHaveCount(0);
  await other.getByTestId('tab-storage').click();
  await expect(other.getByTestId('storage-runs').getByRole('button', { name: 'Resume' })).toBeVisible();
  expect(errors).toEqual([]);
  expect(otherErrors).toEqual([]);
});

test('on WebGPU, an out-of-memory event halves the batch and a lost device resumes on a new one, else on wasm', async ({ page }) => {
  test.setTimeout(300_000);
  const errors = collectErrors(page);
  await openDemo(page);
  await start(page, tinyCard('e2e-gpu', { backend: 'webgpu', epochs: 4, batchSize: 4 }));
  await expect(status(page)).toContainText('WebGPU');
  // Polled with the run's message, so a failure says why.
  const progress = async () => `${await page.getByTestId('step-progress').innerText()} | ${await page.getByTestId('run-message').textContent({ timeout: 100 }).catch(() => '')}`;
  await expect.poll(progress, { timeout: 120_000 }).toMatch(/step \d+ of/);

  await inject(page, { kind: 'device-out-of-memory' });
  await expect(page.getByTestId('run-warnings')).toContainText(
    'the device ran out of memory at batch size 4 (WebGPU out of memory: injected by the fault test hook); continuing with batch size 2',
  );

  const saved = await checkpointStep(page);
  await inject(page, { kind: 'lose-device' });
  const message = page.getByTestId('run-message');
  await expect(message).toContainText(/The GPU device was lost \(.+\) after step \d+ of the Teacher stage; the run resumed from its last checkpoint \(Teacher, step \d+\) on a new WebGPU device\./);
  const resumedAt = Number(/checkpoint \(Teacher, step (\d+)\)/.exec((await message.textContent())!)![1]);
  expect(resumedAt).toBeGreaterThanOrEqual(saved);
  expect(await resumedStep(page)).toBe(resumedAt);
  await snap(page, 'faults-gpu-lost');

  await expect.poll(() => shownCheckpoint(page), { timeout: 120_000 }).toBeGreaterThan(resumedAt);
  await inject(page, { kind: 'lose-device', refuseRestart: true });
  await expect(message).toContainText(/the run resumed from its last checkpoint \(Teacher, step \d+\) on WebAssembly on the CPU .*, because WebGPU did not start again/);
  // The run's backend line follows the move.
  await expect(status(page)).toContainText('WebAssembly on the CPU');
  await snap(page, 'faults-gpu-fallback');
  await expect(status(page)).toHaveAttribute('data-status', 'completed', { timeout: 180_000 });
  expect(errors).toEqual([]);
});
