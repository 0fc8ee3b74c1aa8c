/**
 * RunStore: the one owner of a run's stored data. Every key a run writes is
 * built here and nowhere else, and only here are keys read back into words
 * (describeKey). It owns the run card, the progress record (RunState), the
 * checkpoints of every stage, the pseudo-label lists and their masks, the
 * review's rejected set, the per-image test scores, and two things only the
 * studio writes (the chart history and the data set the run came from).
 * Expert labels and other stores of their own do not live here.
 *
 * The layout is the one older studios wrote, so their runs still open:
 *   runs/<run>/card | state | rejected | per-image/<stage> | pseudo/<stage>
 *   runs/<run>/test-predictions/<stage>   (added later: older runs lack it)
 *   runs/<run>/ckpt/<stage>/...          (CheckpointStore below that prefix)
 *   runs/<run>/studio/history | studio/origin
 *   pseudo/<run>/<producer stage>/<checkpoint identity>/<image hash>/<size>[/stats]
 * Masks live outside runs/<run>/ so that one checkpoint's masks are found by
 * prefix whatever list refers to them; they still start with the run's id,
 * which is what delete() and bytes() rely on.
 */
import { CheckpointStore } from '../training/checkpoint.ts';
import { parseRunCard, type RunCard } from '../config.ts';
import { STAGE_TITLES, type MetricSummary, type PseudoLabelRecord, type StageName, type TestFigures } from '../events.ts';
import type { BinaryMask, KeyValueStore } from '../io.ts';
import type { ImageScore } from '../scoring/metrics.ts';
import type { StoredMask } from '../dataset/samples.ts';

/** Runs stored before the bootstrap (scoring/bootstrap.ts) kept no counts or batch per image. */
export type StoredImageScore = Omit<ImageScore, 'confusion' | 'batch'> & Partial<Pick<ImageScore, 'confusion' | 'batch'>>;

export type TrainingStage = 'teacher' | 'student' | 'student-star';
export type PseudoStage = 'pseudo-teacher' | 'pseudo-student';

export interface StageResult {
  stage: StageName;
  /** The checkpoint the stage exports and tests (the EMA rule's best epoch), with its validation figures. */
  best: { epoch: number | null; val: MetricSummary | null };
  /** The stage's final epoch, apart: it is not the exported model when validation peaked earlier. Epoch null: a run stored before it was recorded. */
  last: { epoch: number | null; val: MetricSummary | null };
  /** The best checkpoint's, each figure with its image-bootstrap interval. */
  test: { overall: TestFigures; bySet: Record<string, TestFigures> } | null;
  /**
   * eval.postprocess 'auto': the validation lesion IoU of the best checkpoint
   * without and with post-processing, and whether it was kept (with is higher).
   * Absent: the stage reads masks without it.
   */
  postprocess?: { applied: boolean; valLesionIoU: { without: number; with: number } };
}

/** What a run keeps about itself, so that it can resume on any host. */
export interface RunState {
  runId: string;
  createdAt: string;
  updatedAt: string;
  status: 'running' | 'paused' | 'cancelled' | 'completed' | 'failed';
  message?: string;
  completed: StageName[];
  split: { train: string[]; val: string[]; test: string[]; unlabeled: string[] };
  results: StageResult[];
}

/** A stage result as runs stored before best and last were told apart hold it: `val` was the last epoch's. */
interface LegacyStageResult {
  stage: StageName;
  bestEpoch: number | null;
  val: MetricSummary | null;
  test: StageResult['test'];
}

/** A pseudo-label's figures, stored beside its mask so a rerun reuses both. */
export interface MaskStats {
  lesionFraction: number;
  uncertainty: number;
}

const RUNS = 'runs/';
const MASKS = 'pseudo/';

export class RunStore {
  constructor(
    readonly kv: KeyValueStore,
    readonly runId: string,
  ) {}

  private key(what: string): string {
    return `${RUNS}${this.runId}/${what}`;
  }

  /** Every run's progress record, newest first. */
  static async list(kv: KeyValueStore): Promise<RunState[]> {
    const keys = (await kv.keys(RUNS)).filter((k) => k.endsWith('/state'));
    const states = await Promise.all(keys.map(async (k) => upgradeRunState(await kv.get<RunState>(k))));
    return states.filter((s): s is RunState => s !== undefined).sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
  }

  /**
   * The run's card in today's shape: a card stored before a knob existed reads
   * with the value that ran (parseRunCard's), so it resumes, compares and reads
   * masks as it trained.
   */
  async card(): Promise<RunCard | undefined> {
    const stored = await this.kv.get<unknown>(this.key('card'));
    return stored === undefined ? undefined : parseRunCard(stored);
  }

  setCard(card: RunCard): Promise<void> {
    return this.kv.set(this.key('card'), card);
  }

  /**
   * The run's state, with results stored by an older studio brought to
   * today's shape, so its runs still open, resume and export: their
   * validation figures become the last epoch's (what they were) and the best
   * epoch keeps none.
   */
  async state(): Promise<RunState | undefined> {
    return upgradeRunState(await this.kv.get<RunState>(this.key('state')));
  }

  setState(state: RunState): Promise<void> {
    return this.kv.set(this.key('state'), state);
  }

  checkpoints(stage: TrainingStage | 'init'): CheckpointStore {
    return new CheckpointStore(this.kv, this.key(`ckpt/${stage}`));
  }

  async pseudoLabels(stage: PseudoStage): Promise<PseudoLabelRecord[]> {
    return (await this.kv.get<PseudoLabelRecord[]>(this.key(`pseudo/${stage}`))) ?? [];
  }

  setPseudoLabels(stage: PseudoStage, records: PseudoLabelRecord[]): Promise<void> {
    return this.kv.set(this.key(`pseudo/${stage}`), records);
  }

  /** Where the mask a checkpoint predicts for an image (by content) at a size is kept. */
  maskKey(producer: { stage: TrainingStage; checkpoint: string }, imageHash: string, size: number): string {
    return `${MASKS}${this.runId}/${producer.stage}/${producer.checkpoint}/${imageHash}/${size}`;
  }

  mask(key: string): Promise<StoredMask | undefined> {
    return this.kv.get<StoredMask>(key);
  }

  maskStats(key: string): Promise<MaskStats | undefined> {
    return this.kv.get<MaskStats>(`${key}/stats`);
  }

  /** The stats go last: their presence says the mask is whole. */
  async setMask(key: string, mask: StoredMask, stats: MaskStats): Promise<void> {
    await this.kv.set(key, mask);
    await this.kv.set(`${key}/stats`, stats);
  }

  /** Images whose pseudo-labels a person rejected: left out of every later student stage. */
  async rejected(): Promise<string[]> {
    return (await this.kv.get<string[]>(this.key('rejected'))) ?? [];
  }

  async setRejected(image: string, rejected: boolean): Promise<void> {
    const current = new Set(await this.rejected());
    if (rejected) current.add(image);
    else current.delete(image);
    await this.kv.set(this.key('rejected'), [...current].sort());
  }

  /** The best checkpoint's score on each test image; absent for a stage tested on nothing. */
  perImage(stage: TrainingStage): Promise<StoredImageScore[] | undefined> {
    return this.kv.get<StoredImageScore[]>(this.key(`per-image/${stage}`));
  }

  setPerImage(stage: TrainingStage, scores: ImageScore[]): Promise<void> {
    return this.kv.set(this.key(`per-image/${stage}`), scores);
  }

  /**
   * The best checkpoint's 0/1 prediction of each test image, by image id, at
   * the input size, as its per-image score was computed: the Gallery draws
   * them without running the model. Kept a bit per pixel.
   */
  async testPredictions(stage: TrainingStage): Promise<Map<string, BinaryMask> | undefined> {
    const stored = await this.kv.get<StoredPredictions>(this.key(`test-predictions/${stage}`));
    if (!stored) return undefined;
    const { width, height } = stored;
    return new Map(Object.entries(stored.masks).map(([id, bits]) => [id, { width, height, data: unpackBits(bits, width * height) }]));
  }

  setTestPredictions(stage: TrainingStage, size: { width: number; height: number }, masks: Map<string, Uint8Array>): Promise<void> {
    const stored: StoredPredictions = { ...size, masks: Object.fromEntries([...masks].map(([id, data]) => [id, packBits(data)])) };
    return this.kv.set(this.key(`test-predictions/${stage}`), stored);
  }

  /** The events the studio charts, kept so a resumed or followed run shows its whole history. */
  async history<E>(): Promise<E[]> {
    return (await this.kv.get<E[]>(this.key('studio/history'))) ?? [];
  }

  setHistory<E>(events: E[]): Promise<void> {
    return this.kv.set(this.key('studio/history'), events);
  }

  /** Which data set the studio trained the run on, to reopen it for a resume. */
  origin<O>(): Promise<O | undefined> {
    return this.kv.get<O>(this.key('studio/origin'));
  }

  setOrigin<O>(origin: O): Promise<void> {
    return this.kv.set(this.key('studio/origin'), origin);
  }

  private prefixes(): string[] {
    return [`${RUNS}${this.runId}/`, `${MASKS}${this.runId}/`];
  }

  /** Every key of the run, its masks included, and nothing of another run. */
  async delete(): Promise<void> {
    for (const prefix of this.prefixes()) {
      for (const key of await this.kv.keys(prefix)) await this.kv.delete(key);
    }
  }

  /** What the run holds in storage, its masks included. */
  async bytes(): Promise<number> {
    let total = 0;
    for (const prefix of this.prefixes()) total += await storedBytes(this.kv, prefix);
    return total;
  }
}

interface StoredPredictions {
  width: number;
  height: number;
  masks: Record<string, Uint8Array>;
}

function packBits(mask: Uint8Array): Uint8Array {
  const bits = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) bits[i >> 3] |= 1 << (i & 7);
  return bits;
}

function unpackBits(bits: Uint8Array, length: number): Uint8Array {
  const mask = new Uint8Array(length);
  for (let i = 0; i < length; i++) mask[i] = (bits[i >> 3] >> (i & 7)) & 1;
  return mask;
}

/** Bytes held under a prefix: counted by the store where it can (IndexedDB's cursor), else value by value. */
export async function storedBytes(kv: KeyValueStore, prefix = ''): Promise<number> {
  if (kv.bytesUnder) return kv.bytesUnder(prefix);
  let total = 0;
  for (const key of await kv.keys(prefix)) total += payloadBytes(await kv.get(key));
  return total;
}

/** The bytes a stored value holds: binary payloads (ArrayBuffers, typed arrays, Blobs) and strings, numbers and flags at their usual size. */
export function payloadBytes(value: unknown, depth = 0): number {
  if (value instanceof ArrayBuffer) return value.byteLength;
  if (ArrayBuffer.isView(value)) return value.byteLength;
  if (typeof value === 'string') return value.length * 2;
  if (typeof value === 'number' || typeof value === 'boolean') return 8;
  if (value === null || typeof value !== 'object' || depth > 8) return 0;
  if (typeof Blob !== 'undefined' && value instanceof Blob) return value.size;
  let n = 0;
  for (const item of Array.isArray(value) ? value : Object.values(value)) n += payloadBytes(item, depth + 1);
  return n;
}

function upgradeRunState(state: RunState | undefined): RunState | undefined {
  if (!state) return state;
  const results = (state.results as (StageResult | LegacyStageResult)[]).map((r): StageResult =>
    'best' in r ? r : { stage: r.stage, best: { epoch: r.bestEpoch, val: null }, last: { epoch: null, val: r.val }, test: r.test },
  );
  return { ...state, results };
}

/** What a stored key holds, in the studio's words (e.g. for a write the disk refused). */
export function describeKey(key: string): string {
  if (key.startsWith(MASKS)) return 'a pseudo-label mask';
  const run = /^runs\/([^/]+)\/(.+)$/.exec(key);
  if (!run) return `the entry ${key}`;
  const [, runId, what] = run;
  const checkpoint = /^ckpt\/([^/]+)\/([^/]+)/.exec(what);
  const stage = (name: string): string => STAGE_TITLES[name as StageName] ?? name;
  const thing = checkpoint
    ? checkpoint[1] === 'init' ? 'the initial weights' : `the ${checkpoint[2]} checkpoint of the ${stage(checkpoint[1])} stage`
    : what === 'state' ? 'the progress record'
    : what === 'card' ? 'the run card'
    : what === 'studio/history' ? 'the chart history'
    : what.startsWith('pseudo/') ? 'the pseudo-label list'
    : what.startsWith('per-image/') ? 'the per-image test scores'
    : what.startsWith('test-predictions/') ? 'the test predictions'
    : what;
  return `${thing} of run ${runId}`;
}
