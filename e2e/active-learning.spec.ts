/**
 * Active learning end to end on the shared images: ISIC 2018 as the labeled
 * folder and PH2 as the unlabeled pool, reopened as remembered folders (the
 * shared files are copied into the origin-private file system through a
 * route the test serves, since showDirectoryPicker cannot be driven
 * headless). A tiny teacher ranks the pool; a mask is drawn with pointer
 * events, saved, found again after a reload, exported as ISIC ground truth and
 * read back pixel for pixel, fine-tuned on (with the label against a control
 * without it), and counted by
 * the next run's split.
 */
import { expect, test, type Page } from '@playwright/test';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeImage } from '../src/core/image/decode.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { collectErrors, copySharedToOpfs, readZip, runCard, snap } from './helpers.ts';
import { tinyTeacher } from './cards.ts';

/** The shared folders in OPFS, remembered with ISIC 2018 labeled and PH2 as the unlabeled pool. */
async function plantSharedFolders(page: Page): Promise<void> {
  await copySharedToOpfs(page, ['isic2018', 'ph2']);
  await page.evaluate(async () => {
    const opfs = await navigator.storage.getDirectory();
    const handles = [await opfs.getDirectoryHandle('isic2018'), await opfs.getDirectoryHandle('ph2')];
    await new Promise<void>((resolve, reject) => {
      const open = indexedDB.open('lesion-studio-folders');
      open.onupgradeneeded = () => open.result.createObjectStore('kv');
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const tx = open.result.transaction('kv', 'readwrite');
        tx.objectStore('kv').put({ handles, roles: { isic2018: 'labeled', ph2: 'unlabeled' } }, 'last-opened');
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error);
      };
    });
  });
}

async function reopen(page: Page): Promise<void> {
  await page.getByTestId('tab-dataset').click();
  await expect(page.getByTestId('reopen')).toHaveText('Reopen isic2018, ph2');
  await page.getByTestId('reopen').click();
  await expect(page.getByTestId('summary-totals')).toContainText('33 labeled pairs');
  await expect(page.getByTestId('summary-totals')).toContainText('32 unlabeled images');
}

/** The stored label straight from IndexedDB: what the studio saved, not what it shows. */
function storedLabel(page: Page): Promise<{ image: string; width: number; height: number; data: number[]; author: string; note: string } | undefined> {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('lesion-studio-labels');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const all = open.result.transaction('kv').objectStore('kv').getAll();
          all.onsuccess = () => {
            const [label] = all.result as { image: string; width: number; height: number; data: Uint8Array; author: string; note: string }[];
            resolve(label && { ...label, data: [...label.data] });
          };
        };
      }),
  );
}

interface View {
  width: number;
  height: number;
  zoom: number;
  panX: number;
  panY: number;
}

async function editorView(page: Page): Promise<View> {
  const editor = page.getByTestId('mask-editor');
  const read = async (name: string) => Number(await editor.getAttribute(`data-${name}`));
  return { width: await read('width'), height: await read('height'), zoom: await read('zoom'), panX: await read('pan-x'), panY: await read('pan-y') };
}

/** A drag along image-pixel points, as pointer events at the canvas's on-screen scale. */
async function drag(page: Page, view: View, points: [number, number][]): Promise<void> {
  const box = (await page.getByTestId('editor-canvas').boundingBox())!;
  const scale = box.width / 800;
  const client = ([x, y]: [number, number]) => [box.x + (view.panX + x * view.zoom) * scale, box.y + (view.panY + y * view.zoom) * scale] as const;
  await page.mouse.move(...client(points[0]));
  await page.mouse.down();
  for (const point of points.slice(1)) await page.mouse.move(...client(point), { steps: 8 });
  await page.mouse.up();
}

const lesionPixels = async (page: Page): Promise<number> => Number(await page.getByTestId('mask-editor').getAttribute('data-lesion-pixels'));

test('the queue ranks the PH2 pool, a drawn mask is saved, survives a reload, exports exactly and joins the next split', async ({ page }) => {
  test.setTimeout(600_000);
  const errors = collectErrors(page);
  await page.goto('/');
  await expect(page.getByTestId('synthetic-badge')).toBeVisible();
  await plantSharedFolders(page);
  await page.reload();
  await reopen(page);
  await runCard(page, tinyTeacher('al-teacher'));

  // The queue: every pool image ranked by entropy, highest first, each saying why.
  await page.getByTestId('tab-label').click();
  await page.getByTestId('queue-score').selectOption('entropy');
  await page.getByTestId('queue-load').click();
  const items = page.getByTestId('queue-item');
  await expect(items).toHaveCount(32, { timeout: 120_000 });
  await expect(items.first()).toContainText('#1');
  await expect(items.first().getByTestId('queue-why')).toContainText('#1 of 32: mean binary entropy (bits)');
  const values = await items.getByTestId('queue-value').evaluateAll((spans) => spans.map((span) => Number(span.getAttribute('data-value'))));
  expect(values.every((v) => v > 0)).toBe(true);
  expect(values).toEqual([...values].sort((a, b) => b - a));
  await snap(page, 'label-queue');
  // MC-dropout scores with the training build's seeded dropout: a different score, the same pool.
  await page.getByTestId('queue-score').selectOption('mc-dropout');
  await page.getByTestId('queue-load').click();
  await expect(items.first().getByTestId('queue-why')).toContainText('#1 of 32: MC-dropout variance of p', { timeout: 120_000 });
  await expect(items).toHaveCount(32);

  // The editor opens the first image at its own resolution; draw from empty.
  await items.first().getByTestId('queue-open').click();
  await expect(page.getByTestId('mask-editor')).toBeVisible();
  await page.getByTestId('start-empty').click();
  expect(await lesionPixels(page)).toBe(0);
  const view = await editorView(page);
  expect(view.width).toBeGreaterThan(700);
  // A range input cannot be typed into: set it as a drag of its thumb would.
  await page.getByTestId('brush-size').evaluate((input: HTMLInputElement) => {
    input.value = '20';
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
  const y = Math.round(view.height / 2);
  await drag(page, view, [[200, y], [500, y]]);
  const stroke = await lesionPixels(page);
  // A 300 px stroke of radius 20: about 300 x 40 plus the round ends (~13,000 px).
  expect(stroke).toBeGreaterThan(11_000);
  expect(stroke).toBeLessThan(15_000);

  await page.getByTestId('tool-eraser').click();
  await drag(page, view, [[350, y - 60], [350, y + 60]]);
  const erased = await lesionPixels(page);
  expect(erased).toBeLessThan(stroke - 1000);
  await page.getByTestId('undo').click();
  expect(await lesionPixels(page)).toBe(stroke);

  await page.getByTestId('label-author').fill('e2e');
  await page.getByTestId('label-note').fill('drawn by the active-learning spec');
  await page.getByTestId('save-label').click();
  await expect(page.getByTestId('expert-count')).toHaveText('(1)');
  await expect(page.getByTestId('editor-saved')).toBeVisible();
  await snap(page, 'label-editor');

  const saved = (await storedLabel(page))!;
  expect(saved.data.length).toBe(view.width * view.height);
  expect(saved.data.reduce((a, b) => a + b, 0)).toBe(stroke);
  const at = (x: number, yy: number) => saved.data[yy * view.width + x];
  // On the stroke, under the undone eraser; and well off it.
  expect(at(350, y)).toBe(1);
  expect(at(250, y)).toBe(1);
  expect(at(350, y - 40)).toBe(0);
  expect(at(100, y)).toBe(0);
  expect(saved.note).toBe('drawn by the active-learning spec');

  // After a reload the label is still there, and opens in the editor as it was saved.
  await page.reload();
  await reopen(page);
  await page.getByTestId('tab-label').click();
  await expect(page.getByTestId('expert-label')).toHaveCount(1);
  await expect(page.getByTestId('expert-label')).toContainText(String(stroke));
  await page.getByTestId('expert-label').getByRole('button', { name: 'Edit' }).click();
  await expect(page.getByTestId('mask-editor')).toHaveAttribute('data-started-from', 'previous-label');
  expect(await lesionPixels(page)).toBe(stroke);

  // Exported as ISIC ground truth: <id>_segmentation.png, 0/255, the image's size, pixel for pixel the stored mask.
  await page.getByTestId('tab-export').click();
  await page.getByLabel(/the downloads folder/).check();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-expert').click()]);
  const zip = readZip(await readFile((await download.path())!));
  const id = path.basename(saved.image).replace(/\.bmp$/i, '');
  const png = zip.get(`expert-labels/${id}_segmentation.png`)!;
  expect(png).toBeDefined();
  expect(zip.get('expert-labels/expert-labels.csv')!.toString()).toContain(`${id},${saved.image},${view.width},${view.height},${stroke},e2e,drawn by the active-learning spec`);
  const decoded = await decodeImage(new SharpDecoder(), `${id}_segmentation.png`, new Uint8Array(png));
  expect([decoded.pixels.width, decoded.pixels.height]).toEqual([view.width, view.height]);
  const grey = Array.from({ length: view.width * view.height }, (_, i) => decoded.pixels.data[i * 4]);
  expect(new Set(grey)).toEqual(new Set([0, 255]));
  expect(grey.map((v) => (v === 255 ? 1 : 0))).toEqual(saved.data);

  // Fine-tuning the teacher with the new label and, as a control, without it: both arms scored on the run's test images.
  await page.getByTestId('tab-results').click();
  await page.getByTestId('finetune-epochs').fill('1');
  await page.getByTestId('finetune-start').click();
  await expect(page.getByTestId('finetune-table')).toBeVisible({ timeout: 300_000 });
  await expect(page.getByTestId('finetune')).toContainText('images, 1 expert label) and');
  await expect(page.getByTestId('finetune-table').locator('tbody tr').first()).toContainText('lesion IoU');
  const paperRow = page.getByTestId('finetune-table').locator('tbody tr', { hasText: 'paper mIoU' }).locator('td');
  // "Before" is the run's own best model on the run's own test images: the figure the run reported.
  const runTest = (await page.getByTestId('results-table').locator('tbody tr', { hasText: 'paper mIoU' }).locator('td').last().textContent())!;
  await expect(paperRow.nth(1)).toHaveText(runTest.replace(/\[.*$/, '').trim());
  // Both arms, and the headline is with minus without, paired, with its interval.
  const withoutText = (await paperRow.nth(2).textContent())!;
  const withText = (await paperRow.nth(3).textContent())!;
  expect(withoutText).toMatch(/^\d+\.\d %$/);
  expect(withText).toMatch(/^\d+\.\d %$/);
  const boughtText = (await paperRow.nth(4).textContent())!;
  expect(boughtText).toMatch(/^[+−]\d+\.\d \[[+−]\d+\.\d, [+−]\d+\.\d\]$/);
  // Each figure is rounded on its own: their difference may be a tenth of a point off the difference's.
  const bought = parseFloat(boughtText.replace('−', '-'));
  expect(Math.abs(bought - (parseFloat(withText) - parseFloat(withoutText)))).toBeLessThanOrEqual(0.1 + 1e-9);
  const headline = ((await page.getByTestId('finetune-headline').textContent()) ?? '').replace(/\s+/g, ' ');
  expect(headline).toMatch(/What the labels bought: lesion IoU [+−]\d+\.\d points, 95 % interval \[[+−]\d+\.\d, [+−]\d+\.\d\], p = /);
  await expect(page.getByTestId('finetune')).toContainText('without them (control)');
  // The fine-tuned weights (the arm with the label) export like a stage's model, both arms in the metadata.
  await page.getByTestId('tab-export').click();
  const [tuned] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-finetuned').click()]);
  const tunedZip = readZip(await readFile((await tuned.path())!));
  const tunedDir = [...tunedZip.keys()].find((name) => name.endsWith('-teacher-finetuned/metadata.json'))!.replace(/metadata\.json$/, '');
  expect(tunedZip.has(`${tunedDir}model.json`) && tunedZip.has(`${tunedDir}weights.bin`)).toBe(true);
  const tunedMeta = JSON.parse(tunedZip.get(`${tunedDir}metadata.json`)!.toString());
  expect(tunedMeta.stage).toBe('teacher');
  expect(tunedMeta.fineTune.expertLabels).toBe(1);
  expect(tunedMeta.fineTune.withoutLabels.train + 1).toBe(tunedMeta.fineTune.withLabels.train);
  expect(`${(tunedMeta.fineTune.withLabels.scores.paperMIoU * 100).toFixed(1)} %`).toBe(withText);
  expect(`${(tunedMeta.fineTune.withoutLabels.scores.paperMIoU * 100).toFixed(1)} %`).toBe(withoutText);
  // Labels and fine-tunes live in their own databases; the Storage view counts them too.
  await page.getByTestId('tab-storage').click();
  await expect(page.getByTestId('storage-labels')).toContainText('1 expert label (');
  await expect(page.getByTestId('storage-labels')).not.toContainText('fine-tunes 0 B');
  await page.getByTestId('tab-results').click();
  // The simulated loop's measured result, as a table and a plot of the same rows.
  await expect(page.getByTestId('simulation-table').locator('tbody tr')).toHaveCount(4);
  await expect(page.getByTestId('simulation-plot').locator('polyline')).toHaveCount(3);
  await snap(page, 'label-finetune');

  // The next run's split counts the label among the labeled images: 33 + 1.
  await page.getByTestId('tab-dataset').click();
  await expect(page.getByTestId('split-expert')).toContainText('Including 1 expert label');
  await runCard(page, tinyTeacher('al-with-label'));
  const splits = [...(await page.getByTestId('run-log').textContent())!.matchAll(/split: (\d+) train, (\d+) val, (\d+) test labeled images/g)];
  const split = splits[splits.length - 1];
  expect(Number(split[1]) + Number(split[2]) + Number(split[3])).toBe(34);
  expect(errors).toEqual([]);
});
