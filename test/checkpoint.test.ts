import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointStore, modelWeights, type LoopPosition } from '../src/core/training/checkpoint.ts';
import { LesionError } from '../src/core/errors.ts';
import { buildDeepLabV3, type ModelConfig } from '../src/core/model/deeplab.ts';
import type { NamedTensor } from '../src/core/training/optim.ts';
import { MemoryStore } from './helpers/memory-store.ts';

const TINY: ModelConfig = {
  encoder: 'mobilenetv2',
  width: 0.35,
  outputStride: 16,
  atrousRates: [6, 12, 18],
  asppChannels: 16,
  dropout: 0.5,
  inputSize: 32,
  init: 'random',
  inputRange: 'unit',
};

const POSITION: LoopPosition = { epoch: 2, stepInEpoch: 3, step: 11, ema: 0.61, bestEma: 0.64, bestEpoch: 1, skipped: ['a/b.jpg'] };

/** Every weight, batch-norm statistics included, set away from its initialiser. */
function randomised(seed: number): tf.LayersModel {
  const model = buildDeepLabV3(TINY, 'train', seed);
  model.weights.forEach((w, i) => w.write(tf.randomUniform(w.shape as number[], 0.5, 1.5, 'float32', seed + i)));
  return model;
}

function snapshot(model: tf.LayersModel): Map<string, Float32Array> {
  return new Map(modelWeights(model).map(({ name, tensor }) => [name, tensor.dataSync() as Float32Array]));
}

/** Names of the weights whose bytes differ (or that only one side has): [] when identical. */
function differences(a: Map<string, Float32Array>, b: Map<string, Float32Array>): string[] {
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names].filter((n) => {
    const x = a.get(n);
    const y = b.get(n);
    return !x || !y || !Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  });
}

function optimizerState(seed: number): NamedTensor[] {
  return [
    { name: 'iterations', tensor: tf.scalar(11) },
    { name: 'head#0/m', tensor: tf.randomNormal([1, 1, 16, 1], 0, 1, 'float32', seed) },
  ];
}

async function expectStorageError(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(LesionError);
  expect((error as LesionError).code).toBe('storage');
  expect((error as LesionError).message).toMatch(pattern);
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

afterEach(() => {
  tf.disposeVariables();
});

describe('CheckpointStore', () => {
  it('restores every weight exactly, batch-norm moving statistics included, with the optimiser state and position', async () => {
    const store = new MemoryStore();
    const checkpoints = new CheckpointStore(store, 'runs/r/ckpt/teacher');
    const saved = randomised(1);
    const state = optimizerState(2);
    const bytes = await checkpoints.save('latest', saved, state, POSITION);

    const restored = randomised(1000);
    const loaded = await checkpoints.load('latest', restored);
    expect(loaded).toBeDefined();

    const expected = snapshot(saved);
    expect(differences(snapshot(randomised(1000)), expected)).toHaveLength(expected.size);
    expect(differences(snapshot(restored), expected)).toEqual([]);
    const statistics = restored.weights.filter((w) => !w.trainable).map((w) => w.originalName);
    expect(statistics.some((n) => n.endsWith('moving_mean'))).toBe(true);
    expect(statistics.some((n) => n.endsWith('moving_variance'))).toBe(true);
    expect(bytes).toBe(4 * (restored.weights.reduce((n, w) => n + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0) + 1 + 16));

    expect(loaded!.position).toEqual(POSITION);
    // What a stopped run's page shows comes from the pointer, without reading the weights.
    expect(await checkpoints.describe('latest')).toEqual({ position: POSITION, bytes });
    expect(loaded!.optimizer.map((t) => t.name)).toEqual(state.map((t) => t.name));
    loaded!.optimizer.forEach((t, i) => {
      expect(t.tensor.shape).toEqual(state[i].tensor.shape);
      expect(t.tensor.dataSync()).toEqual(state[i].tensor.dataSync());
    });
    tf.dispose([...state, ...loaded!.optimizer].map((t) => t.tensor));
  });

  it('has nothing to load before the first save', async () => {
    const checkpoints = new CheckpointStore(new MemoryStore(), 'p');
    const model = randomised(3);
    expect(await checkpoints.load('best', model)).toBeUndefined();
    expect(await checkpoints.identity('best')).toBeUndefined();
    expect(await checkpoints.describe('best')).toBeUndefined();
  });

  it('writes the free slot, then moves the pointer, then frees the old slot', async () => {
    const store = new MemoryStore();
    const checkpoints = new CheckpointStore(store, 'p');
    const first = randomised(4);
    await checkpoints.save('latest', first, [], POSITION);
    expect(await store.keys()).toEqual(['p/latest', 'p/latest/a']);
    expect(store.writes).toEqual(['p/latest/a', 'p/latest']);

    const second = randomised(5);
    await checkpoints.save('latest', second, [], { ...POSITION, step: 12 });
    expect(await store.keys()).toEqual(['p/latest', 'p/latest/b']);
    expect(store.writes.slice(2)).toEqual(['p/latest/b', 'p/latest']);

    const target = randomised(6);
    const loaded = await checkpoints.load('latest', target);
    expect(loaded!.position.step).toBe(12);
    expect(differences(snapshot(target), snapshot(second))).toEqual([]);

    await checkpoints.save('latest', first, [], POSITION);
    expect(await store.keys()).toEqual(['p/latest', 'p/latest/a']);
  });

  it('keeps the previous checkpoint in use when a write fails before the pointer moves', async () => {
    const store = new MemoryStore();
    const checkpoints = new CheckpointStore(store, 'p');
    const first = randomised(7);
    await checkpoints.save('latest', first, [], POSITION);

    // The disk fills up while the new slot's pointer is written.
    const set = store.set.bind(store);
    store.set = async (key, value) => {
      if (key === 'p/latest' && store.writes.length > 2) throw new Error('QuotaExceededError');
      return set(key, value);
    };
    await expect(checkpoints.save('latest', randomised(8), [], { ...POSITION, step: 99 })).rejects.toThrow('QuotaExceededError');

    const target = randomised(9);
    const loaded = await checkpoints.load('latest', target);
    expect(loaded!.position).toEqual(POSITION);
    expect(differences(snapshot(target), snapshot(first))).toEqual([]);
  });

  it('detects a corrupted buffer on load and leaves the model untouched', async () => {
    const store = new MemoryStore();
    const checkpoints = new CheckpointStore(store, 'p');
    await checkpoints.save('best', randomised(10), [], POSITION);
    const stored = (await store.get<{ buffer: ArrayBuffer }>('p/best/a'))!;
    const bytes = new Uint8Array(stored.buffer);
    bytes[bytes.length >> 1] ^= 0x40;
    await store.set('p/best/a', stored);

    const target = randomised(11);
    const before = snapshot(target);
    await expectStorageError(checkpoints.load('best', target), /torn or corrupted/);
    expect(differences(snapshot(target), before)).toEqual([]);
  });

  it('detects a torn (truncated) buffer on load', async () => {
    const store = new MemoryStore();
    const checkpoints = new CheckpointStore(store, 'p');
    await checkpoints.save('latest', randomised(12), [], POSITION);
    const stored = (await store.get<{ buffer: ArrayBuffer }>('p/latest/a'))!;
    stored.buffer = stored.buffer.slice(0, 4096);
    await store.set('p/latest/a', stored);
    await expectStorageError(checkpoints.load('latest', randomised(13)), /torn or corrupted/);
  });

  it('reports a slot that vanished under its pointer', async () => {
    const store = new MemoryStore();
    const checkpoints = new CheckpointStore(store, 'p');
    await checkpoints.save('latest', randomised(14), [], POSITION);
    await store.delete('p/latest/a');
    await expectStorageError(checkpoints.load('latest', randomised(15)), /missing/);
  });

  it('refuses weights of another architecture, naming the weight', async () => {
    const checkpoints = new CheckpointStore(new MemoryStore(), 'p');
    await checkpoints.save('latest', randomised(16), [], POSITION);
    const wider = buildDeepLabV3({ ...TINY, asppChannels: 24 }, 'train', 16);
    const error = await checkpoints.load('latest', wider).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(LesionError);
    expect((error as LesionError).code).toBe('model');
    expect((error as LesionError).message).toMatch(/weight aspp_\w+_conv#0: checkpoint shape \[1,1,1280,16\] differs/);
  });

  it('identity() follows the weights: it changes when they change, not when the same weights are saved again', async () => {
    const checkpoints = new CheckpointStore(new MemoryStore(), 'p');
    const model = randomised(17);
    await checkpoints.save('best', model, [], POSITION);
    const first = await checkpoints.identity('best');
    expect(first).toMatch(/^[0-9a-f]{8}$/);

    const kernel = model.getLayer('head').weights[0];
    kernel.write(tf.add(kernel.read(), 1e-3));
    await checkpoints.save('best', model, [], POSITION);
    const second = await checkpoints.identity('best');
    expect(second).not.toBe(first);

    await checkpoints.save('best', model, [], { ...POSITION, step: 40 });
    expect(await checkpoints.identity('best')).toBe(second);
  });

  it('clear() removes every key under its prefix and nothing else', async () => {
    const store = new MemoryStore();
    await store.set('p2/latest', 'another stage');
    const checkpoints = new CheckpointStore(store, 'p');
    const model = randomised(18);
    await checkpoints.save('latest', model, [], POSITION);
    await checkpoints.save('best', model, [], POSITION);
    await checkpoints.clear();
    expect(await store.keys()).toEqual(['p2/latest']);
  });
});
