/**
 * What our WebGPU programs share. They follow tfjs-webgpu's WebGPUProgram
 * contract: tfjs generates the bindings (`result`, then one read-only array
 * per variable name) and the uniform block (shapes first, then the fields
 * named in `uniforms`, filled in order from the uniform data passed with the
 * run). tfjs caches a compiled program by its shader key and the ranks and
 * types of its tensors, so everything that varies between calls is a uniform.
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import type { OwnProgram } from './own-dispatch.ts';

type Uniform = { type: 'int32' | 'float32'; data: number[] };
/** The label names our programs in dispatch counts (tfjs's are named by class). */
type Program = WebGPUProgram & { label: string };

const FLAT = 64;

function gpuBackend(): WebGPUBackend {
  return tf.backend() as WebGPUBackend;
}

/** What every program of ours declares alike; the dispatch layout is flat (tfjs calls main(index)). */
function programBase(key: string, variableNames: string[], outputShape: number[], uniforms: string) {
  return { label: key, shaderKey: key, variableNames, outputShape, uniforms, dispatchLayout: { x: outputShape.map((_, i) => i) } };
}

/** An element-wise program over `size` outputs, one thread each. */
export function flatProgram(key: string, variableNames: string[], outputShape: number[], uniforms: string, body: string): Program {
  const size = outputShape.reduce((a, b) => a * b, 1);
  return {
    ...programBase(key, variableNames, outputShape, uniforms),
    size: true,
    workgroupSize: [FLAT, 1, 1],
    dispatch: [Math.ceil(size / FLAT), 1, 1],
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`,
  };
}

/**
 * Per-channel reductions over an activation seen as [M, C] (NHWC flattened):
 * a workgroup of THREADS owns CHANNELS neighbouring channels (and one of
 * `taps` outputs per channel, wid.y), so reads of one row are
 * contiguous, and LANES = THREADS / CHANNELS threads per channel stride down
 * the rows; the lanes are then summed in a fixed tree, so results do not vary
 * between runs. Early layers have few channels and many pixels: 4 channels a
 * workgroup keeps C / 4 workgroups busy there; 16 above 256 channels. Our own
 * bind group (own-dispatch.ts), so that one reduction can write several tensors.
 */
export const THREADS = 256;

export function channelReduction(
  label: string,
  outputs: [string, number[]][],
  inputs: string[],
  uniforms: OwnProgram['uniforms'],
  channels: number,
  body: string,
  taps = 1,
): OwnProgram {
  const perGroup = channels <= 256 ? 4 : 16;
  return {
    label: `${label}_${perGroup}`,
    outputs,
    inputs,
    uniforms,
    workgroupSize: THREADS,
    workgroups: [Math.ceil(channels / perGroup), taps, 1],
    body: `
      const CHANNELS = ${perGroup};
      const LANES = ${THREADS / perGroup};
      var<workgroup> partial : array<f32, ${THREADS}>;

      // Sums 'value' over the lanes of this thread's channel; every thread gets the total.
      fn laneSum(lid : i32, value : f32) -> f32 {
        partial[lid] = value;
        workgroupBarrier();
        for (var stride = ${THREADS / 2}; stride >= CHANNELS; stride = stride / 2) {
          if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
          }
          workgroupBarrier();
        }
        let total = partial[lid % CHANNELS];
        workgroupBarrier();
        return total;
      }

      fn main(index : i32, lid : i32, wid : vec3<i32>) {
        let c = wid.x * CHANNELS + lid % CHANNELS;
        let lane = lid / CHANNELS;
        let valid = c < u.C;
        let tap = wid.y;
        ${body}
      }`,
  };
}

export function runProgram(program: Program, inputs: tf.Tensor[], uniforms: Uniform[]): tf.Tensor {
  return tf.engine().makeTensorFromTensorInfo(gpuBackend().runWebGPUProgram(program, inputs, 'float32', uniforms));
}

/**
 * An element-wise program of ours over `size` values: one thread each, the
 * workgroups laid out in x, spilling into y past WebGPU's 65,535 a dimension.
 */
export function flatOwn(label: string, outputs: string[], inputs: string[], shape: number[], uniforms: OwnProgram['uniforms'], body: string): OwnProgram {
  const size = shape.reduce((a, b) => a * b, 1);
  const groups = Math.ceil(size / FLAT);
  const x = Math.min(groups, 65535);
  return {
    label,
    outputs: outputs.map((name) => [name, shape]),
    inputs,
    uniforms: [['size', 'i32'], ...uniforms],
    workgroupSize: FLAT,
    workgroups: [x, Math.ceil(groups / x), 1],
    body: `
      fn main(flat : i32, lid : i32, wid : vec3<i32>) {
        // Only a dispatch with all 65,535 workgroups in x has a second row (wid.y > 0); the pipeline is shared by every size.
        let index = flat + wid.y * ${65535 * FLAT};
        if (index < u.size) {
          ${body}
        }
      }`,
  };
}
