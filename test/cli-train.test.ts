/**
 * `train` through the real CLI (child processes) on PH2 and ISIC 2018, with a
 * model of a few thousand weights at 32 px: several folders after one flag,
 * Ctrl-C, one writer per --out, resuming only the card it was started with,
 * replacing a run only when asked, and metrics.json telling the exported
 * checkpoint's figures from the last epoch's.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paperCard, type RunCard } from '../src/core/config.ts';
import type { Sample } from '../src/core/dataset/layouts.ts';
import { evaluate, summary } from '../src/core/scoring/evaluate.ts';
import type { RunState, StageResult } from '../src/core/run/pipeline.ts';
import { itemFromSample, PixelCache } from '../src/core/dataset/samples.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { loadLayersModel } from '../src/node/model-files.ts';
import { FsKeyValueStore } from '../src/node/store.ts';
import { cli, spawnCli } from './helpers/cli.ts';
import { datasetsRoot } from './helpers/datasets.ts';
import { MemoryStore } from './helpers/memory-store.ts';

const PH2 = path.join(datasetsRoot, 'ph2');
const ISIC2018 = path.join(datasetsRoot, 'isic2018');
const SIZE = 32;
const BATCH = 4;

/** A teacher only, without noise, at 32 px: seconds per epoch on one core, and far from trivial masks by epoch 2. */
function tinyCard(epochs: number, changes: { inputSize?: number; lr?: number } = {}): RunCard {
  const paper = paperCard();
  return {
    ...paper,
    name: 'cli-train-test',
    seed: 3,
    backend: 'wasm',
    model: { encoder: 'mobilenetv2', width: 0.25, outputStride: 16, atrousRates: [2, 3, 4], asppChannels: 8, dropout: 0, inputSize: changes.inputSize ?? SIZE, init: 'random', inputRange: 'unit' },
    train: {
      ...paper.train,
      epochs,
      batchSize: BATCH,
      optimizer: { kind: 'adam', lr: changes.lr ?? 1e-2, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
      readEverySteps: 2,
      checkpointEverySteps: 5,
      emaSmoothing: 0.5,
    },
    noise: { preset: 'none', distortion: 'optical' },
    data: { split: { kind: 'fractions', val: 0.25, test: 0.15 }, unlabeledPerLabeled: 4, labeledFraction: 1 },
    student: { init: 'same-as-teacher', rounds: 0 },
    eval: { logitThreshold: 0, tta: 'none', postprocess: 'none' },
  };
}

/** The pid of a process that has ended. */
function deadPid(): number {
  const ended = spawnSync(process.execPath, ['-e', '']);
  return ended.pid!;
}

const noStackTrace = (stderr: string): void => expect(stderr).not.toMatch(/^ {4}at /m);

let work: string;
let out: string;
const cards: Record<'long' | 'short' | 'changed', string> = { long: '', short: '', changed: '' };

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lesion-cli-train-'));
  out = path.join(work, 'run');
  const write = (name: keyof typeof cards, card: RunCard): void => {
    cards[name] = path.join(work, `${name}.json`);
    writeFileSync(cards[name], JSON.stringify(card));
  };
  // Long enough that Ctrl-C always falls mid-run.
  write('long', tinyCard(500));
  write('short', tinyCard(3));
  write('changed', tinyCard(500, { inputSize: 64, lr: 0.1 }));
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('lesion-studio train', () => {
  it('refuses an --out inside a data folder, naming both, before writing anything', async () => {
    const data = path.join(work, 'data');
    mkdirSync(data);
    symlinkSync(PH2, path.join(data, 'ph2'));
    const inside = path.join(data, 'runs', 'first');
    const trained = await cli('train', '--config', cards.short, '--labeled', data, '--out', inside, '--backend', 'wasm');
    expect(trained.code, trained.stderr).toBe(2);
    expect(trained.stderr).toContain(`lesion-studio train: --out ${inside} is inside the data folder ${data} (--labeled); what is written there would be read as data next time. Choose an --out outside the data folders`);
    expect(existsSync(path.join(data, 'runs'))).toBe(false);

    const predicted = await cli('predict', '--model', work, '--images', PH2, '--out', path.join(PH2, 'masks'));
    expect(predicted.code, predicted.stderr).toBe(2);
    expect(predicted.stderr).toContain(`lesion-studio predict: --out ${path.join(PH2, 'masks')} is inside the data folder ${PH2} (--images)`);
  });

  it('takes several --labeled folders after one flag, and Ctrl-C ends with its friendly line, a checkpoint and exit code 130', async () => {
    const running = spawnCli('train', '--config', cards.long, '--labeled', PH2, ISIC2018, '--out', out, '--backend', 'wasm');
    await running.stderrLine(/\bstep \d+\/\d+/);
    running.child.kill('SIGINT');
    const { code, signal, stderr } = await running.done;
    expect(signal).toBeNull();
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('data: 65 labeled pairs, 0 unlabeled images, 0 strays');
    expect(stderr).toContain('interrupted: saving a checkpoint; run again with --resume to continue');
    noStackTrace(stderr);

    const store = new FsKeyValueStore(path.join(out, 'store'));
    const state = (await store.get<RunState>('runs/run/state'))!;
    expect(state.status).toBe('cancelled');
    expect(await store.keys('runs/run/ckpt/teacher/latest')).not.toEqual([]);
    expect(existsSync(path.join(out, 'train.lock'))).toBe(false);
  });

  it('refuses to resume with another card, naming each field that differs, and leaves the run as it was', async () => {
    const before = readFileSync(path.join(out, 'run-card.json'), 'utf8');
    const { code, stderr } = await cli('train', '--resume', '--config', cards.changed, '--labeled', PH2, ISIC2018, '--out', out, '--backend', 'wasm');
    expect(code, stderr).toBe(2);
    expect(stderr).toContain(`lesion-studio train: --config ${cards.changed} differs from the run being resumed in ${out}:`);
    expect(stderr).toContain('  model.inputSize: 64 in --config, 32 in the run being resumed');
    expect(stderr).toContain('  train.optimizer.lr: 0.1 in --config, 0.01 in the run being resumed');
    expect(stderr).toContain(`resume with the run's own card (--config ${path.join(out, 'run-card.json')}), or start afresh with --replace`);
    expect(stderr.match(/in the run being resumed/g)).toHaveLength(2);
    expect(readFileSync(path.join(out, 'run-card.json'), 'utf8')).toBe(before);
    noStackTrace(stderr);
  });

  it('refuses a fresh run into an --out that holds a run, unless --replace', async () => {
    const { code, stderr } = await cli('train', '--config', cards.short, '--labeled', PH2, '--out', out, '--backend', 'wasm');
    expect(code, stderr).toBe(2);
    expect(stderr).toContain(`lesion-studio train: ${out} already holds a run (${path.join(out, 'store')}); continue it with --resume, or give --replace to delete it and start afresh`);
  });

  it('lets one train at a time write to an --out: a live lock is refused, naming its pid', async () => {
    const lock = path.join(out, 'train.lock');
    writeFileSync(lock, `${process.pid}\n`);
    try {
      const { code, stderr } = await cli('train', '--resume', '--config', cards.long, '--labeled', PH2, ISIC2018, '--out', out, '--backend', 'wasm');
      expect(code, stderr).toBe(1);
      expect(stderr).toContain(`lesion-studio train: ${out} is in use by another train (pid ${process.pid}, in ${lock}); wait for it to end or stop it. If no train runs there, delete ${lock}`);
      expect(readFileSync(lock, 'utf8')).toBe(`${process.pid}\n`);
    } finally {
      rmSync(lock);
    }
  });

  describe('with --replace over a stale lock', () => {
    let stderr: string;
    let code: number;
    let stale: number;
    let started: string;

    beforeAll(async () => {
      stale = deadPid();
      writeFileSync(path.join(out, 'train.lock'), `${stale}\n`);
      started = new Date().toISOString();
      ({ code, stderr } = await cli('train', '--config', cards.short, '--labeled', PH2, '--out', out, '--replace', '--backend', 'wasm'));
    });

    it('takes the lock over with a note, deletes the old run and trains the new card from scratch', async () => {
      expect(code, stderr).toBe(0);
      const lock = path.join(out, 'train.lock');
      expect(stderr).toContain(`note: ${lock} was left by pid ${stale}, which is no longer running; taking it over`);
      expect(stderr).toContain(`note: --replace: deleted the run in ${out}`);
      expect(existsSync(lock)).toBe(false);
      const store = new FsKeyValueStore(path.join(out, 'store'));
      const state = (await store.get<RunState>('runs/run/state'))!;
      expect(state.status).toBe('completed');
      expect(state.createdAt >= started).toBe(true);
      expect(await store.get<RunCard>('runs/run/card')).toEqual(tinyCard(3));
      expect(JSON.parse(readFileSync(path.join(out, 'run-card.json'), 'utf8'))).toEqual(tinyCard(3));
      noStackTrace(stderr);
    });

    it('writes metrics.json with the exported checkpoint\'s epoch and figures as the main ones, and the last epoch\'s apart', async () => {
      const metrics = JSON.parse(readFileSync(path.join(out, 'teacher', 'metrics.json'), 'utf8')) as StageResult;
      expect(Object.keys(metrics).sort()).toEqual(['best', 'last', 'stage', 'test']);
      // The epoch lines name the best epochs as they come; the exported one is the last so named.
      const bestEpochs = [...stderr.matchAll(/^Teacher epoch (\d+)\/3: .* best in /gm)].map((m) => Number(m[1]));
      expect(bestEpochs.length).toBeGreaterThan(0);
      expect(metrics.best.epoch).toBe(bestEpochs.at(-1));
      expect(metrics.last.epoch).toBe(3);
      const lastLine = stderr.match(/^Teacher epoch 3\/3: paper mIoU ([\d.]+)% lesion IoU ([\d.]+)% Dice ([\d.]+)%/m)!;
      expect(lastLine).not.toBeNull();
      expect((100 * metrics.last.val!.paperMIoU).toFixed(1)).toBe(lastLine[1]);
      expect((100 * metrics.last.val!.dice).toFixed(1)).toBe(lastLine[3]);

      // The exported model, scored here on the run's validation images in the run's batches, gives the main figures.
      await initNodeBackend('wasm');
      const store = new FsKeyValueStore(path.join(out, 'store'));
      const state = (await store.get<RunState>('runs/run/state'))!;
      const source = new FsFileSource([PH2]);
      const byKey = new Map((await source.index()).sets.flatMap((set) => set.labeled).map((s): [string, Sample] => [`${s.set}/${s.id}`, s]));
      const val = state.split.val.map((key) => itemFromSample(byKey.get(key)!));
      expect(val).toHaveLength(metrics.best.val!.images);
      const { model } = await loadLayersModel(path.join(out, 'teacher', 'model'));
      const cache = new PixelCache(source, new SharpDecoder(), new MemoryStore(), { width: SIZE, height: SIZE }, () => {}, 0);
      const scored = summary((await evaluate(model, val, cache, { batchSize: BATCH, logitThreshold: tinyCard(3).eval.logitThreshold })).overall);
      model.dispose();
      // The export build's logits match the training build's to 1e-4, so a pixel at the threshold may flip.
      expect(scored.lesionIoU).toBeGreaterThan(0.1);
      for (const key of ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice'] as const) {
        expect(Math.abs(scored[key] - metrics.best.val![key]), key).toBeLessThan(2e-3);
      }
    });
  });
});
