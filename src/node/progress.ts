/**
 * Renders trainer events on a terminal: a one-line progress bar with ETA on
 * a TTY, plain lines otherwise (CI logs).
 */
import { STAGE_TITLES, type TrainerEvent } from '../core/events.ts';
import type { CliIo } from './command.ts';

const fmtTime = (s: number): string => {
  if (!Number.isFinite(s)) return '--';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
};

const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '--');

export class ProgressPrinter {
  private live = false;
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(private readonly io: CliIo) {}

  show(e: TrainerEvent): void {
    switch (e.type) {
      case 'step': {
        const width = 24;
        const filled = Math.round((width * e.step) / e.totalSteps);
        const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
        const line = `${STAGE_TITLES[e.stage]} [${bar}] step ${e.step}/${e.totalSteps} epoch ${e.epoch} loss ${e.loss.toFixed(4)} ${e.imagesPerSecond.toFixed(2)} img/s ETA ${fmtTime(e.etaSeconds)}${e.dispatches === undefined ? '' : ` ${e.dispatches} WebGPU dispatches`}`;
        if (this.tty) {
          process.stderr.write(`\r${line.padEnd(120)}`);
          this.live = true;
        } else if (e.step % 10 === 0 || e.step === e.totalSteps) {
          this.line(line);
        }
        return;
      }
      case 'epoch':
        this.line(`${STAGE_TITLES[e.stage]} epoch ${e.epoch}/${e.epochs}: paper mIoU ${pct(e.metrics.paperMIoU)} lesion IoU ${pct(e.metrics.lesionIoU)} Dice ${pct(e.metrics.dice)} (EMA ${pct(e.ema)})${e.best ? ' best' : ''} in ${fmtTime(e.seconds)}`);
        return;
      case 'evaluation': {
        const { overall } = e;
        // Lesion IoU's interval, the headline figure's; the others are in metrics.json and metrics.csv.
        const interval = overall.ci95 ? ` [${pct(overall.ci95.lesionIoU[0])}, ${pct(overall.ci95.lesionIoU[1])}]` : '';
        this.line(
          `${STAGE_TITLES[e.stage]} ${e.split}: paper mIoU ${pct(overall.paperMIoU)} lesion IoU ${pct(overall.lesionIoU)}${interval} Dice ${pct(overall.dice)} ` +
            `thresholded Jaccard ${pct(overall.thresholdedJaccard)} on ${overall.images} images${overall.note ? ` (${overall.note})` : ''}`,
        );
        return;
      }
      case 'pseudo':
        if (this.tty) {
          process.stderr.write(`\r${STAGE_TITLES[e.stage]}: ${e.done}/${e.total} images, ${e.kept} kept, ${e.dropped} dropped, ${e.imagesPerSecond.toFixed(2)} img/s`.padEnd(120));
          this.live = true;
        } else if (e.done === e.total) {
          this.line(`${STAGE_TITLES[e.stage]}: ${e.total} images, ${e.kept} kept, ${e.dropped} dropped`);
        }
        return;
      case 'stage':
        this.line(`== ${STAGE_TITLES[e.stage]}: ${e.status}${e.message ? ` (${e.message})` : ''}`);
        return;
      case 'run':
        this.line(`run ${e.runId}: ${e.status}${e.message ? `: ${e.message}` : ''}`);
        return;
      case 'warning':
        this.line(`warning: ${e.message}`);
        return;
      case 'log':
        this.line(e.message);
        return;
      case 'checkpoint':
      case 'progress':
        return;
    }
  }

  private line(text: string): void {
    this.end();
    this.io.err(text);
  }

  end(): void {
    if (this.live) process.stderr.write('\n');
    this.live = false;
  }
}
