/**
 * Checkpoints in the key-value store: model weights (trainable and batch-norm
 * statistics), optimiser state and the loop's position, in one binary buffer
 * with a checksum.
 *
 * Writes never leave a half-written checkpoint in use: the new one goes to
 * the free slot, then the pointer switches to it, then the old slot is freed.
 * A torn or corrupted buffer fails its checksum on load and is reported.
 */
import * as tf from '@tensorflow/tfjs';
import { concatBytes } from '../image/bytes.ts';
import { LesionError } from '../errors.ts';
import type { MetricSummary } from '../events.ts';
import type { KeyValueStore } from '../io.ts';
import type { NamedTensor, Param } from './optim.ts';

export interface TensorSpec {
  name: string;
  shape: number[];
}

/** Where the loop stood, and what it had learned about the best epoch so far. */
export interface LoopPosition {
  epoch: number;
  /** Steps completed within that epoch. */
  stepInEpoch: number;
  /** Steps completed in the stage. */
  step: number;
  ema: number | null;
  bestEma: number | null;
  bestEpoch: number | null;
  /**
   * Validation figures of the best epoch and of the last completed one, so a
   * resumed stage still reports the checkpoint it exports. Absent in
   * checkpoints saved before they were kept.
   */
  bestValidation?: MetricSummary | null;
  lastValidation?: MetricSummary | null;
  /** Images skipped so far because they could not be read. */
  skipped: string[];
  /** Set when the device forced a batch smaller than the card's. */
  batchSize?: number;
}

/**
 * The epoch (from 1) that the position's last step belongs to, as the epoch
 * table counts: a checkpoint at an epoch's end (stepInEpoch 0 of the next)
 * belongs to the epoch just finished, one inside an epoch to that epoch.
 */
export function epochOfStep(position: Pick<LoopPosition, 'epoch' | 'stepInEpoch'>): number {
  return position.stepInEpoch > 0 ? position.epoch + 1 : Math.max(1, position.epoch);
}

export interface CheckpointMeta {
  format: 1;
  position: LoopPosition;
  savedAt: string;
  checksum: number;
  byteLength: number;
}

interface StoredCheckpoint {
  meta: CheckpointMeta;
  weights: TensorSpec[];
  optimizer: TensorSpec[];
  buffer: ArrayBuffer;
}

interface Pointer {
  slot: 'a' | 'b';
  checksum: number;
  /** Where the checkpoint stands, readable without loading its weights. Absent in pointers written before it was kept. */
  position?: LoopPosition;
  byteLength?: number;
}

export type CheckpointKind = 'latest' | 'best' | 'init';

/**
 * The model's weights under names stable across rebuilds and across the
 * train and export builds: layer name and index within the layer.
 */
export function modelWeights(model: tf.LayersModel): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const layer of model.layers) {
    layer.weights.forEach((w, i) => out.push({ name: `${layer.name}#${i}`, tensor: w.read() }));
  }
  return out;
}

export function trainableParams(model: tf.LayersModel): Param[] {
  const out: Param[] = [];
  for (const layer of model.layers) {
    layer.weights.forEach((w, i) => {
      if (w.trainable) out.push({ key: `${layer.name}#${i}`, variable: w.read() as tf.Variable });
    });
  }
  return out;
}

/** Checks every weight before writing any, so a mismatch never leaves a half-loaded model. */
export function setModelWeights(model: tf.LayersModel, weights: Map<string, tf.Tensor>): void {
  const writes: [tf.LayerVariable, tf.Tensor][] = [];
  for (const layer of model.layers) {
    layer.weights.forEach((w, i) => {
      const name = `${layer.name}#${i}`;
      const t = weights.get(name);
      if (!t) throw new LesionError('model', `checkpoint has no weight ${name}`);
      if (!tf.util.arraysEqual(t.shape, w.shape as number[])) {
        throw new LesionError('model', `weight ${name}: checkpoint shape [${t.shape}] differs from the model's [${w.shape}]`);
      }
      writes.push([w, t]);
    });
  }
  for (const [w, t] of writes) w.write(t);
}

/** True when no weight holds NaN or Inf: a finite loss can still come with non-finite gradients. */
export async function weightsAreFinite(model: tf.LayersModel): Promise<boolean> {
  const ok = tf.tidy(() => tf.all(tf.stack(model.weights.map((w) => tf.all(tf.isFinite(w.read()))))));
  const value = (await ok.data())[0];
  ok.dispose();
  return value === 1;
}

/** 32-bit FNV-1a over 32-bit words: fast enough for tens of MB, catches torn writes. */
export function checksum(buffer: ArrayBuffer): number {
  const words = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
  let h = 0x811c9dc5;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193) >>> 0;
  const tail = new Uint8Array(buffer, words.length * 4);
  for (let i = 0; i < tail.length; i++) h = Math.imul(h ^ tail[i], 0x01000193) >>> 0;
  return h >>> 0;
}

async function pack(tensors: NamedTensor[]): Promise<{ specs: TensorSpec[]; parts: Float32Array[] }> {
  const parts = await Promise.all(tensors.map((t) => t.tensor.data() as Promise<Float32Array>));
  return { specs: tensors.map((t) => ({ name: t.name, shape: t.tensor.shape })), parts };
}

function unpack(specs: TensorSpec[], buffer: ArrayBuffer, offset: number): { tensors: Map<string, tf.Tensor>; end: number } {
  const tensors = new Map<string, tf.Tensor>();
  let at = offset;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    tensors.set(spec.name, tf.tensor(new Float32Array(buffer, at * 4, size), spec.shape));
    at += size;
  }
  return { tensors, end: at };
}

export class CheckpointStore {
  constructor(
    private readonly store: KeyValueStore,
    private readonly prefix: string,
  ) {}

  private key(kind: CheckpointKind, slot?: 'a' | 'b'): string {
    return slot ? `${this.prefix}/${kind}/${slot}` : `${this.prefix}/${kind}`;
  }

  /** Returns the bytes written. */
  async save(kind: CheckpointKind, model: tf.LayersModel, optimizer: NamedTensor[], position: LoopPosition): Promise<number> {
    const w = await pack(modelWeights(model));
    const o = await pack(optimizer);
    const buffer = concatBytes([...w.parts, ...o.parts].map((p) => new Uint8Array(p.buffer, p.byteOffset, p.byteLength))).buffer;
    const sum = checksum(buffer);
    const stored: StoredCheckpoint = {
      meta: { format: 1, position, savedAt: new Date().toISOString(), checksum: sum, byteLength: buffer.byteLength },
      weights: w.specs,
      optimizer: o.specs,
      buffer,
    };
    const current = await this.store.get<Pointer>(this.key(kind));
    const slot = current?.slot === 'a' ? 'b' : 'a';
    await this.store.set(this.key(kind, slot), stored);
    await this.store.set(this.key(kind), { slot, checksum: sum, position, byteLength: buffer.byteLength } satisfies Pointer);
    if (current) await this.store.delete(this.key(kind, current.slot));
    return buffer.byteLength;
  }

  /** Identifies the checkpoint's content (its checksum), or undefined when there is none. */
  async identity(kind: CheckpointKind): Promise<string | undefined> {
    const pointer = await this.store.get<Pointer>(this.key(kind));
    return pointer ? pointer.checksum.toString(16).padStart(8, '0') : undefined;
  }

  /** Where the checkpoint stands and its size, from its pointer alone (no weights are read); undefined when unknown. */
  async describe(kind: CheckpointKind): Promise<{ position: LoopPosition; bytes: number } | undefined> {
    const pointer = await this.store.get<Pointer>(this.key(kind));
    return pointer?.position && pointer.byteLength !== undefined ? { position: pointer.position, bytes: pointer.byteLength } : undefined;
  }

  /** Loads into the model; returns the optimiser state (caller disposes) and the position. */
  async load(kind: CheckpointKind, model: tf.LayersModel): Promise<{ optimizer: NamedTensor[]; position: LoopPosition } | undefined> {
    const pointer = await this.store.get<Pointer>(this.key(kind));
    if (!pointer) return undefined;
    const where = this.key(kind, pointer.slot);
    const stored = await this.store.get<StoredCheckpoint>(where);
    if (!stored) throw new LesionError('storage', `checkpoint ${where} is missing although its pointer exists`);
    if (stored.buffer.byteLength !== stored.meta.byteLength || checksum(stored.buffer) !== pointer.checksum) {
      throw new LesionError('storage', `checkpoint ${where} is torn or corrupted (checksum mismatch); it cannot be resumed from`);
    }
    const weights = unpack(stored.weights, stored.buffer, 0);
    try {
      setModelWeights(model, weights.tensors);
    } finally {
      tf.dispose([...weights.tensors.values()]);
    }
    const opt = unpack(stored.optimizer, stored.buffer, weights.end);
    return {
      optimizer: [...opt.tensors].map(([name, tensor]) => ({ name, tensor })),
      position: stored.meta.position,
    };
  }

  async clear(): Promise<void> {
    for (const key of await this.store.keys(`${this.prefix}/`)) await this.store.delete(key);
  }
}
