import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './helpers/cli.ts';
import { datasetsRoot } from './helpers/datasets.ts';

/** Pairs per set as MANIFEST.csv lists them, so the expected counts come from the data. */
function manifestCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  const rows = readFileSync(path.join(datasetsRoot, 'MANIFEST.csv'), 'utf8').trim().split('\n').slice(1);
  for (const row of rows) {
    const set = row.slice(0, row.indexOf(','));
    counts[set] = (counts[set] ?? 0) + 1;
  }
  return counts;
}

describe('lesion-studio inspect', () => {
  it('reports the shared data sets as JSON with exact counts and no strays', async () => {
    const { code, stdout, stderr } = await cli('inspect', datasetsRoot, '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(manifestCounts()).toEqual({ isic2018: 33, isic2017: 65, ph2: 32 });
    expect(report.sets.map((set: { name: string; labeled: number; unlabeled: number }) => [set.name, set.labeled, set.unlabeled])).toEqual([
      ['isic2017', 65, 0],
      ['isic2018', 33, 0],
      ['ph2', 32, 0],
    ]);
    expect(report.sets[1]).toMatchObject({ layout: 'isic2018', root: 'datasets/isic2018' });
    expect(report.sets[1].bySplit.train).toEqual({ labeled: 33, unlabeled: 0 });
    expect(report.sets[0].bySplit.val).toEqual({ labeled: 65, unlabeled: 0 });
    expect(report.strays).toEqual([]);
  });

  it('lists a dangling symbolic link as a stray naming the link and its missing target', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'lesion-inspect-'));
    try {
      const pool = path.join(work, 'pool');
      mkdirSync(pool);
      symlinkSync(path.join(datasetsRoot, 'isic2018/ISIC2018_Task1-2_Training_Input/ISIC_0000013.jpg'), path.join(pool, 'kept.jpg'));
      const target = path.join(work, 'moved-away', 'ISIC_0000015.jpg');
      symlinkSync(target, path.join(pool, 'gone.jpg'));

      const { code, stdout, stderr } = await cli('inspect', pool, '--json');
      expect(code, stderr).toBe(0);
      const report = JSON.parse(stdout);
      expect(report.sets.map((set: { unlabeled: number }) => set.unlabeled)).toEqual([1]);
      expect(report.strays).toEqual([{ path: 'pool/gone.jpg', kind: 'unsupported-file', detail: `symbolic link to ${target}, which does not exist` }]);

      const summary = await cli('inspect', pool);
      expect(summary.stdout).toContain(`pool/gone.jpg: symbolic link to ${target}, which does not exist`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('prints a readable summary without --json', async () => {
    const { code, stdout } = await cli('inspect', datasetsRoot);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^3 data sets: 130 labeled pairs, 0 unlabeled images, 0 strays\n/);
    expect(stdout).toMatch(/ph2\s+32 labeled \[unspecified 32\]/);
  });

  it('exits 2 with a clear message for an unknown command or a missing folder', async () => {
    const unknown = await cli('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    expect(unknown.stderr).toContain('inspect');

    const missing = await cli('inspect', 'no/such/folder');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no/such/folder: no such folder');
  });

  it('refuses a stray argument or an unknown flag with a usage error naming it, before touching any folder', async () => {
    const afterOne = await cli('eval', '--pred', 'no/pred', 'extra', '--data', 'no/data');
    expect(afterOne.code).toBe(2);
    expect(afterOne.stderr).toContain("lesion-studio eval: unexpected argument 'extra': --pred takes one value");
    expect(afterOne.stderr).toContain('usage: lesion-studio eval ');

    const afterFlag = await cli('predict', '--model', 'no/model', '--images', 'no/a', '--json-please');
    expect(afterFlag.code).toBe(2);
    expect(afterFlag.stderr).toContain("Unknown option '--json-please'");

    const first = await cli('train', 'quick', '--preset', 'quick', '--labeled', 'no/a', 'no/b', '--out', 'no/out');
    expect(first.code).toBe(2);
    expect(first.stderr).toContain("lesion-studio train: unexpected argument 'quick'");

    const afterSwitch = await cli('eval', '--model', 'no/model', '--data', 'no/data', '--json', 'no/more');
    expect(afterSwitch.code).toBe(2);
    expect(afterSwitch.stderr).toContain("unexpected argument 'no/more': --json takes no value");
  });
});
