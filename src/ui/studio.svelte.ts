/**
 * The studio's page-side state: which view is open, the data set the worker
 * holds, the run card and the run. Actions call the worker through comlink
 * and never wait on the main thread for more than a message.
 */
import type { DatasetSummary, OpenProgress, PagedFile, RootRole, RunListing, StampedEvent } from '../worker/api.ts';
import { CardState } from './card.svelte.ts';
import { proxy, startTrainer, type Trainer } from './client.ts';
import { filesFromInput, regainAccess, resolveDrop, type DroppedItems } from './folders.ts';
import { RunState } from './run.svelte.ts';
import { FileStreamer } from './streamer.ts';

export type View = 'dataset' | 'configure' | 'train' | 'results' | 'storage' | 'export' | 'predict';

export const VIEWS: { id: View; title: string }[] = [
  { id: 'dataset', title: 'Dataset' },
  { id: 'configure', title: 'Configure' },
  { id: 'train', title: 'Train' },
  { id: 'results', title: 'Results' },
  { id: 'storage', title: 'Storage' },
  { id: 'export', title: 'Export' },
  { id: 'predict', title: 'Predict' },
];

export class Studio {
  readonly trainer: Trainer = startTrainer();
  readonly card = new CardState();
  readonly run = new RunState();

  view = $state<View>('dataset');
  dataset = $state<DatasetSummary | undefined>();
  opening = $state<OpenProgress | undefined>();
  error = $state<string | undefined>();
  /** Folders opened before the reload: one click reopens them (the browser asks for permission again). */
  remembered = $state.raw<{ handles: FileSystemDirectoryHandle[]; roles: Record<string, RootRole> } | undefined>();
  /** Runs left unfinished when the tab closed. */
  interrupted = $state<RunListing[]>([]);
  /** File objects still on their way to the worker (folder input and dropped entries). */
  sending = $state<{ sent: number; total: number } | undefined>();
  private streamer: FileStreamer | undefined;
  /** Folder handles of the open data set (none for files or the demo). */
  openHandles = $state.raw<FileSystemDirectoryHandle[]>([]);
  /** Bumped whenever the data set changes, so views refetch thumbnails and previews. */
  datasetVersion = $state(0);

  private readonly onEvents = proxy((batch: StampedEvent[]) => this.run.apply(batch));

  /** The first visit opens the synthetic demo, so the studio shows something before any download. */
  async init(): Promise<void> {
    const [remembered, runs] = await Promise.all([this.trainer.rememberedFolders(), this.trainer.listRuns()]);
    this.remembered = remembered;
    this.interrupted = runs.filter((run) => run.status === 'interrupted' || run.status === 'paused');
    if (!remembered && runs.length === 0 && !this.dataset && this.opens === 0) await this.openDemo();
  }

  private opens = 0;

  private async opened(open: () => Promise<DatasetSummary>): Promise<void> {
    const mine = ++this.opens;
    this.error = undefined;
    this.opening = { phase: 'listing', files: 0, folder: '' };
    try {
      const summary = await open();
      if (mine !== this.opens) return;
      this.dataset = summary;
      this.datasetVersion++;
    } catch (error) {
      if (mine === this.opens) this.error = (error as Error).message;
    } finally {
      if (mine === this.opens) this.opening = undefined;
    }
  }

  private readonly onProgress = proxy((progress: OpenProgress) => {
    this.opening = progress;
  });

  private stopStreaming(): void {
    this.streamer?.stop();
    this.streamer = undefined;
    this.sending = undefined;
  }

  openDemo(): Promise<void> {
    this.stopStreaming();
    this.openHandles = [];
    return this.opened(() => this.trainer.openDemo());
  }

  async openFolders(handles: FileSystemDirectoryHandle[]): Promise<void> {
    this.stopStreaming();
    await this.opened(() => this.trainer.openFolders(handles, this.onProgress));
    if (this.dataset?.origin === 'folders') this.openHandles = handles;
  }

  /** The paths go first, so the summary shows at once; the File objects stream after. */
  async openFiles(files: PagedFile[]): Promise<void> {
    this.openHandles = [];
    this.stopStreaming();
    const streamer = new FileStreamer(files, this.trainer, (sent, total) => {
      this.sending = sent < total ? { sent, total } : undefined;
    });
    this.streamer = streamer;
    await this.opened(() => this.trainer.openFileList(files.map((f) => f.path), proxy(streamer.prioritise)));
    if (this.streamer === streamer && this.dataset?.origin === 'files') {
      this.sending = { sent: 0, total: files.length };
      await streamer.run();
    }
  }

  /**
   * The files are taken now (the input is cleared right after), the rest runs
   * in a task of its own: the browser's building of a big FileList is already one long task.
   */
  openInput(list: FileList): Promise<void> {
    const files = filesFromInput(list);
    return new Promise((resolve) => setTimeout(() => resolve(this.openFiles(files))));
  }

  async openDrop(dropped: DroppedItems): Promise<void> {
    this.opening = { phase: 'listing', files: 0, folder: '' };
    try {
      const result = await resolveDrop(dropped, (files) => (this.opening = { phase: 'listing', files, folder: '' }));
      if (result.kind === 'folders') await this.openFolders(result.handles);
      else if (result.files.length > 0) await this.openFiles(result.files);
      else this.opening = undefined;
    } catch (error) {
      this.error = (error as Error).message;
      this.opening = undefined;
    }
  }

  /** Must run inside the click: permission prompts need the user's gesture. */
  async reopenRemembered(): Promise<void> {
    const remembered = this.remembered;
    if (!remembered) return;
    if (!(await regainAccess(remembered.handles))) {
      this.error = 'The browser did not grant access to the folders again; open them anew.';
      return;
    }
    await this.openFolders(remembered.handles);
    for (const [root, role] of Object.entries(remembered.roles)) {
      if (this.dataset?.roots.some((r) => r.name === root && r.role !== role)) await this.setRole(root, role);
    }
  }

  async setRole(root: string, role: RootRole): Promise<void> {
    this.dataset = await this.trainer.setRootRole(root, role);
    this.datasetVersion++;
  }

  async startRun(): Promise<void> {
    const card = this.card.snapshot();
    this.run.reset(card.student.rounds);
    this.view = 'train';
    try {
      const { runId, backend } = await this.trainer.startRun(card, this.onEvents);
      this.run.runId = runId;
      this.run.backend = backend;
    } catch (error) {
      this.run.status = 'failed';
      this.run.message = (error as Error).message;
    }
  }

  async resumeRun(listing: RunListing): Promise<void> {
    this.run.reset(listing.card.student.rounds);
    this.view = 'train';
    try {
      const { runId, backend } = await this.trainer.resumeRun(listing.runId, this.onEvents);
      this.run.runId = runId;
      this.run.backend = backend;
      // The worker reopens the demo by itself when the run was trained on it.
      this.dataset ??= await this.trainer.summary();
      this.interrupted = this.interrupted.filter((run) => run.runId !== listing.runId);
    } catch (error) {
      this.run.status = 'failed';
      this.run.message = (error as Error).message;
    }
  }
}
