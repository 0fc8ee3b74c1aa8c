/**
 * `npx tsx bench/torch.ts [--quick]` (part of `npm run bench`): the wasm
 * training step of the paper card's model beside the same step in plain
 * PyTorch (bench/torch_step.py: same architecture and parameter count, same
 * loss and SGD, as many threads as wasm uses), alternating the two (wasm,
 * PyTorch, wasm, PyTorch) so that both see the same load, and the ratio of
 * their medians, after the rate each reaches on one pointwise convolution
 * (bench/conv-rate.ts: the most a whole step's ratio can approach); then the paper's own batch (256 px, batch 10) on wasm, with
 * the WebAssembly heap it needed (4 GiB at most), the encoder's blocks
 * recomputed in the backward pass as training on wasm does at that batch.
 *
 * PyTorch is looked for by findTorch (src/node/python.ts); without it the
 * wasm figures are printed alone, and the reason said.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { median } from './report.ts';
import type { TaskResult } from './tasks.ts';
import { wasmThreads } from '../src/node/backends.ts';
import { findTorch } from '../src/node/python.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' } }, strict: false });
const quick = Boolean(values.quick);
const rounds = quick ? 1 : 2;
const steps = quick ? 2 : 3;
const warmup = 2;
const threads = wasmThreads();
const log = (text: string): void => void process.stderr.write(`${text}\n`);

interface Run {
  timesMs: number[];
  warmupMs: number[];
  heapBytes?: number;
  parameters: number;
}

/** The last JSON line a child printed (each holds all figures so far), or the error it died of. */
function runChild<T = Run>(command: string, args: string[]): Promise<T | { error: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      const line = stdout.split('\n').reverse().find((l) => l.startsWith('{'));
      if (code === 0 && line) return resolve(JSON.parse(line) as T);
      const lines = stderr.split('\n').map((l) => l.trim());
      resolve({ error: lines.find((l) => /^[A-Za-z]*Error\b/.test(l)) ?? lines.filter(Boolean).at(-1) ?? `exit code ${code}` });
    });
  });
}

const wasmStep = (size: number, batch: number, n = steps, warm = warmup, recompute = false) =>
  runChild(process.execPath, [
    '--import', 'tsx', path.join(import.meta.dirname, 'step.ts'),
    '--backend', 'wasm', '--task', 'train', '--model', 'default', '--size', String(size), '--batch', String(batch),
    '--steps', String(n), '--warmup', String(warm), '--budget', '3600', ...(recompute ? ['--recompute'] : []),
  ]) as Promise<(TaskResult & Run) | { error: string }>;

const load = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' / ');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const torch = findTorch();
const out: string[] = [];
out.push(`wasm (${threads} thread${threads === 1 ? '' : 's'}) against PyTorch, paper card's model (MobileNetV2 w1 OS8 ASPP 256), one training step (forward, backward, SGD); median of ${steps} steps after ${warmup} warm-up, ${rounds} alternated round${rounds === 1 ? '' : 's'}`);
out.push(`machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.cpus().length} cores, load at start ${load()} (1/5/15 min)`);
if ('reason' in torch) out.push(`PyTorch: not run, ${torch.reason}; wasm alone below`);
else out.push(`PyTorch ${torch.version} (${torch.python}, ${threads} threads)`);

// The arithmetic each side can do at best, on the convolution that holds most of the model's work.
{
  interface Rate { ms: number; gflops: number }
  log('one pointwise convolution: wasm, then PyTorch');
  const w = await runChild<Rate>(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'conv-rate.ts')]);
  const t = 'reason' in torch ? undefined : await runChild<Rate>(torch.python, [path.join(import.meta.dirname, 'torch_step.py'), '--conv-rate', '--threads', String(threads)]);
  const rate = (r: Rate | { error: string } | undefined): string => (!r ? '—' : 'error' in r ? `failed: ${r.error}` : `${r.gflops.toFixed(1)} GFLOP/s (${r.ms.toFixed(1)} ms)`);
  const ratio = w && t && !('error' in w) && !('error' in t) ? `: PyTorch ${(t.gflops / w.gflops).toFixed(1)}x the rate` : '';
  out.push(`  one 1x1 convolution, batch 4, 32x32, 256 -> 256 channels (0.54 GFLOP): wasm ${rate(w)}; PyTorch ${rate(t)}${ratio}`);
}

for (const [size, batch] of quick ? [[128, 4]] : [[128, 4], [256, 2]]) {
  const wasmTimes: number[] = [];
  const torchTimes: number[] = [];
  for (let round = 0; round < rounds; round++) {
    log(`${size} px batch ${batch}, round ${round + 1}: wasm`);
    const w = await wasmStep(size, batch);
    let t: Run | { error: string } | undefined;
    if (!('reason' in torch)) {
      log(`${size} px batch ${batch}, round ${round + 1}: PyTorch`);
      const args = [path.join(import.meta.dirname, 'torch_step.py'), '--size', String(size), '--batch', String(batch), '--steps', String(steps), '--warmup', String(warmup), '--threads', String(threads)];
      t = await runChild(torch.python, args);
    }
    const cell = (r: Run | { error: string } | undefined): string =>
      !r ? '—' : 'error' in r ? `failed: ${r.error}` : `${seconds(median(r.timesMs))} (first step ${seconds(r.warmupMs[0])})`;
    let ratio = '';
    if (w && !('error' in w) && t && !('error' in t)) {
      wasmTimes.push(...w.timesMs);
      torchTimes.push(...t.timesMs);
      ratio = `, wasm/PyTorch ${(median(w.timesMs) / median(t.timesMs)).toFixed(2)}x`;
    } else if (w && !('error' in w)) {
      wasmTimes.push(...w.timesMs);
    }
    out.push(`  ${size} px batch ${batch} round ${round + 1}: wasm ${cell(w)}; PyTorch ${cell(t)}${ratio}`);
    if (w && !('error' in w) && w.warmupMs.length > 1) {
      out.push(`    wasm first step: ${seconds(w.warmupMs[0] - median(w.timesMs))} more than a normal step; heap ${((w.heapBytes ?? 0) / 2 ** 30).toFixed(2)} GiB`);
    }
  }
  if (wasmTimes.length > 0 && torchTimes.length > 0) {
    out.push(`  ${size} px batch ${batch}: wasm ${seconds(median(wasmTimes))}, PyTorch ${seconds(median(torchTimes))}: wasm/PyTorch ${(median(wasmTimes) / median(torchTimes)).toFixed(2)}x`);
  }
}

// The paper's card: does its batch fit the heap?
const card = { size: 256, batch: 10 };
log(`${card.size} px batch ${card.batch}: wasm`);
// One step is enough: the heap grows to what the step needs and never shrinks.
const paper = await wasmStep(card.size, card.batch, 1, 0, true);
out.push(
  'error' in paper
    ? `paper card's batch (${card.size} px, batch ${card.batch}) on wasm, blocks recomputed: failed: ${paper.error}`
    : `paper card's batch (${card.size} px, batch ${card.batch}) on wasm, blocks recomputed: ${seconds(median(paper.timesMs))} a step, WebAssembly heap ${((paper.heapBytes ?? 0) / 2 ** 30).toFixed(2)} GiB of 4`,
);
out.push(`load at end ${load()}`);
process.stdout.write(`${out.join('\n')}\n`);
