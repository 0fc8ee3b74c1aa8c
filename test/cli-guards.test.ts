/**
 * What the CLI refuses before doing any work, through the real CLI (child
 * processes) on the shared data sets: a mistyped path (one line, exit 2, no
 * stack), a misspelt run card key, and writing over files a command did not
 * write or into a data set.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quickCard } from '../src/core/config.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { saveLayersModel } from '../src/node/model-files.ts';
import { cli, type Outcome } from './helpers/cli.ts';
import { datasetsRoot, tinyConfig } from './helpers/tf-node.ts';

const PH2 = path.join(datasetsRoot, 'ph2');
const ISIC_IMAGES = path.join(datasetsRoot, 'isic2018', 'ISIC2018_Task1-2_Training_Input');
const ISIC_GT = path.join(datasetsRoot, 'isic2018', 'ISIC2018_Task1_Training_GroundTruth');
const IDS = ['ISIC_0000013', 'ISIC_0000015'];

/** Exit 2 and exactly one line on stderr, no stack trace. */
function oneLineUsageError(outcome: Outcome, line: string): void {
  expect(outcome.code, outcome.stderr).toBe(2);
  expect(outcome.stderr).toBe(`${line}\n`);
}

let work: string;
let modelDir: string;
let card: string;
let aFile: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'lesion-cli-guards-'));
  modelDir = path.join(work, 'model');
  await tf.setBackend('cpu');
  const model = buildDeepLabV3(tinyConfig('mobilenetv2', { inputSize: 32 }), 'export', 7);
  await saveLayersModel(model, modelDir, { format: 'lesion-studio-model/1', inputSize: 32, logitThreshold: 0 });
  model.dispose();
  const quick = quickCard();
  card = path.join(work, 'card.json');
  writeFileSync(card, JSON.stringify({ ...quick, backend: 'wasm', model: { ...quick.model, inputSize: 32, init: 'random', width: 0.25 }, train: { ...quick.train, epochs: 1, batchSize: 4 }, student: { ...quick.student, rounds: 0 } }));
  aFile = path.join(work, 'a-file');
  writeFileSync(aFile, 'not a folder\n');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('a mistyped path', () => {
  it('is one line naming the flag, the path and the problem, exit 2, for every command and kind of path flag', async () => {
    const missing = path.join(work, 'missing.json');
    oneLineUsageError(await cli('train', '--config', missing, '--labeled', PH2, '--out', path.join(work, 'o')), `lesion-studio train: --config ${missing}: no such file`);
    oneLineUsageError(await cli('train', '--config', work, '--labeled', PH2, '--out', path.join(work, 'o')), `lesion-studio train: --config ${work}: is a folder, not a file`);
    oneLineUsageError(await cli('train', '--config', card, '--labeled', PH2, '--out', aFile), `lesion-studio train: --out ${aFile}: is a file, not a folder`);
    oneLineUsageError(await cli('train', '--config', card, '--labeled', PH2, '--out', path.join(aFile, 'run')), `lesion-studio train: --out ${path.join(aFile, 'run')}: ${aFile} is a file, not a folder`);
    oneLineUsageError(await cli('predict', '--model', modelDir, '--images', PH2, '--out', aFile), `lesion-studio predict: --out ${aFile}: is a file, not a folder`);
    oneLineUsageError(await cli('predict', '--model', aFile, '--images', PH2, '--out', path.join(work, 'o')), `lesion-studio predict: --model ${aFile}: is a file, not a folder`);
    oneLineUsageError(await cli('eval', '--pred', path.join(work, 'nope'), '--data', PH2), `lesion-studio eval: --pred ${path.join(work, 'nope')}: no such folder`);
    const json = path.join(work, 'nope', 'result.json');
    oneLineUsageError(await cli('simulate-al', '--data', PH2, '--json', json), `lesion-studio simulate-al: --json ${json}: no such folder ${path.join(work, 'nope')}`);
    oneLineUsageError(await cli('inspect', PH2, aFile), `lesion-studio inspect: ${aFile}: is a file, not a folder`);
    expect(existsSync(path.join(work, 'o'))).toBe(false);
  });
});

describe('a run card with a misspelt key', () => {
  it('is refused before training, naming the file, the key path and the key it most likely meant', async () => {
    const typo = path.join(work, 'typo.json');
    const json = JSON.parse(readFileSync(card, 'utf8'));
    json.data.labelledFraction = 0.5;
    writeFileSync(typo, JSON.stringify(json));
    const out = path.join(work, 'typo-run');
    const { code, stderr } = await cli('train', '--config', typo, '--labeled', PH2, '--out', out);
    expect(code, stderr).toBe(1);
    expect(stderr).toBe(`lesion-studio train: ${typo}: data.labelledFraction: unknown key; did you mean data.labeledFraction?\n`);
    expect(existsSync(out)).toBe(false);
  });
});

describe('writing over files', () => {
  let data: string;
  let images: string;
  let truths: string;

  beforeAll(() => {
    // Two ISIC pairs in the official layout: the images linked, the masks copied (they are about to be written over).
    data = path.join(work, 'isic');
    images = path.join(data, 'ISIC2018_Task1-2_Training_Input');
    truths = path.join(data, 'ISIC2018_Task1_Training_GroundTruth');
    mkdirSync(images, { recursive: true });
    mkdirSync(truths);
    for (const id of IDS) {
      symlinkSync(path.join(ISIC_IMAGES, `${id}.jpg`), path.join(images, `${id}.jpg`));
      copyFileSync(path.join(ISIC_GT, `${id}_segmentation.png`), path.join(truths, `${id}_segmentation.png`));
    }
  });

  it('predict refuses to replace masks it did not write (the ground truth beside the images), naming them; --overwrite replaces them; its own it replaces freely', async () => {
    const expert = (id: string) => readFileSync(path.join(ISIC_GT, `${id}_segmentation.png`));
    const written = (id: string) => readFileSync(path.join(truths, `${id}_segmentation.png`));
    const refused = await cli('predict', '--model', modelDir, '--images', images, '--out', truths, '--backend', 'cpu');
    oneLineUsageError(
      refused,
      `lesion-studio predict: --out ${truths} would replace 2 files that predict did not write (${IDS.map((id) => path.join(truths, `${id}_segmentation.png`)).sort().join(', ')}); ` +
        'give --overwrite to replace them, or choose another --out',
    );
    for (const id of IDS) expect(written(id).equals(expert(id))).toBe(true);

    const replaced = await cli('predict', '--model', modelDir, '--images', images, '--out', truths, '--backend', 'cpu', '--overwrite');
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(IDS.some((id) => !written(id).equals(expert(id)))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(truths, 'lesion-studio-written.json'), 'utf8')).files).toEqual(IDS.map((id) => `${id}_segmentation.png`).sort());

    const again = await cli('predict', '--model', modelDir, '--images', images, '--out', truths, '--backend', 'cpu');
    expect(again.code, again.stderr).toBe(0);
  });

  it('predict refuses an --out that holds a data set\'s images, even with --overwrite, or lies inside the folder of the model it reads', async () => {
    oneLineUsageError(
      await cli('predict', '--model', modelDir, '--images', images, '--out', data, '--overwrite'),
      `lesion-studio predict: --out ${data} holds a data set (ISIC 2018 Task 1, 2 images, e.g. ISIC2018_Task1-2_Training_Input/${IDS[0]}.jpg); ` +
        'what is written there would be mixed into it. Choose an --out outside the data folders',
    );
    const inModel = path.join(modelDir, 'masks');
    oneLineUsageError(
      await cli('predict', '--model', modelDir, '--images', images, '--out', inModel),
      `lesion-studio predict: --out ${inModel} is inside the data folder ${modelDir} (--model); what is written there would be read as data next time. Choose an --out outside the data folders`,
    );
    expect(readdirSync(data).sort()).toEqual(['ISIC2018_Task1-2_Training_Input', 'ISIC2018_Task1_Training_GroundTruth']);
    expect(existsSync(inModel)).toBe(false);
  });

  it('train refuses an --out holding a file a run writes but no run, and one holding a data set', async () => {
    const out = path.join(work, 'results');
    mkdirSync(out);
    writeFileSync(path.join(out, 'metrics.json'), '{"mine": true}\n');
    oneLineUsageError(
      await cli('train', '--config', card, '--labeled', PH2, '--out', out),
      `lesion-studio train: --out ${out} would replace a file that train did not write (${path.join(out, 'metrics.json')}); give --overwrite to replace it, or choose another --out`,
    );
    expect(readFileSync(path.join(out, 'metrics.json'), 'utf8')).toBe('{"mine": true}\n');
    expect(readdirSync(out)).toEqual(['metrics.json']);
    oneLineUsageError(
      await cli('train', '--config', card, '--labeled', PH2, '--out', data),
      `lesion-studio train: --out ${data} holds a data set (ISIC 2018 Task 1, 2 images, e.g. ISIC2018_Task1-2_Training_Input/${IDS[0]}.jpg); ` +
        'what is written there would be mixed into it. Choose an --out outside the data folders',
    );
  });

  it('simulate-al refuses, before training, a --json over a file it did not write or inside a data folder', async () => {
    const notes = path.join(work, 'notes.json');
    writeFileSync(notes, '{"mine": true}\n');
    oneLineUsageError(
      await cli('simulate-al', '--data', PH2, '--json', notes),
      `lesion-studio simulate-al: --json ${notes} would replace a file that simulate-al did not write (${notes}); give --overwrite to replace it, or choose another --json`,
    );
    const inside = path.join(data, 'result.json');
    oneLineUsageError(
      await cli('simulate-al', '--data', data, '--json', inside),
      `lesion-studio simulate-al: --json ${inside} is inside the data folder ${data} (--data); what is written there would be read as data next time. Choose an --json outside the data folders`,
    );
  });
});
