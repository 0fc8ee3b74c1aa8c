/**
 * Counts the WebGPU programs tfjs actually dispatches, by program class, at
 * the backend (recordAndSubmit), and ours that bind their own outputs
 * (own-dispatch.ts) by label: kernels that only share data (Reshape,
 * Identity, a float cast of a float) or run on the CPU are not dispatches and
 * are not counted. Deterministic for a given model, batch and backend
 * settings, unlike per-kernel timings, so the bench can report it anywhere.
 */
import * as tf from '@tensorflow/tfjs';
import { onOwnDispatch } from './own-dispatch.ts';
import { onReplay } from './step-graph.ts';

interface Recorder {
  recordAndSubmit(program: { constructor: { name: string }; label?: string }, ...rest: unknown[]): void;
}

export interface DispatchCount {
  total: number;
  byProgram: Record<string, number>;
  /**
   * Milliseconds of JavaScript (and the WebGPU calls it makes: uniform
   * write, bind group, dispatch, submit) spent launching tfjs's programs
   * (recordAndSubmit); host-clock.ts measures a whole step's host cost.
   */
  launchMs: number;
}

export class DispatchCounter {
  private counts = new Map<string, number>();
  private launchMs = 0;
  private readonly original: Recorder['recordAndSubmit'];
  private readonly stopOwn: () => void;
  private readonly stopReplay: () => void;

  constructor(private readonly backend: Recorder) {
    this.original = backend.recordAndSubmit;
    const counts = this.counts;
    const original = this.original;
    const self = this;
    backend.recordAndSubmit = function (this: Recorder, program, ...rest) {
      // tfjs's programs are classes; ours are labelled objects.
      const name = program.label ?? program.constructor.name;
      counts.set(name, (counts.get(name) ?? 0) + 1);
      const started = performance.now();
      original.call(this, program, ...rest);
      self.launchMs += performance.now() - started;
    };
    this.stopOwn = onOwnDispatch((label) => counts.set(label, (counts.get(label) ?? 0) + 1));
    // A replayed step launches the programs it recorded, by label too many to keep apart here.
    this.stopReplay = onReplay((dispatches) => counts.set('replayed step', (counts.get('replayed step') ?? 0) + dispatches));
  }

  /** The active backend's counter; undefined unless it is webgpu. */
  static attach(): DispatchCounter | undefined {
    if (tf.getBackend() !== 'webgpu') return undefined;
    return new DispatchCounter(tf.backend() as unknown as Recorder);
  }

  /** Counts since the last reset, largest first. */
  take(): DispatchCount {
    const sorted = [...this.counts].sort((a, b) => b[1] - a[1]);
    const result = { total: sorted.reduce((sum, [, n]) => sum + n, 0), byProgram: Object.fromEntries(sorted), launchMs: this.launchMs };
    this.counts.clear();
    this.launchMs = 0;
    return result;
  }

  detach(): void {
    this.backend.recordAndSubmit = this.original;
    this.stopOwn();
    this.stopReplay();
  }
}
