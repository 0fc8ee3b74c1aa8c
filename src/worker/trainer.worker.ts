/**
 * The trainer worker: holds the open data set and the run, and routes the
 * page's calls (comlink) to the core. Everything heavy (listing folders,
 * decoding, TensorFlow.js) happens here, never on the page's thread.
 */
import * as Comlink from 'comlink';
import type { RunCard } from '../core/config.ts';
import { LesionError } from '../core/errors.ts';
import { hasExpertLabel, LabelStore } from '../core/active/labels.ts';
import { deleteFineTunes, fineTune, fineTunedModelFiles, fineTuneResult, fineTuneScores, type FineTuneProgress } from '../core/active/fine-tune.ts';
import { RunStore } from '../core/run/run-store.ts';
import { compareModels, modelName, sameRecipe, stageScores } from '../core/run/compare-models.ts';
import { summariseRepeats } from '../core/run/repeats.ts';
import { storesUsage } from '../core/run/storage-usage.ts';
import { FINE_TUNE_ARMS } from '../core/run/display.ts';
import { poisonTrainableWeights } from '../core/training/train.ts';
import {
  FAULT_TEST_MARK,
  type ComparePick,
  type CompareOption,
  type DatasetSummary,
  type EventBatchSink,
  type InjectedFault,
  type PagedFile,
  type ProgressSink,
  type RootRole,
  type StampedEvent,
  type TaskProgressSink,
  type TrainerApi,
  type TrainingStage,
} from './api.ts';
import { capabilities, ensureBackend, estimateMemory } from './backend.ts';
import { OpenDataset } from './dataset.ts';
import { DemoFileSource } from './demo.ts';
import { exported, exportJob, exportMetrics, exportModel, exportPseudoLabels } from './exports.ts';
import { BitmapDecoder } from './decode.ts';
import { FileListSource, HandleFileSource } from './files.ts';
import { acquisitionQueue, exportExpertLabels, labeledDataset, labelTask, saveLabel } from './labeling.ts';
import { injectDeviceFault } from './gpu-watch.ts';
import { previewAugmentation, previewSplit } from './previews.ts';
import { gallery, predictFile, pseudoLabelViews } from './results.ts';
import { openFoldersFirst, RunManager } from './runs.ts';
import { IdbStore } from './store.ts';
import { follow, whenReleased } from './tabs.ts';

const runStore = new IdbStore('runs');
const folderStore = new IdbStore('folders');
const runs = new RunManager(runStore);
const labelStore = new IdbStore('labels');
const labels = new LabelStore(labelStore);
const fineTunes = new IdbStore('finetunes');

interface RememberedFolders {
  handles: FileSystemDirectoryHandle[];
  roles: Record<string, RootRole>;
}
const REMEMBERED = 'last-opened';

let dataset: OpenDataset | undefined;
/** Opens can overlap (the demo loading while the user drops a folder): the newest one wins. */
let latestOpen = 0;

async function replaceDataset(open: () => Promise<OpenDataset>): Promise<DatasetSummary> {
  const mine = ++latestOpen;
  const opened = await open();
  if (mine !== latestOpen) throw new LesionError('dataset', 'another data set was opened meanwhile');
  dataset = opened;
  return opened.summary();
}

function open(): OpenDataset {
  if (!dataset) throw new LesionError('dataset', 'no data set is open');
  return dataset;
}

/** The open data set as runs and split previews see it: expert-labeled pool images among the labeled ones. */
async function openLabeled(): Promise<OpenDataset> {
  return labeledDataset(open(), labels);
}

async function remember(): Promise<void> {
  const source = dataset?.source;
  if (!(source instanceof HandleFileSource)) return;
  await folderStore.set(REMEMBERED, { handles: source.roots, roles: Object.fromEntries(dataset!.roles) } satisfies RememberedFolders);
}

/** ImageBitmaps and ArrayBuffers anywhere in a result move to the page instead of being copied. */
function transferables(value: unknown, out: Transferable[] = [], depth = 0): Transferable[] {
  if (value instanceof ImageBitmap || value instanceof ArrayBuffer) out.push(value);
  else if (value && typeof value === 'object' && depth < 4) {
    for (const item of Array.isArray(value) ? value : Object.values(value)) transferables(item, out, depth + 1);
  }
  return out;
}

function moved<T>(value: T): T {
  return Comlink.transfer(value, transferables(value));
}

function injectFault(fault: InjectedFault): void {
  if (!self.name.endsWith(FAULT_TEST_MARK)) throw new LesionError('config', 'fault injection is for the fault tests only');
  switch (fault.kind) {
    case 'lose-device':
      return injectDeviceFault({ kind: 'lose', refuseRestart: fault.refuseRestart });
    case 'device-out-of-memory':
      return injectDeviceFault({ kind: 'out-of-memory' });
    case 'storage-full':
      return runStore.injectQuotaFault({ after: fault.after, match: fault.match });
    case 'storage-ok':
      return runStore.injectQuotaFault(undefined);
    case 'nan-weights':
      return poisonTrainableWeights();
    case 'crash':
      // Outside any promise, so nothing catches it: the page sees the worker's error event.
      setTimeout(() => {
        throw new Error('injected crash (fault test hook)');
      });
  }
}

/** Stops following another tab's run. */
let unwatch: (() => void) | undefined;

async function runContext(runId: string) {
  const { state, card } = await runs.state(runId);
  const origin = await runs.origin(runId);
  return { state, card, roots: origin?.roots ?? [] };
}

/** Starts the backend the run's card asks for (a stage's model is about to run) and hands back the card. */
async function onRunBackend(runId: string): Promise<RunCard> {
  const { card } = await runs.state(runId);
  await ensureBackend(card.backend);
  return card;
}

const api: TrainerApi = {
  async ping() {},

  async openDemo() {
    return replaceDataset(() => OpenDataset.open('demo', new DemoFileSource()));
  },

  async openFolders(handles: FileSystemDirectoryHandle[], onProgress: ProgressSink) {
    const source = new HandleFileSource(handles, (p) => onProgress({ phase: 'listing', ...p }));
    const previous = await folderStore.get<RememberedFolders>(REMEMBERED);
    const summary = await replaceDataset(async () => {
      // The walk is cached, so the open below lists nothing twice.
      onProgress({ phase: 'indexing', files: (await source.list()).length });
      return OpenDataset.open('folders', source, previous?.roles);
    });
    await remember();
    return summary;
  },

  async openFileList(paths: string[], requestFiles: (paths: string[]) => void) {
    return replaceDataset(() => OpenDataset.open('files', new FileListSource(paths, requestFiles)));
  },

  async receiveFiles(files: PagedFile[]) {
    const source = dataset?.source;
    // Files for a list that has since been replaced are dropped.
    if (!(source instanceof FileListSource)) return 0;
    source.add(files);
    return source.received;
  },

  async setRootRole(root: string, role: RootRole) {
    open().setRole(root, role);
    await remember();
    return open().summary();
  },

  async summary(): Promise<DatasetSummary | undefined> {
    return dataset?.summary();
  },

  async rememberedFolders() {
    return folderStore.get<RememberedFolders>(REMEMBERED);
  },

  async thumbnails(request) {
    return moved(await open().thumbnails(request));
  },

  async previewSplit(request) {
    return previewSplit(await openLabeled(), request);
  },

  async previewAugmentation(request) {
    return moved(await previewAugmentation(open(), request));
  },

  async capabilities(card?: RunCard) {
    const estimate = card ? await estimateMemory(card) : undefined;
    return { ...(await capabilities()), estimate };
  },

  async startRun(card: RunCard, onEvents: EventBatchSink) {
    return runs.start(card, await openLabeled(), onEvents);
  },

  async resumeRun(runId: string, onEvents: EventBatchSink, changes?: { learningRate?: number }) {
    const origin = await runs.origin(runId);
    // The demo regenerates identically, so its runs resume without asking for anything.
    if (origin?.dataset === 'demo' && dataset?.origin !== 'demo') dataset = await OpenDataset.open('demo', new DemoFileSource());
    if (!dataset) {
      throw new LesionError('dataset', openFoldersFirst(origin));
    }
    return runs.resumeStored(runId, await openLabeled(), onEvents, changes?.learningRate);
  },

  async watchRun(runId: string, onEvents: EventBatchSink, onFreed: () => void) {
    unwatch?.();
    const released = new AbortController();
    const stopFollowing = follow(runId, () => new RunStore(runStore, runId).history<StampedEvent>(), onEvents);
    const stop = (): void => {
      stopFollowing();
      released.abort();
      if (unwatch === stop) unwatch = undefined;
    };
    unwatch = stop;
    whenReleased(runId, released.signal).then(
      () => {
        stop();
        onFreed();
      },
      () => undefined,
    );
  },

  async unwatchRun() {
    unwatch?.();
  },

  async whenFree(runId: string, onFreed: () => void) {
    void whenReleased(runId).then(() => onFreed());
  },

  async runBackend() {
    return runs.activeBackend;
  },

  async pause() {
    runs.pause();
  },

  async unpause() {
    runs.unpause();
  },

  async cancel() {
    runs.cancel();
  },

  async listRuns() {
    return runs.list();
  },

  async runHistory(runId: string) {
    return new RunStore(runStore, runId).history<StampedEvent>();
  },

  async deleteRun(runId: string) {
    await runs.delete(runId);
    await deleteFineTunes(fineTunes, runId);
  },

  async results(runId: string) {
    const { state, card } = await runs.state(runId);
    return {
      runId,
      card,
      stages: state.results,
      split: {
        train: state.split.train.length,
        val: state.split.val.length,
        test: state.split.test.length,
        unlabeled: state.split.unlabeled.length,
      },
    };
  },

  async repeats(runId: string) {
    const { card } = await runs.state(runId);
    const seeds = (await runs.list()).filter((r) => r.status === 'completed' && sameRecipe(r.card, card));
    return summariseRepeats(await Promise.all(seeds.map(async (r) => ({ seed: r.card.seed, results: (await runs.state(r.runId)).state.results }))));
  },

  async comparable() {
    const options: CompareOption[] = [];
    for (const listing of await runs.list()) {
      const { state } = await runs.state(listing.runId);
      for (const result of state.results) {
        if (!result.test || result.stage === 'pseudo-teacher' || result.stage === 'pseudo-student') continue;
        const stage = result.stage;
        const base = { runId: listing.runId, createdAt: listing.createdAt };
        options.push({ ...base, stage, label: modelName(listing.card, stage) });
        if (await fineTuneResult(fineTunes, listing.runId, stage)) {
          for (const arm of ['with', 'without'] as const) options.push({ ...base, stage, fineTune: arm, label: `${modelName(listing.card, stage)}, fine-tuned ${FINE_TUNE_ARMS[arm]}` });
        }
      }
    }
    return options;
  },

  async compare(picks: ComparePick[]) {
    const models = await Promise.all(
      picks.map((p) => (p.fineTune ? fineTuneScores(runStore, fineTunes, p.runId, p.stage, p.fineTune) : stageScores(new RunStore(runStore, p.runId), p.stage))),
    );
    return compareModels(models);
  },

  async gallery(runId: string, stage: TrainingStage, onProgress: TaskProgressSink) {
    await onRunBackend(runId);
    return moved(await gallery(new RunStore(runStore, runId), dataset && (await openLabeled()), await runContext(runId), stage, onProgress));
  },

  async pseudoLabels(runId, stage, limit) {
    return moved(await pseudoLabelViews(new RunStore(runStore, runId), dataset, stage, limit));
  },

  async rejectPseudoLabel(runId: string, image: string, rejected: boolean) {
    await new RunStore(runStore, runId).setRejected(image, rejected);
  },

  async acquisitionQueue(request, onProgress) {
    await onRunBackend(request.runId);
    return moved(await acquisitionQueue(runStore, labels, open(), request, onProgress));
  },

  async labelTask(image, model) {
    const withCard = model && { ...model, card: await onRunBackend(model.runId) };
    return moved(await labelTask(runStore, labels, open(), image, withCard));
  },

  async saveLabel(save) {
    await saveLabel(labels, open(), save);
    return labels.infos();
  },

  async expertLabels() {
    return labels.infos();
  },

  async deleteLabel(image: string) {
    await labels.delete(image);
    return labels.infos();
  },

  async exportExpertLabels() {
    return moved(await exportExpertLabels(labels));
  },

  async fineTune(runId: string, stage: TrainingStage, epochs: number, onProgress: FineTuneProgress) {
    if (runs.activeRunId) throw new LesionError('config', `run ${runs.activeRunId} is training; fine-tune once it has finished or been stopped`);
    await onRunBackend(runId);
    const data = await openLabeled();
    const { labeled } = data.inputs();
    const request = { runId, stage, epochs, roots: (await runContext(runId)).roots, labeled, newLabels: labeled.filter(hasExpertLabel) };
    return fineTune({ source: data.source, decoder: new BitmapDecoder(), runs: runStore, store: fineTunes }, request, onProgress);
  },

  async fineTuneResult(runId: string, stage: TrainingStage) {
    return fineTuneResult(fineTunes, runId, stage);
  },

  async exportFineTunedModel(runId: string, stage: TrainingStage) {
    await onRunBackend(runId);
    const files = await fineTunedModelFiles(runStore, fineTunes, runId, stage);
    return moved(files.map((f) => exported(f, `${runId}-${stage}-finetuned/${f.name}`)));
  },

  async storageUsage() {
    const estimate = await navigator.storage.estimate();
    return {
      usage: estimate.usage ?? 0,
      quota: estimate.quota ?? 0,
      persisted: await navigator.storage.persisted(),
      ...(await storesUsage({ runs: runStore, labels: labelStore, fineTunes }, await runs.list())),
    };
  },

  async exportModel(runId: string, stage: TrainingStage, kind: 'best' | 'latest') {
    await onRunBackend(runId);
    return moved(await exportModel(new RunStore(runStore, runId), stage, kind));
  },

  async exportPseudoLabels(runId, stage) {
    return moved(await exportPseudoLabels(new RunStore(runStore, runId), dataset, stage));
  },

  async exportMetrics(runId: string) {
    return moved(await exportMetrics(new RunStore(runStore, runId)));
  },

  async exportJob(runId: string, startFrom?: TrainingStage) {
    const { card } = await runs.state(runId);
    await ensureBackend(card.backend);
    return moved(await exportJob(new RunStore(runStore, runId), card, await openLabeled(), await labels.all(), startFrom));
  },

  async predict(runId: string, stage: TrainingStage, name: string, bytes: ArrayBuffer, displaySize: number) {
    const card = await onRunBackend(runId);
    return moved(await predictFile(new RunStore(runStore, runId), card, stage, name, new Uint8Array(bytes), displaySize));
  },

  async injectFault(fault: InjectedFault) {
    injectFault(fault);
  },
};

/**
 * Comlink sends a thrown Error as its message, name and stack only, and the
 * page rebuilds it with every field it received: a LesionError's code is
 * added here so the page can tell a full disk from a missing folder without
 * reading the message.
 */
const throwHandler = Comlink.transferHandlers.get('throw')!;
Comlink.transferHandlers.set('throw', {
  canHandle: throwHandler.canHandle,
  serialize(thrown) {
    const [serialized, transfer] = throwHandler.serialize(thrown) as [{ isError: boolean; value: Record<string, unknown> }, Transferable[]];
    const error = (thrown as { value: unknown }).value;
    if (serialized.isError && error instanceof LesionError) serialized.value.code = error.code;
    return [serialized, transfer];
  },
  deserialize: throwHandler.deserialize,
});

Comlink.expose(api);
