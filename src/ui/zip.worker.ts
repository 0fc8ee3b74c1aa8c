/** Builds an export's ZIP off the page thread (see zip.ts); a failure comes back as its message. */
import { type ZipEntry, zipStored } from './zip.ts';

self.onmessage = async ({ data }: MessageEvent<ZipEntry[]>) => {
  try {
    self.postMessage(await zipStored(data));
  } catch (error) {
    self.postMessage(error instanceof Error ? error.message : String(error));
  }
};
