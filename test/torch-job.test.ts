/**
 * A job on a PyTorch "cluster" of two CPU processes: `export-job` packs a
 * tiny card's run on the shared images, `torchrun --standalone
 * --nproc_per_node 2` (gloo) trains it through all four stages, one worker
 * is killed mid-stage and the same command resumes it, and `lesion-studio
 * eval` on the teacher model it wrote reproduces the job's own test score.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { quickCard, type RunCard } from '../src/core/config.ts';
import type { JobManifest } from '../src/core/run/job.ts';
import { cli } from './helpers/cli.ts';
import { datasetsRoot, repoRoot } from './helpers/datasets.ts';
import { torchEnv, torchPython } from './helpers/torch.ts';

const card: RunCard = {
  ...quickCard(),
  name: 'tiny-cluster',
  seed: 5,
  model: { ...quickCard().model, width: 0.35, outputStride: 16, atrousRates: [1, 2, 3], asppChannels: 8, inputSize: 32, init: 'random' },
  // The levers beside the paper's: the job must run them as the studio does (torch.test.ts holds each to the core's numerics).
  train: { ...quickCard().train, epochs: 1, batchSize: 4, optimizer: { kind: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 }, loss: 'dice+bce', lrSchedule: 'poly', warmupEpochs: 0.5, readEverySteps: 1, checkpointEverySteps: 2 },
  data: { split: { kind: 'fractions', val: 0.2, test: 0.3 }, unlabeledPerLabeled: 0.5, labeledFraction: 1 },
  pseudo: { threshold: 0.5, minLesionFraction: 0.01, flipTta: true },
  eval: { logitThreshold: 0, tta: 'flips', postprocess: 'auto' },
};

interface Launch {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * torchrun as `python -m torch.distributed.run`; `onLine` sees each stdout line as it comes.
 * `--redirects 2 --tee 2` (the workers' stderr to log files and the console) because torch 1.13's
 * torchrun cannot parse its own default "0" on Python 3.11 (Debian 12's pair): see the README.
 */
function torchrun(job: string, onLine: (line: string) => void = () => {}): Promise<Launch> {
  const args = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '--redirects', '2', '--tee', '2', '-m', 'lesion_studio_torch', job];
  const child = spawn(torchPython!, args, { cwd: repoRoot, env: torchEnv() });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk;
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop()!;
    lines.forEach(onLine);
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe.skipIf(!torchPython)('a job on torchrun with two CPU processes', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'torch-job-'));
  const job = path.join(dir, 'job');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trains all four stages, survives a killed worker, and writes models that eval scores as the job did', async () => {
    writeFileSync(path.join(dir, 'card.json'), JSON.stringify(card));
    const exported = await cli('export-job', '--config', path.join(dir, 'card.json'), '--labeled', path.join(datasetsRoot, 'isic2018'), path.join(datasetsRoot, 'ph2'), '--unlabeled', path.join(datasetsRoot, 'isic2017'), '--out', job);
    expect(exported.stderr + exported.stdout).toContain('torchrun --standalone');
    expect(exported.code).toBe(0);
    const manifest = JSON.parse(readFileSync(path.join(job, 'job.json'), 'utf8')) as JobManifest;
    expect(manifest.counts).toMatchObject({ train: 32, val: 13, test: 20, unlabeled: 16 });

    // First launch: one worker is killed once the student stage has checkpointed mid-epoch.
    const pids = new Map<number, number>();
    let killed: number | undefined;
    const first = await torchrun(job, (line) => {
      const rank = /^rank (\d) of 2: pid (\d+)$/.exec(line);
      if (rank) pids.set(Number(rank[1]), Number(rank[2]));
      if (killed === undefined && /^student: checkpoint \(latest\) at epoch 1, step \d+/.test(line)) {
        killed = pids.get(1)!;
        process.kill(killed, 'SIGKILL');
      }
    });
    expect(killed, first.stdout + first.stderr).toBeDefined();
    expect(first.code).not.toBe(0);
    expect(first.stdout).toContain('teacher test: lesion IoU');
    expect(first.stdout).not.toContain('student test:');

    const second = await torchrun(job);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(second.stdout).toContain('teacher: already completed');
    expect(second.stdout).toContain('pseudo-teacher: already completed');
    const resumed = /^student: resumed from its checkpoint at epoch 1, step (\d+) of the epoch/m.exec(second.stdout);
    expect(resumed, second.stdout).not.toBeNull();
    expect(Number(resumed![1])).toBeGreaterThanOrEqual(2);
    for (const stage of ['student', 'pseudo-student', 'student-star']) expect(second.stdout).toMatch(new RegExp(`^${stage}: started`, 'm'));
    expect(second.stdout).toMatch(/^student-star epoch 1\/1: loss \d/m);

    // Back into the studio's formats.
    const out = path.join(job, 'out');
    const metrics = JSON.parse(readFileSync(path.join(out, 'metrics.json'), 'utf8'));
    expect(metrics.status).toBe('completed');
    expect(metrics.results.map((r: { stage: string }) => r.stage)).toEqual(['teacher', 'student', 'student-star']);
    for (const stage of ['pseudo-teacher', 'pseudo-student']) {
      const rows = readFileSync(path.join(out, stage, 'pseudo-labels.csv'), 'utf8').trim().split('\n');
      expect(rows).toHaveLength(1 + 16);
    }
    const teacher = JSON.parse(readFileSync(path.join(out, 'teacher', 'metrics.json'), 'utf8'));
    const metadata = JSON.parse(readFileSync(path.join(out, 'teacher', 'model', 'metadata.json'), 'utf8'));
    expect(metadata).toMatchObject({ format: 'lesion-studio-model/1', stage: 'teacher', inputSize: 32, card });
    expect(metadata.results.test.overall.lesionIoU).toBe(teacher.test.overall.lesionIoU);
    // eval.postprocess 'auto': decided on the validation images, kept iff strictly better, stored with the stage and its model.
    const { applied, valLesionIoU } = teacher.postprocess as { applied: boolean; valLesionIoU: { without: number; with: number } };
    expect(applied).toBe(valLesionIoU.with > valLesionIoU.without);
    expect(metadata).toMatchObject({ tta: 'flips', postprocess: applied });
    expect(first.stdout).toMatch(new RegExp(`^teacher: post-processing \\(largest lesion, holes filled\\) ${applied ? 'kept' : 'left off'}: validation lesion IoU`, 'm'));
    if (applied) {
      // The teacher's pseudo-labels were read with its post-processing: each stored mask is one lesion without holes.
      const check = spawnSync(torchPython!, ['-c', `import glob, sys, numpy as np
from lesion_studio_torch.images import read_stored_mask
from lesion_studio_torch.readout import largest_lesion_filled
masks = [read_stored_mask(p) for p in sorted(glob.glob(sys.argv[1] + '/*.png'))]
print(len(masks), sum(np.array_equal(largest_lesion_filled(m), m) for m in masks))`, path.join(out, 'store', 'pseudo', 'pseudo-teacher')], { env: torchEnv(), encoding: 'utf8' });
      expect(check.stdout.trim(), check.stderr).toBe('16 16');
    }

    // The test images alone, in their layouts, for eval to score.
    const testRoot = path.join(dir, 'test-images');
    for (const image of manifest.images.filter((i) => i.split === 'test')) {
      for (const file of [image.image, image.mask!]) {
        const link = path.join(testRoot, image.root, file);
        mkdirSync(path.dirname(link), { recursive: true });
        if (!existsSync(link)) symlinkSync(path.join(manifest.roots[image.root], file), link);
      }
    }
    const scored = await cli('eval', '--model', path.join(out, 'teacher', 'model'), '--data', ...Object.keys(manifest.roots).filter((r) => existsSync(path.join(testRoot, r))).map((r) => path.join(testRoot, r)), '--json');
    expect(scored.code, scored.stderr).toBe(0);
    const evaluation = JSON.parse(scored.stdout);
    expect(evaluation.overall.images).toBe(20);
    const reported = teacher.test.overall.lesionIoU as number;
    // A model that marks nothing (or everything) would make the comparison empty.
    expect(reported).toBeGreaterThan(0.05);
    expect(Math.abs(evaluation.overall.lesionIoU - reported)).toBeLessThanOrEqual(0.005);
  }, 600_000);

  it('refuses, naming the root, a job whose data folder is not on this machine', () => {
    const moved = path.join(dir, 'moved-job');
    mkdirSync(moved, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(job, 'job.json'), 'utf8')) as JobManifest;
    writeFileSync(path.join(moved, 'job.json'), JSON.stringify({ ...manifest, roots: { ...manifest.roots, ph2: '/nowhere/ph2' } }));
    const run = spawnSync(torchPython!, ['-m', 'lesion_studio_torch', moved], { env: torchEnv(), encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toBe('lesion_studio_torch: data root ph2: /nowhere/ph2 is not a folder here; point it with --data-root ph2=<path>');
  });
});

describe('export-job --init', () => {
  it('refuses a model of another architecture than the card\'s, naming the model folder', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'job-init-'));
    try {
      const other = { ...card, model: { ...card.model, encoder: 'resnet34' as const } };
      writeFileSync(path.join(dir, 'card.json'), JSON.stringify(card));
      writeFileSync(path.join(dir, 'other.json'), JSON.stringify(other));
      const first = await cli('export-job', '--config', path.join(dir, 'other.json'), '--labeled', path.join(datasetsRoot, 'ph2'), '--out', path.join(dir, 'a'));
      expect(first.code, first.stderr).toBe(0);
      const refused = await cli('export-job', '--config', path.join(dir, 'card.json'), '--labeled', path.join(datasetsRoot, 'ph2'), '--out', path.join(dir, 'b'), '--init', path.join(dir, 'a', 'init'));
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`${path.join(dir, 'a', 'init')}: does not fit the card's model \\(`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
