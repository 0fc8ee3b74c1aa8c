/** Shared pieces of the end-to-end specs. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, type Page } from '@playwright/test';
import { unzipSync } from 'fflate';
import type { RunCard } from '../src/core/config.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..');
export { datasetsRoot as datasets } from '../test/helpers/datasets.ts';
const artifacts = path.join(here, 'artifacts');

/** Full-page screenshot into e2e/artifacts (gitignored), for a person to look at. */
export async function snap(page: Page, name: string): Promise<void> {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

/** Every URL the page and its workers request, to check that nothing leaves the origin. */
export function recordRequests(page: Page): string[] {
  const urls: string[] = [];
  page.context().on('request', (request) => urls.push(request.url()));
  return urls;
}

export function offOrigin(urls: string[], origin: string): string[] {
  return urls.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith('blob:') && !url.startsWith('data:'));
}

/** Console errors and uncaught exceptions, which every spec expects none of. */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  return errors;
}

/** The entries of an export ZIP, read by fflate: a reader independent of the zip.js that writes them. */
export function readZip(zip: Buffer): Map<string, Buffer> {
  return new Map(Object.entries(unzipSync(zip)).map(([name, bytes]) => [name, Buffer.from(bytes)]));
}

/**
 * Prints the page's long tasks (over 50 ms, the Long Tasks API's threshold):
 * how responsive the studio stayed is a figure for `npm run bench`, never an
 * assertion, since it depends on how busy the machine is.
 */
export function printLongTasks(what: string, durationsMs: number[]): void {
  const longest = durationsMs.reduce((a, b) => Math.max(a, b), 0);
  console.log(`${what}: ${durationsMs.length} over 50 ms, longest ${longest} ms${durationsMs.length ? ` (${durationsMs.join(', ')} ms)` : ''}`);
}

/** Imports a run card in the Configure view, starts it, and waits until it has completed. */
export async function runCard(page: Page, card: RunCard): Promise<void> {
  await page.getByTestId('tab-configure').click();
  await page.getByTestId('card-json').fill(JSON.stringify(card));
  await page.getByTestId('card-import').click();
  await expect(page.locator('#knob-name')).toHaveValue(card.name);
  await page.getByTestId('start-run').click();
  await expect(page.getByTestId('run-status')).toHaveAttribute('data-status', 'completed', { timeout: 300_000 });
}
