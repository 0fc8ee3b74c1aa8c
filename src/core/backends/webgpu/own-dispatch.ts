/**
 * Programs that write several tensors in one dispatch. tfjs-webgpu's
 * runWebGPUProgram binds exactly one output, so an optimiser that writes a
 * weight and its momentum, or batch norm's statistics and running averages,
 * took one dispatch per tensor written. Here the bind group is ours: outputs
 * first (read_write), then inputs (read), then one uniform block of 32-bit
 * scalars, looked up in launch-cache.ts's cache. Everything else is
 * tfjs's: buffers from its pool, dispatches into its open compute pass,
 * submits at its batch size, so that ordering, buffer reuse and deferred
 * disposal behave as for its own programs.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendInternals } from './backend-internals.ts';
import { cachedUniformBuffer } from './launch-cache.ts';
import { recordLaunch, stepBlockData } from './step-graph.ts';

interface Backend extends BackendInternals {
  makeTensorInfo(shape: number[], dtype: 'float32'): tf.TensorInfo;
  uploadToGPU(dataId: object): void;
}

export interface OwnProgram {
  /** Names the program in dispatch counts and keys its pipeline. */
  label: string;
  /** Output names and shapes, bound first, in order. */
  outputs: [string, number[]][];
  /** Input names, bound after the outputs, matched in order to the tensors passed. */
  inputs: string[];
  /** Uniform fields, each a 32-bit scalar ('i32' or 'f32'), in order. */
  uniforms: [string, 'i32' | 'f32'][];
  workgroupSize: number;
  workgroups: [number, number, number];
  /**
   * A second uniform block, `s.v` (vec4<f32>), for values that change from step to step (the
   * optimiser's learning rate): a replayed step (step-graph.ts) rewrites it, the rest stays as recorded.
   */
  stepBlock?: boolean;
  /** WGSL declarations and `fn main(index : i32, lid : i32, wid : vec3<i32>)` (global x, local x, workgroup id), reading `u.<field>`. Every binding must be used: an 'auto' layout drops unused ones. */
  body: string;
}

type Listener = (label: string) => void;
const listeners = new Set<Listener>();

/** Tells `listener` the label of every own program dispatched (the dispatch counter); returns its removal. */
export function onOwnDispatch(listener: Listener): () => void {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

function shaderOf(p: OwnProgram): string {
  const bindings = [
    ...p.outputs.map(([name], i) => `@group(0) @binding(${i}) var<storage, read_write> ${name} : array<f32>;`),
    ...p.inputs.map((name, i) => `@group(0) @binding(${p.outputs.length + i}) var<storage, read> ${name} : array<f32>;`),
  ];
  const fields = p.uniforms.length > 0 ? p.uniforms : [['unused', 'i32'] as const];
  return `
struct Uniforms { ${fields.map(([name, type]) => `${name} : ${type},`).join(' ')} };
${bindings.join('\n')}
@group(0) @binding(${p.outputs.length + p.inputs.length}) var<uniform> u : Uniforms;
${p.stepBlock ? `struct Step { v : vec4<f32> };\n@group(0) @binding(${p.outputs.length + p.inputs.length + 1}) var<uniform> s : Step;` : ''}
${p.body}
@compute @workgroup_size(${p.workgroupSize}, 1, 1)
fn entry(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {
  main(i32(gid.x), i32(lid.x), vec3<i32>(wid));
}`;
}

function pipelineOf(device: GPUDevice, p: OwnProgram): GPUComputePipeline {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  const key = `${p.label}|${p.workgroupSize}|${p.outputs.length}|${p.inputs.join(',')}|${p.stepBlock === true}`;
  let pipeline = cache.get(key);
  if (!pipeline) {
    const module = device.createShaderModule({ code: shaderOf(p), label: p.label });
    pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'entry' }, label: p.label });
    cache.set(key, pipeline);
  }
  return pipeline;
}

/** Uniform data: scalars only, so the block is a packed array of 32-bit words, padded to 16 bytes. */
function uniformBytes(p: OwnProgram, values: number[]): ArrayBuffer {
  const words = Math.max(4, Math.ceil(Math.max(1, values.length) / 4) * 4);
  const data = new ArrayBuffer(words * 4);
  const ints = new Int32Array(data);
  const floats = new Float32Array(data);
  p.uniforms.forEach(([, type], i) => (type === 'i32' ? (ints[i] = values[i]) : (floats[i] = values[i])));
  return data;
}

/** Runs `p` on `inputs` with `uniforms` (in the order of p.uniforms) and `step` (its step block's four values); returns its outputs, new float32 tensors. */
export function runOwn(p: OwnProgram, inputs: tf.TensorInfo[], uniforms: number[], step: number[] = []): tf.TensorInfo[] {
  const b = tf.backend() as unknown as Backend;
  const outputs = p.outputs.map(([, shape]) => b.makeTensorInfo(shape, 'float32'));
  const buffer = (info: tf.TensorInfo): GPUBuffer => {
    b.uploadToGPU(info.dataId);
    b.commandQueueOwnedIds.add(info.dataId);
    // Float32 tensors live in storage buffers; only pixel inputs are textures, and none comes here.
    return b.tensorMap.get(info.dataId).resource as GPUBuffer;
  };
  const pipeline = pipelineOf(b.device, p);
  const blocks = [cachedUniformBuffer(b.device, b.queue, uniformBytes(p, uniforms))];
  if (p.stepBlock) blocks.push(cachedUniformBuffer(b.device, b.queue, stepBlockData(step).buffer));
  const storage = [...outputs.map(buffer), ...inputs.map(buffer)];
  const bindGroup = b.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [...storage, ...blocks].map((resource, binding) => ({ binding, resource: { buffer: resource } })),
  });
  b.ensureCommandEncoderReady();
  b.computePassEncoder ??= b.commandEncoder!.beginComputePass({});
  b.computePassEncoder.setPipeline(pipeline);
  b.computePassEncoder.setBindGroup(0, bindGroup);
  b.computePassEncoder.dispatchWorkgroups(...p.workgroups);
  recordLaunch({ label: p.label, pipeline, storage, writes: outputs.length, uniforms: blocks, stepBlockAt: p.stepBlock ? 1 : undefined, workgroups: p.workgroups });
  for (const listener of listeners) listener(p.label);
  if (++b.dispatchCountInPass >= (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  return outputs;
}

/** runOwn's outputs as tensors the engine tracks. */
export function runOwnTensors(p: OwnProgram, inputs: tf.Tensor[], uniforms: number[], step?: number[]): tf.Tensor[] {
  return runOwn(p, inputs, uniforms, step).map((info) => tf.engine().makeTensorFromTensorInfo(info));
}
