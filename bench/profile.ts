/**
 * `npx tsx bench/profile.ts [size 128] [batch 4] [steps 4]`: where a wasm
 * training step of the paper card's model spends its time, per kernel kind.
 *
 * wasm kernels run synchronously, so each one is timed by wrapping every
 * kernel registered for wasm (only the outermost, where our kernels call
 * others). A kernel is attributed to the layer whose call ran it, forward,
 * or whose tape node it serves, backward (gradient functions return thunks
 * that the tape runs later: those carry the label too). The rest of the
 * step's wall time is JavaScript outside kernels. Prints the first step and
 * the median of the others, the count of kernel calls, the forward
 * convolutions' arithmetic rate, then the costliest (layer, kernel) pairs.
 */
import * as tf from '@tensorflow/tfjs';
import { trainableParams } from '../src/core/training/checkpoint.ts';
import { paperCard } from '../src/core/config.ts';
import { lossByName } from '../src/core/training/losses.ts';
import { buildDeepLabV3 } from '../src/core/model/deeplab.ts';
import { createOptimizer } from '../src/core/training/optim.ts';
import { initNodeBackend } from '../src/node/backends.ts';
import { median } from './report.ts';

const [size, batch, steps] = [128, 4, 4].map((fallback, i) => Number(process.argv[2 + i] ?? fallback));
const backend = await initNodeBackend('wasm');
const card = paperCard();
const model = buildDeepLabV3({ ...card.model, init: 'random', inputSize: size }, 'train', card.seed);
const params = trainableParams(model);
const variables = params.map((p) => p.variable);
const optimizer = createOptimizer(card.train.optimizer);
const lossFn = lossByName(card.train.loss);
const xs = tf.randomUniform([batch, size, size, 3]);
const ys = tf.cast(tf.greater(tf.randomUniform([batch, size, size, 1]), 0.5), 'float32');

let label = 'other';
const labelled = <T>(as: string, f: () => T): T => {
  const previous = label;
  label = as;
  try {
    return f();
  } finally {
    label = previous;
  }
};
for (const layer of model.layers) {
  const call = layer.call.bind(layer);
  const name = `fwd:${layer.getClassName()}`;
  layer.call = (inputs, kwargs) => labelled(name, () => call(inputs, kwargs));
}
interface TapeNode {
  gradient?: (dys: tf.Tensor[]) => Record<string, () => tf.Tensor>;
}
const engine = tf.engine() as unknown as { addTapeNode(...args: unknown[]): void; state: { activeTape: TapeNode[] } };
const addTapeNode = engine.addTapeNode.bind(engine);
engine.addTapeNode = (...args: unknown[]) => {
  addTapeNode(...args);
  const node = engine.state.activeTape.at(-1)!;
  const gradient = node.gradient;
  const as = label.replace('fwd:', 'bwd:');
  if (!gradient) return;
  node.gradient = (dys) => {
    const thunks = labelled(as, () => gradient(dys));
    return Object.fromEntries(Object.entries(thunks).map(([k, f]) => [k, () => labelled(as, f)]));
  };
};

const times = new Map<string, { ms: number; n: number }>();
/** Multiply-adds x 2 of the forward pass's convolutions, from their filters and outputs. */
let forwardFlops = 0;
let depth = 0;
for (const k of tf.getKernelsForBackend('wasm')) {
  const kernelFunc = k.kernelFunc;
  tf.unregisterKernel(k.kernelName, 'wasm');
  tf.registerKernel({
    ...k,
    kernelFunc: (p) => {
      if (depth > 0) return kernelFunc(p);
      depth++;
      const t = performance.now();
      try {
        const out = kernelFunc(p) as tf.TensorInfo;
        const filter = (p.inputs as Record<string, tf.TensorInfo | undefined>).filter;
        if (filter && label.startsWith('fwd') && /Conv2D|Depthwise/.test(k.kernelName)) {
          const [kh, kw, ci] = filter.shape;
          forwardFlops += 2 * tf.util.sizeFromShape(out.shape) * kh * kw * (/Depthwise/.test(k.kernelName) ? 1 : ci);
        }
        return out;
      } finally {
        depth--;
        const key = `${label}|${k.kernelName}`;
        const e = times.get(key) ?? { ms: 0, n: 0 };
        e.ms += performance.now() - t;
        e.n++;
        times.set(key, e);
      }
    },
  });
}

function kind(key: string): string {
  const [l, k] = key.split('|');
  if (l === 'optimizer') return 'optimiser';
  // The atrous layers' input gradients are plain convolutions run backward.
  if (/Backprop/.test(k) || (l.startsWith('bwd') && /Conv2D|Depthwise/.test(k))) return 'gradient convolutions';
  if (l.startsWith('fwd') && /Conv2D|Depthwise/.test(k)) return 'forward convolutions';
  if (/BatchNorm/.test(l)) return l.startsWith('fwd') ? 'batch norm, forward' : 'batch norm, backward';
  return `element-wise tail, ${l.startsWith('bwd') ? 'backward' : 'forward'}`;
}

process.stdout.write(`${backend.detail}; ${size} px batch ${batch}\n`);
const perStep: Map<string, number>[] = [];
for (let i = 0; i < steps; i++) {
  times.clear();
  forwardFlops = 0;
  const t = performance.now();
  const loss = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => lossFn(model.apply(xs, { training: true }) as tf.Tensor, ys), variables);
    labelled('optimizer', () => optimizer.apply(params, variables.map((v) => grads[v.name])));
    return value;
  });
  await loss.data();
  loss.dispose();
  const wall = performance.now() - t;
  const kinds = new Map<string, number>();
  for (const [key, v] of times) kinds.set(kind(key), (kinds.get(kind(key)) ?? 0) + v.ms);
  kinds.set('JavaScript outside kernels', wall - [...times.values()].reduce((a, v) => a + v.ms, 0));
  kinds.set('step', wall);
  kinds.set('kernel calls (outermost)', [...times.values()].reduce((a, v) => a + v.n, 0));
  perStep.push(kinds);
}
const last = ['step', 'kernel calls (outermost)'];
const rows = [...perStep[0].keys()].sort((a, b) => last.indexOf(a) - last.indexOf(b) || a.localeCompare(b));
process.stdout.write(`${'ms'.padEnd(36)} ${'first step'.padStart(10)} ${'median of the rest'.padStart(18)}\n`);
for (const k of rows) {
  const rest = perStep.slice(1).map((m) => m.get(k) ?? 0);
  process.stdout.write(`${k.padEnd(36)} ${perStep[0].get(k)!.toFixed(0).padStart(10)} ${(rest.length ? median(rest) : NaN).toFixed(0).padStart(18)}\n`);
}
const forwardMs = median(perStep.slice(1).map((m) => m.get('forward convolutions') ?? 0));
process.stdout.write(`\nforward convolutions: ${(forwardFlops / 1e9).toFixed(2)} GFLOP a step, ${(forwardFlops / 1e6 / forwardMs).toFixed(1)} GFLOP/s\n`);
process.stdout.write('\nlatest step, costliest (layer, kernel):\n');
for (const [key, v] of [...times].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) {
  process.stdout.write(`${v.ms.toFixed(1).padStart(8)} ms ${String(v.n).padStart(4)} calls  ${key}\n`);
}
