/**
 * The studio under quick hands (issue 18, items 9-12), on the shared ISIC 2018
 * and PH2 folders. What a slow worker makes possible (a key pressed while the
 * next image loads, a progress report arriving after its answer, a split
 * planned for the roles before) is set up by holding the worker's answers in
 * the page (installReplyHolds), never by racing the clock.
 */
import { expect, test, type Page } from '@playwright/test';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  collectErrors,
  copySharedToOpfs,
  datasets,
  heldReplies,
  holdReplies,
  installReplyHolds,
  releaseReplies,
  runCard,
} from './helpers.ts';
import { tinyTeacher } from './cards.ts';

const totals = (page: Page) => page.getByTestId('summary-totals');
const poolRadio = (page: Page, root: string) => page.getByRole('group', { name: `Use of ${root}` }).getByRole('radio', { name: /unlabeled pool/ });
const setRow = (page: Page, layout: string) => page.getByTestId('set-row').filter({ has: page.getByTestId('set-layout').getByText(layout, { exact: true }) });

/** ISIC 2018 through the folder input, then PH2 added beside it as the unlabeled pool. */
async function openIsicWithPh2Pool(page: Page): Promise<void> {
  await page.getByTestId('folder-input').setInputFiles(path.join(datasets, 'isic2018'));
  await expect(totals(page)).toContainText('33 labeled pairs');
  await page.getByTestId('folder-input-add').setInputFiles(path.join(datasets, 'ph2'));
  await expect(totals(page)).toContainText('65 labeled pairs');
  await poolRadio(page, 'ph2').check();
  await expect(totals(page)).toContainText('33 labeled pairs');
  await expect(totals(page)).toContainText('32 unlabeled images');
}

test('without the folder picker, "Add another folder" opens a pool beside a labeled folder through the folder input', async ({ page }) => {
  const errors = collectErrors(page);
  // Firefox and Safari: no showDirectoryPicker.
  await page.addInitScript(() => {
    delete (window as { showDirectoryPicker?: unknown }).showDirectoryPicker;
    delete (Window.prototype as { showDirectoryPicker?: unknown }).showDirectoryPicker;
  });
  await page.goto('/');
  await expect(page.getByTestId('synthetic-badge')).toBeVisible();
  expect(await page.evaluate(() => 'showDirectoryPicker' in window)).toBe(false);
  await expect(page.getByTestId('open-folder')).toHaveCount(0);
  // The demo is no folder to add to.
  await expect(page.getByTestId('folder-input-add')).toHaveCount(0);

  await page.getByTestId('folder-input').setInputFiles(path.join(datasets, 'ph2'));
  await expect(totals(page)).toContainText('32 labeled pairs');
  await poolRadio(page, 'ph2').check();
  await expect(totals(page)).toContainText('0 labeled pairs');

  await page.getByTestId('folder-input-add').setInputFiles(path.join(datasets, 'isic2018'));
  await expect(totals(page)).toContainText('33 labeled pairs');
  // PH2 stays the pool it was marked as.
  await expect(totals(page)).toContainText('32 unlabeled images');
  await expect(poolRadio(page, 'ph2')).toBeChecked();
  await expect(page.getByTestId('set-row')).toHaveCount(2);

  // Another folder called ph2 (three of its cases) replaces the open one rather than joining it.
  const other = await mkdtemp(path.join(os.tmpdir(), 'lesion-studio-e2e-'));
  try {
    const cases = path.join(datasets, 'ph2', 'PH2 Dataset images');
    for (const id of (await readdir(cases)).sort().slice(0, 3)) {
      await cp(path.join(cases, id), path.join(other, 'ph2', 'PH2 Dataset images', id), { recursive: true });
    }
    await page.getByTestId('folder-input-add').setInputFiles(path.join(other, 'ph2'));
    await expect(totals(page)).toContainText('3 unlabeled images');
    await expect(totals(page)).toContainText('33 labeled pairs');
    await expect(page.getByTestId('set-row')).toHaveCount(2);

    // Choose folder still starts afresh.
    await page.getByTestId('folder-input').setInputFiles(path.join(datasets, 'isic2018'));
    await expect(page.getByTestId('set-row')).toHaveCount(1);
    await expect(totals(page)).toContainText('0 unlabeled images');
    expect(errors).toEqual([]);
  } finally {
    await rm(other, { recursive: true, force: true });
  }
});

test('a folder marked as the pool counts as unlabeled in "Data sets found", and no split of the old roles is shown', async ({ page }) => {
  const errors = collectErrors(page);
  await installReplyHolds(page);
  await page.goto('/');
  await expect(page.getByTestId('synthetic-badge')).toBeVisible();
  await page.getByTestId('folder-input').setInputFiles(path.join(datasets, 'isic2018'));
  await page.getByTestId('folder-input-add').setInputFiles(path.join(datasets, 'ph2'));
  await expect(totals(page)).toContainText('65 labeled pairs');
  const ph2 = setRow(page, 'PH2');
  await expect(ph2.getByTestId('set-labeled')).toHaveText('32');
  await expect(page.getByTestId('split-preview')).toContainText('of 0 unlabeled images used');

  await holdReplies(page, 'setRootRole');
  await holdReplies(page, 'previewSplit');
  await poolRadio(page, 'ph2').check();
  await expect.poll(() => heldReplies(page, 'setRootRole')).toBe(1);
  // The worker has not answered: the split shown would be the old roles'.
  await expect(page.getByTestId('split-preview')).toHaveCount(0);
  await expect(page.getByTestId('split-pending')).toBeVisible();

  expect(await releaseReplies(page, 'setRootRole')).toBe(1);
  await expect(totals(page)).toContainText('33 labeled pairs');
  await expect(ph2.getByTestId('set-labeled')).toHaveText(/^\s*0\b/);
  await expect(ph2.getByTestId('set-labeled-count')).toHaveText('0');
  await expect(ph2.getByTestId('set-masks-unused')).toHaveText('(32 masks unused: unlabeled pool)');
  await expect(ph2.getByTestId('set-unlabeled')).toHaveText('32');
  await expect(setRow(page, 'ISIC 2018 Task 1').getByTestId('set-labeled-count')).toHaveText('33');
  await expect(setRow(page, 'ISIC 2018 Task 1').getByTestId('set-masks-unused')).toHaveCount(0);
  // The new roles' split is asked for; until it comes, none is shown.
  await expect.poll(() => heldReplies(page, 'previewSplit')).toBeGreaterThanOrEqual(1);
  await expect(page.getByTestId('split-preview')).toHaveCount(0);
  await expect(page.getByTestId('split-pending')).toBeVisible();

  await releaseReplies(page, 'previewSplit');
  const preview = page.getByTestId('split-preview');
  await expect(preview).toContainText('of 32 unlabeled images used');
  const [train, val, test] = (await preview.locator('strong').allTextContents()).map(Number);
  expect(train + val + test).toBe(33);
  expect(errors).toEqual([]);
});

test('a progress report arriving after "Add another folder" has finished does not bring the progress line back', async ({ page }) => {
  const errors = collectErrors(page);
  await installReplyHolds(page);
  // The picker hands out folders the test put in the origin-private file system, in the order it lists them.
  await page.addInitScript(() => {
    const w = window as unknown as { picks: string[] };
    w.picks = [];
    window.showDirectoryPicker = async () => (await navigator.storage.getDirectory()).getDirectoryHandle(w.picks.shift()!);
  });
  await page.goto('/');
  await expect(page.getByTestId('synthetic-badge')).toBeVisible();
  await copySharedToOpfs(page, ['isic2018', 'ph2']);
  await page.evaluate(() => ((window as unknown as { picks: string[] }).picks = ['isic2018', 'ph2']));

  await page.getByTestId('open-folder').click();
  await expect(totals(page)).toContainText('33 labeled pairs');
  await expect(page.getByTestId('opening')).toHaveCount(0);

  // The worker's progress reports for the next open are held back until its answer is in.
  await holdReplies(page, 'callbacks');
  await page.getByRole('button', { name: 'Add another folder…' }).click();
  await expect(totals(page)).toContainText('65 labeled pairs');
  await expect(page.getByTestId('opening')).toHaveCount(0);
  expect(await heldReplies(page, 'callbacks')).toBeGreaterThan(0);
  expect(await releaseReplies(page, 'callbacks')).toBeGreaterThan(0);
  await expect(page.getByTestId('opening')).toHaveCount(0);
  await expect(page.getByText(/Recognising layouts in/)).toHaveCount(0);
  expect(errors).toEqual([]);
});

test('the mask editor keeps drawing and keeps its zoom when keys come while the next image loads', async ({ page }) => {
  test.setTimeout(600_000);
  const errors = collectErrors(page);
  await installReplyHolds(page);
  await page.goto('/');
  await expect(page.getByTestId('synthetic-badge')).toBeVisible();
  await openIsicWithPh2Pool(page);
  await runCard(page, tinyTeacher('switch-teacher'));

  await page.getByTestId('tab-label').click();
  await page.getByTestId('queue-load').click();
  const items = page.getByTestId('queue-item');
  await expect(items).toHaveCount(32, { timeout: 120_000 });
  await items.first().getByTestId('queue-open').click();
  const editor = page.getByTestId('mask-editor');
  await expect(editor).toBeVisible();
  const view = async () => {
    const read = async (name: string) => (await editor.getAttribute(`data-${name}`))!;
    const [width, height, zoom] = [Number(await read('width')), Number(await read('height')), Number(await read('zoom'))];
    return { image: await read('image'), width, height, zoom, fit: Math.min(800 / width, 560 / height) };
  };
  const first = await view();
  expect(first.zoom).toBeCloseTo(first.fit, 9);

  // N, then + while the next image is held in the worker: the first image zooms, and nothing throws.
  await holdReplies(page, 'labelTask');
  await page.keyboard.press('n');
  await expect.poll(() => heldReplies(page, 'labelTask')).toBe(1);
  await page.keyboard.type('+');
  await expect(editor).toHaveAttribute('data-zoom', String(first.fit * 1.25));
  await expect(editor).toHaveAttribute('data-image', first.image);
  expect(errors).toEqual([]);

  // The next image comes in at the same magnification over its own fit.
  await releaseReplies(page, 'labelTask');
  await expect(editor).not.toHaveAttribute('data-image', first.image);
  const second = await view();
  expect(second.zoom).toBeCloseTo(second.fit * 1.25, 9);
  expect(errors).toEqual([]);

  // Edit on a saved label, then "empty" before it has loaded.
  await page.keyboard.press('s');
  await expect(page.getByTestId('expert-count')).toHaveText('(1)');
  await holdReplies(page, 'labelTask');
  await page.getByTestId('expert-label').getByRole('button', { name: 'Edit' }).click();
  await expect.poll(() => heldReplies(page, 'labelTask')).toBe(1);
  await page.getByTestId('start-empty').click();
  await expect(editor).toHaveAttribute('data-lesion-pixels', '0');
  expect(errors).toEqual([]);
  await releaseReplies(page, 'labelTask');
  await expect(editor).toHaveAttribute('data-started-from', 'previous-label');
  await expect(editor).toHaveAttribute('data-image', second.image);
  expect(errors).toEqual([]);
});
