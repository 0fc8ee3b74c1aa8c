/**
 * Getting folders from the user: a drop anywhere on the page, the 'Open
 * folder' picker, and the `<input webkitdirectory>` fallback. A drop's items
 * die after the event tick, so every handle and entry is requested
 * synchronously, before the first await; walking dropped entries (the
 * fallback for browsers without getAsFileSystemHandle) is kept apart from the
 * code that consumes files, so the consumer can be tested with real files.
 */
import type { PagedFile } from '../worker/api.ts';
import { zipInWorker } from './zip.ts';

export interface DroppedItems {
  handles: Promise<FileSystemHandle | null>[];
  entries: (FileSystemEntry | null)[];
  files: (File | null)[];
}

/** Call inside the drop handler itself, before any await. */
export function collectDrop(transfer: DataTransfer): DroppedItems {
  const items = [...transfer.items].filter((item) => item.kind === 'file');
  return {
    handles: items.map((item) => item.getAsFileSystemHandle?.() ?? Promise.resolve(null)),
    entries: items.map((item) => item.webkitGetAsEntry()),
    files: items.map((item) => item.getAsFile()),
  };
}

export type DropResult =
  | { kind: 'folders'; handles: FileSystemDirectoryHandle[] }
  | { kind: 'files'; files: PagedFile[] };

/** Folder handles when the browser gives them; otherwise walked entries; otherwise loose files. */
export async function resolveDrop(dropped: DroppedItems, onCount?: (files: number) => void): Promise<DropResult> {
  const handles = await Promise.all(dropped.handles.map((h) => h.catch(() => null)));
  const folders = handles.filter((h): h is FileSystemDirectoryHandle => h?.kind === 'directory');
  if (folders.length > 0 && folders.length === handles.length) return { kind: 'folders', handles: folders };

  const files: PagedFile[] = [];
  for (let i = 0; i < dropped.entries.length; i++) {
    const entry = dropped.entries[i];
    if (entry) await walkEntry(entry, files, onCount);
    else {
      const file = dropped.files[i];
      if (file) files.push({ path: `dropped/${file.name}`, file });
    }
  }
  return { kind: 'files', files };
}

async function walkEntry(entry: FileSystemEntry, out: PagedFile[], onCount?: (files: number) => void): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
    // A file dropped on its own has no folder: give it one, as every path needs a root.
    const path = entry.fullPath.replace(/^\/+/, '');
    out.push({ path: path.includes('/') ? path : `dropped/${path}`, file });
    if (out.length % 500 === 0) onCount?.(out.length);
    return;
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  // Chrome returns at most 100 entries per call: read until an empty batch.
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) await walkEntry(child, out, onCount);
  }
}

/** Files from `<input webkitdirectory>`: their relative paths already start with the folder's name. */
export function filesFromInput(list: FileList): PagedFile[] {
  return [...list].map((file) => ({ path: file.webkitRelativePath || `chosen/${file.name}`, file }));
}

export function canPickFolders(): boolean {
  return typeof window.showDirectoryPicker === 'function';
}

/** Asks again for read access to remembered folders; must run inside a click. */
export async function regainAccess(handles: FileSystemDirectoryHandle[]): Promise<boolean> {
  // Requested together, synchronously, so all share the click's user activation.
  const answers = await Promise.all(handles.map((handle) => handle.requestPermission({ mode: 'read' })));
  return answers.every((answer) => answer === 'granted');
}

/** Writes exported files into a chosen folder, creating subfolders named in their paths. */
export async function writeIntoFolder(dir: FileSystemDirectoryHandle, files: { name: string; bytes: ArrayBuffer }[]): Promise<void> {
  for (const { name, bytes } of files) {
    const parts = name.split('/');
    let folder = dir;
    for (const part of parts.slice(0, -1)) folder = await folder.getDirectoryHandle(part, { create: true });
    const handle = await folder.getFileHandle(parts[parts.length - 1], { create: true });
    const writable = await handle.createWritable();
    await writable.write(bytes);
    await writable.close();
  }
}

/**
 * Saves files as one download: the file itself, or a ZIP of several (a burst
 * of downloads is blocked by browsers after the first).
 */
export async function download(
  files: { name: string; bytes: ArrayBuffer }[],
  { zipName = 'lesion-studio-export.zip', type = 'application/octet-stream' }: { zipName?: string; type?: string } = {},
): Promise<void> {
  const single = files.length === 1 ? files[0] : undefined;
  const blob = single ? new Blob([single.bytes], { type }) : await zipInWorker(files);
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = single ? single.name.slice(single.name.lastIndexOf('/') + 1) : zipName;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
