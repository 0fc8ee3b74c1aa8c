/**
 * The studio's WebGPU training step issues the programs the Node host's does:
 * one tiny card trained in the studio's worker in Chromium (SwiftShader) and
 * by the CLI in Node (Dawn on lavapipe), each step's dispatches counted by
 * the core (dispatches.ts, carried in the step events). A WebGPU program of
 * ours that one host took and the other fell back from, or a kernel that
 * tfjs picks by adapter, shows up here as a different count.
 */
import { expect, test } from '@playwright/test';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { paperCard } from '../src/core/config.ts';
import { tinyCard } from './cards.ts';
import { collectErrors, datasets, repoRoot, startCard, stepEvents } from './helpers.ts';

// 64 px with the paper's optimiser (SGD with momentum): small enough for software adapters, and every kind of program a step has.
const base = tinyCard('e2e-dispatches', { backend: 'webgpu', optimizer: paperCard().train.optimizer });
const card = { ...base, model: { ...base.model, inputSize: 64 } };

/** The CLI's last step line on the card, and the dispatches it names. */
async function nodeDispatches(): Promise<{ step: number; dispatches: number; line: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lesion-e2e-dispatches-'));
  try {
    await writeFile(path.join(dir, 'card.json'), JSON.stringify(card));
    const args = [path.join(repoRoot, 'bin/lesion-studio.js'), 'train', '--config', path.join(dir, 'card.json'), '--labeled', path.join(datasets, 'isic2018'), '--out', path.join(dir, 'run')];
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`lesion-studio train exited ${code}:\n${text}`))));
    });
    const lines = output.split('\n').filter((l) => / step \d+\/\d+ .* WebGPU dispatches/.test(l));
    const line = lines.at(-1);
    if (!line) throw new Error(`the CLI printed no step with its WebGPU dispatches:\n${output}`);
    const [, step, dispatches] = / step (\d+)\/\d+ .* (\d+) WebGPU dispatches/.exec(line)!;
    return { step: Number(step), dispatches: Number(dispatches), line };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("a WebGPU training step dispatches as many programs in the studio's worker as in Node", async ({ page }) => {
  // Both hosts train on the CPU through software adapters: minutes on a busy machine.
  test.setTimeout(900_000);
  const errors = collectErrors(page);
  const node = await nodeDispatches();
  console.log(`Node (Dawn): ${node.line.trim()}`);

  await page.goto('/');
  await page.getByTestId('open-demo').click();
  await expect(page.getByTestId('summary-totals')).toContainText('24 labeled pairs');
  await startCard(page, card);
  await expect(page.getByTestId('run-backend')).toContainText('WebGPU');
  await expect(page.getByTestId('run-status')).toHaveAttribute('data-status', 'completed', { timeout: 600_000 });

  // The worker's step events as it recorded them for the charts (the run's history in IndexedDB).
  const steps = await stepEvents(page);

  const counts = steps.map((s) => s.dispatches);
  console.log(`studio (SwiftShader): dispatches per step ${counts.join(', ')}`);
  // Printed, not asserted (timings belong in benchmarks): in Chromium a submit goes to the GPU process, so this is the worker's host cost per step.
  console.log(`studio (SwiftShader): ms to issue each step ${steps.map((s) => s.issueMs?.toFixed(1)).join(', ')}`);
  expect(steps.length).toBeGreaterThan(1);
  // Past the first step, whose optimiser creates its momentum buffers, every step dispatches alike.
  expect(new Set(counts.slice(1)).size).toBe(1);
  expect(counts.at(-1)).toBe(node.dispatches);
  expect(errors).toEqual([]);
});
