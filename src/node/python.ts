/**
 * The Python that runs PyTorch jobs (python/lesion_studio_torch, the bench's
 * PyTorch replica): $PYTHON, python3, then /usr/bin/python3 (Debian's
 * python3-torch installs there, which a pyenv python3 hides).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

/** The folder to put on PYTHONPATH for `python3 -m lesion_studio_torch`. */
export const TORCH_PACKAGE_ROOT = path.resolve(import.meta.dirname, '../../python');

/** A Python that imports torch, or why none was found. */
export function findTorch(): { python: string; version: string } | { reason: string } {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => Boolean(c));
  const failures: string[] = [];
  for (const python of [...new Set(candidates)]) {
    const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (probe.status === 0) return { python, version: probe.stdout.trim() };
    failures.push(`${python}: ${probe.error ? probe.error.message : (probe.stderr.trim().split('\n').at(-1) ?? `exit ${probe.status}`)}`);
  }
  return { reason: `no Python with torch (${failures.join('; ')}); install Debian's python3-torch or set PYTHON` };
}
