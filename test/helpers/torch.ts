/**
 * Running python/lesion_studio_torch from a test. Without a Python that
 * imports torch the PyTorch tests are skipped with a loud message, except
 * under CI (CI=true, which .ci/run sets after installing python3-torch),
 * where a missing torch fails them: they must run there.
 */
import { spawnSync } from 'node:child_process';
import { findTorch, TORCH_PACKAGE_ROOT } from '../../src/node/python.ts';

const found = findTorch();
export const torchPython = 'reason' in found ? undefined : found.python;

if (!torchPython) {
  const message = `PyTorch tests: ${(found as { reason: string }).reason}`;
  if (process.env.CI) throw new Error(`${message}; CI must run them (bash .ci/install-system-deps.sh installs python3-torch)`);
  console.warn(`\n*** SKIPPED: ${message}. Install python3-torch python3-opencv python3-numpy to run them. ***\n`);
}

export const torchEnv = (): NodeJS.ProcessEnv => ({ ...process.env, PYTHONPATH: TORCH_PACKAGE_ROOT, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' });

/** Runs a Python snippet with the package importable; its stdin is `input`; throws with stderr on failure. */
export function python(code: string, input = ''): string {
  const result = spawnSync(torchPython!, ['-c', code], { input, encoding: 'utf8', env: torchEnv(), maxBuffer: 64 << 20 });
  if (result.status !== 0) throw new Error(`python failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}
