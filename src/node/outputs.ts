/**
 * What the CLI may write over. A mask folder looks the same whether a model
 * or an expert drew it, so a command never replaces a file it did not write
 * itself unless given --overwrite, and never writes into a folder that holds
 * a data set's images (or, see files.ts, lies inside a folder it reads).
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { LAYOUT_TITLES, recogniseDatasets } from '../core/dataset/layouts.ts';
import { FsFileSource } from './files.ts';

/** predict's record, in its --out, of the files it wrote there (a .json: never taken for data). */
export const WRITTEN_LIST = 'lesion-studio-written.json';

/**
 * The files a command wrote into a folder, kept in WRITTEN_LIST there, so
 * that a later run of it replaces them and nothing else. Names are relative
 * to the folder, '/'-separated.
 */
export class WrittenFiles {
  private constructor(
    readonly dir: string,
    private readonly writer: string,
    private readonly names: Set<string>,
  ) {}

  static async open(dir: string, writer: string): Promise<WrittenFiles> {
    const text = await readFile(join(dir, WRITTEN_LIST), 'utf8').catch(() => undefined);
    let names: string[] = [];
    if (text !== undefined) {
      try {
        const files = (JSON.parse(text) as { files?: unknown }).files;
        if (Array.isArray(files)) names = files.filter((f): f is string => typeof f === 'string');
      } catch {
        // Unreadable: nothing in the folder counts as ours, which errs on the side of the files.
      }
    }
    return new WrittenFiles(dir, writer, new Set(names));
  }

  has(name: string): boolean {
    return this.names.has(name);
  }

  /** Those of `names` that exist in the folder and were not written by this command. */
  async foreign(names: string[]): Promise<string[]> {
    const found: string[] = [];
    for (const name of names) {
      if (!this.names.has(name) && (await stat(join(this.dir, name)).catch(() => undefined))) found.push(name);
    }
    return found;
  }

  /** Records `names` before they are written: a run stopped half-way still owns what it wrote. */
  async add(names: string[]): Promise<void> {
    const before = this.names.size;
    for (const name of names) this.names.add(name);
    if (this.names.size === before) return;
    await writeFile(join(this.dir, WRITTEN_LIST), `${JSON.stringify({ writtenBy: this.writer, files: [...this.names].sort() }, null, 1)}\n`);
  }
}

/**
 * The refusal for writing over `foreign` (paths of files that exist and the
 * command did not write) where `flag` says `value`, or undefined when there
 * are none or --overwrite was given.
 */
export function overwriteRefusal(flag: string, value: string, command: string, foreign: string[], overwrite: boolean): string | undefined {
  if (foreign.length === 0 || overwrite) return undefined;
  const examples = `${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}`;
  const what = foreign.length === 1 ? 'a file' : `${foreign.length} files`;
  return `${flag} ${value} would replace ${what} that ${command} did not write (${examples}); ` +
    `give --overwrite to replace ${foreign.length === 1 ? 'it' : 'them'}, or choose another ${flag}`;
}

/**
 * The usage error for an --out that holds a data set's images (any layout
 * the studio recognises, files the command wrote itself aside): what is
 * written there would be mixed into the data.
 */
export async function outHoldsData(out: string, ours: (name: string) => boolean = () => false): Promise<string | undefined> {
  if (!(await stat(out).catch(() => undefined))?.isDirectory()) return undefined;
  const root = `${basename(resolve(out))}/`;
  const files = (await new FsFileSource([out]).list()).filter((file) => !ours(file.slice(root.length)));
  const sets = recogniseDatasets(files).sets.filter((set) => set.labeled.length + set.unlabeled.length > 0);
  if (sets.length === 0) return undefined;
  const [set] = sets;
  const images = set.labeled.length + set.unlabeled.length;
  const example = (set.labeled[0] ?? set.unlabeled[0]).image;
  return `--out ${out} holds a data set (${LAYOUT_TITLES[set.layout]}, ${images} image${images === 1 ? '' : 's'}, e.g. ${example.slice(root.length)}); ` +
    'what is written there would be mixed into it. Choose an --out outside the data folders';
}
