/**
 * `npm run bench:gpu`: the check for the first machine with a graphics card.
 * For the paper card's model at 128 px batch 4 and 256 px batch 10 it prints
 * the studio's WebGPU training step in Node (Dawn on the vendor's Vulkan
 * driver), with tfjs's kernels alone and with ours (the levers), its dispatch
 * count and host cost, and the PyTorch replica (bench/torch_step.py) on CUDA
 * on the same card, with the ratio. It installs nothing: `npm ci` and the
 * machine's driver, CUDA and torch are all it uses.
 *
 * A software adapter (lavapipe, SwiftShader) is not a GPU: on a machine with
 * no other, it prints one line saying so and exits 1. Whatever else is
 * missing (the Vulkan driver, CUDA, torch) is said in the table's place.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { softwareAdapter } from '../src/core/backends/adapter.ts';
import { WEBGPU_LEVERS } from '../src/core/backends/webgpu/levers.ts';
import { median, table } from './report.ts';
import type { TaskResult } from './tasks.ts';

const CELLS = [
  { size: 128, batch: 4 },
  { size: 256, batch: 10 },
];
const STEPS = 5;
const WARMUP = 2;
/** Per child: eight children, so the whole check stays under 8 minutes even if each is stopped. */
const CHILD_LIMIT_S = 55;

const log = (text: string): void => void process.stderr.write(`${text}\n`);

interface Child {
  timesMs: number[];
  warmupMs: number[];
  host?: { wallMs: number }[];
  dispatches?: TaskResult['dispatches'];
  backendDetail?: string;
  device?: string;
  torch?: string;
}

/** The last JSON line a child printed, or the error it died of. */
function runChild(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Child | { error: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_LIMIT_S * 1000);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').reverse().find((l) => l.startsWith('{'));
      const last = line ? (JSON.parse(line) as Child) : undefined;
      if (code === 0 && last) return resolve(last);
      if (signal && last?.timesMs.length) return resolve(last);
      const lines = stderr.split('\n').map((l) => l.trim());
      const reason = signal ? `stopped after ${CHILD_LIMIT_S} s` : (lines.find((l) => /^[A-Za-z]*Error\b/.test(l)) ?? lines.filter(Boolean).at(-1) ?? `exit code ${code}`);
      resolve({ error: reason });
    });
  });
}

/** What Dawn offers without lavapipe forced on it: the adapter the studio's Node host would train on. */
async function dawnAdapter(env: NodeJS.ProcessEnv): Promise<{ name: string; software?: string } | { error: string }> {
  const probe = `
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    const adapter = await create([]).requestAdapter();
    const info = adapter?.info;
    console.log(JSON.stringify(info ? { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description } : null));
    process.exit(0);`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { env, encoding: 'utf8', timeout: 60_000 });
  const line = result.stdout?.split('\n').find((l) => l.startsWith('{') || l === 'null');
  if (!line) return { error: `the webgpu package (Dawn) failed: ${(result.stderr ?? '').trim().split('\n').at(-1) ?? `exit ${result.status}`}` };
  const info = JSON.parse(line) as Record<string, string> | null;
  if (!info) return { error: 'Dawn found no Vulkan adapter' };
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unnamed';
  return { name, software: softwareAdapter(info) };
}

function nvidiaGpus(): string[] {
  const smi = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version', '--format=csv,noheader'], { encoding: 'utf8' });
  return smi.status === 0 ? smi.stdout.trim().split('\n').filter(Boolean) : [];
}

function gpuDeviceNodes(): string[] {
  const list = (dir: string, prefix: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(prefix)).map((n) => path.join(dir, n)) : []);
  return [...list('/dev/dri', 'renderD'), ...list('/dev', 'nvidia').filter((n) => /nvidia\d+$/.test(n))];
}

function vulkanIcds(): string[] {
  return ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].flatMap((dir) => (existsSync(dir) ? readdirSync(dir) : []));
}

/** A Python whose torch sees CUDA, or why there is none. */
function findCudaTorch(): { python: string; version: string } | { reason: string } {
  const candidates = [...new Set([process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => Boolean(c)))];
  const failures: string[] = [];
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__, torch.cuda.is_available(), torch.version.cuda)'], { encoding: 'utf8' });
    if (probe.status !== 0) {
      failures.push(`${python}: ${probe.error ? probe.error.message : (probe.stderr.trim().split('\n').at(-1) ?? `exit ${probe.status}`)}`);
      continue;
    }
    const [version, cuda, built] = probe.stdout.trim().split(' ');
    if (cuda === 'True') return { python, version };
    failures.push(`${python}: torch ${version} ${built === 'None' ? 'is a CPU-only build' : `(CUDA ${built}) sees no CUDA device`}`);
  }
  return { reason: `no PyTorch with CUDA (${failures.join('; ')}); set PYTHON to a python whose torch has CUDA` };
}

// Dawn is left to find the vendor's driver: never point it at lavapipe here.
const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
if (env.VK_ICD_FILENAMES && /lvp_icd/.test(env.VK_ICD_FILENAMES)) delete env.VK_ICD_FILENAMES;
const nvidia = nvidiaGpus();
const nodes = gpuDeviceNodes();
const adapter = await dawnAdapter(env);
const hardware = 'name' in adapter && adapter.software === undefined;

if (!hardware && nvidia.length === 0 && nodes.length === 0) {
  const seen = 'error' in adapter ? adapter.error : `only the software adapter ${adapter.software} (${adapter.name})`;
  process.stdout.write(`bench:gpu: no GPU found (no NVIDIA GPU, no /dev/dri render node; WebGPU: ${seen}); nothing measured.\n`);
  process.exit(1);
}

const out: string[] = [];
out.push(`bench:gpu, ${new Date().toISOString()}, node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'} x${os.cpus().length}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')}`);
out.push(`GPUs: ${nvidia.length > 0 ? nvidia.join('; ') : nodes.join(', ')}`);
let webgpuMissing: string | undefined;
if ('error' in adapter || adapter.software !== undefined) {
  const seen = 'error' in adapter ? adapter.error : `only the software adapter ${adapter.software}`;
  webgpuMissing = `WebGPU not measured: Dawn sees ${seen}, not the GPU. Install the vendor's Vulkan driver (NVIDIA: the libnvidia-gl package of the running driver, which adds nvidia_icd.json; ICDs here: ${vulkanIcds().join(', ') || 'none'}), or set VK_ICD_FILENAMES to its ICD file.`;
  out.push(webgpuMissing);
} else {
  out.push(`WebGPU adapter (Dawn in Node): ${adapter.name}`);
}
const torch = findCudaTorch();
out.push('reason' in torch ? `PyTorch not measured: ${torch.reason}` : `PyTorch ${torch.version} (${torch.python}) on CUDA`);

/** tfjs's kernels alone; ours with every step launched through tfjs; ours with the step replayed (step-graph.ts). */
const VARIANTS = [
  { label: 'tfjs kernels', levers: 'none' },
  { label: 'our kernels, no replay', levers: WEBGPU_LEVERS.filter((l) => l !== 'replay').join(',') },
  { label: 'our kernels, replayed', levers: 'all' },
];

const step = (size: number, batch: number, levers: string) =>
  runChild(process.execPath, [
    '--import', 'tsx', path.join(import.meta.dirname, 'step.ts'),
    '--backend', 'webgpu', '--task', 'train', '--model', 'default', '--size', String(size), '--batch', String(batch),
    '--steps', String(STEPS), '--warmup', String(WARMUP), '--budget', String(CHILD_LIMIT_S - 10), '--levers', levers,
  ], env);
const torchStep = (python: string, size: number, batch: number) =>
  runChild(python, [path.join(import.meta.dirname, 'torch_step.py'), '--size', String(size), '--batch', String(batch), '--steps', String(STEPS * 2), '--warmup', String(WARMUP), '--device', 'cuda']);

const ms = (r: Child | { error: string } | undefined): number | undefined => (r && 'timesMs' in r && r.timesMs.length > 0 ? median(r.timesMs) : undefined);
const cell = (r: Child | { error: string } | undefined, text: (c: Child) => string): string => (!r ? '—' : 'error' in r ? `failed: ${r.error}` : text(r));
const rows: string[][] = [];
for (const { size, batch } of CELLS) {
  const runs: { label: string; result?: Child | { error: string } }[] = [];
  for (const { label, levers } of VARIANTS) {
    log(`webgpu ${size} px batch ${batch}, ${label}`);
    const result = webgpuMissing ? undefined : await step(size, batch, levers);
    if (result && 'backendDetail' in result && result.backendDetail && softwareAdapter({ description: result.backendDetail })) {
      runs.push({ label: `WebGPU, ${label}`, result: { error: `ran on a software adapter (${result.backendDetail})` } });
    } else runs.push({ label: `WebGPU, ${label}`, result });
  }
  log(`pytorch cuda ${size} px batch ${batch}`);
  const torchResult = 'reason' in torch ? undefined : await torchStep(torch.python, size, batch);
  const torchMs = ms(torchResult);
  for (const { label, result } of runs) {
    const stepMs = ms(result);
    rows.push([
      `${size} px batch ${batch}`,
      label,
      cell(result, (c) => (stepMs === undefined ? 'no timed step' : `${stepMs.toFixed(1)} ms (n=${c.timesMs.length})`)),
      cell(result, (c) => String(c.dispatches?.total ?? '—')),
      cell(result, (c) => (c.host?.length ? `${median(c.host.map((h) => h.wallMs)).toFixed(1)} ms` : '—')),
      stepMs !== undefined && torchMs !== undefined ? `${(stepMs / torchMs).toFixed(1)}x` : '—',
    ]);
  }
  rows.push([`${size} px batch ${batch}`, 'PyTorch CUDA (eager)', cell(torchResult, (c) => (torchMs === undefined ? 'no timed step' : `${torchMs.toFixed(1)} ms (n=${c.timesMs.length})`)), '', '', '1x']);
}
out.push('', "Paper card's model (MobileNetV2 w1 OS8, ASPP 256), one training step: forward, backward, SGD, loss read back; medians after warm-up");
out.push(table(['cell', 'run', 'step', 'dispatches', 'host cost', 'step / PyTorch'], rows));
process.stdout.write(`${out.join('\n')}\n`);
