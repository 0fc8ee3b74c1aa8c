/**
 * Gradient checkpointing of the MobileNetV2 encoder's inverted-residual
 * blocks. Trained as tfjs-layers runs a model, every block keeps its six-fold
 * expanded activations (convolution, batch norm and ReLU6 outputs) from the
 * forward pass until its gradient runs: most of a step's memory, past the
 * wasm backend's 4 GiB heap at the paper's 256 px batch 10. With
 * recomputation each block is one customGrad op that keeps only its input and
 * runs its layers again, under a gradient tape of its own, when its gradient
 * is needed: the same arithmetic, one more forward pass of the blocks per
 * step.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Set in a layer's kwargs while a block is re-run for its gradient: state a
 * forward pass updates (batch norm's running averages) was updated already.
 */
export const RECOMPUTING = 'recomputing';

/** MobileNetV2's block layers, Keras' names (mobilenetv2.ts). */
const BLOCK_LAYER = /^(expanded_conv|block_\d+)_/;

type Sym = tf.SymbolicTensor;
type Layer = tf.layers.Layer;

interface Step {
  layer: Layer;
  inputs: Sym[];
  output: Sym;
}

interface Segment {
  steps: Step[];
  /** A block of the training build reads one tensor from outside and gives one. */
  input: Sym;
  output: Sym;
}

const plans = new WeakMap<tf.LayersModel, (Step | Segment)[]>();

/** The model's layers in execution order, the blocks' layers grouped into segments. */
function plan(model: tf.LayersModel): (Step | Segment)[] {
  const known = plans.get(model);
  if (known) return known;
  const steps: Step[] = model.layers
    .filter((layer) => layer.getClassName() !== 'InputLayer')
    .map((layer) => {
      if (layer.inboundNodes.length !== 1) throw new Error(`recomputation: layer ${layer.name} is applied ${layer.inboundNodes.length} times`);
      const node = layer.inboundNodes[0];
      return { layer, inputs: node.inputTensors, output: node.outputTensors[0] };
    });
  const readers = new Map<number, Step[]>();
  for (const step of steps) for (const s of step.inputs) readers.set(s.id, [...(readers.get(s.id) ?? []), step]);
  const out: (Step | Segment)[] = [];
  let i = 0;
  while (i < steps.length) {
    const block = steps[i].layer.name.match(BLOCK_LAYER)?.[1];
    if (!block) {
      out.push(steps[i++]);
      continue;
    }
    const start = i;
    while (i < steps.length && steps[i].layer.name.match(BLOCK_LAYER)?.[1] === block) i++;
    const members = steps.slice(start, i);
    const made = new Set(members.map((s) => s.output.id));
    const inputs = [...new Map(members.flatMap((s) => s.inputs).filter((s) => !made.has(s.id)).map((s) => [s.id, s])).values()];
    const outputs = members.filter((s) => model.outputs.includes(s.output) || (readers.get(s.output.id) ?? []).some((r) => !members.includes(r)));
    if (inputs.length !== 1 || outputs.length !== 1) {
      throw new Error(`recomputation: block ${block} reads ${inputs.length} tensors and gives ${outputs.length}; one each expected`);
    }
    out.push({ steps: members, input: inputs[0], output: outputs[0].output });
  }
  plans.set(model, out);
  return out;
}

/** Whether the model has blocks that recomputation applies to. */
export function canRecompute(model: tf.LayersModel): boolean {
  return plan(model).some((p) => 'steps' in p);
}

function run(steps: Step[], values: Map<number, tf.Tensor>, kwargs: tf.serialization.ConfigDict): void {
  for (const { layer, inputs, output } of steps) {
    const xs = inputs.map((s) => values.get(s.id)!);
    values.set(output.id, layer.call(xs.length === 1 ? xs[0] : xs, kwargs) as tf.Tensor);
  }
}

function runSegment(segment: Segment, x: tf.Tensor, kwargs: tf.serialization.ConfigDict): tf.Tensor {
  const values = new Map([[segment.input.id, x]]);
  run(segment.steps, values, kwargs);
  return values.get(segment.output.id)!;
}

/**
 * One block as a single tape node: its forward keeps nothing but the block's
 * input; its gradient runs the block again, recording it this time, and
 * backpropagates through that. The block's trainable variables are inputs of
 * the op so that the outer tape finds their gradients here.
 */
function checkpointed(segment: Segment, x: tf.Tensor): tf.Tensor {
  const variables = segment.steps.flatMap(({ layer }) => layer.trainableWeights.map((w) => w.read()));
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    (args.at(-1) as tf.GradSaveFunc)([input]);
    return {
      value: runSegment(segment, input, { training: true }),
      gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => {
        const engine = tf.engine() as unknown as { state: { activeTape: unknown } };
        // A gradient taken inside the backward pass ends by dropping the
        // engine's active tape, which the outer pass still has to clean up.
        const outerTape = engine.state.activeTape;
        try {
          const { value, grads } = tf.engine().gradients(() => runSegment(segment, saved, { training: true, [RECOMPUTING]: true }), [saved, ...variables], dy);
          value.dispose();
          return grads;
        } finally {
          engine.state.activeTape = outerTape;
        }
      },
    };
  });
  return op(x, ...variables);
}

/**
 * The training forward pass, model.apply(x, {training: true}), with each
 * inverted-residual block recomputed in the backward pass when `recompute`.
 */
export function trainingForward(model: tf.LayersModel, x: tf.Tensor, recompute: boolean): tf.Tensor {
  if (!recompute) return model.apply(x, { training: true }) as tf.Tensor;
  const values = new Map([[model.inputs[0].id, x]]);
  for (const p of plan(model)) {
    if ('steps' in p) values.set(p.output.id, checkpointed(p, values.get(p.input.id)!));
    else run([p], values, { training: true });
  }
  return values.get(model.outputs[0].id)!;
}

/**
 * Whether a training step of `batch` images would outgrow the wasm heap (4 GiB;
 * a tenth kept free for the allocator's fragmentation) without recomputation.
 * Estimated from the layers' output sizes: the heap of a step measured 4.1
 * times their sum per image (the paper card's model at 256 px: 0.55 GiB per
 * image, 137 MiB of layer outputs), plus about 16 bytes per parameter
 * (weights, gradients, momentum, XNNPACK's packed copies).
 */
export function outgrowsWasmHeap(model: tf.LayersModel, batch: number): boolean {
  const elements = (shape: (number | null)[]) => shape.slice(1).reduce<number>((n, d) => n * (d ?? 1), 1);
  const outputs = model.layers.reduce((n, layer) => n + 4 * elements(layer.outputShape as (number | null)[]), 0);
  const parameters = model.weights.reduce((n, w) => n + w.shape.reduce<number>((a, d) => a * (d ?? 1), 1), 0);
  return batch * 4.1 * outputs + 16 * parameters > 0.9 * 4 * 2 ** 30;
}
