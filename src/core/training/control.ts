/**
 * Pause, resume and cancel at step granularity. The loop calls
 * `await control.checkpoint()` between steps; the host flips the state.
 */
export class CancelledError extends Error {
  constructor() {
    super('the run was cancelled');
    this.name = 'CancelledError';
  }
}

export type RunState = 'running' | 'paused' | 'cancelled';

export class RunControl {
  private current: RunState = 'running';
  private wake: (() => void) | undefined;

  get state(): RunState {
    return this.current;
  }

  pause(): void {
    if (this.current === 'running') this.current = 'paused';
  }

  resume(): void {
    if (this.current !== 'paused') return;
    this.current = 'running';
    this.wake?.();
  }

  cancel(): void {
    this.current = 'cancelled';
    this.wake?.();
  }

  /** Resolves when the loop may take its next step; throws once cancelled. */
  async checkpoint(onPause?: () => void): Promise<void> {
    if (this.current === 'paused') {
      onPause?.();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
    if (this.current === 'cancelled') throw new CancelledError();
  }
}
