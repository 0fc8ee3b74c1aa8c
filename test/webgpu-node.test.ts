import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import type { EncoderName } from '../src/core/model/deeplab.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { expectStepMatchesCpu } from './helpers/tf-node.ts';

/**
 * WebGPU in Node is Dawn (the `webgpu` package); on a machine without a GPU it
 * needs Mesa's lavapipe Vulkan driver (.ci/install-system-deps.sh installs it).
 */
// A webgpu that cannot start falls back to wasm, saying why.
const started = await initNodeBackend('webgpu');
const unavailable = started.name === 'webgpu' ? undefined : started.reason;

// A skip must not pass unseen on a developer's machine (CI fails outright below).
if (unavailable !== undefined) {
  console.warn(`\n!!! WebGPU in Node is unavailable, so its training-step tests are SKIPPED: ${unavailable}\n!!! Run .ci/install-system-deps.sh (Mesa's lavapipe) to run them.\n`);
}

describe('WebGPU in Node', () => {
  it.runIf(unavailable !== undefined && process.env.CI)('is available in CI', () => {
    throw new Error(`no WebGPU adapter in CI: ${unavailable}`);
  });

  it.skipIf(unavailable !== undefined)(`has an adapter${unavailable ? ` (skipped: ${unavailable})` : ''}`, async () => {
    expect(tf.getBackend()).toBe('webgpu');
  });

  // Seeds whose ReLU inputs all stay at least 1e-5 from a kink (checked below),
  // as in wasm-training.test.ts.
  const models: { encoder: EncoderName; seed: number }[] = [
    { encoder: 'mobilenetv2', seed: 8 },
    { encoder: 'resnet34', seed: 1 },
  ];

  it.skipIf(unavailable !== undefined).each(models)(
    '$encoder: a training step on webgpu gives cpu\'s logits (1e-4) and gradients (1e-3, relative)',
    async ({ encoder, seed }) => {
      await expectStepMatchesCpu('webgpu', encoder, seed);
    },
  );
});
