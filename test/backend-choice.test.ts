/**
 * The one backend policy (src/core/backends/choice.ts) both hosts follow:
 * its order, the next backend after failures, and the words that say what a
 * backend fell back from. Then the Node host on it, with Dawn offering no
 * adapter and the threaded wasm build failing to start: it falls back and
 * says both, as the studio does.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { BACKEND_ORDER, backendOrder, backendReason, nextBackend, noBackendStarted, type BackendFailure, type BackendName } from '../src/core/backends/choice.ts';
import { backendLine, initNodeBackend } from '../src/node/backends.ts';

vi.mock('webgpu', () => ({ create: () => ({ requestAdapter: async () => null }), globals: {} }));
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  // The threaded wasm build writes its helper threads' script first: a read-only temp folder stops it there.
  const writeFileSync: typeof actual.writeFileSync = (file, ...rest) => {
    if (String(file).includes('lesion-studio-tfjs-wasm-worker')) throw Object.assign(new Error(`EROFS: read-only file system, open '${String(file)}'`), { code: 'EROFS' });
    return actual.writeFileSync(file, ...rest);
  };
  return { ...actual, writeFileSync, default: { ...actual, writeFileSync } };
});

const NODE: BackendName[] = ['webgpu', 'wasm', 'cpu'];
const NO_ADAPTER = 'Dawn found no WebGPU adapter (no GPU, and no Vulkan driver such as lavapipe)';

describe('the backend policy', () => {
  it('tries the fastest first, a forced backend before the rest, and only what the host offers', () => {
    expect(backendOrder('auto', BACKEND_ORDER)).toEqual(['webgpu', 'wasm', 'webgl', 'cpu']);
    expect(backendOrder('webgl', BACKEND_ORDER)).toEqual(['webgl', 'webgpu', 'wasm', 'cpu']);
    expect(backendOrder('auto', NODE)).toEqual(['webgpu', 'wasm', 'cpu']);
    // A backend the host lacks (WebGL in Node) leaves the usual order.
    expect(backendOrder('webgl', NODE)).toEqual(['webgpu', 'wasm', 'cpu']);
  });

  it('decides the next one from the failures so far, and none once every one failed', () => {
    const failed: BackendFailure[] = [];
    expect(nextBackend('auto', BACKEND_ORDER, failed)).toBe('webgpu');
    failed.push({ backend: 'webgpu', reason: 'no adapter' });
    expect(nextBackend('auto', BACKEND_ORDER, failed)).toBe('wasm');
    failed.push({ backend: 'wasm', reason: 'it did not start' });
    expect(nextBackend('auto', BACKEND_ORDER, failed)).toBe('webgl');
    expect(nextBackend('wasm', BACKEND_ORDER, [{ backend: 'wasm', reason: 'x' }])).toBe('webgpu');
    expect(nextBackend('auto', NODE, NODE.map((backend) => ({ backend, reason: 'x' })))).toBeUndefined();
  });

  it('says what it fell back from and why, and why wasm has one thread', () => {
    const context = { askedBy: 'the run card' };
    const skipped: BackendFailure = { backend: 'webgpu', reason: 'the only WebGPU adapter is a software one (SwiftShader), slower than WebAssembly here', skipped: true };
    expect(backendReason('auto', 'webgpu', [], context)).toBe('chosen automatically');
    expect(backendReason('auto', 'wasm', [skipped], context)).toBe('chosen automatically; the only WebGPU adapter is a software one (SwiftShader), slower than WebAssembly here');
    expect(backendReason('wasm', 'wasm', [], { ...context, singleThreadBecause: 'the page is not cross-origin isolated' })).toBe('chosen in the run card; one thread because the page is not cross-origin isolated');
    expect(backendReason('webgpu', 'wasm', [{ backend: 'webgpu', reason: 'no adapter' }], context)).toBe('the run card asked for webgpu, which failed (webgpu: no adapter)');
    // Threads are wasm's: another backend says nothing of them.
    expect(backendReason('cpu', 'cpu', [], { ...context, singleThreadBecause: 'x' })).toBe('chosen in the run card');
    expect(noBackendStarted([{ backend: 'wasm', reason: 'a' }, { backend: 'cpu', reason: 'b' }]).message).toBe('no TensorFlow.js backend could start: wasm: a; cpu: b');
  });
});

describe('the Node host on the policy', () => {
  const threads = process.env.LESION_STUDIO_WASM_THREADS;
  process.env.LESION_STUDIO_WASM_THREADS = '2';
  afterAll(() => {
    if (threads === undefined) delete process.env.LESION_STUDIO_WASM_THREADS;
    else process.env.LESION_STUDIO_WASM_THREADS = threads;
  });
  const single = "one thread because its threaded build failed (EROFS: read-only file system, open '";

  it('falls back from a webgpu that cannot start to wasm, and reports why wasm runs on one thread', async () => {
    const active = await initNodeBackend('webgpu');
    expect(active.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(active.detail).toContain(', 1 thread)');
    expect(active.reason).toMatch(new RegExp(`^the run card or --backend asked for webgpu, which failed \\(webgpu: ${escape(NO_ADAPTER)}\\); ${escape(single)}`));
    expect(backendLine(active)).toMatch(/^backend: wasm \(tfjs wasm backend .*1 thread\).*\); the run card or --backend asked for webgpu, which failed/);
    expect(backendLine(active)).not.toContain('\n');
  });

  it('auto says the same in its own words', async () => {
    const active = await initNodeBackend('auto');
    expect(active.name).toBe('wasm');
    expect(active.reason).toMatch(new RegExp(`^chosen automatically; webgpu: ${escape(NO_ADAPTER)}; ${escape(single)}`));
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
