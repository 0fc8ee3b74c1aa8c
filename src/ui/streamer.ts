/**
 * Hands File objects to the worker after their paths: in chunks small enough
 * that cloning them never holds the page for long, files the worker is
 * waiting on (a thumbnail, a training step) first.
 */
import type { PagedFile } from '../worker/api.ts';
import type { Trainer } from './client.ts';

/** Cloning a File costs the page about 0.3 ms: 50 stay far under a 50 ms task. */
const CHUNK = 50;

export class FileStreamer {
  private readonly byPath: Map<string, PagedFile>;
  private readonly sent = new Set<string>();
  private urgent: string[] = [];
  private next = 0;
  private stopped = false;

  constructor(
    private readonly files: PagedFile[],
    private readonly trainer: Trainer,
    private readonly onProgress: (sent: number, total: number) => void,
  ) {
    this.byPath = new Map(files.map((f) => [f.path, f]));
  }

  /** Called (through comlink) by the worker when a read waits on these files. */
  prioritise = (paths: string[]): void => {
    this.urgent.push(...paths);
  };

  stop(): void {
    this.stopped = true;
  }

  async run(): Promise<void> {
    while (!this.stopped && this.sent.size < this.files.length) {
      const chunk = this.take();
      await this.trainer.receiveFiles(chunk);
      this.onProgress(this.sent.size, this.files.length);
    }
  }

  private take(): PagedFile[] {
    const chunk: PagedFile[] = [];
    const add = (file: PagedFile | undefined) => {
      if (!file || this.sent.has(file.path)) return;
      this.sent.add(file.path);
      chunk.push(file);
    };
    while (chunk.length < CHUNK && this.urgent.length > 0) add(this.byPath.get(this.urgent.shift()!));
    while (chunk.length < CHUNK && this.next < this.files.length) add(this.files[this.next++]);
    return chunk;
  }
}
