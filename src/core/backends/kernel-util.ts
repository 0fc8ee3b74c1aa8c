/**
 * What the training kernels of both backends share: convolution geometry,
 * running tensor-level code as a kernel body, and (re)registering a kernel.
 */
import * as tf from '@tensorflow/tfjs';

export interface ConvGeometry {
  kh: number;
  kw: number;
  strideH: number;
  strideW: number;
  padTop: number;
  padLeft: number;
  outH: number;
  outW: number;
}

export function geometry(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  pad: tf.backend_util.ExplicitPadding | 'valid' | 'same' | number,
  dimRoundingMode: 'floor' | 'round' | 'ceil' | undefined,
  depthwise: boolean,
): ConvGeometry {
  const info = tf.backend_util.computeConv2DInfo(
    xShape,
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    depthwise,
  );
  return {
    kh: info.filterHeight,
    kw: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
    outH: info.outHeight,
    outW: info.outWidth,
  };
}

/**
 * Runs a tensor-level function as a kernel body. Wrapping a TensorInfo in a
 * Tensor does not take a reference, yet disposing the wrapper drops one: each
 * input gets an extra reference first, and the result keeps one that the
 * engine takes over when it wraps the returned info.
 */
export function asKernel(
  backend: tf.KernelBackend,
  inputs: tf.TensorInfo[],
  body: (...ts: tf.Tensor4D[]) => tf.Tensor,
): tf.TensorInfo {
  const refs = backend as unknown as { incRef(dataId: object): void };
  const result = tf.tidy(() => {
    const ts = inputs.map((info) => {
      refs.incRef(info.dataId);
      return tf.engine().makeTensorFromTensorInfo(info, backend) as tf.Tensor4D;
    });
    return body(...ts);
  });
  refs.incRef(result.dataId);
  const info = { dataId: result.dataId, shape: result.shape, dtype: result.dtype };
  result.dispose();
  return info;
}

/** A kernel's attributes, read by name. */
export type Attrs = Record<string, unknown>;

/** Runs a kernel of ours by name, where no tf op reaches it. */
export function runKernel(name: string, inputs: tf.NamedTensorMap, attrs: Attrs = {}): tf.Tensor | tf.Tensor[] {
  return tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap);
}

export interface KernelSpec {
  kernelName: string;
  kernelFunc: (params: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }) => tf.TensorInfo | tf.TensorInfo[];
}

/** Registers `config` for `backendName`, replacing the backend's own kernel of that name. */
export function registerKernelFor(backendName: string, config: KernelSpec): void {
  if (tf.getKernel(config.kernelName, backendName)) tf.unregisterKernel(config.kernelName, backendName);
  tf.registerKernel({ ...config, backendName } as tf.KernelConfig);
}

/**
 * Replaces tfjs's gradient of a one-input activation `kernelName` (for every
 * backend) with `ours` while `applies()` holds; each backend wraps the
 * gradient registered before it, so that they can all be registered at once.
 */
export function replaceGradient(kernelName: string, applies: () => boolean, ours: (dy: tf.Tensor, x: tf.Tensor, attrs: Attrs) => tf.Tensor): void {
  const theirs = tf.getGradient(kernelName);
  tf.registerGradient({
    ...theirs,
    gradFunc: (dy, saved, attrs) => (applies() ? { x: () => ours(dy as tf.Tensor, saved[0], attrs as Attrs) } : theirs.gradFunc(dy, saved, attrs)),
  });
}
