/**
 * The studio's export ZIP (src/ui/zip.ts, zip.js), run in Node through
 * the same module the page's worker runs: an export of more files than a ZIP
 * without ZIP64 can count opens in Info-ZIP's `unzip -t` and in Python's
 * zipfile, every entry intact. The entries are masks of a real ISIC ground
 * truth at small sizes, as a pseudo-label export holds them.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readMask } from '../src/core/dataset/loader.ts';
import { maskPng } from '../src/core/image/png.ts';
import { resizeMask } from '../src/core/image/resize.ts';
import { SharpDecoder } from '../src/node/decode.ts';
import { zipStored } from '../src/ui/zip.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const COUNT = 70_000;
const dir = mkdtempSync(path.join(tmpdir(), 'lesion-zip-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('an export ZIP', () => {
  it(`of ${COUNT.toLocaleString('en')} small files (over ZIP's 16-bit entry count) opens in unzip -t and Python's zipfile, every entry intact`, { timeout: 900_000 }, async () => {
    const truthFile = path.join(datasetsRoot, 'isic2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000013_segmentation.png');
    const { mask } = await readMask('truth.png', new Uint8Array(readFileSync(truthFile)), new SharpDecoder());
    const variants = Array.from({ length: 64 }, (_, i) => maskPng(resizeMask(mask, 8 + i, 6 + i)));
    const name = (i: number) => `masks/ISIC_${String(i).padStart(7, '0')}_segmentation.png`;
    const files = Array.from({ length: COUNT }, (_, i) => ({ name: name(i), bytes: variants[i % 64].slice().buffer }));
    const zip = path.join(dir, 'export.zip');
    writeFileSync(zip, new Uint8Array(await (await zipStored(files)).arrayBuffer()));

    expect(execFileSync('unzip', ['-tq', zip], { encoding: 'utf8', maxBuffer: 1 << 26 })).toMatch(/^No errors detected in compressed data of .*export\.zip\.\s*$/);

    const python = `
import hashlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    names = z.namelist()
    print(len(names), bad, names[0], names[-1], hashlib.sha256(z.read(names[${COUNT - 1}])).hexdigest())
`;
    const [count, bad, first, last, digest] = execFileSync('python3', ['-c', python, zip], { encoding: 'utf8' }).trim().split(' ');
    expect([Number(count), bad, first, last]).toEqual([COUNT, 'None', name(0), name(COUNT - 1)]);
    expect(digest).toBe(createHash('sha256').update(variants[(COUNT - 1) % 64]).digest('hex'));
  });
});
