/**
 * FileSource over folders on disk. Each root's files are listed as
 * `<root folder name>/<path below it>`, so that several roots (e.g. an ISIC
 * folder and a PH2 folder) share one namespace, as a browser folder drop does.
 */
import { constants } from 'node:fs';
import { access, mkdir, readdir, readFile, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { compareText, recogniseDatasets, type DatasetIndex, type Stray } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import type { FileSource } from '../core/io.ts';
import type { ProductFile } from '../core/run/products.ts';
import type { PathRole } from './command.ts';

export class FsFileSource implements FileSource {
  private readonly roots = new Map<string, string>();
  /**
   * Links whose target cannot be followed, met by the last list(): a list of
   * paths has no room for them, and a photograph must not vanish unreported.
   */
  brokenLinks: Stray[] = [];

  constructor(roots: string[]) {
    for (const root of roots) {
      const absolute = resolve(root);
      const name = basename(absolute);
      const other = this.roots.get(name);
      if (other !== undefined && other !== absolute) {
        throw new LesionError('dataset', `two roots share the folder name '${name}': ${other} and ${absolute}`);
      }
      this.roots.set(name, absolute);
    }
  }

  async list(): Promise<string[]> {
    const paths: string[] = [];
    this.brokenLinks = [];
    for (const [name, absolute] of this.roots) await walk(absolute, name, new Set(), paths, this.brokenLinks);
    return paths.sort();
  }

  /** The data sets in the folders, with the broken links among the strays. */
  async index(): Promise<DatasetIndex> {
    const index = recogniseDatasets(await this.list());
    const strays = [...index.strays, ...this.brokenLinks].sort((a, b) => compareText(a.path, b.path) || compareText(a.kind, b.kind));
    return { ...index, strays };
  }

  async read(path: string): Promise<Uint8Array> {
    const slash = path.indexOf('/');
    const root = this.roots.get(slash < 0 ? path : path.slice(0, slash));
    const rest = slash < 0 ? '' : path.slice(slash + 1);
    if (root === undefined || rest === '' || rest.split('/').includes('..')) {
      throw new LesionError('read', 'not a file below any of the given folders', path);
    }
    try {
      return await readFile(join(root, rest));
    } catch (error) {
      throw new LesionError('read', describeFsError(error), path);
    }
  }
}

/**
 * The usage error for an --out (or another flag naming what a command
 * writes) at or below one of the folders the command reads: what is written
 * there would be listed as data (strays, or worse, images) next time.
 */
export async function outInsideData(out: string, data: { flag: string; dirs: string[] }[], outFlag = '--out'): Promise<string | undefined> {
  const realOut = await realPathOf(out);
  for (const { flag, dirs } of data) {
    for (const dir of dirs) {
      const below = relative(await realPathOf(dir), realOut);
      if (below === '' || !(below === '..' || below.startsWith(`..${sep}`) || isAbsolute(below))) {
        return `${outFlag} ${out} is inside the data folder ${dir} (--${flag}); what is written there would be read as data next time. Choose an ${outFlag} outside the data folders`;
      }
    }
  }
  return undefined;
}

/**
 * Why `path` cannot serve as `role` (command.ts), in words after the path;
 * undefined when it can.
 */
export async function pathProblem(path: string, role: PathRole): Promise<string | undefined> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => error);
  if (info instanceof Error && info.code === 'ENOTDIR') return `${await fileAbove(path)} is a file, not a folder`;
  if (info instanceof Error && info.code !== 'ENOENT') return describeFsError(info);
  const exists = !(info instanceof Error);
  const isFolder = exists && info.isDirectory();
  if (role === 'folder') return !exists ? 'no such folder' : isFolder ? undefined : 'is a file, not a folder';
  if (role === 'file') return !exists ? 'no such file' : isFolder ? 'is a folder, not a file' : undefined;
  if (exists && isFolder !== (role === 'out-folder')) return isFolder ? 'is a folder, not a file' : 'is a file, not a folder';
  // What will hold it: itself (a folder that exists), else the nearest existing folder above it.
  let holder = exists && isFolder ? resolve(path) : dirname(resolve(path));
  for (;;) {
    const above = await stat(holder).catch(() => undefined);
    if (above?.isDirectory()) break;
    if (above) return `${holder} is a file, not a folder`;
    if (role === 'out-file') return `no such folder ${holder}`;
    holder = dirname(holder);
  }
  return access(holder, constants.W_OK).then(
    () => undefined,
    () => `cannot write in ${holder} (permission denied)`,
  );
}

/** The file that stands where `path` needs a folder above it (stat said ENOTDIR). */
async function fileAbove(path: string): Promise<string> {
  let above = dirname(resolve(path));
  while (!(await stat(above).catch(() => undefined))?.isFile() && dirname(above) !== above) above = dirname(above);
  return above;
}

/** Through symbolic links, for a path that may not exist yet (an --out about to be made). */
async function realPathOf(path: string): Promise<string> {
  const absolute = resolve(path);
  try {
    return await realpath(absolute);
  } catch {
    const parent = dirname(absolute);
    return parent === absolute ? absolute : join(await realPathOf(parent), basename(absolute));
  }
}

/** A run's product files (src/core/run/products.ts) under `dir`, by their relative names. */
export async function writeProducts(dir: string, files: ProductFile[]): Promise<void> {
  for (const file of files) {
    const target = join(dir, ...file.name.split('/'));
    try {
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, file.bytes);
    } catch (error) {
      throw storageFull(error, target);
    }
  }
}

/** The errors by which a disk refuses a write for lack of room: no space left, or the user's quota used up. */
const FULL_DISK = new Set(['ENOSPC', 'EDQUOT']);

/**
 * A write the disk refused for lack of room, reported as the studio reports a
 * full browser storage (LesionError 'storage-full'): naming the file, what it
 * held, and the way out. Any other error comes back unchanged, to be rethrown.
 */
export function storageFull(error: unknown, file: string, what?: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === undefined || !FULL_DISK.has(code)) return error;
  return new LesionError(
    'storage-full',
    `${describeFsError(error)}${what ? `: ${what} could not be saved` : ''}. ` +
      'Free space on that disk (or write to another one), then run the command again; train --resume continues a run from its last checkpoint',
    file,
  );
}

/** Where a set's masks go when several sets share ids: a folder name safe on every file system. */
export function setFolderName(set: string): string {
  return set.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/** Follows symbolic links, once per real folder, so a link cycle cannot loop. */
async function walk(absolute: string, relative: string, visited: Set<string>, out: string[], broken: Stray[]): Promise<void> {
  let entries;
  try {
    const real = await realpath(absolute);
    if (visited.has(real)) return;
    visited.add(real);
    entries = await readdir(absolute, { withFileTypes: true });
  } catch (error) {
    throw new LesionError('read', describeFsError(error), relative);
  }
  for (const entry of entries) {
    const childAbsolute = join(absolute, entry.name);
    const childRelative = `${relative}/${entry.name}`;
    let isDirectory = entry.isDirectory();
    let isFile = entry.isFile();
    if (entry.isSymbolicLink()) {
      try {
        const target = await stat(childAbsolute);
        isDirectory = target.isDirectory();
        isFile = target.isFile();
      } catch (error) {
        const target = await readlink(childAbsolute).catch(() => '?');
        const code = (error as NodeJS.ErrnoException).code;
        const problem = code === 'ENOENT' ? 'does not exist' : `cannot be followed (${describeFsError(error)})`;
        broken.push({ path: childRelative, kind: 'unsupported-file', detail: `symbolic link to ${target}, which ${problem}` });
        continue;
      }
    }
    if (isDirectory) await walk(childAbsolute, childRelative, visited, out, broken);
    else if (isFile) out.push(childRelative);
  }
}

/** A file system error in words (no such file, permission denied...), for a line that names the path. */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const known: Record<string, string> = {
    ENOENT: 'no such file or folder',
    EACCES: 'permission denied',
    EISDIR: 'is a folder, not a file',
    ENOTDIR: 'not a folder',
    EEXIST: 'already exists',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'the disk quota is used up',
    EROFS: 'on a read-only file system',
    EPERM: 'operation not permitted',
  };
  return (code && known[code]) ?? (error instanceof Error ? error.message : String(error));
}
