/**
 * The source's import graph, read from the files themselves: no cycle
 * anywhere (type-only imports included, since they still tie two modules'
 * meanings together), the core free of hosts and the page free of
 * TensorFlow.js. A layer rule that only the README states is broken by the
 * first hurried import.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');
const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*\(?\s*['"]([^'"]+)['"]/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return /\.(ts|svelte)$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

const files = sourceFiles(SRC);
/** file -> the specifiers it imports, as written. */
const specifiers = new Map(files.map((file) => [file, [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => m[1] ?? m[2])]));
/** file -> the project files it imports. */
const edges = new Map(
  files.map((file) => [
    file,
    specifiers
      .get(file)!
      .filter((s) => s.startsWith('.'))
      .map((s) => path.resolve(path.dirname(file), s.replace(/\?.*$/, '')))
      .filter((target) => specifiers.has(target)),
  ]),
);
const rel = (file: string) => path.relative(SRC, file);

/** Strongly connected components of more than one file (or a file importing itself): Tarjan's algorithm. */
function cycles(): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(rel(w));
      } while (w !== v);
      if (component.length > 1 || edges.get(v)!.includes(v)) found.push(component.sort());
    }
  };
  for (const file of files) if (!index.has(file)) visit(file);
  return found;
}

describe('the import graph', () => {
  it('reads the imports it checks (a parser that finds nothing would pass everything)', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(edges.get(path.join(SRC, 'ui/studio.svelte.ts'))!.map(rel)).toContain('ui/split.svelte.ts');
    expect(specifiers.get(path.join(SRC, 'core/training/train.ts'))).toContain('@tensorflow/tfjs');
  });

  it('has no cycle anywhere', () => {
    expect(cycles()).toEqual([]);
  });

  it('keeps the core free of hosts and the page free of TensorFlow.js', () => {
    const offending = (prefix: string, banned: RegExp) =>
      files
        .filter((file) => rel(file).startsWith(prefix))
        .flatMap((file) => specifiers.get(file)!.filter((s) => banned.test(s.startsWith('.') ? rel(path.resolve(path.dirname(file), s)) : s)).map((s) => `${rel(file)} -> ${s}`));
    expect(offending('core/', /^(worker|ui|node)\/|^node:|^svelte|^idb-keyval|^comlink/)).toEqual([]);
    expect(offending('ui/', /^@tensorflow\//)).toEqual([]);
  });

  it('keeps TensorFlow.js in the browser host to starting backends and turning bitmaps into tensors; logic is the core\'s', () => {
    const withTfjs = files.filter((file) => rel(file).startsWith('worker/') && specifiers.get(file)!.some((s) => s.startsWith('@tensorflow/'))).map(rel);
    expect(withTfjs.sort()).toEqual([
      // Picks and starts a backend.
      'worker/backend.ts',
      // Watches the WebGPU device a run trains on and forgets a lost one, so the backend can start again.
      'worker/gpu-watch.ts',
      // Starts tfjs's threaded wasm build in the bundled worker.
      'worker/wasm-threads.ts',
    ]);
  });
});
