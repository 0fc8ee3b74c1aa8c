/**
 * `lesion-studio simulate-al` as a user runs it: flags it cannot use are
 * usage errors naming the flag, and a folder too small for the plan is
 * refused before any training, saying how many images the plan needs.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './helpers/cli.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const ph2 = path.join(datasetsRoot, 'ph2');

describe('simulate-al', () => {
  it('refuses an unknown strategy, a bad number and a bad seed list with exit code 2, naming the flag', async () => {
    const strategy = await cli('simulate-al', '--data', ph2, '--strategies', 'entropy,guess');
    expect(strategy.code).toBe(2);
    expect(strategy.stderr).toContain("--strategies: unknown strategy 'guess'; use entropy, flip, mc-dropout, random");
    expect(strategy.stderr).toContain('usage: lesion-studio simulate-al --data <dir>...');

    const rounds = await cli('simulate-al', '--data', ph2, '--rounds', 'x');
    expect(rounds.code).toBe(2);
    expect(rounds.stderr).toContain("--rounds must be an integer of at least 1, got 'x'");

    const seeds = await cli('simulate-al', '--data', ph2, '--seeds', '1,,2');
    expect(seeds.code).toBe(2);
    expect(seeds.stderr).toContain("--seeds takes integers separated by commas, got ''");

    const missing = await cli('simulate-al', '--data', 'no/such/folder');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no/such/folder: no such folder');
  });

  it('refuses a plan that needs more labeled images than the folders hold', async () => {
    const { code, stderr } = await cli('simulate-al', '--data', ph2, '--test', '30');
    expect(code).toBe(1);
    expect(stderr).toContain('data: 32 labeled pairs');
    expect(stderr).toContain('the simulation needs 56 labeled images (30 test + 8 initial + 3 rounds of 6); the folders hold 32');
  });
});
