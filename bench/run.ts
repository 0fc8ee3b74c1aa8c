/**
 * `npm run bench [-- --quick] [--backends cpu,wasm,webgpu] [--json <file>]`
 *
 * How fast this machine trains, pseudo-labels and decodes, per tfjs backend,
 * and whether the training loop's memory stays flat. Prints tables; asserts
 * nothing (people run it, CI does not).
 *
 * Every (backend, task) runs in its own child process (bench/step.ts), one at
 * a time: tfjs breaks when the backend changes under live tensors, and a
 * child can be stopped when it overruns its budget. Tasks run task by task
 * across backends, so that the ratios compare figures taken close in time
 * (the cpu backend's default-model cells last, being the slowest), and the
 * whole run keeps to a deadline (14 min, 6 with --quick).
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { decodeGroups, timeDecoding, type DecodeResult } from './decode.ts';
import { decodeTable, describe, figureOf, median, memoryRow, speedup, table, type Outcome, type TaskSpec } from './report.ts';
import type { TaskResult } from './tasks.ts';
import { WEBGPU_LEVERS } from '../src/core/backends/webgpu/levers.ts';

const BACKENDS = ['cpu', 'wasm', 'webgpu'] as const;
type Backend = (typeof BACKENDS)[number];

const PYTORCH_REFERENCE =
  "Reference, measured elsewhere (not in this run): the paper's official PyTorch code on this kind of 2-core machine: " +
  '1.1 s/step at 128 px batch 4 (MobileNetV2 OS8), 14.6 s/step at 256 px batch 10; inference 2.4 img/s at 256 px. ' +
  'bench/torch.ts (next) measures a PyTorch replica beside wasm in one run.';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    backends: { type: 'string' },
    json: { type: 'string' },
  },
});

const log = (text: string): void => void process.stderr.write(`${text}\n`);
const quick = Boolean(values.quick);
const backends = parseBackends(values.backends);
const settings = quick
  ? { steps: 2, warmup: 1, budgetS: 40, deadlineS: 6 * 60, decodeRepeats: 1, ph2Images: 8 }
  : { steps: 5, warmup: 1, budgetS: 120, deadlineS: 14 * 60, decodeRepeats: 2, ph2Images: 16 };
/** Time a child gets beyond its budget to start up and finish the step it is in. */
const GRACE_S = 20;

const TASKS: TaskSpec[] = [
  { key: 'memory', title: 'tiny training run, 3 epochs (small model, 64 px, batch 2)', task: 'memory', model: 'small', size: 64, batch: 2 },
  { key: 'train-small', title: 'small (w0.35 OS16 ASPP64)  128 px  batch 4', task: 'train', model: 'small', size: 128, batch: 4 },
  { key: 'train-default-128', title: 'default (w1 OS8 ASPP256)  128 px  batch 4', task: 'train', model: 'default', size: 128, batch: 4 },
  // A forward pass costs about a third of a training step; 4x the pixels, 2x the batch.
  { key: 'predict', title: 'default (w1 OS8 ASPP256)  256 px  batch 8', task: 'predict', model: 'default', size: 256, batch: 8, estimateFrom: { key: 'train-default-128', factor: 8 / 3 } },
  { key: 'train-default-256', title: 'default (w1 OS8 ASPP256)  256 px  batch 8', task: 'train', model: 'default', size: 256, batch: 8, estimateFrom: { key: 'train-default-128', factor: 8 } },
  // The yardstick for dispatches (the ASPP's taps depend on the size); WebGPU only.
  { key: 'train-default-256-b2', title: 'default (w1 OS8 ASPP256)  256 px  batch 2', task: 'train', model: 'default', size: 256, batch: 2, webgpuOnly: true },
  // What each of our WebGPU kernels buys, one at a time: the dispatch count
  // does not depend on the image size, so a small one keeps lavapipe quick.
  // 'all but replay' against 'all': what replaying the recorded step (step-graph.ts) takes off the host cost.
  ...[...['none', 'batchnorm', 'optimizer', 'filter-grad', 'activation-grad', 'atrous', 'reduce-grad', 'uniform-cache', 'loss'].map((l) => [l, l]), ['all but replay', WEBGPU_LEVERS.filter((l) => l !== 'replay').join(',')], ['all', 'all']].map(
    ([title, levers]): TaskSpec => ({ key: `levers-${title.replaceAll(' ', '-')}`, title, task: 'train', model: 'default', size: 64, batch: 4, levers }),
  ),
];

const started = performance.now();
const elapsedS = (): number => (performance.now() - started) / 1000;
const machineAtStart = machine();

log(`bench: ${quick ? 'quick' : 'full'} run on ${backends.join(', ')}; deadline ${settings.deadlineS / 60} min`);
const decodeSize = 256;
const decodeResults: DecodeResult[] = [];
for (const group of await decodeGroups(settings.ph2Images)) {
  log(`decode: ${group.name}`);
  decodeResults.push(await timeDecoding(group, decodeSize, settings.decodeRepeats));
}

const outcomes = new Map<string, Outcome>();
const key = (backend: Backend, task: string): string => `${backend}/${task}`;
const unavailable = new Map<Backend, string>();
// The cpu backend needs minutes per step of the default model: those cells go
// last, so that the deadline cuts them rather than the other backends' figures.
const slowCell = (backend: Backend, spec: TaskSpec): boolean => backend === 'cpu' && spec.model === 'default';
const cells = TASKS.flatMap((spec) => backends.filter((b) => !(spec.levers || spec.webgpuOnly) || b === 'webgpu').map((backend) => ({ backend, spec })));
for (const { backend, spec } of [...cells.filter((c) => !slowCell(c.backend, c.spec)), ...cells.filter((c) => slowCell(c.backend, c.spec))]) {
  const outcome = await runOrSkip(backend, spec);
  outcomes.set(key(backend, spec.key), outcome);
  log(`  ${backend.padEnd(6)} ${spec.key}: ${spec.task === 'memory' ? memoryRow(backend, outcome).slice(1).join(' ') : describe(outcome, spec.batch)}`);
}
const machineAtEnd = machine();

print();
if (values.json) {
  await writeFile(
    values.json,
    `${JSON.stringify(
      {
        startedAt: machineAtStart.at,
        settings: { quick, backends, ...settings },
        machine: { start: machineAtStart, end: machineAtEnd },
        tasks: TASKS.map((spec) => ({ ...spec, results: Object.fromEntries(backends.map((b) => [b, outcomes.get(key(b, spec.key))])) })),
        decode: { size: decodeSize, results: decodeResults },
        reference: PYTORCH_REFERENCE,
      },
      null,
      2,
    )}\n`,
  );
  log(`wrote ${values.json}`);
}

async function runOrSkip(backend: Backend, spec: TaskSpec): Promise<Outcome> {
  const reason = unavailable.get(backend);
  if (reason) return { kind: 'skipped', reason: `backend unavailable (${reason})` };
  const budgetS = Math.min(settings.budgetS, settings.deadlineS - elapsedS() - GRACE_S);
  if (budgetS < 15) return { kind: 'skipped', reason: 'the run reached its deadline' };
  if (spec.estimateFrom) {
    const base = figureOf(outcomes.get(key(backend, spec.estimateFrom.key)));
    if (!base) return { kind: 'skipped', reason: `no ${spec.estimateFrom.key} figure to size it from` };
    const estimateMs = base.ms * spec.estimateFrom.factor;
    if (base.bound === 'more-than') return { kind: 'skipped', reason: `${spec.estimateFrom.key} already overran its budget`, estimateMs };
    // The warm-up step must fit; the timed one is then let run (runChild).
    if (estimateMs > budgetS * 1000) return { kind: 'skipped', reason: `would not fit the ${budgetS.toFixed(0)} s budget`, estimateMs };
  }
  log(`[${elapsedS().toFixed(0)} s] ${backend}: ${spec.key} (budget ${budgetS.toFixed(0)} s)`);
  const outcome = await runChild(backend, spec, budgetS);
  if (outcome.kind === 'failed' && /^ConfigError: backend/.test(outcome.message)) unavailable.set(backend, outcome.message);
  return outcome;
}

function runChild(backend: Backend, spec: TaskSpec, budgetS: number): Promise<Outcome> {
  const args = [
    '--import', 'tsx', path.join(import.meta.dirname, 'step.ts'),
    '--backend', backend, '--task', spec.task, '--model', spec.model,
    '--size', String(spec.size), '--batch', String(spec.batch),
    '--steps', String(settings.steps), '--warmup', String(settings.warmup), '--budget', String(budgetS),
    ...(spec.levers ? ['--levers', spec.levers] : []),
  ];
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let stopAt = 0;
    const stopBy = (at: number): void => {
      if (at <= stopAt) return;
      stopAt = at;
      clearTimeout(timer);
      timer = setTimeout(() => {
        stopped = true;
        child.kill('SIGKILL');
      }, at - performance.now());
    };
    stopBy(t0 + (budgetS + GRACE_S) * 1000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      // Once the warm-up is in, the one timed step the child always takes may
      // run as long as the warm-up did and more (it is often slower on a busy
      // machine): let it, within the run's deadline.
      const complete = stdout.slice(0, stdout.lastIndexOf('\n') + 1);
      const latest = complete.split('\n').reverse().find((l) => l.startsWith('{'));
      const partial = latest ? (JSON.parse(latest) as TaskResult) : undefined;
      if (partial && partial.timesMs.length === 0 && partial.warmupMs.length > 0) {
        const deadline = started + (settings.deadlineS - 5) * 1000;
        stopBy(Math.min(deadline, performance.now() + Math.max(GRACE_S * 1000, Math.min(1.5 * partial.warmupMs.at(-1)!, budgetS * 1000))));
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      const seconds = (performance.now() - t0) / 1000;
      // A stopped child still reported every run it finished.
      const line = stdout.split('\n').reverse().find((l) => l.startsWith('{'));
      if ((code === 0 || stopped) && line) return resolve({ kind: 'done', result: JSON.parse(line) as TaskResult, seconds });
      if (stopped) return resolve({ kind: 'stopped', afterSeconds: budgetS });
      resolve({ kind: 'failed', message: lastError(stderr) ?? `exit code ${code}` });
    });
  });
}

/** The thrown error's line from a child's stderr (the tfjs banner and Dawn's warnings are noise). */
function lastError(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim());
  return lines.find((l) => /^[A-Za-z]*Error\b/.test(l)) ?? lines.filter(Boolean).at(-1);
}

function parseBackends(text: string | undefined): Backend[] {
  if (text === undefined) return [...BACKENDS];
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(BACKENDS as readonly string[]).includes(n));
  if (bad.length > 0 || names.length === 0) {
    log(`bench: --backends takes a comma-separated list of ${BACKENDS.join(', ')}; got "${text}"`);
    process.exit(2);
  }
  return names as Backend[];
}

function machine() {
  const cpus = os.cpus();
  return {
    at: new Date().toISOString(),
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    loadavg: os.loadavg().map((l) => Number(l.toFixed(2))),
    freeMemoryGiB: Number((os.freemem() / 2 ** 30).toFixed(1)),
  };
}

function print(): void {
  const out: string[] = [];
  const machineLine = (label: string, m: ReturnType<typeof machine>): string =>
    `${label} ${m.at}: ${m.cpu}, ${m.cores} cores, load ${m.loadavg.join(' / ')} (1/5/15 min), ${m.freeMemoryGiB} GiB free`;
  out.push(`Lesion Studio benchmark (${quick ? 'quick' : 'full'}), node ${process.version}, tfjs ${tf.version.tfjs}, ${elapsedS().toFixed(0)} s`);
  out.push(machineLine('machine at start', machineAtStart));
  out.push(machineLine('machine at end  ', machineAtEnd));
  const details = new Map<string, string>();
  for (const outcome of outcomes.values()) {
    if (outcome.kind === 'done' && outcome.result.backend) details.set(outcome.result.backend, outcome.result.backendDetail ?? '');
  }
  for (const [name, detail] of details) out.push(`  ${name}: ${detail}`);
  for (const [name, reason] of unavailable) out.push(`  ${name}: unavailable (${reason})`);

  const trainTasks = TASKS.filter((t) => t.task === 'train' && !t.levers && !t.webgpuOnly);
  out.push('', `Training step: forward + backward + SGD update on a fixed batch, loss read back; median of up to ${settings.steps} steps after ${settings.warmup} warm-up; budget ${settings.budgetS} s per cell`);
  out.push(table(['model', ...backends], trainTasks.map((t) => [t.title, ...backends.map((b) => describe(outcomes.get(key(b, t.key)), t.batch))])));

  const predict = TASKS.find((t) => t.task === 'predict')!;
  out.push('', `Pseudo-labelling model pass (predictLogits on real ISIC images decoded beforehand), time per batch of ${predict.batch}`);
  out.push(table(['model', ...backends], [[predict.title, ...backends.map((b) => describe(outcomes.get(key(b, predict.key)), predict.batch))]]));

  const others = backends.filter((b) => b !== 'cpu');
  if (backends.includes('cpu') && others.length > 0) {
    out.push('', 'Speed-up over cpu, same run (cpu time / backend time; ≥ and ≤ where a figure is a bound)');
    out.push(
      table(
        ['task', ...others.map((b) => `${b}/cpu`)],
        [...trainTasks, predict].map((t) => [
          `${t.task} ${t.title}`,
          ...others.map((b) => speedup(figureOf(outcomes.get(key('cpu', t.key))), figureOf(outcomes.get(key(b, t.key))))),
        ]),
      ),
    );
  }

  const leverTasks = TASKS.filter((t) => t.levers);
  if (backends.includes('webgpu')) {
    const hostTasks = TASKS.filter((t) => t.key === 'train-default-128' || t.key === 'train-default-256-b2');
    out.push('', 'WebGPU: host cost per training step (from calling the step until it returns with its work enqueued; the queue held meanwhile, so lavapipe\'s arithmetic is left out: src/core/backends/webgpu/host-clock.ts; median of the timed steps), paper card\'s model');
    out.push(
      table(
        ['cell', 'dispatches', 'host cost per step (wall)', 'per dispatch', 'CPU meanwhile', 'step'],
        hostTasks.map((t) => {
          const outcome = outcomes.get(key('webgpu', t.key));
          const result = outcome?.kind === 'done' ? outcome.result : undefined;
          const d = result?.dispatches;
          const costs = result?.host ?? [];
          const wall = costs.length > 0 ? median(costs.map((c) => c.wallMs)) : undefined;
          const cpu = costs.length > 0 && costs[0].cpuMs !== undefined ? median(costs.map((c) => c.cpuMs!)) : undefined;
          return [
            t.title,
            d ? String(d.total) : '—',
            wall === undefined ? '—' : `${wall.toFixed(0)} ms (n=${costs.length})`,
            wall === undefined || !d ? '—' : `${((1000 * wall) / d.total).toFixed(0)} µs`,
            cpu === undefined ? '—' : `${cpu.toFixed(0)} ms`,
            describe(outcome, t.batch),
          ];
        }),
      ),
    );
    const none = figureOf(outcomes.get(key('webgpu', 'levers-none')));
    out.push('', `WebGPU: which of our kernels run (the rest are tfjs-webgpu's own), default model ${leverTasks[0].size} px batch ${leverTasks[0].batch}; dispatches per training step`);
    out.push(
      table(
        ['our kernels', 'dispatches', 'launching them (JS + WebGPU calls)', 'host cost per step', 'step', 'speed-up over none'],
        leverTasks.map((t) => {
          const outcome = outcomes.get(key('webgpu', t.key));
          const d = outcome?.kind === 'done' ? outcome.result.dispatches : undefined;
          // A replayed step launches nothing through tfjs: its launch time is in the host cost alone.
          const launch = d && !d.byProgram['replayed step'] ? `${d.launchMs.toFixed(0)} ms, ${((1000 * d.launchMs) / d.total).toFixed(0)} µs each` : d ? 'replayed' : '—';
          const costs = outcome?.kind === 'done' ? (outcome.result.host ?? []) : [];
          const host = costs.length > 0 ? `${median(costs.map((c) => c.wallMs)).toFixed(0)} ms` : '—';
          return [t.title, d ? String(d.total) : '—', launch, host, describe(outcome, t.batch), speedup(none, figureOf(outcome))];
        }),
      ),
    );
  }

  const memory = TASKS.find((t) => t.task === 'memory')!;
  out.push('', `tf.memory() before and after a ${memory.title} (trainStage with real data, noise, checkpoints, validation): must be flat`);
  out.push(table(['backend', 'tensors before', 'after', 'diff', 'bytes before', 'after', 'diff', ''], backends.map((b) => memoryRow(b, outcomes.get(key(b, memory.key))))));

  out.push('', `Decoding with SharpDecoder to ${decodeSize}x${decodeSize} (bilinear), files read beforehand`);
  out.push(decodeTable(decodeResults, decodeSize));

  out.push('', PYTORCH_REFERENCE);
  process.stdout.write(`${out.join('\n')}\n`);
}
