/**
 * The label queue and *Fine-tune with my new labels* are core functions
 * (core/active/rank.ts, core/active/fine-tune.ts) that the studio's worker
 * and the CLI both call. One tiny run (teacher only, 32 px, on PH2) is
 * trained by `lesion-studio train`; `lesion-studio rank` and `lesion-studio
 * fine-tune` on its folder give the order, scores and figures that the core
 * functions give when called here on the same run, as the worker calls them.
 * The fine-tune's control arm trains without the new labels' images, and
 * its headline is with minus without, paired on the run's test images;
 * Compare reads the stage and both arms and gives that headline again.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { median } from '../src/core/active/acquisition.ts';
import { fineTune, fineTunedModelFiles, fineTunePerImage, fineTuneResult, fineTuneScores, type FineTuneResult } from '../src/core/active/fine-tune.ts';
import { rankPool } from '../src/core/active/rank.ts';
import type { RunCard } from '../src/core/config.ts';
import { tinyTestCard } from './helpers/cards.ts';
import { inputsByRole, rootOf } from '../src/core/dataset/layouts.ts';
import { loadSample } from '../src/core/dataset/loader.ts';
import { itemFromSample, PixelCache } from '../src/core/dataset/samples.ts';
import { METRIC_KEYS, metricsOf, withIntervals } from '../src/core/scoring/bootstrap.ts';
import { evaluate } from '../src/core/scoring/evaluate.ts';
import { predictLogits } from '../src/core/scoring/predict.ts';
import { readMask } from '../src/core/scoring/readout.ts';
import { compareModels, stageScores } from '../src/core/run/compare-models.ts';
import { loadStageModel, type ExportMetadata } from '../src/core/run/pipeline.ts';
import { RunStore } from '../src/core/run/run-store.ts';
import { samplesByKey } from '../src/core/run/stage-model.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { FsKeyValueStore } from '../src/node/store.ts';
import { cli } from './helpers/cli.ts';
import { datasetsRoot } from './helpers/datasets.ts';
import { MemoryStore } from './helpers/memory-store.ts';

const PH2 = path.join(datasetsRoot, 'ph2');
const ISIC2018 = path.join(datasetsRoot, 'isic2018');
const ISIC2017 = path.join(datasetsRoot, 'isic2017');
const NEW_LABELS = ['ISIC_0000013', 'ISIC_0000015', 'ISIC_0000160', 'ISIC_0000161'];
const POOL = 6;

function tinyCard(): RunCard {
  const card = tinyTestCard('fine-tune-rank-test', 11);
  return {
    ...card,
    model: { ...card.model, dropout: 0.2 },
    train: { ...card.train, checkpointEverySteps: 50 },
    data: { ...card.data, split: { kind: 'fractions', val: 0.2, test: 0.25 } },
  };
}

let work: string;
let out: string;
let labelsDir: string;
let poolDir: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'lesion-finetune-rank-'));
  out = path.join(work, 'run');
  const cardFile = path.join(work, 'card.json');
  writeFileSync(cardFile, JSON.stringify(tinyCard()));
  const trained = await cli('train', '--config', cardFile, '--labeled', PH2, '--out', out);
  expect(trained.code, trained.stderr).toBe(0);

  // New labels: ISIC 2018 pairs in the official layout, which the run never saw.
  labelsDir = path.join(work, 'new-labels');
  const images = path.join(labelsDir, 'ISIC2018_Task1-2_Training_Input');
  const masks = path.join(labelsDir, 'ISIC2018_Task1_Training_GroundTruth');
  mkdirSync(images, { recursive: true });
  mkdirSync(masks, { recursive: true });
  for (const id of NEW_LABELS) {
    symlinkSync(path.join(ISIC2018, 'ISIC2018_Task1-2_Training_Input', `${id}.jpg`), path.join(images, `${id}.jpg`));
    symlinkSync(path.join(ISIC2018, 'ISIC2018_Task1_Training_GroundTruth', `${id}_segmentation.png`), path.join(masks, `${id}_segmentation.png`));
  }
  // A pool: a few ISIC 2017 images without their masks.
  poolDir = path.join(work, 'pool');
  mkdirSync(poolDir);
  const validation = path.join(ISIC2017, 'ISIC-2017_Validation_Data');
  const jpegs = (await new FsFileSource([validation]).list()).filter((p) => p.endsWith('.jpg')).slice(0, POOL);
  for (const p of jpegs) symlinkSync(path.join(validation, path.basename(p)), path.join(poolDir, path.basename(p)));
  await initNodeBackend('wasm');
}, 600_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('lesion-studio rank', () => {
  it('ranks the pool in the order, with the scores, that the core gives the Label view', async () => {
    const json = path.join(work, 'rank.json');
    const ranked = await cli('rank', '--run', out, '--pool', poolDir, '--score', 'entropy', '--backend', 'wasm', '--json', json);
    expect(ranked.code, ranked.stderr).toBe(0);
    const printed = JSON.parse(readFileSync(json, 'utf8')) as { stage: string; ranked: { rank: number; image: string; value: number; scores: { entropy: number; flip: number; random: number } }[] };
    expect(printed.stage).toBe('teacher');

    const source = new FsFileSource([poolDir]);
    const { unlabeled } = inputsByRole(await source.index(), () => false);
    const core = await rankPool({ source, decoder: new SharpDecoder(), runs: new FsKeyValueStore(path.join(out, 'store')) }, unlabeled, { runId: 'run', stage: 'teacher', score: 'entropy', mcPasses: 0 });
    expect(core.skipped).toEqual([]);
    expect(core.ranked).toHaveLength(POOL);
    expect(printed.ranked.map((r) => r.image)).toEqual(core.ranked.map((r) => r.sample.image));
    expect(printed.ranked.map((r) => r.scores)).toEqual(core.ranked.map((r) => r.scores));
    // Highest entropy first, and the table says so line by line.
    const values = core.ranked.map((r) => r.value);
    expect(values).toEqual([...values].sort((a, b) => b - a));
    expect(values.every((v, i) => v === core.ranked[i].scores.entropy)).toBe(true);
    const rows = ranked.stdout.split('\n').filter((line) => /^\s*\d+\s/.test(line));
    expect(rows.map((line) => line.trim().split(/\s+/)[0])).toEqual(core.ranked.map((r) => String(r.rank)));
    expect(rows[0]).toContain(path.basename(core.ranked[0].sample.image));
  }, 300_000);
});

describe('lesion-studio fine-tune', () => {
  let printed: FineTuneResult;
  let stdout: string;

  beforeAll(async () => {
    const json = path.join(work, 'fine-tune.json');
    const tuned = await cli('fine-tune', '--run', out, '--data', PH2, '--labels', labelsDir, '--epochs', '2', '--backend', 'wasm', '--json', json);
    expect(tuned.code, tuned.stderr).toBe(0);
    printed = JSON.parse(readFileSync(json, 'utf8')) as FineTuneResult;
    stdout = tuned.stdout;
  }, 600_000);

  it('gives the figures the core gives the studio for the same run, with and without the labels', async () => {
    const source = new FsFileSource([PH2, labelsDir]);
    const { labeled } = inputsByRole(await source.index(), () => true);
    const store = new MemoryStore();
    const runs = new FsKeyValueStore(path.join(out, 'store'));
    const request = { runId: 'run', stage: 'teacher' as const, epochs: 2, roots: ['ph2'], labeled, newLabels: labeled.filter((s) => rootOf(s.image) === 'new-labels') };
    const core = await fineTune({ source, decoder: new SharpDecoder(), runs, store }, request);
    const { finishedAt: _a, ...coreFigures } = JSON.parse(JSON.stringify(core)) as FineTuneResult;
    const { finishedAt: _b, ...cliFigures } = printed;
    expect(cliFigures).toEqual(coreFigures);
    expect(await fineTuneResult(store, 'run', 'teacher')).toEqual(core);

    const state = (await new RunStore(runs, 'run').state())!;
    expect(core.expertLabels).toBe(NEW_LABELS.length);
    expect(core.withoutLabels.train).toBe(state.split.train.length);
    expect(core.withLabels.train).toBe(state.split.train.length + NEW_LABELS.length);
    expect(core.scored).toBe(state.split.test.length);
    expect(core.withLabels.curve.map((c) => c.epoch)).toEqual([1, 2]);
    expect(core.withoutLabels.curve.map((c) => c.epoch)).toEqual([1, 2]);
    // The arms differ in their training images only, so their weights, and so their masks, differ.
    const [difference] = core.labels.differences;
    expect(core.labels.arms.map((a) => a.name)).toEqual(['without them (control)', 'with the new labels']);
    for (const k of METRIC_KEYS) {
      expect(difference.difference[k]).toBeCloseTo(core.withLabels.scores[k] - core.withoutLabels.scores[k], 12);
      expect(difference.ci95[k][0]).toBeLessThanOrEqual(difference.ci95[k][1]);
      expect(difference.pValue[k]).toBeGreaterThan(0);
      expect(difference.pValue[k]).toBeLessThanOrEqual(1);
    }
    expect(difference.perImage).toHaveLength(core.scored);
    expect(difference.wins + difference.losses + difference.ties).toBe(core.scored);
    expect(difference.warning).toMatch(/training noise is not covered/);
    // What Compare reads of each arm: per-image counts whose figures are the arm's.
    for (const arm of ['with', 'without'] as const) {
      const perImage = (await fineTunePerImage(store, 'run', 'teacher', arm))!;
      const figures = metricsOf(perImage);
      const scores = arm === 'with' ? core.withLabels.scores : core.withoutLabels.scores;
      for (const k of METRIC_KEYS) expect(figures[k]).toBeCloseTo(scores[k], 12);
    }
  }, 600_000);

  it('prints what the labels bought beside before, without and with, and writes the with-labels model', () => {
    const [difference] = printed.labels.differences;
    const line = stdout.split('\n').find((l) => l.startsWith('lesion IoU '))!;
    const points = (v: number): string => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}`;
    expect(line).toContain(`${(100 * printed.withoutLabels.scores.lesionIoU).toFixed(1)} %`);
    expect(line).toContain(`${(100 * printed.withLabels.scores.lesionIoU).toFixed(1)} %`);
    expect(line).toContain(`${points(difference.difference.lesionIoU)} [${points(difference.ci95.lesionIoU[0])}, ${points(difference.ci95.lesionIoU[1])}]`);
    expect(stdout).toContain(`control: the same schedule on the run's ${printed.withoutLabels.train} training images without the new labels`);
    const metadata = JSON.parse(readFileSync(path.join(out, 'teacher-finetuned', 'metadata.json'), 'utf8')) as { fineTune: FineTuneResult };
    expect(metadata.fineTune.withLabels).toEqual(printed.withLabels);
  });

  it('refuses labels the run already holds in its split', async () => {
    const refused = await cli('fine-tune', '--run', out, '--data', PH2, '--labels', PH2, '--epochs', '1', '--backend', 'wasm');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('no new label to fine-tune with');
  }, 300_000);
});

describe('Compare of a stage and its fine-tune (core/run/compare-models.ts)', () => {
  it('pairs them on the run\'s test images, reads 0 [0, 0] for a model against itself, and gives the fine-tune\'s own headline', async () => {
    const runs = new FsKeyValueStore(path.join(out, 'store'));
    const fineTunes = new FsKeyValueStore(path.join(out, 'fine-tunes'));
    const teacher = await stageScores(new RunStore(runs, 'run'), 'teacher');
    const state = (await new RunStore(runs, 'run').state())!;
    expect(teacher.images.map((s) => s.id).sort()).toEqual(state.split.test.map((k) => k.slice(k.indexOf('/') + 1)).sort());
    // A run trained from the command line keeps no chart history: no curve, and no error for it.
    expect(teacher.curve).toEqual([]);

    const itself = compareModels([teacher, teacher]);
    const [zero] = itself.comparison.differences;
    expect(itself.differing).toEqual([]);
    expect(itself.arms).toEqual([[0], [1]]);
    expect(itself.models.map((m) => m.name)).toEqual([`${teacher.name}, #1`, `${teacher.name}, #2`]);
    for (const k of METRIC_KEYS) {
      expect(zero.difference[k]).toBe(0);
      expect(zero.ci95[k]).toEqual([0, 0]);
      expect(zero.pValue[k]).toBe(1);
    }

    const result = (await fineTuneResult(fineTunes, 'run', 'teacher'))!;
    const [without, withLabels] = await Promise.all([
      fineTuneScores(runs, fineTunes, 'run', 'teacher', 'without'),
      fineTuneScores(runs, fineTunes, 'run', 'teacher', 'with'),
    ]);
    expect(withLabels.curve).toEqual(result.withLabels.curve);
    const labels = compareModels([without, withLabels]);
    // The same card and run: nothing differs, and two arms of one run are never pooled as seeds.
    expect(labels.differing).toEqual([]);
    expect(labels.pooledSeeds).toBe(false);
    const [bought] = labels.comparison.differences;
    const [headline] = result.labels.differences;
    expect(bought.difference).toEqual(headline.difference);
    expect(bought.ci95).toEqual(headline.ci95);
    expect(bought.pValue).toEqual(headline.pValue);
    expect(bought.perImage).toEqual(headline.perImage);

    const three = compareModels([teacher, without, withLabels]);
    expect(three.comparison.differences).toHaveLength(2);
    expect(three.comparison.arms.map((a) => a.value.lesionIoU)).toEqual([teacher, without, withLabels].map((m) => metricsOf(m.images).lesionIoU));
  });
});

describe('a stage read with flips TTA and post-processing', () => {
  it('gives the queue and the fine-tune the masks and figures of its readout, and the fine-tuned model that readout', async () => {
    // A copy of the run whose card reads with flips TTA and whose teacher kept post-processing.
    const flipsDir = path.join(work, 'flips-store');
    cpSync(path.join(out, 'store'), flipsDir, { recursive: true });
    const runs = new FsKeyValueStore(flipsDir);
    const run = new RunStore(runs, 'run');
    const card = (await run.card())!;
    const state = (await run.state())!;
    const size = card.model.inputSize;
    const batchSize = card.train.batchSize;
    const decoder = new SharpDecoder();
    const poolSource = new FsFileSource([poolDir]);
    const { unlabeled } = inputsByRole(await poolSource.index(), () => false);
    const images = await Promise.all(unlabeled.map(async (s) => (await loadSample(s, poolSource, decoder, { width: size, height: size })).image));
    const { model } = await loadStageModel(runs, 'run', 'teacher');
    let flips: Float32Array[];
    let plain: Float32Array[];
    try {
      flips = await predictLogits(model, images, { batchSize, tta: 'flips' });
      plain = await predictLogits(model, images, { batchSize });
    } finally {
      model.dispose();
    }
    // At the pool's median flips logit, masks cover about half of each image, so a reading without TTA differs somewhere.
    const logitThreshold = median(flips.flatMap((l) => [...l]));
    const flipsCard: RunCard = { ...card, eval: { ...card.eval, logitThreshold, tta: 'flips' } };
    await run.setCard(flipsCard);
    await run.setState({ ...state, results: state.results.map((r) => (r.stage === 'teacher' ? { ...r, postprocess: { applied: true, valLesionIoU: { without: 0, with: 0 } } } : r)) });
    const readout = { logitThreshold, tta: 'flips', postprocess: true } as const;
    const read = (logits: Float32Array[], postprocess: boolean): Uint8Array[] => logits.map((l) => readMask(l, size, size, { logitThreshold, postprocess }));
    const expected = read(flips, true);
    // Read without TTA, some mask differs. (Post-processing changes none of them: this model's masks are single blobs
    // already. The stage's decision is there for the fine-tuned model's metadata below.)
    expect(expected.some((mask, i) => !Buffer.from(mask).equals(read(plain, true)[i]))).toBe(true);

    const request = { runId: 'run', stage: 'teacher' as const, score: 'entropy' as const, mcPasses: 0 };
    const queue = await rankPool({ source: poolSource, decoder, runs }, unlabeled, request);
    const byImage = new Map(queue.ranked.map((r) => [r.sample.image, r]));
    unlabeled.forEach((s, i) => expect(byImage.get(s.image)!.mask.data).toEqual(expected[i]));
    // The acquisition scores stay those of the plain prediction: the readout changes the mask alone.
    const asTrained = await rankPool({ source: poolSource, decoder, runs: new FsKeyValueStore(path.join(out, 'store')) }, unlabeled, request);
    expect(queue.ranked.map((r) => r.scores)).toEqual(asTrained.ranked.map((r) => r.scores));

    const source = new FsFileSource([PH2, labelsDir]);
    const { labeled } = inputsByRole(await source.index(), () => true);
    const store = new MemoryStore();
    const tuned = await fineTune({ source, decoder, runs, store }, { runId: 'run', stage: 'teacher', epochs: 1, roots: ['ph2'], labeled, newLabels: labeled.filter((s) => rootOf(s.image) === 'new-labels') });
    const scored = samplesByKey(labeled, state.split.test, ['ph2']).map(itemFromSample);
    const cache = new PixelCache(source, decoder, new MemoryStore(), { width: size, height: size }, () => {});
    const before = async (tta: 'none' | 'flips'): Promise<FineTuneResult['before']> => {
      const { model: stage } = await loadStageModel(runs, 'run', 'teacher');
      try {
        return withIntervals((await evaluate(stage, scored, cache, { ...readout, tta, batchSize })).overall);
      } finally {
        stage.dispose();
      }
    };
    expect(tuned.before).toEqual(await before('flips'));
    expect(tuned.before).not.toEqual(await before('none'));
    const metadata = JSON.parse(new TextDecoder().decode((await fineTunedModelFiles(runs, store, 'run', 'teacher')).find((f) => f.name === 'metadata.json')!.bytes)) as ExportMetadata;
    expect({ logitThreshold: metadata.logitThreshold, tta: metadata.tta, postprocess: metadata.postprocess }).toEqual(readout);
    expect(metadata.results).toBeNull();
  }, 600_000);
});
