import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { softDiceLoss } from '../src/core/losses.ts';
import { buildDeepLabV3, type EncoderName } from '../src/core/model/deeplab.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { relativeError, seededBatch, seededWeights, tinyConfig, trainingStep } from './helpers/tf-node.ts';

/**
 * WebGPU in Node is Dawn (the `webgpu` package); on a machine without a GPU it
 * needs Mesa's lavapipe Vulkan driver (.ci/install-system-deps.sh installs it).
 */
const unavailable = await initNodeBackend('webgpu').then(
  () => undefined,
  (error: unknown) => (error instanceof Error ? error.message : String(error)),
);

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
      const config = tinyConfig(encoder, { inputSize: 32 });
      await tf.setBackend('cpu');
      const shape = buildDeepLabV3(config, 'train');
      const weights = seededWeights(shape, seed);
      shape.dispose();
      const batch = seededBatch(config, 2, seed);

      const cpu = await trainingStep('cpu', config, weights, batch, softDiceLoss);
      const tensorsBefore = tf.memory().numTensors;
      const gpu = await trainingStep('webgpu', config, weights, batch, softDiceLoss);
      expect(tf.memory().numTensors, 'the webgpu step leaks no tensor').toBe(tensorsBefore);

      expect(Math.min(cpu.kinkMargin, gpu.kinkMargin), 'seed puts a ReLU input at a kink; pick another').toBeGreaterThan(1e-5);
      expect(gpu.names).toEqual(cpu.names);
      expect(relativeError(gpu.logits, cpu.logits)).toBeLessThan(1e-4);
      expect(Math.abs(gpu.loss - cpu.loss)).toBeLessThan(1e-5);
      // Float32 on a different summation order through ~50 layers; the floor
      // keeps gradients that are zero in exact arithmetic out (see wasm-training.test.ts).
      const largest = Math.max(...cpu.grads.map((g) => g.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
      const worst = cpu.grads
        .map((g, i) => ({ name: cpu.names[i], error: relativeError(gpu.grads[i], g, 1e-3 * largest) }))
        .reduce((a, b) => (b.error > a.error ? b : a));
      expect(worst.error, `worst: ${worst.name}`).toBeLessThan(1e-3);
    },
  );
});
