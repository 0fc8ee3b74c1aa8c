/** Shared pieces of the end-to-end specs. */
import { mkdirSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, type Page } from '@playwright/test';
import { unzipSync } from 'fflate';
import type { RunCard } from '../src/core/config.ts';
import type { TrainerEvent } from '../src/core/events.ts';
import type { StampedEvent } from '../src/worker/api.ts';

type StepEvent = Extract<TrainerEvent, { type: 'step' }>;
import { datasetsRoot as datasets } from '../test/helpers/datasets.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..');
export { datasets };
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

/** Imports a run card in the Configure view and starts it. */
export async function startCard(page: Page, card: RunCard): Promise<void> {
  await page.getByTestId('tab-configure').click();
  await page.getByTestId('card-json').fill(JSON.stringify(card));
  await page.getByTestId('card-import').click();
  await expect(page.locator('#knob-name')).toHaveValue(card.name);
  await page.getByTestId('start-run').click();
}

/** Imports a run card in the Configure view, starts it, and waits until it has completed. */
export async function runCard(page: Page, card: RunCard): Promise<void> {
  await startCard(page, card);
  await expect(page.getByTestId('run-status')).toHaveAttribute('data-status', 'completed', { timeout: 300_000 });
}

async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await filesUnder(path.join(dir, entry.name), rel)));
    else out.push(rel);
  }
  return out;
}

/**
 * Copies shared data-set folders (`isic2018`, `ph2`) into the page's
 * origin-private file system, through a route the test serves: their handles
 * are real FileSystemDirectoryHandles, which showDirectoryPicker would give
 * but cannot be driven headless to.
 */
export async function copySharedToOpfs(page: Page, roots: string[]): Promise<void> {
  await page.route('**/e2e-shared/**', async (route) => {
    const rel = decodeURIComponent(new URL(route.request().url()).pathname.replace(/^\/e2e-shared\//, ''));
    await route.fulfill({ body: await readFile(path.join(datasets, rel)), contentType: 'application/octet-stream' });
  });
  const files = (await Promise.all(roots.map(async (root) => (await filesUnder(path.join(datasets, root))).map((f) => `${root}/${f}`)))).flat();
  await page.evaluate(async (paths) => {
    const opfs = await navigator.storage.getDirectory();
    for (const rel of paths) {
      const parts = rel.split('/');
      let dir = opfs;
      for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part, { create: true });
      const response = await fetch(`/e2e-shared/${parts.map(encodeURIComponent).join('/')}`);
      const out = await (await dir.getFileHandle(parts[parts.length - 1], { create: true })).createWritable();
      await out.write(await response.blob());
      await out.close();
    }
  }, files);
}

interface ReplyHolds {
  hold(what: string): void;
  waiting(what: string): number;
  release(what: string): Promise<number>;
}

/**
 * Lets a spec hold the trainer worker's answers in the page until it lets
 * them go, so that "while the worker is busy" is a state the spec sets, not a
 * race against the clock on a busy machine. `what` is a TrainerApi method
 * (its answers are held), or 'callbacks': the worker's calls back into the
 * page (progress reports), which comlink delivers on ports of their own.
 * Call before the page loads; then holdReplies, heldReplies, releaseReplies.
 */
export async function installReplyHolds(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const holding = new Set<string>();
    const held = new Map<string, (() => void)[]>();
    /** comlink's request ids to the method each one called. */
    const methodOf = new Map<unknown, string>();
    const keep = (what: string | undefined, deliver: () => void): boolean => {
      if (!what || !holding.has(what)) return false;
      held.set(what, [...(held.get(what) ?? []), deliver]);
      return true;
    };
    const post = Worker.prototype.postMessage as (this: Worker, message: unknown, ...rest: unknown[]) => void;
    Worker.prototype.postMessage = function (this: Worker, message: unknown, ...rest: unknown[]) {
      const m = message as { type?: string; id?: unknown; path?: string[] } | undefined;
      if (m?.type === 'APPLY' && m.path) methodOf.set(m.id, m.path.join('.'));
      post.call(this, message, ...rest);
    } as typeof Worker.prototype.postMessage;
    /** Wraps the 'message' listeners comlink adds, so that `heldAs` can keep a message back. */
    const intercept = (proto: Worker | MessagePort, heldAs: (data: unknown) => string | undefined) => {
      const listen = proto.addEventListener as (this: EventTarget, type: string, listener: unknown, options?: unknown) => void;
      proto.addEventListener = function (this: EventTarget, type: string, listener: unknown, options?: unknown) {
        if (type !== 'message' || typeof listener !== 'function') return listen.call(this, type, listener, options);
        const call = listener as (this: EventTarget, event: MessageEvent) => void;
        listen.call(this, type, function (this: EventTarget, event: MessageEvent) {
          if (!keep(heldAs(event.data), () => call.call(this, event))) call.call(this, event);
        }, options);
      } as typeof proto.addEventListener;
    };
    intercept(Worker.prototype, (data) => methodOf.get((data as { id?: unknown } | undefined)?.id));
    intercept(MessagePort.prototype, (data) => ((data as { type?: string } | undefined)?.type === 'APPLY' ? 'callbacks' : undefined));
    const holds: ReplyHolds = {
      hold: (what) => void holding.add(what),
      waiting: (what) => held.get(what)?.length ?? 0,
      async release(what) {
        holding.delete(what);
        const deliveries = held.get(what) ?? [];
        held.delete(what);
        for (const deliver of deliveries) deliver();
        // Let the page's state and DOM follow what was delivered before the spec looks.
        await new Promise((resolve) => setTimeout(resolve));
        return deliveries.length;
      },
    };
    (window as unknown as { lesionStudioHolds: ReplyHolds }).lesionStudioHolds = holds;
  });
}

function inPage<K extends keyof ReplyHolds>(page: Page, call: K, what: string): Promise<Awaited<ReturnType<ReplyHolds[K]>>> {
  return page.evaluate(
    ([c, w]) => (window as unknown as { lesionStudioHolds: ReplyHolds }).lesionStudioHolds[c](w),
    [call, what] as const,
  ) as Promise<Awaited<ReturnType<ReplyHolds[K]>>>;
}
export const holdReplies = (page: Page, what: string): Promise<void> => inPage(page, 'hold', what);
export const heldReplies = (page: Page, what: string): Promise<number> => inPage(page, 'waiting', what);
/** Delivers what was held, in order, and holds no more; returns how many. */
export const releaseReplies = (page: Page, what: string): Promise<number> => inPage(page, 'release', what);

/** In the page: the runs database's keys, or with `key` the value stored under it. */
function inRunStore<T>(page: Page, key?: string): Promise<T> {
  return page.evaluate(
    (k) =>
      new Promise<T>((resolve, reject) => {
        const open = indexedDB.open('lesion-studio-runs');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const store = open.result.transaction('kv').objectStore('kv');
          const request = k === undefined ? store.getAllKeys() : store.get(k);
          request.onsuccess = () => resolve(request.result as T);
          request.onerror = () => reject(request.error);
        };
      }),
    key,
  );
}

/** Every key of the runs database (checkpoints, pseudo-labels, states). */
export const runStoreKeys = (page: Page): Promise<string[]> => inRunStore<string[]>(page);

/** The run's step events, from the history the worker keeps in IndexedDB. */
export async function stepEvents(page: Page): Promise<StepEvent[]> {
  const key = (await runStoreKeys(page)).find((k) => k.endsWith('/studio/history'));
  if (key === undefined) throw new Error('no run history stored');
  const history = await inRunStore<StampedEvent[]>(page, key);
  return history.flatMap(({ event }) => (event.type === 'step' ? [event] : []));
}
