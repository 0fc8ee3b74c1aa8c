/**
 * Cheaper launches for tfjs-webgpu (the 'uniform-cache' lever): uniform
 * buffers kept across dispatches and steps.
 *
 * tfjs's recordAndSubmit packs a fresh uniform block for every dispatch
 * (NaN, Infinity, every binding's shape and strides, the program's own
 * fields), takes a uniform buffer from its pool, writes it with
 * queue.writeBuffer, and returns the buffer to the pool at the next submit.
 * A training step repeats the same shapes: at 128 px batch 4 its 777
 * dispatches use 400 distinct blocks, the same 400 at every step. Here a
 * uniform buffer is made per distinct block content, written once and never
 * rewritten (so no write can overtake a dispatch that reads it), and looked up
 * by content; the map is emptied past CAPACITY entries (shapes that no longer
 * recur: another model, another batch), dropping only references, since Dawn
 * keeps what a pending command buffer uses alive.
 *
 * Bind groups are not cached: measured over steady steps of the same model,
 * 650 to 700 of the 777 bind groups of a step named a set of buffers never
 * seen before, because tfjs's pool hands buffers out in an order that shifts
 * from step to step (the optimiser's outputs become the weights, the old
 * weights go back to the pool), so a cache would only grow.
 *
 * The patch replaces recordAndSubmit on the backend object; it is tfjs
 * 4.22's method with the lookup, and falls back to tfjs's own while profiling
 * (timestamp queries) or for pixel programs.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendInternals } from './backend-internals.ts';
import { recordLaunch, unrecordable } from './step-graph.ts';

const CAPACITY = 16_384;

interface Program {
  constructor: { name: string };
  pipeline: GPUComputePipeline | Promise<GPUComputePipeline>;
  pixelsOpType?: unknown;
  size?: boolean;
  outputShape: number[];
  outputComponent?: number;
  dispatch: [number, number, number];
}

type Uniform = { type: string; data: number[] };

interface Backend extends BackendInternals {
  activeTimers: unknown[] | null;
  recordAndSubmit(program: Program, output: tf.TensorInfo, inputs: tf.TensorInfo[], uniforms?: Uniform[]): void;
}

// Per device: after a device is lost the studio starts a new one, and a buffer of the old device cannot be bound on it.
const uniformBuffersOf = new WeakMap<GPUDevice, Map<string, GPUBuffer>>();
let created = 0;

/** How many uniform buffers the cache has had to create so far. */
export function uniformBuffersCreated(): number {
  return created;
}

/**
 * tfjs's uniform layout (makeUniforms in backend_webgpu.ts): WGSL alignment
 * by vector length, vec3 and longer at 16 bytes, and after a vec5/vec6.
 */
function uniformBlock(fields: Uniform[]): ArrayBuffer {
  let offset = 0;
  let previous = 0;
  let maxAlignment = 1;
  const offsets = fields.map((d) => {
    if (d.data.length === 0) d.data = [1];
    let alignment = d.data.length === 1 ? 4 : d.data.length === 2 ? 8 : 16;
    if (d.data.length > 6) throw new Error(`Unsupported ${d.data.length}D shape`);
    if (previous === 5 || previous === 6) alignment = 16;
    maxAlignment = Math.max(maxAlignment, alignment);
    offset = Math.ceil(offset / alignment) * alignment;
    previous = d.data.length;
    const at = offset;
    offset += d.data.length * 4;
    return at;
  });
  const block = new ArrayBuffer(Math.ceil(offset / maxAlignment) * maxAlignment);
  fields.forEach((d, i) => {
    const View = d.type === 'int32' ? Int32Array : d.type === 'uint32' ? Uint32Array : Float32Array;
    new View(block, offsets[i], d.data.length).set(d.data);
  });
  return block;
}

/** A uniform buffer holding `block`, created and written the first time that content is asked for. */
export function cachedUniformBuffer(device: GPUDevice, queue: GPUQueue, block: ArrayBuffer): GPUBuffer {
  const words = new Uint32Array(block);
  let key = '';
  for (let i = 0; i < words.length; i++) key += `${words[i].toString(36)},`;
  let uniformBuffers = uniformBuffersOf.get(device);
  if (!uniformBuffers) uniformBuffersOf.set(device, (uniformBuffers = new Map()));
  let buffer = uniformBuffers.get(key);
  if (!buffer) {
    if (uniformBuffers.size >= CAPACITY) uniformBuffers.clear();
    buffer = device.createBuffer({ size: block.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    queue.writeBuffer(buffer, 0, block);
    uniformBuffers.set(key, buffer);
    created++;
  }
  return buffer;
}

const patched = new WeakSet<object>();

/** Installs the cached recordAndSubmit on the webgpu backend, once; `enabled()` is asked at every launch. */
export function installLaunchCache(backend: tf.KernelBackend, enabled: () => boolean): void {
  const b = backend as unknown as Backend;
  if (patched.has(b)) return;
  patched.add(b);
  const theirs = b.recordAndSubmit.bind(b);
  b.recordAndSubmit = (program, output, inputs, programUniforms) => {
    const buffers = [output, ...inputs].map((t) => b.tensorMap.get(t.dataId).resource);
    if (!enabled() || b.activeTimers != null || program.pixelsOpType != null || program.pipeline instanceof Promise || !buffers.every((r) => r instanceof GPUBuffer)) {
      unrecordable(`${program.constructor.name} was launched by tfjs itself (uniform cache off, profiling, a pixel program or a pipeline still compiling)`);
      return theirs(program, output, inputs, programUniforms);
    }
    const fields: Uniform[] = [
      { type: 'float32', data: [NaN] },
      { type: 'float32', data: [Infinity] },
    ];
    for (const shape of [...inputs, output].map((t) => t.shape)) {
      fields.push({ type: 'int32', data: [...shape] }, { type: 'int32', data: tf.util.computeStrides(shape) });
    }
    if (program.size) {
      const size = tf.util.sizeFromShape(program.outputShape);
      fields.push({ type: 'int32', data: [program.outputComponent ? size / program.outputComponent : size] });
    }
    if (programUniforms) fields.push(...programUniforms);
    const uniform = cachedUniformBuffer(b.device, b.queue, uniformBlock(fields));
    for (const t of [output, ...inputs]) b.commandQueueOwnedIds.add(t.dataId);
    const group = b.device.createBindGroup({
      layout: program.pipeline.getBindGroupLayout(0),
      entries: [...(buffers as GPUBuffer[]), uniform].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    b.ensureCommandEncoderReady();
    b.computePassEncoder ??= b.commandEncoder!.beginComputePass({});
    b.computePassEncoder.setPipeline(program.pipeline);
    b.computePassEncoder.setBindGroup(0, group);
    b.computePassEncoder.dispatchWorkgroups(program.dispatch[0], program.dispatch[1], program.dispatch[2]);
    recordLaunch({ label: program.constructor.name, pipeline: program.pipeline, storage: buffers as GPUBuffer[], writes: 1, uniforms: [uniform], workgroups: [...program.dispatch] });
    if (++b.dispatchCountInPass >= (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
      b.endComputePassEncoder();
      b.submitQueue();
    }
  };
}
