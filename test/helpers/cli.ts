/**
 * The CLI as a user runs it: `node bin/lesion-studio.js ...` in a child
 * process, from the repository root.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { repoRoot } from './datasets.ts';

const run = promisify(execFile);

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(...args: string[]): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run('node', ['bin/lesion-studio.js', ...args], { cwd: repoRoot, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

export interface Running {
  child: ChildProcess;
  /** Resolves once a line of stderr matches. */
  stderrLine(pattern: RegExp): Promise<string>;
  /** Exit code (null when a signal killed it) and everything written. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** For what must happen while the command runs (e.g. a Ctrl-C). */
export function spawnCli(...args: string[]): Running {
  const child = spawn('node', ['bin/lesion-studio.js', ...args], { cwd: repoRoot });
  let stdout = '';
  let stderr = '';
  const waiting: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk;
    for (const w of [...waiting]) {
      const line = stderr.split('\n').find((l) => w.pattern.test(l));
      if (line !== undefined) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => {
      for (const w of waiting.splice(0)) w.resolve('');
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    stderrLine: (pattern) => new Promise((resolve) => waiting.push({ pattern, resolve })),
    done,
  };
}
