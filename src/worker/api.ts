/**
 * What the trainer worker offers the page, as types only: the UI imports
 * this file with `import type`, so no TensorFlow.js code ever loads on the
 * main thread. Everything crossing here is structured-clonable; images come
 * back as transferred ImageBitmaps and files as transferred ArrayBuffers.
 */
import type { AcquisitionScore, ImageScores } from '../core/active/acquisition.ts';
import type { BackendChoice, DataConfig, RunCard } from '../core/config.ts';
import type { LayoutName, Split, SplitCounts, Stray } from '../core/dataset/layouts.ts';
import type { StageName, TrainerEvent } from '../core/events.ts';
import type { NoiseConfig, NoiseStep } from '../core/noise/chain.ts';
import type { ExpertLabel, ExpertLabelInfo } from '../core/active/labels.ts';
import type { FineTuneResult, StageResult, TrainingStage } from '../core/run/pipeline.ts';
export type { FineTuneResult } from '../core/run/pipeline.ts';
import type { FineTuneProgress } from '../core/active/fine-tune.ts';
import type { FineTuneArmName } from '../core/run/display.ts';
import type { ModelComparison } from '../core/run/compare-models.ts';
export type { ModelComparison } from '../core/run/compare-models.ts';
import type { StageRepeats } from '../core/run/repeats.ts';
import type { StoresUsage } from '../core/run/storage-usage.ts';
import type { MemoryEstimate } from '../core/model/memory.ts';
export type { MemoryEstimate };

export type { AcquisitionScore, ExpertLabelInfo, ImageScores, StageResult, TrainingStage };

/** A labeled root trains and validates; an unlabeled root only feeds pseudo-labels. */
export type RootRole = 'labeled' | 'unlabeled';

export interface RootSummary {
  name: string;
  role: RootRole;
  files: number;
}

export interface SetSummary {
  name: string;
  layout: LayoutName;
  layoutTitle: string;
  /** The folder the layout hangs from, below the root. */
  folder: string;
  /** Top-level folder (root) it belongs to. */
  root: string;
  role: RootRole;
  /** Pairs that train or validate: none in an unlabeled pool, whose pairs count as unlabeled images. */
  labeled: number;
  unlabeled: number;
  /** Masks a run leaves unused because the set's folder is an unlabeled pool. */
  masksUnused: number;
  countsBySplit: Record<Split, SplitCounts>;
}

export type DatasetOrigin = 'folders' | 'files' | 'demo';

export interface DatasetSummary {
  origin: DatasetOrigin;
  roots: RootSummary[];
  sets: SetSummary[];
  strays: Stray[];
  files: number;
  /** Pairs that will train or validate (labeled roots only). */
  labeled: number;
  /** Images that can receive pseudo-labels. */
  unlabeled: number;
}

export type OpenProgress = { phase: 'listing'; files: number; folder: string } | { phase: 'indexing'; files: number };

export type ProgressSink = (progress: OpenProgress) => void;

/** A file handed over by the page, with its path below the chosen folder. */
export interface PagedFile {
  path: string;
  file: File;
}

export interface ThumbnailRequest {
  offset: number;
  count: number;
  /** Longest side in pixels. */
  size: number;
  filter: 'all' | 'labeled' | 'unlabeled';
}

export interface Thumbnail {
  id: string;
  set: string;
  split: Split;
  image: string;
  mask?: string;
  bitmap: ImageBitmap;
  /** Translucent lesion fill with its outline, drawn over `bitmap`. */
  overlay?: ImageBitmap;
  sourceWidth: number;
  sourceHeight: number;
  /** The file could not be decoded: the message names it and says why. */
  error?: string;
}

export interface ThumbnailPage {
  total: number;
  items: Thumbnail[];
}

export interface SplitPreviewRequest {
  seed: number;
  split: DataConfig['split'];
  unlabeledPerLabeled: number;
  /** The share of training pairs that keep their masks; the others train as unlabeled images. */
  labeledFraction: number;
  /** When set, k seeded folds are shown instead (cross-validation preview). */
  folds?: number;
}

export interface SplitCountsBySet {
  set: string;
  train: number;
  val: number;
  test: number;
}

export interface SplitPreview {
  train: number;
  val: number;
  test: number;
  unlabeledUsed: number;
  unlabeledAvailable: number;
  /** Training pairs whose masks the labeled fraction hides: they count among the unlabeled images. */
  labelsHidden: number;
  /** Images labeled in the studio's editor, per part they land in (they count in train, val and test above). */
  expert: { train: number; val: number; test: number };
  bySet: SplitCountsBySet[];
  /** First ids of each part, so a seed change visibly changes the draw. */
  examples: { train: string[]; val: string[]; test: string[] };
  folds?: { fold: number; train: number; val: number }[];
}

export interface AugmentationDraw {
  bitmap: ImageBitmap;
  overlay?: ImageBitmap;
  applied: NoiseStep[];
}

export interface AugmentationPreview {
  sampleId: string;
  original: ImageBitmap;
  draws: AugmentationDraw[];
}

export interface AugmentationRequest {
  noise: NoiseConfig;
  seed: number;
  /** Index into the labeled samples (wraps). */
  sample: number;
  draws: number;
  size: number;
}

export interface BackendReport {
  name: Exclude<BackendChoice, 'auto'>;
  /** What it means, in plain words. */
  title: string;
  /** Why this one: chosen automatically, forced by the card, or what failed first. */
  reason: string;
}

export interface Capabilities {
  webgpu: {
    available: boolean;
    reason?: string;
    adapter?: { vendor: string; architecture: string; device: string; description: string };
    /** The software renderer behind the adapter ('SwiftShader'), if it is one: WebGPU works but slower than wasm, and auto skips it. */
    software?: string;
    limits?: { maxStorageBufferBindingSize: number; maxBufferSize: number };
  };
  webgl: boolean;
  crossOriginIsolated: boolean;
  hardwareConcurrency: number;
  /** The backend the worker runs now, if one started. */
  current?: Exclude<BackendChoice, 'auto'>;
  estimate?: MemoryEstimate;
}

/** An event with the worker's wall-clock time (ms), so charts place it where it happened. */
export interface StampedEvent {
  at: number;
  event: TrainerEvent;
}

export type EventBatchSink = (events: StampedEvent[]) => void;

export type TaskProgressSink = (done: number, total: number) => void;

export interface RunListing {
  runId: string;
  name: string;
  createdAt: string;
  updatedAt: string;
  /**
   * 'interrupted': it was running when its tab closed (or its worker stopped); it resumes from its last
   * checkpoint. 'in-another-tab': another tab of this browser trains it now; here it is read-only.
   */
  status: 'running' | 'paused' | 'cancelled' | 'completed' | 'failed' | 'interrupted' | 'in-another-tab';
  message?: string;
  /** Stages done, in order. */
  completed: StageName[];
  dataset: DatasetOrigin;
  /** Root folder names it was trained on, to reopen for a resume. */
  roots: string[];
  card: RunCard;
  /**
   * The checkpoint a resume continues from (the unfinished stage's latest), as stored: the run's
   * history may lack its event when the tab closed while the checkpoint was written.
   */
  lastCheckpoint?: { stage: StageName; epoch: number; step: number; bytes: number };
}

/** A model Compare can pick: a trained stage, or one arm of its fine-tune. */
export interface ComparePick {
  runId: string;
  stage: TrainingStage;
  fineTune?: FineTuneArmName;
}

export interface CompareOption extends ComparePick {
  label: string;
  createdAt: string;
}

export interface RunResultsView {
  runId: string;
  card: RunCard;
  stages: StageResult[];
  split: { train: number; val: number; test: number; unlabeled: number };
}

export interface ExportedFile {
  name: string;
  bytes: ArrayBuffer;
}

export interface GalleryItem {
  id: string;
  set: string;
  image: string;
  split: 'val' | 'test';
  lesionIoU: number;
  dice: number;
  /** The photograph, at display size. */
  bitmap: ImageBitmap;
  /** Ground-truth contour (white) and prediction fill (blue). */
  overlay: ImageBitmap;
  /** False positives in orange, false negatives in purple. */
  errors: ImageBitmap;
}

export interface PseudoLabelView {
  id: string;
  key: string;
  image: string;
  lesionFraction: number;
  uncertainty: number;
  dropped: boolean;
  rejected: boolean;
  bitmap?: ImageBitmap;
  overlay?: ImageBitmap;
}

export interface QueueRequest {
  runId: string;
  /** Its best checkpoint scores the pool. */
  stage: TrainingStage;
  score: AcquisitionScore;
  /** Dropout passes for the 'mc-dropout' score. */
  mcPasses: number;
  /** How many of the ranked images come back (with thumbnails). */
  limit: number;
  /** Thumbnail's longest side in pixels. */
  size: number;
}

/** A pool image in the acquisition queue: highest score first. */
export interface QueueItem {
  id: string;
  set: string;
  image: string;
  rank: number;
  /** The chosen score's value. */
  value: number;
  /** Why it ranks there, in words. */
  why: string;
  scores: ImageScores;
  /** Of the model's current mask. */
  lesionFraction: number;
  /** An expert label is saved for it. */
  labeled: boolean;
  bitmap: ImageBitmap;
  /** The model's current mask over `bitmap`. */
  overlay?: ImageBitmap;
}

/** What the mask editor opens: the image at its own resolution and the masks it can start from. */
export interface LabelTask {
  id: string;
  set: string;
  image: string;
  width: number;
  height: number;
  bitmap: ImageBitmap;
  /** The stage's prediction at the image's size, 0/1 bytes (when a run was chosen). */
  prediction?: ArrayBuffer;
  /** The saved expert label, if any. */
  label?: { data: ArrayBuffer; author: string; note: string; savedAt: string; startedFrom: ExpertLabel['startedFrom'] };
}

export interface LabelSave {
  image: string;
  width: number;
  height: number;
  /** 0/1 bytes, width * height. */
  data: ArrayBuffer;
  author: string;
  note: string;
  startedFrom: ExpertLabel['startedFrom'];
}

/** A short fine-tune from a stage's best checkpoint with the expert labels, scored before and after on the same images. */
export interface PredictionView {
  name: string;
  bitmap: ImageBitmap;
  overlay: ImageBitmap;
  lesionFraction: number;
  /** The binary mask as a PNG (0/255), named like ISIC ground truth. */
  maskPng: ArrayBuffer;
  maskName: string;
  /** What reading the file found odd (an EXIF orientation left unapplied), each naming it. */
  warnings: string[];
}

/** What the stores hold (the core counts it), with the browser's own figures for the site. */
export interface StorageUsage extends StoresUsage<RunListing> {
  usage: number;
  quota: number;
  persisted: boolean;
}

/** The trainer worker's name; the page appends FAULT_TEST_MARK to allow fault injection. */
export const TRAINER_NAME = 'lesion-studio-trainer';
export const FAULT_TEST_MARK = '(faults)';

/**
 * Faults the end-to-end tests inject (README, Reliability). The worker
 * accepts them only when the page started it in fault-test mode (`?faults`),
 * which it tells by its name.
 */
export type InjectedFault =
  /** device.destroy() on the training device, as a driver reset would; refuseRestart keeps WebGPU from starting again. */
  | { kind: 'lose-device'; refuseRestart?: boolean }
  /** An out-of-memory error delivered the way WebGPU delivers it: an uncapturederror event. */
  | { kind: 'device-out-of-memory' }
  /** Run-store writes of keys containing `match` fail with QuotaExceededError once `after` of them went through. */
  | { kind: 'storage-full'; after: number; match?: string }
  | { kind: 'storage-ok' }
  /** NaN written into the training model's weights, as an exploding update would leave them. */
  | { kind: 'nan-weights' }
  /** An exception nothing catches, thrown on the worker's own thread. */
  | { kind: 'crash' };

export interface TrainerApi {
  /** Answers at once: the page's heartbeat. */
  ping(): Promise<void>;
  /** Synthetic lesions generated in the worker: labeled 'synthetic demo data' wherever shown. */
  openDemo(): Promise<DatasetSummary>;
  openFolders(handles: FileSystemDirectoryHandle[], onProgress: ProgressSink): Promise<DatasetSummary>;
  /**
   * Files chosen through the folder input or walked from a drop: their paths
   * first, so the data set shows at once; the File objects follow through
   * receiveFiles, in small chunks (30,000 in one message would block the page
   * for seconds). `requestFiles` asks the page for files a read is waiting on.
   */
  openFileList(paths: string[], requestFiles: (paths: string[]) => void): Promise<DatasetSummary>;
  /** Returns how many of the open list's files the worker holds. */
  receiveFiles(files: PagedFile[]): Promise<number>;
  setRootRole(root: string, role: RootRole): Promise<DatasetSummary>;
  summary(): Promise<DatasetSummary | undefined>;
  /** Folder handles of the last opened data set, to reopen after a reload (permission is asked by the page). */
  rememberedFolders(): Promise<{ handles: FileSystemDirectoryHandle[]; roles: Record<string, RootRole> } | undefined>;
  thumbnails(request: ThumbnailRequest): Promise<ThumbnailPage>;
  previewSplit(request: SplitPreviewRequest): Promise<SplitPreview>;
  previewAugmentation(request: AugmentationRequest): Promise<AugmentationPreview>;
  capabilities(card?: RunCard): Promise<Capabilities>;

  /** Resolves once the run has started; progress and the end arrive as events. */
  startRun(card: RunCard, onEvents: EventBatchSink): Promise<{ runId: string; backend: BackendReport }>;
  /**
   * Replays the run's chart history first, then continues from its last checkpoint. A learning rate
   * replaces the stored card's (after a diverged run). Refused while another tab trains the run.
   */
  resumeRun(runId: string, onEvents: EventBatchSink, changes?: { learningRate?: number }): Promise<{ runId: string; backend: BackendReport }>;
  /**
   * Follows a run another tab trains: its stored history, then its live events. `onFreed` fires when
   * that tab lets go of it (the run ended there, or the tab closed).
   */
  watchRun(runId: string, onEvents: EventBatchSink, onFreed: () => void): Promise<void>;
  unwatchRun(): Promise<void>;
  /** Calls back once no one trains the run any more (e.g. the tab before a reload, whose worker ends a moment late). */
  whenFree(runId: string, onFreed: () => void): Promise<void>;
  /** The backend the running run trains on now (a lost GPU can move it to wasm mid-run). */
  runBackend(): Promise<BackendReport | undefined>;
  pause(): Promise<void>;
  /** Goes on after pause(); resumeRun is another thing: it restarts a stopped run from its checkpoint. */
  unpause(): Promise<void>;
  cancel(): Promise<void>;
  /** Runs whose tab closed mid-training: they can be resumed from their last checkpoint. */
  listRuns(): Promise<RunListing[]>;
  /** What the run recorded for its charts, epoch table and log, so a stopped run shows its history before it resumes. */
  runHistory(runId: string): Promise<StampedEvent[]>;
  deleteRun(runId: string): Promise<void>;
  results(runId: string): Promise<RunResultsView | undefined>;
  /** The run and every stored run of the same card with another seed (a *Repeat with seeds*): each seed's figures and their spread. */
  repeats(runId: string): Promise<StageRepeats[]>;
  /** Every tested stage of every stored run, and both arms of each fine-tune, newest run first. */
  comparable(): Promise<CompareOption[]>;
  /** The picked models on the same images (core/run/compare-models.ts); refused when they were tested on different images. */
  compare(picks: ComparePick[]): Promise<ModelComparison>;
  /** Test images as the stage scored them when it ended (validation images, when there is no test part, scored now with its best model). */
  gallery(runId: string, stage: TrainingStage, onProgress: TaskProgressSink): Promise<GalleryItem[]>;
  /** Most uncertain first. */
  pseudoLabels(runId: string, stage: 'pseudo-teacher' | 'pseudo-student', limit: number): Promise<PseudoLabelView[]>;
  /** A rejected pseudo-label is left out of every later student stage of the run. */
  rejectPseudoLabel(runId: string, image: string, rejected: boolean): Promise<void>;

  /** Pool images ranked by an acquisition score from the stage's best checkpoint. */
  acquisitionQueue(request: QueueRequest, onProgress: TaskProgressSink): Promise<QueueItem[]>;
  /** The editor's image; with a run, the stage's prediction to start from. */
  labelTask(image: string, model?: { runId: string; stage: TrainingStage }): Promise<LabelTask>;
  /** Stored in the `labels` database; the image joins the labeled images of later runs. */
  saveLabel(save: LabelSave): Promise<ExpertLabelInfo[]>;
  expertLabels(): Promise<ExpertLabelInfo[]>;
  deleteLabel(image: string): Promise<ExpertLabelInfo[]>;
  /** `expert-labels/<id>_segmentation.png` (0/255 at the image's size) and a CSV of authors, notes and times. */
  exportExpertLabels(): Promise<ExportedFile[]>;
  /** The stage fine-tuned with the new expert labels and, as a control, without them (core/active/fine-tune.ts); refused while a run trains. */
  fineTune(runId: string, stage: TrainingStage, epochs: number, onProgress: FineTuneProgress): Promise<FineTuneResult>;
  fineTuneResult(runId: string, stage: TrainingStage): Promise<FineTuneResult | undefined>;
  /** The fine-tune's best weights as a model export (layers format + metadata with its before and after). */
  exportFineTunedModel(runId: string, stage: TrainingStage): Promise<ExportedFile[]>;

  /** navigator.storage.persist() is the page's to call (it is not exposed to workers). */
  storageUsage(): Promise<StorageUsage>;

  /** tfjs layers files (model.json + weights.bin) and metadata.json, loadable by plain tfjs. */
  exportModel(runId: string, stage: TrainingStage, kind: 'best' | 'latest'): Promise<ExportedFile[]>;
  /** Kept masks as PNGs at their image's size, named like ISIC ground truth, plus a CSV of all records. */
  exportPseudoLabels(runId: string, stage: 'pseudo-teacher' | 'pseudo-student'): Promise<ExportedFile[]>;
  exportMetrics(runId: string): Promise<ExportedFile[]>;
  /** The run's card, split (on the open folders and expert labels) and starting weights as a job for PyTorch (torchrun); from a stage's best checkpoint when given. */
  exportJob(runId: string, startFrom?: TrainingStage): Promise<ExportedFile[]>;
  predict(runId: string, stage: TrainingStage, name: string, bytes: ArrayBuffer, displaySize: number): Promise<PredictionView>;

  /** Test hook; refused unless the worker runs in fault-test mode. */
  injectFault(fault: InjectedFault): Promise<void>;
}
