/**
 * ReLU6 of the training build. tfjs-layers' ReLU layer with a maxValue runs
 * relu and then clipByValue: two kernels forward and two backward for each of
 * MobileNetV2's 35 ReLU6 layers. Where the backend has ReLU6 of its own
 * (backends/ops.ts: WebGPU, while its 'activation-grad' lever is on) it is
 * tf.relu6, one kernel, whose gradient is one kernel of ours;
 * min(max(x, 0), 6) is the same value, and both gradients pass
 * dy exactly where 0 < x <= 6. Elsewhere it runs tfjs-layers' two ops, so cpu
 * and wasm compute what they did. The export build keeps tfjs's ReLU layer
 * (same name, no weights), which plain tfjs loads.
 */
import * as tf from '@tensorflow/tfjs';
import { backendOps } from '../backends/ops.ts';

export class ReLU6 extends tf.layers.Layer {
  static readonly className = 'LesionReLU6';

  constructor(args: { name: string }) {
    super(args);
  }

  computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return inputShape as tf.Shape;
  }

  call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const relu6 = backendOps().relu6;
    return relu6 ? relu6(x) : tf.clipByValue(tf.relu(x), 0, 6);
  }
}

tf.serialization.registerClass(ReLU6);
