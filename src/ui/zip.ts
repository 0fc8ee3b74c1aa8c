/**
 * A ZIP archive of stored (uncompressed) entries, so that an export of many
 * files (pseudo-label masks, a model's three files) is one download instead
 * of a burst the browser blocks. PNGs and float weights barely compress.
 * zip.js writes it, with ZIP64 where an archive passes 65,535 entries or
 * 4 GiB (client-zip 2.5.1 was tried: past 65,535 entries it writes no ZIP64
 * end record, which `unzip` refuses). The page runs it in a worker of its own
 * (zip.worker.ts), so the CRCs of a large export do not stall the page, and
 * zip.js is told to start no workers itself (the page's CSP allows workers
 * from this site only, not the blob: URLs zip.js would start them from).
 */
import { BlobWriter, Uint8ArrayReader, ZipWriter } from '@zip.js/zip.js';

export interface ZipEntry {
  name: string;
  bytes: ArrayBuffer;
}

export async function zipStored(files: ZipEntry[], now = new Date()): Promise<Blob> {
  const zip = new ZipWriter(new BlobWriter('application/zip'), { level: 0, useWebWorkers: false, lastModDate: now });
  for (const { name, bytes } of files) await zip.add(name, new Uint8ArrayReader(new Uint8Array(bytes)));
  return zip.close();
}

/** zipStored in a worker; the files' buffers are copied to it, so the caller keeps its own. */
export function zipInWorker(files: ZipEntry[]): Promise<Blob> {
  const worker = new Worker(new URL('./zip.worker.ts', import.meta.url), { type: 'module' });
  return new Promise<Blob>((resolve, reject) => {
    worker.onmessage = ({ data }: MessageEvent<Blob | string>) => (typeof data === 'string' ? reject(new Error(`ZIP export failed: ${data}`)) : resolve(data));
    worker.onerror = (event) => reject(new Error(`ZIP export failed: ${event.message}`));
    worker.postMessage(files);
  }).finally(() => worker.terminate());
}
