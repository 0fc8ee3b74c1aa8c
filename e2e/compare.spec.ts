/**
 * Is the difference real? On the synthetic demo, two tiny teachers whose
 * cards differ in one field (the learning rate) train one after the other; Results shows
 * each test figure with its interval and the few-images note; Compare reads
 * the differing field, overlays both validation curves and gives the paired
 * difference with its interval and p-value, says that one seed per arm does
 * not cover training noise, and reads exactly 0 [0, 0] for a model against itself;
 * Repeat with seeds runs the card twice more on the same test images, Results
 * shows their spread, and Compare pools the three seeds into one arm.
 */
import { expect, test } from '@playwright/test';
import type { RunCard } from '../src/core/config.ts';
import { tinyCard } from './cards.ts';
import { collectErrors, runCard, snap } from './helpers.ts';

/**
 * Adam at high rates, so that three epochs already draw lesions. The rate differs rather than the epochs: a longer run
 * whose best epoch is an early one would export the very model of the shorter run.
 */
function teacherAt(lr: number): RunCard {
  const card = tinyCard('e2e-compare', { epochs: 3, checkpointEverySteps: 4, lr });
  return {
    ...card,
    // Six test images of the demo's 24 pairs, each read at logit 0 (p = 0.5), so even these tiny models mark some lesion.
    data: { ...card.data, split: { kind: 'fractions', val: 0.2, test: 0.25 } },
    eval: { ...card.eval, logitThreshold: 0 },
  };
}

test('two runs differing in one card field, compared on the same test images', async ({ page }) => {
  test.setTimeout(600_000);
  const errors = collectErrors(page);
  await page.goto('/');
  await page.getByTestId('open-demo').click();
  await expect(page.getByTestId('summary-totals')).toContainText('24 labeled pairs');
  await runCard(page, teacherAt(1e-2));
  await runCard(page, teacherAt(3e-3));

  // Results: every test figure with its 95 % interval, and the note that few images make it wide.
  await page.getByTestId('tab-results').click();
  const firstInterval = page.getByTestId('results-interval').first();
  await expect(firstInterval).toHaveText(/^\[\d+\.\d, \d+\.\d\] %$/);
  await expect(page.getByTestId('results-interval')).toHaveCount(5);
  await expect(page.getByTestId('results-note')).toContainText(/^\d test images: an interval of ±\d+ points$/);

  await page.getByTestId('mode-compare').click();
  await page.getByTestId('compare-run').click();
  const fields = page.getByTestId('compare-fields');
  await expect(fields.locator('tbody tr')).toHaveCount(1);
  await expect(fields.locator('tbody tr td').first()).toHaveText('train.optimizer.lr');
  await expect(fields.locator('tbody tr td').nth(1)).toHaveText('0.003');
  await expect(fields.locator('tbody tr td').nth(2)).toHaveText('0.01');
  // Two curves of three epochs.
  await expect(page.getByTestId('compare-curves')).toHaveAttribute('data-series', '2');
  await expect(page.getByTestId('compare-curves')).toHaveAttribute('data-points', '6');
  await expect(page.getByTestId('compare-metrics').locator('thead th').nth(1)).toContainText('train.optimizer.lr 0.003');
  const difference = page.getByTestId('compare-difference');
  await expect(difference).toHaveCount(1);
  await expect(difference.getByTestId('compare-headline')).toHaveText(/^[+−]\d+\.\d points \[[+−]\d+\.\d, [+−]\d+\.\d\]$/);
  await expect(difference).toContainText(/p = (\d\.\d+|1\.0|< 0\.001)/);
  await expect(difference.getByTestId('compare-warning')).toContainText('training noise is not covered');
  await expect(difference.getByTestId('repeat-seeds')).toHaveCount(2);
  await expect(page.getByTestId('compare-metrics').locator('tbody tr')).toHaveCount(5);
  await snap(page, 'compare');

  // The models differ on some image: not the degenerate [0, 0] of two empty predictions (one of them may still predict no lesion).
  await expect(page.getByTestId('compare-metrics').locator('tbody tr', { hasText: 'lesion IoU' })).not.toContainText('0.0 % [0.0, 0.0] %0.0 % [0.0, 0.0] %');
  await expect(page.getByTestId('compare-images').locator('summary')).not.toContainText(': 0 better, 0 worse');
  // The interval brackets the difference itself, in the headline's own figures.
  const [value, lo, hi] = ((await difference.getByTestId('compare-headline').textContent()) ?? '').replaceAll('−', '-').match(/-?\+?\d+\.\d/g)!.map(Number);
  expect(lo).toBeLessThanOrEqual(value);
  expect(value).toBeLessThanOrEqual(hi);

  // A model against itself: exactly nothing.
  const first = await page.getByTestId('compare-pick-0').inputValue();
  await page.getByTestId('compare-pick-1').selectOption(first);
  await page.getByTestId('compare-run').click();
  await expect(page.getByTestId('compare-fields')).toHaveText('The cards are the same.');
  await expect(page.getByTestId('compare-headline')).toHaveText('+0.0 points [+0.0, +0.0]');
  await expect(page.getByTestId('compare-difference')).toContainText('p = 1.0');

  // Repeat with seeds, from the warning: the newer card twice more, one run after the other, on the same test images.
  await page.getByTestId('repeat-seeds').first().click();
  await page.getByTestId('tab-results').click();
  await page.getByTestId('mode-results').click();
  const repeats = page.getByTestId('results-repeats').locator('tbody tr').first();
  await expect(repeats).toContainText(/2139, 2138, 2137/, { timeout: 300_000 });
  await expect(repeats).toContainText('±');
  // Each repeat that starts opens the Train view, as any run does: back to Results.
  await expect(page.getByTestId('run-status')).toHaveAttribute('data-status', 'completed');
  await page.getByTestId('tab-results').click();

  // Compare with the three seeds as one arm against the first model.
  await page.getByTestId('mode-compare').click();
  await page.getByTestId('compare-add').click();
  await page.getByTestId('compare-add').click();
  const values = await page.getByTestId('compare-pick-0').locator('option').evaluateAll((options) => options.map((o) => (o as HTMLOptionElement).value));
  // Newest first: seeds 2139 and 2138, the newer card's run of seed 2137, the first run.
  expect(values).toHaveLength(4);
  for (const [i, value] of [values[3], values[2], values[1], values[0]].entries()) await page.getByTestId(`compare-pick-${i}`).selectOption(value);
  await page.getByTestId('compare-run').click();
  await expect(page.getByTestId('compare-metrics').locator('thead th')).toHaveCount(3);
  await expect(page.getByTestId('compare-metrics').locator('thead th').nth(2)).toContainText('(seeds 2137, 2138, 2139)');
  const differing = page.getByTestId('compare-fields').locator('tbody tr td:first-child');
  await expect(differing).toHaveText(['seed', 'train.optimizer.lr']);
  // Only the one-run arm is short of seeds now, and P(better) speaks of paired seeds only when both arms have them.
  await expect(page.getByTestId('compare-warning')).toContainText('has one run)');
  await expect(page.getByTestId('repeat-seeds')).toHaveCount(1);
  await expect(page.getByTestId('compare-headline')).toHaveText(/^[+−]\d+\.\d points \[[+−]\d+\.\d, [+−]\d+\.\d\]$/);
  await snap(page, 'compare-seeds');
  expect(errors).toEqual([]);
});
