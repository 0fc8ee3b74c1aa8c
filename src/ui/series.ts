/**
 * The Train view's chart data, built from what a run recorded. Steps lie on
 * one axis for the whole run (each training stage's steps after the stage
 * before it), one point per recorded step in step order: a step trained again
 * after a resume replaces the earlier point, so lines never run back. Time is
 * kept per point for the tooltip, never used as the axis (points arrive in
 * batches, and a run resumed a day later would squash the rest). Validation
 * sits at the step that ended its epoch. Free of Svelte and the DOM, so the
 * unit tests build it from a real stage's events.
 */
import type { MetricSummary, StageName } from '../core/events.ts';

export interface StepPoint {
  stage: StageName;
  /** Step within the stage, from 1. */
  step: number;
  /** The epoch the step belongs to, from 1. */
  epoch: number;
  totalSteps: number;
  loss: number;
  imagesPerSecond: number;
  /** When the page heard of it, in seconds since 1970. */
  at: number;
}

export interface EpochPoint {
  stage: StageName;
  epoch: number;
  epochs: number;
  metrics: MetricSummary;
  at: number;
}

export interface ChartSeries {
  steps: {
    /** Position on the run's step axis. */
    x: number[];
    stage: StageName[];
    step: number[];
    epoch: number[];
    loss: number[];
    speed: number[];
    at: number[];
  };
  epochs: {
    x: number[];
    stage: StageName[];
    epoch: number[];
    paperMIoU: number[];
    lesionIoU: number[];
    dice: number[];
    at: number[];
  };
  /** Between the last step of one epoch and the first of the next (`epoch`), within a stage. */
  epochLines: { x: number; epoch: number }[];
  /** Just before each training stage's first step. */
  stageStarts: { x: number; stage: StageName }[];
}

/** `stages` is the run's stage order; a stage it does not name goes after them. */
export function chartSeries(steps: Iterable<StepPoint>, epochs: Iterable<EpochPoint>, stages: readonly StageName[]): ChartSeries {
  const byStage = new Map<StageName, Map<number, StepPoint>>();
  for (const point of steps) {
    let points = byStage.get(point.stage);
    if (!points) byStage.set(point.stage, (points = new Map()));
    // The later report of a step (trained again after a resume) is the one that counts.
    points.set(point.step, point);
  }
  const order = [...stages, ...[...byStage.keys()].filter((stage) => !stages.includes(stage))];
  const out: ChartSeries = {
    steps: { x: [], stage: [], step: [], epoch: [], loss: [], speed: [], at: [] },
    epochs: { x: [], stage: [], epoch: [], paperMIoU: [], lesionIoU: [], dice: [], at: [] },
    epochLines: [],
    stageStarts: [],
  };
  const offsets = new Map<StageName, { offset: number; totalSteps: number }>();
  let offset = 0;
  for (const stage of order) {
    const points = byStage.get(stage);
    if (!points) continue;
    const sorted = [...points.values()].sort((a, b) => a.step - b.step);
    // The latest numbering: a batch halved by the device renumbers the steps that follow.
    const totalSteps = sorted.at(-1)!.totalSteps;
    offsets.set(stage, { offset, totalSteps });
    out.stageStarts.push({ x: offset + 0.5, stage });
    sorted.forEach((p, i) => {
      const x = offset + p.step;
      if (i > 0 && p.epoch !== sorted[i - 1].epoch) out.epochLines.push({ x: (x + out.steps.x.at(-1)!) / 2, epoch: p.epoch });
      out.steps.x.push(x);
      out.steps.stage.push(stage);
      out.steps.step.push(p.step);
      out.steps.epoch.push(p.epoch);
      out.steps.loss.push(p.loss);
      out.steps.speed.push(p.imagesPerSecond);
      out.steps.at.push(p.at);
    });
    offset += Math.max(totalSteps, sorted.at(-1)!.step);
  }

  const byEpoch = new Map<string, EpochPoint>();
  for (const e of epochs) byEpoch.set(`${e.stage}\u0000${e.epoch}`, e);
  const placed = [...byEpoch.values()]
    .filter((e) => offsets.has(e.stage))
    .map((e) => {
      const { offset: start, totalSteps } = offsets.get(e.stage)!;
      return { e, x: start + (e.epoch * totalSteps) / e.epochs };
    })
    .sort((a, b) => a.x - b.x);
  for (const { e, x } of placed) {
    out.epochs.x.push(x);
    out.epochs.stage.push(e.stage);
    out.epochs.epoch.push(e.epoch);
    out.epochs.paperMIoU.push(e.metrics.paperMIoU);
    out.epochs.lesionIoU.push(e.metrics.lesionIoU);
    out.epochs.dice.push(e.metrics.dice);
    out.epochs.at.push(e.at);
  }
  return out;
}
