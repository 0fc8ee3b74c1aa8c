/**
 * What a run tells the world. The pipeline emits these through an EventSink;
 * the Node runner prints them, the worker forwards them to the page, tests
 * collect them. Plain data only (structured-clonable).
 */
import type { FailureCode } from './errors.ts';
import type { MetricReport } from './scoring/metrics.ts';
import type { Uncertainty } from './scoring/bootstrap.ts';

export type StageName = 'teacher' | 'pseudo-teacher' | 'student' | 'pseudo-student' | 'student-star';

export const STAGE_TITLES: Record<StageName, string> = {
  teacher: 'Teacher',
  'pseudo-teacher': 'Pseudo-labels (teacher)',
  student: 'Noisy student',
  'pseudo-student': 'Pseudo-labels (student)',
  'student-star': 'Student*',
};

/** Metrics without the per-image list, for charts and tables. */
export type MetricSummary = Omit<MetricReport, 'perImage'>;

/** A test split's figures with their 95 % intervals (bootstrap.ts); runs stored before intervals were kept lack them. */
export type TestFigures = MetricSummary & Partial<Uncertainty>;

export interface PseudoLabelRecord {
  /** Sample id of the unlabeled image. */
  id: string;
  image: string;
  /** Key of the stored mask in the key-value store. */
  key: string;
  lesionFraction: number;
  /** Mean binary entropy of the lesion probability, in bits (0 = certain). */
  uncertainty: number;
  /** Too little lesion: left out of training. */
  dropped: boolean;
}

export type TrainerEvent =
  | { type: 'run'; runId: string; status: 'started' | 'resumed' | 'paused' | 'continued' | 'cancelled' | 'completed'; message?: string }
  /** The code says what kind of failure it was, so no one has to read it from the message. */
  | { type: 'run'; runId: string; status: 'failed'; message: string; code: FailureCode }
  | { type: 'stage'; stage: StageName; status: 'started' | 'completed' | 'skipped'; message?: string }
  | {
      type: 'step';
      stage: StageName;
      epoch: number;
      /** Step within the stage, from 1. */
      step: number;
      totalSteps: number;
      loss: number;
      imagesPerSecond: number;
      etaSeconds: number;
      numTensors: number;
      numBytes: number;
      /** WebGPU programs the step dispatched (dispatches.ts): the figure the studio and the CLI must agree on; absent on other backends. */
      dispatches?: number;
      /**
       * WebGPU: milliseconds from calling the step until it returned with its work enqueued. In a browser,
       * where submits go to the GPU process, and on a graphics card, that is the host's cost of the step;
       * on lavapipe (Node) it also holds the arithmetic of the submits, which run in the calling thread.
       */
      issueMs?: number;
    }
  | { type: 'epoch'; stage: StageName; epoch: number; epochs: number; metrics: MetricSummary; ema: number; best: boolean; seconds: number }
  | { type: 'evaluation'; stage: StageName; split: 'val' | 'test'; bySet: Record<string, TestFigures>; overall: TestFigures }
  | { type: 'pseudo'; stage: StageName; done: number; total: number; kept: number; dropped: number; imagesPerSecond: number }
  | { type: 'checkpoint'; stage: StageName; epoch: number; step: number; kind: 'latest' | 'best'; bytes: number }
  | { type: 'progress'; task: string; done: number; total: number; etaSeconds?: number }
  | { type: 'warning'; message: string; file?: string }
  | { type: 'log'; message: string };

export type EventSink = (event: TrainerEvent) => void;
