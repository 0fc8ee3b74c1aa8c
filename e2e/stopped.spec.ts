/**
 * A run stopped by closing its tab, as the next tab tells it: stopped (not
 * failed), with its charts, epoch table, log and last checkpoint; one Resume,
 * which first leads to the Dataset view to open the run's folder; and a
 * resumed run that ends with the weights of a run never stopped. On PH2
 * through the folder input, with a teacher-only card of the fault tests.
 */
import { expect, test, type Page } from '@playwright/test';
import path from 'node:path';
import { tinyCard } from './cards.ts';
import { collectErrors, datasets, snap } from './helpers.ts';

const PH2 = path.join(datasets, 'ph2');
// Two epochs: the stop falls inside the second, with the first one's validation in the table.
const card = tinyCard('e2e-stopped', { epochs: 2 });

const status = (page: Page) => page.getByTestId('run-status');

async function openPh2(page: Page): Promise<void> {
  await page.getByTestId('tab-dataset').click();
  await page.getByTestId('folder-input').setInputFiles(PH2);
  await expect(page.getByTestId('summary-totals')).toContainText('32 labeled pairs');
  await expect(page.getByTestId('sending')).toHaveCount(0, { timeout: 60_000 });
}

async function start(page: Page): Promise<string> {
  await page.getByTestId('tab-configure').click();
  await page.getByTestId('card-json').fill(JSON.stringify(card));
  await page.getByTestId('card-import').click();
  await expect(page.locator('#knob-name')).toHaveValue(card.name);
  await page.getByTestId('start-run').click();
  await expect(status(page)).toHaveAttribute('data-status', 'running');
  return (await status(page).locator('.mono').textContent())!;
}

/** What the run store holds of a run: its progress record's status and a digest of each checkpoint's bytes (weights and optimiser). */
function stored(page: Page, runId: string): Promise<{ status: string; latest: string; best: string }> {
  return page.evaluate(
    (id) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('lesion-studio-runs');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const kv = open.result.transaction('kv').objectStore('kv');
          const get = (key: string) =>
            new Promise<unknown>((done, fail) => {
              const request = kv.get(key);
              request.onsuccess = () => done(request.result);
              request.onerror = () => fail(request.error);
            });
          const digest = async (kind: string): Promise<string> => {
            const pointer = (await get(`runs/${id}/ckpt/teacher/${kind}`)) as { slot: string } | undefined;
            if (!pointer) return 'none';
            const { buffer } = (await get(`runs/${id}/ckpt/teacher/${kind}/${pointer.slot}`)) as { buffer: ArrayBuffer };
            const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', buffer));
            return `${buffer.byteLength} bytes, sha-256 ${[...hash].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
          };
          void Promise.all([get(`runs/${id}/state`), digest('latest'), digest('best')]).then(
            ([state, latest, best]) => resolve({ status: (state as { status: string }).status, latest, best }),
            reject,
          );
        };
      }),
    runId,
  );
}

test('a run stopped by closing its tab reads as stopped, leads to its folder and resumes to the weights of an unstopped run', async ({ context }) => {
  test.setTimeout(600_000);
  const first = await context.newPage();
  const errors = collectErrors(first);
  await first.goto('/');
  await openPh2(first);

  // The reference: the same card, never stopped.
  const straight = await start(first);
  await expect(status(first)).toHaveAttribute('data-status', 'completed', { timeout: 240_000 });

  const runId = await start(first);
  await expect(first.getByTestId('last-checkpoint')).toContainText('Last checkpoint: Teacher, epoch 2, step', { timeout: 120_000 });
  await first.getByTestId('pause').click();
  // The worker hears the pause between steps; its loop says where it stopped, after the checkpoint events before it.
  await expect(first.getByTestId('run-log')).toContainText(/teacher: paused at step \d+/);
  const total = Number(/step \d+ of (\d+)/.exec(await first.getByTestId('step-progress').innerText())![1]);
  const perEpoch = total / card.train.epochs;
  const checkpoint = /epoch (\d+), step (\d+)/.exec((await first.getByTestId('last-checkpoint').textContent())!)!;
  const saved = Number(checkpoint[2]);
  // Mid-epoch: the checkpoint is a step inside the epoch it names, not an epoch's end.
  expect(Number(checkpoint[1])).toBe(Math.ceil(saved / perEpoch));
  expect(saved % perEpoch).not.toBe(0);
  const lossPoints = Number(await first.getByTestId('chart-loss').getAttribute('data-points'));
  expect(lossPoints).toBeGreaterThanOrEqual(saved);
  await first.close();

  const page = await context.newPage();
  errors.push(...collectErrors(page));
  await page.goto('/');
  await expect(page.getByTestId('interrupted')).toContainText('Run e2e-stopped stopped before it finished');
  await expect(page.getByTestId('open-folders-first')).toContainText('first open the folders it was trained on: ph2');
  await page.getByTestId('tab-train').click();
  const train = page.getByTestId('view-train');
  await expect(status(page)).toHaveAttribute('data-status', 'interrupted');
  await expect(train.locator('#run-title')).toHaveText('Stopped before it finished');
  await expect(page.getByTestId('last-checkpoint')).toContainText(`Last checkpoint: Teacher, epoch 2, step ${saved}`);
  await expect(page.getByTestId('run-message')).toContainText(`it resumes from its last checkpoint (Teacher, epoch 2, step ${saved})`);
  // Its history came back: every step charted before the close, the first epoch's validation, the log.
  await expect(page.getByTestId('chart-loss')).toHaveAttribute('data-points', String(lossPoints));
  await expect(page.getByTestId('chart-metrics')).toHaveAttribute('data-points', '1');
  await expect(page.getByTestId('epoch-table').locator('tbody tr')).toHaveCount(1);
  await expect(page.getByTestId('run-log')).toContainText('Teacher started');
  await expect(page.getByTestId('run-log')).toContainText(`split: `);
  await expect(page.locator('body')).not.toContainText('Failed');
  await expect(page.locator('body')).not.toContainText('No checkpoint yet');
  // One Resume, the banner's.
  await expect(page.getByRole('button', { name: /^Resume/ })).toHaveCount(1);
  await snap(page, 'stopped-train-view');

  // Resumed before its folder is open: led to the Dataset view, which names it; the run is not failed for it.
  await page.getByTestId('resume-interrupted').click();
  await expect(page.getByTestId('view-dataset')).toBeVisible();
  await expect(page.getByTestId('open-folders-first')).toContainText('ph2 (drop them on this page, or open them below)');
  await expect(status(page)).toHaveAttribute('data-status', 'interrupted');
  await snap(page, 'stopped-open-folders');
  expect((await stored(page, runId)).status).toBe('running');

  await openPh2(page);
  await expect(page.getByTestId('open-folders-first')).toHaveCount(0);
  await page.getByTestId('resume-interrupted').click();
  await expect(page.getByTestId('view-train')).toBeVisible();
  await expect(page.getByTestId('run-log')).toContainText(`teacher: resumed at epoch 2, step ${saved} of ${total}`);
  await expect(status(page)).toHaveAttribute('data-status', 'completed', { timeout: 240_000 });
  // Every step once, those trained again after the checkpoint included; every epoch once.
  await expect(page.getByTestId('chart-loss')).toHaveAttribute('data-points', String(total));
  await expect(page.getByTestId('chart-metrics')).toHaveAttribute('data-points', String(card.train.epochs));

  const [resumed, reference] = [await stored(page, runId), await stored(page, straight)];
  expect(resumed.status).toBe('completed');
  expect(resumed.latest).toMatch(/^\d+ bytes, sha-256 [0-9a-f]{64}$/);
  expect(resumed.latest).toBe(reference.latest);
  expect(resumed.best).toBe(reference.best);
  expect(errors).toEqual([]);
});
