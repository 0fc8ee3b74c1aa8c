/**
 * The studio's page-side state: which view is open, the data set the worker
 * holds, the run card and the run. Actions call the worker through comlink
 * and never wait on the main thread for more than a message.
 *
 * When the worker stops (see client.ts), a new one starts, gets the same
 * data set again, and the run it was training is offered for resuming.
 */
import { rootOf } from '../core/dataset/layouts.ts';
import { parseRunCard, type RunCard } from '../core/config.ts';
import type { DatasetSummary, OpenProgress, PagedFile, ProgressSink, RootRole, RootSummary, RunListing, StampedEvent } from '../worker/api.ts';
import { CardState } from './card.svelte.ts';
import { proxy, startTrainer, type Trainer, type TrainerLink } from './client.ts';
import { filesFromInput, regainAccess, resolveDrop, type DroppedItems } from './folders.ts';
import { RunView, thrownCode } from './run.svelte.ts';
import { SplitPlan } from './split.svelte.ts';
import { FileStreamer } from './streamer.ts';

export type View = 'dataset' | 'configure' | 'train' | 'results' | 'label' | 'storage' | 'export' | 'predict';

export const VIEWS: { id: View; title: string }[] = [
  { id: 'dataset', title: 'Dataset' },
  { id: 'configure', title: 'Configure' },
  { id: 'train', title: 'Train' },
  { id: 'results', title: 'Results' },
  { id: 'label', title: 'Label' },
  { id: 'storage', title: 'Storage' },
  { id: 'export', title: 'Export' },
  { id: 'predict', title: 'Predict' },
];

/** Fault-test mode (README, Reliability): `?faults`, and `heartbeat=<ms>` to notice a killed worker sooner. */
const params = new URLSearchParams(location.search);
const FAULTS = params.has('faults');
const HEARTBEAT_MS = FAULTS && params.has('heartbeat') ? Number(params.get('heartbeat')) : 60_000;

const REPEATS_KEY = 'lesion-studio-repeats';

function storedRepeats(): RunCard[] {
  try {
    const cards = JSON.parse(localStorage.getItem(REPEATS_KEY) ?? '[]') as unknown[];
    return cards.map((c) => parseRunCard(c));
  } catch {
    // A queue this studio cannot read is dropped: the runs it would start are the user's to start again.
    localStorage.removeItem(REPEATS_KEY);
    return [];
  }
}

export class Studio {
  private link: TrainerLink = this.connect();
  /** Replaced when the worker stops: always call through it, never keep it. */
  trainer: Trainer = this.link.trainer;
  readonly card = new CardState();
  readonly run = new RunView();
  readonly split = new SplitPlan(this);

  view = $state<View>('dataset');
  dataset = $state<DatasetSummary | undefined>();
  opening = $state<OpenProgress | undefined>();
  error = $state<string | undefined>();
  /** Folders opened before the reload: one click reopens them (the browser asks for permission again). */
  remembered = $state.raw<{ handles: FileSystemDirectoryHandle[]; roles: Record<string, RootRole> } | undefined>();
  /** Runs left unfinished when the tab closed or the worker stopped. */
  interrupted = $state<RunListing[]>([]);
  /** The interrupted run whose Resume found its folders closed: the banner says which to open, in the Dataset view. */
  needsFolders = $state<string | undefined>();
  /** Runs another tab of this browser trains now: read-only here. */
  elsewhere = $state<RunListing[]>([]);
  /** Why the last worker stopped, while its replacement is the one in use. */
  trainerStopped = $state<string | undefined>();
  /** File objects still on their way to the worker (folder input and dropped entries). */
  sending = $state<{ sent: number; total: number } | undefined>();
  private streamer: FileStreamer | undefined;
  /** The folder input's files, kept to hand to a new worker if this one stops. */
  private files: PagedFile[] = [];
  /** Folder handles of the open data set (none for files or the demo). */
  openHandles = $state.raw<FileSystemDirectoryHandle[]>([]);
  /** Bumped whenever the data set changes, so views refetch thumbnails and previews. */
  datasetVersion = $state(0);
  /** Role changes the worker has not answered yet: until then the split preview is the old roles'. */
  rolesChanging = $state(0);

  /** Runs of a *Repeat with seeds* not started yet, in order. */
  get repeats(): RunCard[] {
    return this.repeatQueue;
  }

  set repeats(cards: RunCard[]) {
    this.repeatQueue = cards;
    if (cards.length > 0) localStorage.setItem(REPEATS_KEY, JSON.stringify(cards));
    else localStorage.removeItem(REPEATS_KEY);
  }

  // Raw: the cards go to the worker as they are, and a deep $state proxy cannot be structured-cloned.
  private repeatQueue = $state.raw<RunCard[]>(storedRepeats());

  private readonly onEvents = proxy((batch: StampedEvent[]) => {
    this.run.apply(batch);
    if (!this.run.watching && this.repeats.length > 0 && batch.some(({ event }) => event.type === 'run' && event.status === 'completed')) void this.startNextRepeat();
    // The worker resumes by itself after a lost GPU, perhaps on another backend.
    if (!this.run.watching && batch.some(({ event }) => event.type === 'run' && event.status === 'resumed')) {
      void this.trainer.runBackend().then((backend) => {
        if (backend) this.run.backend = backend;
      });
    }
  });

  /** The first visit opens the synthetic demo, so the studio shows something before any download. */
  async init(): Promise<void> {
    // Another tab may have started or ended a run meanwhile.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') void this.refreshRuns();
    });
    const [remembered, runs] = await Promise.all([this.trainer.rememberedFolders(), this.refreshRuns()]);
    this.remembered = remembered;
    if (!remembered && runs.length === 0 && !this.dataset && this.opens === 0) await this.openDemo();
  }

  /** Whether the run's folders must be opened before it can resume (the demo regenerates by itself). */
  foldersMissing(listing: RunListing): boolean {
    if (listing.dataset === 'demo') return false;
    const open = this.dataset;
    if (!open || open.origin === 'demo') return true;
    return !listing.roots.every((root) => open.roots.some((r) => r.name === root));
  }

  /** A stored run that is not training, shown with its history in the Train view. */
  async showStored(listing: RunListing, message?: string): Promise<void> {
    this.run.showStored(listing, await this.trainer.runHistory(listing.runId), message);
  }

  /** Opening folders is the user's move: the Dataset view, where the banner names an interrupted run's folders (the Train view, any other's). */
  private async leadToFolders(listing: RunListing, message?: string): Promise<void> {
    this.needsFolders = listing.runId;
    this.view = 'dataset';
    const inBanner = this.interrupted.some((run) => run.runId === listing.runId);
    await this.showStored(listing, message ?? (inBanner ? undefined : `Open the folders this run was trained on (${listing.roots.join(', ')}) in the Dataset view, then resume it.`));
  }

  private connect(): TrainerLink {
    const link = startTrainer({
      faults: FAULTS,
      heartbeatMs: HEARTBEAT_MS,
      onStopped: (reason, started) => {
        if (started) void this.replaceTrainer(reason);
        else this.error = `The trainer could not start (${reason}). Reload the page; if that does not help, this browser may lack module workers.`;
      },
    });
    if (FAULTS) {
      (window as unknown as { lesionStudioFaults: unknown }).lesionStudioFaults = { trainer: () => this.trainer, killWorker: () => link.kill() };
    }
    return link;
  }

  /** Runs another tab trains whose end the worker watches for, so the lists follow. */
  private awaitingRelease = new Set<string>();

  /** Sorts the stored runs into the banner's lists; returns them all. */
  async refreshRuns(): Promise<RunListing[]> {
    const runs = await this.trainer.listRuns();
    this.interrupted = runs.filter((run) => run.status === 'interrupted' || run.status === 'paused');
    // The Train view tells what became of the newest run left unfinished (also one whose old tab let go only now), before anything resumes it.
    const newest = this.interrupted[0];
    if (this.run.status === 'idle' && newest) {
      const history = await this.trainer.runHistory(newest.runId);
      // A run started meanwhile keeps the view.
      if (this.run.status === 'idle') this.run.showStored(newest, history);
    }
    this.elsewhere = runs.filter((run) => run.status === 'in-another-tab' && run.runId !== this.run.runId);
    for (const { runId } of runs.filter((run) => run.status === 'in-another-tab' && !this.awaitingRelease.has(run.runId))) {
      this.awaitingRelease.add(runId);
      const freed = proxy(() => {
        this.awaitingRelease.delete(runId);
        void this.refreshRuns();
      });
      void this.trainer.whenFree(runId, freed);
    }
    return runs;
  }

  /** A new worker, with the data set the old one held; the run it trained waits in the banner for a resume. */
  private async replaceTrainer(reason: string): Promise<void> {
    this.link = this.connect();
    this.trainer = this.link.trainer;
    this.trainerStopped = reason;
    this.awaitingRelease.clear();
    // A run followed from another tab goes on there: it is only no longer followed here.
    if (this.run.watching) {
      this.run.watching = false;
      this.run.status = 'idle';
    } else if (this.run.active) this.run.stopped(`The trainer stopped (${reason}); a new one has started.`);
    await this.reopen();
    // The old worker's lock on its run may outlive it by a moment: refreshRuns waits for it.
    await this.refreshRuns();
  }

  /** Opens in the current worker what the page had open, folder roles included. */
  private async reopen(): Promise<void> {
    const previous = this.dataset;
    if (!previous) return;
    if (previous.origin === 'files') return this.openFiles(this.files, previous.roots);
    if (previous.origin === 'demo') await this.openDemo();
    else await this.openFolders(this.openHandles);
    await this.keepRoles(previous.roots);
  }

  /** Gives the roots still open the roles the user chose for them before. */
  private async keepRoles(roots: Pick<RootSummary, 'name' | 'role'>[]): Promise<void> {
    for (const root of roots) {
      if (this.dataset?.roots.some((r) => r.name === root.name && r.role !== root.role)) await this.setRole(root.name, root.role);
    }
  }

  /** Counts opens: only the latest one may show its progress, result or error. */
  private opens = 0;

  private beginOpen(): number {
    this.error = undefined;
    this.opening = { phase: 'listing', files: 0, folder: '' };
    return ++this.opens;
  }

  /**
   * Progress for open number `mine`, heard only while that open is in flight:
   * comlink delivers a callback on a port of its own, so the worker's last
   * progress message can arrive after its answer and would otherwise show a
   * finished open as running.
   */
  private progressOf(mine: number): ProgressSink {
    return (progress: OpenProgress) => {
      if (mine === this.opens && this.opening) this.opening = progress;
    };
  }

  private async opened(open: (progress: ProgressSink) => Promise<DatasetSummary>): Promise<void> {
    const mine = this.beginOpen();
    try {
      const summary = await open(this.progressOf(mine));
      if (mine !== this.opens) return;
      this.dataset = summary;
      this.datasetVersion++;
    } catch (error) {
      if (mine === this.opens) this.error = (error as Error).message;
    } finally {
      if (mine === this.opens) this.opening = undefined;
    }
  }

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
    await this.opened((progress) => this.trainer.openFolders(handles, proxy(progress)));
    if (this.dataset?.origin === 'folders') this.openHandles = handles;
  }

  /** The paths go first, so the summary shows at once; the File objects stream after. `roles`: those to keep from before. */
  async openFiles(files: PagedFile[], roles: Pick<RootSummary, 'name' | 'role'>[] = []): Promise<void> {
    this.openHandles = [];
    this.files = files;
    this.stopStreaming();
    const streamer = new FileStreamer(files, this.trainer, (sent, total) => {
      this.sending = sent < total ? { sent, total } : undefined;
    });
    this.streamer = streamer;
    await this.opened(() => this.trainer.openFileList(files.map((f) => f.path), proxy(streamer.prioritise)));
    if (this.streamer === streamer && this.dataset?.origin === 'files') {
      await this.keepRoles(roles);
      this.sending = { sent: 0, total: files.length };
      await streamer.run();
    }
  }

  /**
   * The files are taken now (the input is cleared right after), the rest runs
   * in a task of its own: the browser's building of a big FileList is already one long task.
   * `add` keeps the folders already open, as *Add another folder* does with
   * the folder picker (a folder of the same name is replaced), and their roles.
   */
  async openInput(list: FileList, add = false): Promise<void> {
    const picked = filesFromInput(list);
    const pickedRoots = new Set(picked.map((f) => rootOf(f.path)));
    const files = add ? [...this.files.filter((f) => !pickedRoots.has(rootOf(f.path))), ...picked] : picked;
    const roles = add ? (this.dataset?.roots ?? []) : [];
    await new Promise((resolve) => setTimeout(resolve));
    await this.openFiles(files, roles);
  }

  async openDrop(dropped: DroppedItems): Promise<void> {
    const mine = this.beginOpen();
    const progress = this.progressOf(mine);
    try {
      const result = await resolveDrop(dropped, (files) => progress({ phase: 'listing', files, folder: '' }));
      if (mine !== this.opens) return;
      if (result.kind === 'folders') await this.openFolders(result.handles);
      else if (result.files.length > 0) await this.openFiles(result.files);
      else this.opening = undefined;
    } catch (error) {
      if (mine !== this.opens) return;
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
    await this.keepRoles(Object.entries(remembered.roles).map(([name, role]) => ({ name, role })));
  }

  async setRole(root: string, role: RootRole): Promise<void> {
    this.rolesChanging++;
    try {
      this.dataset = await this.trainer.setRootRole(root, role);
      this.datasetVersion++;
    } catch (error) {
      this.error = (error as Error).message;
    } finally {
      this.rolesChanging--;
    }
  }

  startRun(): Promise<void> {
    return this.startCard(this.card.snapshot());
  }

  /**
   * *Repeat with seeds*: the card again with each seed, one run after the
   * other, each a run like any (it resumes from its checkpoints). Every repeat
   * keeps the held-out split of `card` (data.splitSeed), so Compare pairs the
   * seeds on the same test images. The seeds not yet started are kept in
   * localStorage and go on when the run before them completes, after a
   * reload too.
   */
  async repeatWithSeeds(card: RunCard, seeds: number[]): Promise<void> {
    const plain = $state.snapshot(card);
    const splitSeed = plain.data.splitSeed ?? plain.seed;
    this.repeats = seeds.map((seed) => ({ ...plain, seed, data: { ...plain.data, splitSeed } }));
    await this.startNextRepeat();
  }

  private async startNextRepeat(): Promise<void> {
    const [next, ...rest] = this.repeats;
    if (!next) return;
    this.repeats = rest;
    await this.startCard(next);
    // A series that cannot start (no data set open, say) is dropped rather than started by some later run's end.
    if (this.run.status === 'failed') this.repeats = [];
  }

  private async startCard(card: RunCard): Promise<void> {
    await this.stopWatching();
    this.run.reset(card);
    this.view = 'train';
    try {
      const { runId, backend } = await this.trainer.startRun(card, this.onEvents);
      this.run.runId = runId;
      this.run.backend = backend;
    } catch (error) {
      this.run.status = 'failed';
      this.run.message = (error as Error).message;
      this.run.failure = thrownCode(error);
    }
  }

  /**
   * A learning rate replaces the run card's (after a diverged run). Call it
   * inside the click: where the run's folders are remembered, the browser asks
   * for permission to read them again, which needs the user's gesture.
   */
  async resumeRun(listing: RunListing, changes?: { learningRate?: number }): Promise<void> {
    if (this.foldersMissing(listing)) {
      const remembered = this.remembered?.handles ?? [];
      if (listing.dataset === 'folders' && listing.roots.length > 0 && listing.roots.every((root) => remembered.some((h) => h.name === root))) {
        await this.reopenRemembered();
      }
      if (this.foldersMissing(listing)) return this.leadToFolders(listing);
    }
    await this.stopWatching();
    this.run.reset(listing.card);
    this.view = 'train';
    this.trainerStopped = undefined;
    this.needsFolders = undefined;
    try {
      const { runId, backend } = await this.trainer.resumeRun(listing.runId, this.onEvents, changes);
      this.run.runId = runId;
      this.run.backend = backend;
      // The worker reopens the demo by itself when the run was trained on it.
      this.dataset ??= await this.trainer.summary();
      this.interrupted = this.interrupted.filter((run) => run.runId !== listing.runId);
    } catch (error) {
      // The resume did not start: the run is as it was, and a folder still missing is to be opened, not a failure.
      const message = (error as Error).message;
      if (thrownCode(error) === 'dataset') await this.leadToFolders(listing, message);
      else await this.showStored(listing, message);
    }
  }

  async resumeById(runId: string, changes?: { learningRate?: number }): Promise<void> {
    const listing = (await this.trainer.listRuns()).find((run) => run.runId === runId);
    if (listing) await this.resumeRun(listing, changes);
  }

  /** Follows, read-only, a run another tab trains. */
  async watchRun(listing: RunListing): Promise<void> {
    this.run.reset(listing.card);
    this.run.runId = listing.runId;
    this.run.status = 'running';
    this.run.watching = true;
    this.view = 'train';
    const freed = proxy(() => {
      if (this.run.runId !== listing.runId || !this.run.watching) return;
      this.run.watching = false;
      if (this.run.active) this.run.stopped('The tab that trained this run let go of it before it ended (closed, reloaded or stopped).');
      void this.refreshRuns();
    });
    await this.trainer.watchRun(listing.runId, this.onEvents, freed);
  }

  async stopWatching(): Promise<void> {
    if (!this.run.watching) return;
    this.run.watching = false;
    this.run.status = 'idle';
    await this.trainer.unwatchRun();
  }
}
