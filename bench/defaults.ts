/**
 * Which defaults win (issue 21), measured the way the studio's Compare
 * measures. Each arm is one card: the old quick defaults (frozen below, so the
 * reference does not move when quickCard() does) with one lever changed, or
 * the current quick card. Every arm trains its teacher for 20 epochs on the
 * shared ISIC 2017 + 2018 pairs with the same seeds and the same split seed,
 * so all runs hold out the same validation and test images (`lesion-studio
 * train --seeds`, one folder per arm under --out; an arm already there is
 * scored, not retrained). Every seed's model is then scored on its run's
 * validation images, its test images and PH2 (never trained on) under four
 * readouts (plain, flips TTA, post-processing, both) and under the readout its
 * own card chose. Each arm is set against the first as a paired two-level
 * bootstrap difference of lesion IoU (runs within arms, then images:
 * scoring/compare.ts); each readout against the plain one on the first arm's
 * own models. Prints a markdown table; asserts nothing. Hours of CPU: not in
 * `npm run bench`.
 *
 *   tsx bench/defaults.ts --out <dir> [--arms old,poly,...] [--seeds 2137,2,3] [--json <file>]
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type * as tf from '@tensorflow/tfjs';
import { parseRunCard, quickCard, type RunCard } from '../src/core/config.ts';
import { itemFromSample, PixelCache, type TrainItem } from '../src/core/dataset/samples.ts';
import type { Sample } from '../src/core/dataset/layouts.ts';
import { loadStageModel } from '../src/core/run/pipeline.ts';
import { samplesByKey } from '../src/core/run/stage-model.ts';
import { RunStore } from '../src/core/run/run-store.ts';
import type { ScoredImage } from '../src/core/scoring/bootstrap.ts';
import { compareArms, type CompareArm } from '../src/core/scoring/compare.ts';
import { evaluate } from '../src/core/scoring/evaluate.ts';
import { readoutOf, type Readout } from '../src/core/scoring/readout.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { main } from '../src/node/cli.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { FsFileSource } from '../src/node/files.ts';
import { FsKeyValueStore, NO_PSEUDO_LABELS } from '../src/node/store.ts';
import { DATASETS } from './tasks.ts';

/** The quick card's defaults before issue 21, teacher only, 20 epochs, one split for every seed. */
function oldDefaults(): RunCard {
  const card = quickCard();
  return {
    ...card,
    name: 'old',
    model: { ...card.model, init: 'nsfwjs' },
    train: {
      ...card.train,
      epochs: 20,
      batchSize: 8,
      optimizer: { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
      loss: 'dice',
      posWeight: 1.25,
      lrSchedule: 'constant',
      warmupEpochs: 0,
    },
    data: { ...card.data, split: { kind: 'fractions', val: 0.2, test: 0.2 }, splitSeed: 2137 },
    student: { ...card.student, rounds: 0 },
    eval: { logitThreshold: 0.5, tta: 'none', postprocess: 'none' },
  };
}

/** Each arm: the old defaults with one lever changed, or the current quick card on the same budget. */
const ARMS: Record<string, () => RunCard> = {
  old: oldDefaults,
  poly: () => ({ ...oldDefaults(), name: 'poly', train: { ...oldDefaults().train, lrSchedule: 'poly', warmupEpochs: 1 } }),
  dicebce: () => ({ ...oldDefaults(), name: 'dicebce', train: { ...oldDefaults().train, loss: 'dice+bce', posWeight: 1 } }),
  enc: () => ({ ...oldDefaults(), name: 'enc', model: { ...oldDefaults().model, init: 'imagenet-through-block10' } }),
  b4: () => ({ ...oldDefaults(), name: 'b4', train: { ...oldDefaults().train, batchSize: 4 } }),
  quick: () => {
    const card = quickCard();
    return { ...card, name: 'quick', train: { ...card.train, epochs: 20 }, data: { ...card.data, splitSeed: 2137 }, student: { ...card.student, rounds: 0 } };
  },
};

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    arms: { type: 'string', default: 'old,poly,dicebce,enc,b4,quick' },
    seeds: { type: 'string', default: '2137,2,3' },
    stage: { type: 'string', default: 'teacher' },
    json: { type: 'string' },
    resamples: { type: 'string', default: '2000' },
  },
});
const armNames = values.arms!.split(',');
const unknown = armNames.filter((a) => !(a in ARMS));
if (!values.out || unknown.length > 0) {
  console.error(`usage: tsx bench/defaults.ts --out <dir> [--arms ${Object.keys(ARMS).join(',')}] [--seeds 2137,2,3] [--json <file>]${unknown.length ? `\nunknown arms: ${unknown.join(', ')}` : ''}`);
  process.exit(2);
}
const stage = values.stage as 'teacher';
const labeledDirs = [DATASETS.isic2018, DATASETS.isic2017];

for (const name of armNames) {
  const dir = path.join(values.out, name);
  if (existsSync(path.join(dir, 'repeats.json'))) continue;
  await mkdir(dir, { recursive: true });
  const cardFile = path.join(values.out, `${name}.json`);
  await writeFile(cardFile, JSON.stringify(parseRunCard(ARMS[name]()), null, 2));
  // A folder begun by an earlier run of this script is resumed, not refused.
  const resume = (await readdir(dir)).length > 0;
  const code = await main(['train', '--config', cardFile, ...labeledDirs.flatMap((d) => ['--labeled', d]), '--out', dir, '--seeds', values.seeds!, '--backend', 'wasm', ...(resume ? ['--resume'] : [])]);
  if (code !== 0) process.exit(code);
}
const armDirs = armNames.map((name) => path.join(values.out!, name));

/** plain, flips TTA, post-processing, both, and the arm's own card's choice. */
type ReadoutName = 'plain' | 'tta' | 'pp' | 'tta+pp' | 'card';
type Part = 'val' | 'test' | 'external';
/** scores[arm][readout][part] = one run's images per seed. */
type Scores = Record<ReadoutName, Record<Part, ScoredImage[][]>>;

await initNodeBackend('wasm');
const labeledSource = new FsFileSource(labeledDirs);
const labeled = (await labeledSource.index()).sets.flatMap((s) => s.labeled);
const externalSource = new FsFileSource([DATASETS.ph2]);
const external = (await externalSource.index()).sets.flatMap((s) => s.labeled);

async function seedFolders(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => /^seed-\d+$/.test(n));
  return names.sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))).map((n) => path.join(dir, n));
}

const emptyParts = (): Record<Part, ScoredImage[][]> => ({ val: [], test: [], external: [] });

async function scoreArm(dir: string): Promise<{ scores: Scores; seeds: number[]; cardReadout: string[] }> {
  const scores = Object.fromEntries(['plain', 'tta', 'pp', 'tta+pp', 'card'].map((r) => [r, emptyParts()])) as Scores;
  const seeds: number[] = [];
  const cardReadout: string[] = [];
  for (const folder of await seedFolders(dir)) {
    const store = new FsKeyValueStore(path.join(folder, 'store'));
    const run = new RunStore(store, 'run');
    const state = await run.state();
    if (!state?.completed.includes(stage)) {
      console.error(`${folder}: ${stage} not finished; left out`);
      continue;
    }
    const { model, metadata } = await loadStageModel(store, 'run', stage);
    seeds.push(metadata.card.seed);
    const own = readoutOf(metadata.card, metadata.postprocess);
    cardReadout.push(`tta ${own.tta}, postprocess ${own.postprocess}`);
    const size = metadata.card.model.inputSize;
    const roots = labeledDirs;
    const parts: Record<Part, { items: TrainItem[]; source: FsFileSource }> = {
      val: { items: samplesByKey(labeled, state.split.val, roots).map(itemFromSample), source: labeledSource },
      test: { items: samplesByKey(labeled, state.split.test, roots).map(itemFromSample), source: labeledSource },
      external: { items: external.map((s: Sample) => itemFromSample(s)), source: externalSource },
    };
    for (const [part, { items, source }] of Object.entries(parts) as [Part, (typeof parts)[Part]][]) {
      if (items.length === 0) continue;
      const cache = new PixelCache(source, new SharpDecoder(), NO_PSEUDO_LABELS, { width: size, height: size }, () => {});
      const score = async (readout: Readout): Promise<{ plain: ScoredImage[]; postprocessed: ScoredImage[] }> => {
        const e = await evaluate(model, items, cache, { ...readout, batchSize: 8, alsoPostprocessed: true });
        return { plain: e.overall.perImage, postprocessed: e.postprocessed!.perImage };
      };
      const threshold = metadata.card.eval.logitThreshold;
      const none = await score({ logitThreshold: threshold, tta: 'none', postprocess: false });
      const flips = await score({ logitThreshold: threshold, tta: 'flips', postprocess: false });
      scores.plain[part].push(none.plain);
      scores.pp[part].push(none.postprocessed);
      scores.tta[part].push(flips.plain);
      scores['tta+pp'][part].push(flips.postprocessed);
      const byOwn = own.tta === 'flips' ? flips : none;
      scores.card[part].push(own.postprocess ? byOwn.postprocessed : byOwn.plain);
    }
    (model as tf.LayersModel).dispose();
    console.error(`${folder}: scored`);
  }
  return { scores, seeds, cardReadout };
}

const arms: { name: string; scores: Scores; seeds: number[]; cardReadout: string[] }[] = [];
for (const dir of armDirs) arms.push({ name: path.basename(dir), ...(await scoreArm(dir)) });

const pct = (x: number): string => (100 * x).toFixed(1);
const signed = (x: number): string => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}`;
const rows: string[][] = [];
const results: unknown[] = [];
const resamples = Number(values.resamples);

function row(label: string, part: Part, reference: CompareArm, arm: CompareArm): void {
  if (reference.runs.length === 0 || reference.runs[0].images.length === 0 || arm.runs.length === 0) return;
  const c = compareArms([reference, arm], { resamples });
  const d = c.differences[0];
  const [ref, other] = c.arms;
  rows.push([
    label,
    part,
    String(c.images),
    `${ref.runs.length}/${other.runs.length}`,
    pct(ref.value.lesionIoU),
    pct(other.value.lesionIoU),
    `${signed(d.difference.lesionIoU)} [${signed(d.ci95.lesionIoU[0])}, ${signed(d.ci95.lesionIoU[1])}]`,
    d.probabilityBetter ? d.probabilityBetter.lesionIoU.toFixed(2) : '--',
    `${signed(d.difference.paperMIoU)} [${signed(d.ci95.paperMIoU[0])}, ${signed(d.ci95.paperMIoU[1])}]`,
  ]);
  results.push({ label, part, images: c.images, reference: ref, arm: other, difference: d.difference, ci95: d.ci95, probabilityBetter: d.probabilityBetter });
}

const asArm = (name: string, runs: ScoredImage[][], seeds: number[]): CompareArm => ({ name, runs: runs.map((images, i) => ({ name: `${name} seed ${seeds[i]}`, images, seed: seeds[i] })) });
const [reference, ...others] = arms;
for (const part of ['val', 'test', 'external'] as Part[]) {
  const ref = asArm(reference.name, reference.scores.plain[part], reference.seeds);
  for (const r of ['tta', 'pp', 'tta+pp'] as const) row(`readout ${r} (on ${reference.name}'s models)`, part, ref, asArm(r, reference.scores[r][part], reference.seeds));
  for (const arm of others) {
    row(`training ${arm.name} (plain readout)`, part, ref, asArm(arm.name, arm.scores.plain[part], arm.seeds));
    row(`${arm.name} as its card reads (${arm.cardReadout[0] ?? '?'})`, part, ref, asArm(arm.name, arm.scores.card[part], arm.seeds));
  }
}

const header = ['against ' + reference.name, 'part', 'images', 'runs', 'ref lesion IoU', 'arm lesion IoU', 'difference [95 % CI]', 'P(better)', 'paper mIoU difference [95 % CI]'];
console.log(`stage ${stage}; percentages; two-level paired bootstrap (${resamples} resamples: the same seeds for every arm, then the same images)`);
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
if (values.json) await writeFile(values.json, `${JSON.stringify({ stage, arms: arms.map((a) => ({ name: a.name, seeds: a.seeds, cardReadout: a.cardReadout })), results }, null, 2)}\n`);
