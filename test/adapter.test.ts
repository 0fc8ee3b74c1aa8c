/**
 * The automatic backend choice leaves software WebGPU adapters for
 * WebAssembly. The adapter infos are the ones the real browsers and Dawn
 * report.
 */
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { autoSkipsAdapter, softwareAdapter, type AdapterInfoLike } from '../src/core/backends/adapter.ts';
import { initNodeBackend } from '../src/node/backends.ts';

/** Headless Chromium 156 without a GPU (what the e2e specs run on). */
const SWIFTSHADER: AdapterInfoLike = { vendor: 'google', architecture: 'swiftshader', device: '', description: '', isFallbackAdapter: true };
/** Dawn in Node on Mesa's lavapipe (the CI machines). */
const LAVAPIPE: AdapterInfoLike = {
  vendor: 'mesa',
  architecture: 'software',
  device: 'llvmpipe-llvm-15-0-6-256-bits-',
  description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1',
  isFallbackAdapter: true,
};

describe('the automatic WebGPU choice', () => {
  it('skips a software adapter for WebAssembly, naming the renderer', () => {
    expect(autoSkipsAdapter(SWIFTSHADER)).toBe('the only WebGPU adapter is a software one (SwiftShader), slower than WebAssembly here');
    expect(autoSkipsAdapter(LAVAPIPE)).toBe('the only WebGPU adapter is a software one (llvmpipe), slower than WebAssembly here');
    // Browsers that say nothing but the fallback flag, and Windows' WARP.
    expect(softwareAdapter({ vendor: '', architecture: '', device: '', description: '', isFallbackAdapter: true })).toBe("the browser's fallback adapter");
    expect(softwareAdapter({ vendor: 'microsoft', description: 'Microsoft Basic Render Driver' })).toBe('Microsoft Basic Render Driver');
    expect(softwareAdapter({ vendor: 'google', architecture: 'swiftshader' })).toBe('SwiftShader');
  });

  it('takes a hardware adapter, also one that names nothing', () => {
    expect(autoSkipsAdapter({ vendor: 'nvidia', architecture: 'ada', device: '', description: 'NVIDIA GeForce RTX 4070', isFallbackAdapter: false })).toBeUndefined();
    expect(autoSkipsAdapter({ vendor: 'apple', architecture: 'metal-3', device: '', description: '' })).toBeUndefined();
    expect(autoSkipsAdapter({ vendor: 'intel', architecture: 'gen-12lp', device: '', description: '', isFallbackAdapter: false })).toBeUndefined();
    expect(autoSkipsAdapter({})).toBeUndefined();
  });

  // With lavapipe installed and no other Vulkan driver chosen, Dawn's only adapter is lavapipe.
  const onlyLavapipe = existsSync('/usr/share/vulkan/icd.d/lvp_icd.json') && process.env.VK_ICD_FILENAMES === undefined;
  it.skipIf(!onlyLavapipe)('in Node, auto leaves lavapipe for wasm and says why', async () => {
    const active = await initNodeBackend('auto');
    expect(active.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(active.reason).toMatch(/^chosen automatically; the only WebGPU adapter is a software one \(llvmpipe\), slower than WebAssembly here(;|$)/);
  });
});
