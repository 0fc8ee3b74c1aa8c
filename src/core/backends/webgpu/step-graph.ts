/**
 * Capture and replay of a WebGPU training step (the 'replay' lever), the way
 * CUDA graphs serve PyTorch: a step of a fixed model and batch shape runs the
 * same programs on the same shapes every time, so after it has run twice
 * through tfjs, identically, its programs are replayed without tfjs: the
 * batch and the optimiser's per-step scalars are written, the recorded
 * dispatches encoded into one command buffer, and a loss tensor handed back.
 * tfjs's JavaScript per op (kernel lookup, the tape, shape checks, uniform
 * packing, buffer bookkeeping, bind groups) is then paid once, not per step.
 *
 * Why the graph owns its buffers: tfjs's pool hands buffers out in an order
 * that shifts from step to step, the optimiser's outputs become the weights
 * (Variable.assign) and the old weights go back to the pool. So the recorded
 * step is renamed onto private buffers: every buffer a dispatch writes keeps
 * one private twin (the recorded reuse pattern was a valid schedule, so it
 * stays one), a tensor uploaded during the step becomes a constant buffer of
 * its own, a buffer read before the step wrote it is either a variable (its
 * value is copied in from tfjs when tfjs's copy changed), the batch (written
 * at every replay) or a tensor made before the step (copied once, when first
 * read). Each variable the step assigns gets a home buffer that its new value
 * is copied back into at the end of every replay; `sync` writes the homes into
 * the variables (new tensors, never tfjs's buffers in place, which clones
 * share), and the training loop calls it before anything reads the model.
 *
 * A step is replayed only when two consecutive recordings agree program for
 * program, uniform block for uniform block and upload for upload: anything that
 * changes from one step to the next other than the batch and the optimiser's
 * step block (a value computed on the CPU inside the step, a learning rate
 * passed to a tfjs op) keeps the step on tfjs's path, with the reason logged
 * once.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendInternals } from './backend-internals.ts';

interface Backend extends Omit<BackendInternals, 'tensorMap'> {
  makeTensorInfo(shape: number[], dtype: 'float32'): tf.TensorInfo;
  uploadToGPU(dataId: object): void;
  tensorMap: { get(dataId: object): { resource?: GPUBuffer | GPUTexture | null; values?: ArrayLike<number> | null; dtype: tf.DataType } };
  bufferManager: { freeBuffers: Map<string, GPUBuffer[]>; numFreeBuffers: number; numBytesAllocated: number };
}

/** One program launch as bound: storage buffers (the first `writes` written, the rest read), then uniform blocks. */
export interface LaunchRecord {
  label: string;
  pipeline: GPUComputePipeline;
  storage: GPUBuffer[];
  writes: number;
  uniforms: GPUBuffer[];
  /** Which of `uniforms` is the optimiser's step block, rewritten at every replay. */
  stepBlockAt?: number;
  workgroups: readonly [number, number, number];
}

type StepEvent = { launch: LaunchRecord } | { upload: GPUBuffer; bytes: Uint8Array<ArrayBuffer> };

/**
 * Tensors made on the CPU whose values change from step to step (the batch,
 * dropout's masks), by a key that names them: a replay writes each
 * one's new values. Model code marks its own with `markStepInput`.
 */
export type StepInputs = Map<string, tf.Tensor>;

/** Marks `t` as the step's input `key` while a step is recorded; a no-op otherwise. */
export function markStepInput(t: tf.Tensor, key: string): void {
  active?.declared.set(t.dataId, key);
}

// Read when a buffer is made: GPUBufferUsage exists only where WebGPU does, and this module loads everywhere.
const storageUsage = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

let active: Recording | null = null;

/** Called by every launch path (launch-cache.ts, own-dispatch.ts) while a step is recorded. */
export function recordLaunch(launch: LaunchRecord): void {
  active?.launch(launch);
}

/** A launch that cannot be recorded (tfjs's own path: profiling, pixel programs, a pipeline still compiling). */
export function unrecordable(reason: string): void {
  if (active) active.failure ??= reason;
}

type ReplayListener = (dispatches: number) => void;
const replayListeners = new Set<ReplayListener>();

/** Tells `listener` the dispatch count of every replayed step (the dispatch counter); returns its removal. */
export function onReplay(listener: ReplayListener): () => void {
  replayListeners.add(listener);
  return () => void replayListeners.delete(listener);
}

/** The optimiser's step block as the graph and the programs bind it: four f32, the values first, zeros after. */
export function stepBlockData(values: number[]): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: 4 }, (_, i) => values[i] ?? 0);
}

/** Submits what tfjs has encoded and not yet submitted, which also lets its deferred disposals go back to its pool. */
function submitPending(b: Backend): void {
  if (!b.commandEncoder) return;
  b.endComputePassEncoder();
  b.submitQueue();
}

function bufferOf(b: Backend, t: { dataId: object }): GPUBuffer | undefined {
  const resource = b.tensorMap.get(t.dataId)?.resource;
  return resource instanceof GPUBuffer ? resource : undefined;
}

function variableBuffers(b: Backend): Map<tf.Variable, GPUBuffer | undefined> {
  return new Map(Object.values(tf.engine().registeredVariables).map((v) => [v, bufferOf(b, v)]));
}

/** One step run through tfjs with its launches and uploads written down. */
class Recording {
  readonly events: StepEvent[] = [];
  failure: string | undefined;
  /** Buffers written (or uploaded into) so far in this step. */
  private readonly written = new Set<GPUBuffer>();
  /** Copies of buffers the step read before writing them that are neither a variable nor an input: tensors made before the step. */
  readonly captured = new Map<GPUBuffer, GPUBuffer>();
  readonly inputs = new Map<GPUBuffer, string>();
  readonly declared = new Map<object, string>();
  readonly before: Map<tf.Variable, GPUBuffer | undefined>;
  private readonly variableAt = new Map<GPUBuffer, tf.Variable>();
  after = new Map<tf.Variable, GPUBuffer | undefined>();
  loss: GPUBuffer | undefined;

  constructor(
    readonly b: Backend,
    declared: StepInputs,
    readonly capture: boolean,
  ) {
    for (const [key, t] of declared) this.declared.set(t.dataId, key);
    this.before = variableBuffers(b);
    for (const [v, buffer] of this.before) if (buffer) this.variableAt.set(buffer, v);
  }

  /** uploadToGPU, watched: a tensor's first upload during the step is an input or a constant. */
  upload(dataId: object, original: (dataId: object) => void): void {
    const data = this.b.tensorMap.get(dataId);
    const values = data.resource == null ? data.values : null;
    original(dataId);
    const buffer = data.resource;
    if (!values || !(buffer instanceof GPUBuffer)) return;
    const name = this.declared.get(dataId);
    if (name) {
      this.inputs.set(buffer, name);
      return;
    }
    const typed = data.dtype === 'int32' || data.dtype === 'bool' ? Int32Array.from(values) : Float32Array.from(values);
    this.events.push({ upload: buffer, bytes: new Uint8Array(typed.buffer) });
    this.written.add(buffer);
  }

  launch(launch: LaunchRecord): void {
    this.events.push({ launch });
    launch.storage.forEach((buffer, i) => {
      if (i < launch.writes) return;
      if (this.capture && !this.written.has(buffer) && !this.inputs.has(buffer) && !this.variableAt.has(buffer) && !this.captured.has(buffer)) {
        // Read before this step wrote it: a tensor made earlier. Its value is final in queue order (the
        // recording began with a submit), and this copy goes to the queue before the step's own work.
        const copy = this.b.device.createBuffer({ size: buffer.size, usage: storageUsage() });
        const encoder = this.b.device.createCommandEncoder();
        encoder.copyBufferToBuffer(buffer, 0, copy, 0, buffer.size);
        this.b.queue.submit([encoder.finish()]);
        this.captured.set(buffer, copy);
      }
    });
    for (let i = 0; i < launch.writes; i++) this.written.add(launch.storage[i]);
  }

  finish(loss: tf.Tensor): void {
    this.after = variableBuffers(this.b);
    this.loss = bufferOf(this.b, loss);
    if (!this.loss) this.failure ??= 'the loss is not in a GPU buffer';
  }

  variableReadAt(buffer: GPUBuffer): tf.Variable | undefined {
    return this.variableAt.get(buffer);
  }

  dispose(): void {
    for (const copy of this.captured.values()) copy.destroy();
  }
}

/** Why two recordings of consecutive steps differ, or undefined when the later one can be replayed in place of both. */
function difference(a: Recording, b: Recording): string | undefined {
  if (a.events.length !== b.events.length) return `the step launched ${b.events.length} programs and uploads, the one before ${a.events.length}`;
  for (let i = 0; i < a.events.length; i++) {
    const [p, q] = [a.events[i], b.events[i]];
    if ('upload' in p || 'upload' in q) {
      if (!('upload' in p && 'upload' in q)) return `event ${i} is an upload in one step and a program in the other`;
      if (p.bytes.length !== q.bytes.length || !p.bytes.every((byte, k) => byte === q.bytes[k])) {
        return `it uploads data that changes from step to step (${q.bytes.length} bytes at event ${i}: a value computed on the CPU inside the step)`;
      }
      continue;
    }
    const [l, m] = [p.launch, q.launch];
    if (l.pipeline !== m.pipeline || l.label !== m.label) return `program ${i} differs (${l.label}, then ${m.label})`;
    if (l.workgroups.some((w, k) => w !== m.workgroups[k]) || l.storage.length !== m.storage.length || l.writes !== m.writes || l.stepBlockAt !== m.stepBlockAt) {
      return `program ${i} (${m.label}) is launched with another shape`;
    }
    if (l.uniforms.some((u, k) => k !== l.stepBlockAt && u !== m.uniforms[k])) return `program ${i} (${m.label}) takes uniforms that change from step to step`;
  }
  return undefined;
}

/** A recorded step renamed onto buffers of its own, replayable until a shape or the device changes. */
class StepGraph {
  private readonly groups: GPUBindGroup[] = [];
  private readonly launches: LaunchRecord[];
  private readonly owned: GPUBuffer[] = [];
  /** Buffers taken out of tfjs's pool, given back when the graph goes. */
  private readonly taken: GPUBuffer[] = [];
  private readonly inputBuffers = new Map<string, GPUBuffer>();
  /** Every variable the step reads before writing, with the graph's buffer for its value. */
  private readonly homes = new Map<tf.Variable, GPUBuffer>();
  /** The variables the step assigns, and where each one's new value is left. */
  private readonly results = new Map<tf.Variable, GPUBuffer>();
  private readonly lossBuffer: GPUBuffer;
  private readonly stepBlock: GPUBuffer;
  /** tfjs's buffer of each variable when its value and the graph's last agreed. */
  private readonly agreed = new Map<tf.Variable, GPUBuffer | undefined>();
  /** The graph holds newer values than the variables. */
  private ahead = false;

  constructor(
    readonly b: Backend,
    recording: Recording,
    readonly shapes: string,
  ) {
    const device = b.device;
    const own = (size: number, usage = storageUsage()): GPUBuffer => {
      const buffer = device.createBuffer({ size, usage });
      this.owned.push(buffer);
      return buffer;
    };
    this.stepBlock = own(16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    const twin = new Map<GPUBuffer, GPUBuffer>();
    const current = new Map<GPUBuffer, GPUBuffer>();
    const readSource = (buffer: GPUBuffer): GPUBuffer => {
      const found = current.get(buffer);
      if (found) return found;
      let source: GPUBuffer;
      const input = recording.inputs.get(buffer);
      const variable = recording.variableReadAt(buffer);
      if (input) {
        source = own(buffer.size);
        this.inputBuffers.set(input, source);
      } else if (variable) {
        source = own(buffer.size);
        this.homes.set(variable, source);
      } else {
        const copy = recording.captured.get(buffer);
        if (!copy) throw new Error('a program read a buffer that the step neither wrote nor took as an input');
        recording.captured.delete(buffer);
        this.owned.push(copy);
        source = copy;
      }
      current.set(buffer, source);
      return source;
    };
    this.launches = recording.events.flatMap((event) => {
      if ('upload' in event) {
        const constant = own(event.upload.size);
        b.queue.writeBuffer(constant, 0, event.bytes);
        current.set(event.upload, constant);
        return [];
      }
      const launch = event.launch;
      const reads = launch.storage.map((buffer, i) => (i < launch.writes ? undefined : readSource(buffer)));
      const bound = launch.storage.map((buffer, i) => {
        if (i >= launch.writes) return reads[i]!;
        let target = twin.get(buffer);
        if (!target) {
          // The recorded buffer itself where tfjs's pool holds it free (most of a step's intermediates, once
          // the step's tensors are gone): the graph then costs no memory beside the pool.
          target = takeFromPool(b, buffer) ? buffer : own(buffer.size);
          if (target === buffer) this.taken.push(buffer);
          twin.set(buffer, target);
        }
        current.set(buffer, target);
        return target;
      });
      const uniforms = launch.uniforms.map((u, k) => (k === launch.stepBlockAt ? this.stepBlock : u));
      this.groups.push(
        device.createBindGroup({
          layout: launch.pipeline.getBindGroupLayout(0),
          entries: [...bound, ...uniforms].map((buffer, binding) => ({ binding, resource: { buffer } })),
        }),
      );
      return [launch];
    });
    for (const [variable, after] of recording.after) {
      if (after === recording.before.get(variable) || !after) continue;
      const result = current.get(after);
      if (!result) throw new Error(`variable ${variable.name} took a buffer that no program of the step wrote`);
      this.results.set(variable, result);
      if (!this.homes.has(variable)) this.homes.set(variable, own(after.size));
    }
    this.lossBuffer = current.get(recording.loss!)!;
  }

  /**
   * The variables assigned from outside since the graph and tfjs last agreed
   * on them (a checkpoint loaded, weights poisoned): for each variable the
   * later writer wins, so these are pulled and not pushed.
   */
  private moved(): tf.Variable[] {
    return [...this.homes.keys()].filter((v) => !v.isDisposed && bufferOf(this.b, v) !== this.agreed.get(v));
  }

  usable(): boolean {
    return [...this.homes.keys()].every((v) => !v.isDisposed);
  }

  /** Copies these variables' values from tfjs into the graph. */
  private pull(variables: tf.Variable[]): void {
    const b = this.b;
    for (const v of variables) b.uploadToGPU(v.dataId);
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    for (const v of variables) {
      const home = this.homes.get(v)!;
      b.commandEncoder!.copyBufferToBuffer(bufferOf(b, v)!, 0, home, 0, home.size);
      this.agreed.set(v, bufferOf(b, v));
    }
    b.submitQueue();
  }

  run(inputs: (key: string) => Float32Array, stepBlock: number[]): tf.Scalar {
    const b = this.b;
    const moved = this.moved();
    if (moved.length > 0) this.pull(moved);
    // The host's batch arrays are never shared memory.
    for (const [name, buffer] of this.inputBuffers) b.queue.writeBuffer(buffer, 0, inputs(name) as Float32Array<ArrayBuffer>);
    b.queue.writeBuffer(this.stepBlock, 0, stepBlockData(stepBlock));
    // tfjs's own pending work goes first: the previous step's loss reads and anything else queued.
    submitPending(b);
    const encoder = b.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    let pipeline: GPUComputePipeline | undefined;
    this.launches.forEach((launch, i) => {
      if (launch.pipeline !== pipeline) pass.setPipeline((pipeline = launch.pipeline));
      pass.setBindGroup(0, this.groups[i]);
      pass.dispatchWorkgroups(launch.workgroups[0], launch.workgroups[1], launch.workgroups[2]);
    });
    pass.end();
    for (const [v, result] of this.results) encoder.copyBufferToBuffer(result, 0, this.homes.get(v)!, 0, result.size);
    const loss = b.makeTensorInfo([], 'float32');
    b.uploadToGPU(loss.dataId);
    encoder.copyBufferToBuffer(this.lossBuffer, 0, bufferOf(b, loss)!, 0, 4);
    b.queue.submit([encoder.finish()]);
    this.ahead = true;
    for (const listener of replayListeners) listener(this.launches.length);
    return tf.engine().makeTensorFromTensorInfo(loss) as tf.Scalar;
  }

  /** Writes the graph's values into the variables the step assigns, as new tensors, except where tfjs's are newer. */
  push(): void {
    if (!this.ahead) return;
    const b = this.b;
    const moved = new Set(this.moved());
    const fresh = [...this.results.keys()]
      .filter((v) => !v.isDisposed && !moved.has(v))
      .map((v) => {
        const info = b.makeTensorInfo(v.shape, 'float32');
        b.uploadToGPU(info.dataId);
        return [v, info] as const;
      });
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    for (const [v, info] of fresh) {
      const home = this.homes.get(v)!;
      b.commandEncoder!.copyBufferToBuffer(home, 0, bufferOf(b, info)!, 0, home.size);
      b.commandQueueOwnedIds.add(info.dataId);
    }
    // Submitted now: the graph's buffers may be destroyed right after (drop).
    b.submitQueue();
    for (const [v, info] of fresh) {
      const value = tf.engine().makeTensorFromTensorInfo(info);
      v.assign(value);
      value.dispose();
      this.agreed.set(v, bufferOf(b, v));
    }
    this.ahead = false;
  }

  dispose(): void {
    for (const buffer of this.owned) buffer.destroy();
    const pool = this.b.bufferManager;
    for (const buffer of this.taken) {
      pool.freeBuffers.get(`${buffer.size}_${buffer.usage}`)?.push(buffer);
      pool.numFreeBuffers++;
    }
  }
}

/** Takes `buffer` out of tfjs's pool of free buffers (tfjs 4.22's BufferManager keys them by size and usage); false when it is not free. */
function takeFromPool(b: Backend, buffer: GPUBuffer): boolean {
  const pool = b.bufferManager;
  const free = pool.freeBuffers.get(`${buffer.size}_${buffer.usage}`);
  const at = free?.indexOf(buffer) ?? -1;
  if (at < 0) return false;
  free!.splice(at, 1);
  pool.numFreeBuffers--;
  return true;
}

/**
 * How many consecutive pairs of recordings may disagree before a stage stops
 * recording. A stage's first step always differs from its second (the
 * optimiser makes its state, SGD starts its momentum).
 */
const ATTEMPTS = 3;

/**
 * One training stage's step graph: `record` runs a step through tfjs (and
 * records it while no graph is ready); `replay` runs it from the graph once
 * one is, for the same shapes on the same device; `sync` makes the model's
 * variables current.
 */
export class StepReplay {
  private graph: StepGraph | undefined;
  /** A recording that agreed with the one before it, compiled at the next replay, once its step's tensors are gone. */
  private ready: { recording: Recording; shapes: string } | undefined;
  private previous: Recording | undefined;
  private disagreements = 0;
  /** Why this stage's step is not replayed, once it is known. */
  private refusal: string | undefined;

  constructor(private readonly log: (message: string) => void = () => {}) {}

  private backend(): Backend {
    return tf.backend() as unknown as Backend;
  }

  /** The step from the graph, or undefined when there is none for these shapes on this device (then call `record`). */
  replay(inputs: (key: string) => Float32Array, shapes: string, stepBlock: number[]): tf.Scalar | undefined {
    if (tf.getBackend() === 'webgpu') this.compile(shapes);
    const graph = this.graph;
    if (!graph) return undefined;
    if (tf.getBackend() !== 'webgpu' || graph.b !== this.backend() || graph.shapes !== shapes || !graph.usable()) {
      this.drop();
      return undefined;
    }
    return graph.run(inputs, stepBlock);
  }

  /** Runs `step` through tfjs; while no graph is ready and recording has not been given up, records it. */
  record<T extends tf.Tensor>(inputs: StepInputs, shapes: string, step: () => T): T {
    if (this.graph || this.ready || this.refusal !== undefined || tf.getBackend() !== 'webgpu') return step();
    const b = this.backend();
    const capture = this.previous !== undefined;
    // What came before the step is then on the queue ahead of the copies the recording captures.
    submitPending(b);
    const recording = new Recording(b, inputs, capture);
    const upload = b.uploadToGPU;
    b.uploadToGPU = (dataId: object) => recording.upload(dataId, upload.bind(b));
    active = recording;
    let out: T;
    try {
      out = step();
    } finally {
      active = null;
      b.uploadToGPU = upload;
    }
    recording.finish(out);
    this.consider(recording, shapes);
    return out;
  }

  private consider(recording: Recording, shapes: string): void {
    const previous = this.previous;
    this.previous = undefined;
    const why = recording.failure ?? (previous ? difference(previous, recording) : undefined);
    previous?.dispose();
    if (why === undefined) {
      if (previous) {
        this.ready = { recording, shapes };
        this.disagreements = 0;
      } else {
        this.previous = recording;
      }
    } else if (recording.failure || ++this.disagreements >= ATTEMPTS) {
      this.refusal = why;
      recording.dispose();
      this.log(`WebGPU step replay off for this stage: ${why}`);
    } else {
      this.previous = recording;
    }
  }

  /** The agreed recording as a graph, if it is for these shapes on the active backend. */
  private compile(shapes: string): void {
    const agreed = this.ready;
    if (!agreed) return;
    this.ready = undefined;
    if (agreed.shapes === shapes && agreed.recording.b === this.backend()) {
      // tfjs's deferred disposals first: the step's buffers return to its pool, and the graph takes them from there.
      const b = agreed.recording.b;
      submitPending(b);
      this.graph = new StepGraph(b, agreed.recording, shapes);
    }
    agreed.recording.dispose();
  }

  /** The graph's latest values into the model's variables; call before anything reads the model. */
  sync(): void {
    this.graph?.push();
  }

  /** Syncs, then forgets the graph (the batch changes, the device went away, the stage ends). */
  drop(): void {
    if (!this.graph) return;
    // After a lost device the graph's buffers belong to a device that is gone: the run resumes from its checkpoint.
    if (this.graph.b === this.backend()) this.graph.push();
    this.graph.dispose();
    this.graph = undefined;
  }

  dispose(): void {
    this.drop();
    for (const recording of [this.previous, this.ready?.recording]) recording?.dispose();
    this.previous = undefined;
    this.ready = undefined;
  }
}
