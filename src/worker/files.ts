/**
 * FileSources for the browser: over folder handles (File System Access API,
 * walked in the worker) and over File objects with their relative paths (the
 * `<input webkitdirectory>` fallback and dropped entries). Paths are
 * '/'-separated and start with the root folder's name, as the Node host's are,
 * so that several roots share one namespace. Listing reads names only;
 * nothing is read or decoded until a sample is needed.
 */
import { LesionError } from '../core/errors.ts';
import type { FileSource } from '../core/io.ts';

export interface ListProgress {
  /** Files found so far, over all roots. */
  files: number;
  /** The folder being read, for the progress line. */
  folder: string;
}

export type ListProgressSink = (progress: ListProgress) => void;

/** Progress is reported at most this often, so a 30,000-file walk does not flood the page. */
const PROGRESS_INTERVAL_MS = 100;

function progressThrottle(sink: ListProgressSink | undefined): (progress: ListProgress, force?: boolean) => void {
  let last = 0;
  return (progress, force = false) => {
    const now = performance.now();
    if (!sink || (!force && now - last < PROGRESS_INTERVAL_MS)) return;
    last = now;
    sink(progress);
  };
}

function describe(error: unknown): string {
  if (error instanceof DOMException) {
    if (error.name === 'NotAllowedError') return 'permission to read the folder was withdrawn; reopen it';
    if (error.name === 'NotFoundError') return 'the file was moved or deleted since the folder was opened';
    if (error.name === 'NotReadableError') return 'the file cannot be read (locked, or changed on disk)';
  }
  return error instanceof Error ? error.message : String(error);
}

function rootNamesMustDiffer(names: string[]): void {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) {
      throw new LesionError('dataset', `two folders share the name '${name}'; open them one at a time or rename one`);
    }
    seen.add(name);
  }
}

async function readFile(path: string, file: () => Promise<File>): Promise<Uint8Array> {
  try {
    return new Uint8Array(await (await file()).arrayBuffer());
  } catch (error) {
    throw new LesionError('read', describe(error), path);
  }
}

/** Folders opened through showDirectoryPicker or a drop's getAsFileSystemHandle. */
export class HandleFileSource implements FileSource {
  private readonly files = new Map<string, FileSystemFileHandle>();
  private listed: string[] | undefined;

  constructor(
    readonly roots: FileSystemDirectoryHandle[],
    private readonly onProgress?: ListProgressSink,
  ) {
    rootNamesMustDiffer(roots.map((root) => root.name));
  }

  /** Walks every root once; later calls return the same list. */
  async list(): Promise<string[]> {
    if (this.listed) return this.listed;
    const report = progressThrottle(this.onProgress);
    for (const root of this.roots) await this.walk(root, root.name, report);
    report({ files: this.files.size, folder: '' }, true);
    this.listed = [...this.files.keys()].sort();
    return this.listed;
  }

  async read(path: string): Promise<Uint8Array> {
    const handle = this.files.get(path);
    if (!handle) throw new LesionError('read', 'not a file in the opened folders', path);
    return readFile(path, () => handle.getFile());
  }

  private async walk(dir: FileSystemDirectoryHandle, path: string, report: (p: ListProgress) => void): Promise<void> {
    const folders: [FileSystemDirectoryHandle, string][] = [];
    try {
      for await (const entry of dir.values()) {
        const child = `${path}/${entry.name}`;
        if (entry.kind === 'file') this.files.set(child, entry);
        else folders.push([entry, child]);
      }
    } catch (error) {
      throw new LesionError('read', describe(error), path);
    }
    report({ files: this.files.size, folder: path });
    for (const [folder, child] of folders) await this.walk(folder, child, report);
  }
}

/** A File with the path it had below the chosen folder ('<folder>/<sub>/<name>'). */
export interface PathedFile {
  path: string;
  file: File;
}

/**
 * Files handed over by the page. Cloning a File into a worker costs the page
 * a fraction of a millisecond each, which adds up to seconds for 30,000: so
 * the paths come first (the data set is recognised at once) and the File
 * objects follow in small chunks. A read of a file not here yet asks the page
 * for it and waits.
 */
export class FileListSource implements FileSource {
  private readonly files = new Map<string, File>();
  private readonly waiting = new Map<string, (file: File) => void>();
  private readonly arrivals = new Map<string, Promise<File>>();
  private wanted: string[] = [];
  private readonly known: Set<string>;

  constructor(
    paths: string[],
    /** Asks the page to send these files before the others. */
    private readonly request: (paths: string[]) => void,
  ) {
    this.known = new Set(paths);
  }

  add(entries: PathedFile[]): void {
    for (const { path, file } of entries) {
      this.files.set(path, file);
      this.waiting.get(path)?.(file);
      this.waiting.delete(path);
      this.arrivals.delete(path);
    }
  }

  get received(): number {
    return this.files.size;
  }

  async list(): Promise<string[]> {
    return [...this.known].sort();
  }

  async read(path: string): Promise<Uint8Array> {
    const file = this.files.get(path) ?? (await this.arrival(path));
    return readFile(path, async () => file);
  }

  private arrival(path: string): Promise<File> {
    const known = this.arrivals.get(path);
    if (known) return known;
    if (!this.known.has(path)) return Promise.reject(new LesionError('read', 'not a file in the opened folders', path));
    const promise = new Promise<File>((resolve) => this.waiting.set(path, resolve));
    this.arrivals.set(path, promise);
    // Requests made in the same tick go to the page as one message.
    if (this.wanted.push(path) === 1) {
      queueMicrotask(() => {
        const wanted = this.wanted;
        this.wanted = [];
        this.request(wanted);
      });
    }
    return promise;
  }
}
