/**
 * The studio's Compare: two or more trained models (stages of runs, the arms
 * of a fine-tune) side by side on the same images. Which models are one arm,
 * what their cards differ in, their validation curves, and the paired
 * comparison of compareArms (scoring/compare.ts), which `lesion-studio
 * compare` prints too.
 *
 * Seeds of one card are one arm: models of different runs whose cards differ
 * in nothing but the seed and the name, at the same stage. A model picked
 * twice stays two arms, so a model against itself reads exactly 0 [0, 0].
 * When every pick falls into one arm (two seeds of one card, say), each is
 * its own arm: the comparison of single runs, with its warning.
 */
import { cardDifferences, type RunCard } from '../config.ts';
import { STAGE_TITLES, type MetricSummary, type TrainerEvent } from '../events.ts';
import type { ScoredImage } from '../scoring/bootstrap.ts';
import { compareArms, type Comparison, type CompareArm, type CompareOptions } from '../scoring/compare.ts';
import { LesionError } from '../errors.ts';
import type { RunStore, StoredImageScore, TrainingStage } from './run-store.ts';

/** One model's scores on its test images, and what Compare shows beside them. */
export interface ModelScores {
  /** Unique among the picks: run, stage and, for a fine-tune, its arm. */
  key: string;
  name: string;
  runId: string;
  stage: TrainingStage;
  card: RunCard;
  images: ScoredImage[];
  /** Validation figures per epoch. */
  curve: { epoch: number; metrics: MetricSummary }[];
}

export interface CardField {
  field: string;
  /** Each model's value, in the order picked (undefined where a card lacks the field). */
  values: unknown[];
}

export interface ModelComparison {
  models: { key: string; name: string; runId: string; stage: TrainingStage; seed: number; curve: ModelScores['curve'] }[];
  /** The card fields whose values differ between any of the models, seed included. */
  differing: CardField[];
  /** For each arm of `comparison`, the positions in `models` of its runs. */
  arms: number[][];
  /** Whether seeds of one card were pooled into arms (else every model is an arm). */
  pooledSeeds: boolean;
  comparison: Comparison;
}

/** How Compare names a model: the card's name and seed, and the stage. */
export function modelName(card: RunCard, stage: TrainingStage): string {
  return `${card.name} (seed ${card.seed}) · ${STAGE_TITLES[stage]}`;
}

/** Per-image counts fit for resampling, or an error naming the model stored before they were kept. */
export function scoredImages(perImage: readonly StoredImageScore[], name: string): ScoredImage[] {
  return perImage.map((s) => {
    if (!s.confusion || s.batch === undefined) throw new LesionError('storage', `${name} was stored before per-image counts were kept; train it again to compare it`);
    return { id: s.id, confusion: s.confusion, batch: s.batch };
  });
}

/** A stage's scores as its run stored them; runs stored before per-image counts were kept cannot be compared. */
export async function stageScores(run: RunStore, stage: TrainingStage): Promise<ModelScores> {
  const [card, perImage, history] = await Promise.all([run.card(), run.perImage(stage), run.history<{ event: TrainerEvent }>()]);
  if (!card) throw new LesionError('storage', `run ${run.runId} is not stored here`);
  const name = modelName(card, stage);
  if (!perImage || perImage.length === 0) throw new LesionError('dataset', `${name} was tested on no images: a run without a test part cannot be compared`);
  const images = scoredImages(perImage, name);
  const byEpoch = new Map<number, MetricSummary>();
  for (const { event } of history) if (event.type === 'epoch' && event.stage === stage) byEpoch.set(event.epoch, event.metrics);
  const curve = [...byEpoch].sort((a, b) => a[0] - b[0]).map(([epoch, metrics]) => ({ epoch, metrics }));
  return { key: `${run.runId}/${stage}`, name, runId: run.runId, stage, card, images, curve };
}

/** The card as run: a card without a split seed split its images with its seed. */
const asRun = (card: RunCard): RunCard => ({ ...card, data: { ...card.data, splitSeed: card.data.splitSeed ?? card.seed } });

/** What makes two cards seeds of one recipe: everything but the seed, the name and the backend. */
const cardRecipe = (card: RunCard): string => JSON.stringify({ ...asRun(card), seed: 0, name: '', backend: 'auto' });

export function sameRecipe(a: RunCard, b: RunCard): boolean {
  return cardRecipe(a) === cardRecipe(b);
}

const recipe = (m: ModelScores): string => `${cardRecipe(m.card)}/${m.stage}/${m.key.split('/')[2] ?? ''}`;

/** Each model's position in its arm: seeds of one recipe together, a model never twice in one arm. */
function groupSeeds(models: readonly ModelScores[]): number[][] {
  const arms: number[][] = [];
  models.forEach((m, i) => {
    const arm = arms.find((a) => recipe(models[a[0]]) === recipe(m) && !a.some((j) => models[j].runId === m.runId));
    if (arm) arm.push(i);
    else arms.push([i]);
  });
  return arms;
}

export function compareModels(picked: readonly ModelScores[], options: CompareOptions = {}): ModelComparison {
  if (picked.length < 2) throw new LesionError('config', 'pick two models or more to compare');
  const fields = new Set<string>();
  for (let i = 0; i < picked.length; i++) {
    for (let j = i + 1; j < picked.length; j++) for (const d of cardDifferences(asRun(picked[i].card), asRun(picked[j].card))) fields.add(d.field);
  }
  const valueAt = (card: RunCard, field: string): unknown => field.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], card);
  const differing = [...fields].sort().map((field) => ({ field, values: picked.map((m) => valueAt(asRun(m.card), field)) }));
  // Models of one name (a card run twice with a change, or one model picked twice) are told apart by what differs, else by their place.
  const models = picked.map((m, i) => {
    if (!picked.some((o, j) => j !== i && o.name === m.name)) return m;
    const own = differing.filter((f) => f.field !== 'name').map((f) => `${f.field} ${JSON.stringify(f.values[i])}`);
    return { ...m, name: `${m.name}, ${own.length > 0 ? own.join(', ') : `#${i + 1}`}` };
  });

  const grouped = groupSeeds(models);
  const pooledSeeds = grouped.length >= 2 && grouped.length < models.length;
  const arms = pooledSeeds ? grouped : models.map((_, i) => [i]);
  const armOf = (positions: number[]): CompareArm => {
    const first = models[positions[0]];
    const seeds = positions.map((i) => models[i].card.seed);
    return {
      name: positions.length === 1 ? first.name : first.name.replace(`(seed ${first.card.seed})`, `(seeds ${seeds.join(', ')})`),
      runs: positions.map((i) => ({ name: models[i].name, images: models[i].images, seed: models[i].card.seed })),
    };
  };
  return {
    models: models.map((m) => ({ key: m.key, name: m.name, runId: m.runId, stage: m.stage, seed: m.card.seed, curve: m.curve })),
    differing,
    arms,
    pooledSeeds,
    comparison: compareArms(arms.map(armOf), options),
  };
}
