/**
 * The split a run of the current card would use, planned by the worker with
 * the pipeline's own planSplit on the open data set: the Dataset view shows
 * it, and the Configure view checks it before a run starts.
 */
import type { SplitPreview, SplitPreviewRequest } from '../worker/api.ts';
import type { Trainer } from './client.ts';
import type { CardState } from './card.svelte.ts';

/** What the plan reads of the studio; named here so that this module does not import the studio that holds it. */
export interface SplitPlanHost {
  readonly card: CardState;
  readonly trainer: Pick<Trainer, 'previewSplit'>;
  /** Bumped whenever the open data set changes. */
  readonly datasetVersion: number;
  /** Role changes sent to the worker and not yet answered: until then any preview is of the old roles. */
  readonly rolesChanging: number;
}

export class SplitPlan {
  /** k for the cross-validation preview; below 2, none. */
  folds = $state(0);
  preview = $state<SplitPreview | undefined>();
  /** The worker's refusal of the split (e.g. fractions that leave nothing), as a run would give it. */
  problem = $state<string | undefined>();
  /** Whether preview and problem are those of the current card, data set and roles, not of an edit ago. */
  current = $derived.by(() => this.answeredFor === this.key && this.studio.rolesChanging === 0);

  private answeredFor = $state<string | undefined>();
  private readonly request = $derived.by((): SplitPreviewRequest => {
    const card = this.studio.card.card;
    return {
      seed: card.seed,
      split: $state.snapshot(card.data.split),
      unlabeledPerLabeled: card.data.unlabeledPerLabeled,
      labeledFraction: card.data.labeledFraction,
      folds: this.folds >= 2 ? this.folds : undefined,
    };
  });
  private readonly key = $derived.by(() => JSON.stringify([this.request, this.studio.datasetVersion]));

  constructor(private readonly studio: SplitPlanHost) {
    $effect.root(() => {
      $effect(() => {
        const [request, key] = [this.request, this.key];
        const timer = setTimeout(() => void this.refresh(request, key), 150);
        return () => clearTimeout(timer);
      });
    });
  }

  private async refresh(request: SplitPreviewRequest, key: string): Promise<void> {
    try {
      const preview = await this.studio.trainer.previewSplit(request);
      if (key !== this.key) return;
      [this.preview, this.problem] = [preview, undefined];
    } catch (error) {
      if (key !== this.key) return;
      this.problem = (error as Error).message;
    }
    this.answeredFor = key;
  }
}
