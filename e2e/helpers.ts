/** Shared pieces of the end-to-end specs. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, type Page } from '@playwright/test';
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

/** The entries of a ZIP of stored (uncompressed) files, as the studio's exports write them. */
export function readStoredZip(zip: Buffer): Map<string, Buffer> {
  const entries = new Map<string, Buffer>();
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  for (let i = 0; i < count; i++) {
    const size = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    entries.set(name, zip.subarray(dataStart, dataStart + size));
    at += 46 + nameLength;
  }
  return entries;
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
