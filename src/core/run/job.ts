/**
 * A job: the run a card describes, packed for a PyTorch cluster
 * (python/lesion_studio_torch under torchrun). It holds what the studio
 * decides before training starts, so the cluster runs the same experiment:
 * the card; the split planSplit makes (the one a studio run of this card
 * trains, validates and tests on) as a manifest of image paths relative to
 * the data roots it names; expert labels as mask files; the model the stages
 * start from in the studio's own format (its topology is what the job
 * writes every stage's weights into, so they come back as studio models);
 * and a README with the command lines.
 */
import type * as tf from '@tensorflow/tfjs';
import type { RunCard } from '../config.ts';
import { hasExpertLabel, type ExpertLabel } from '../active/labels.ts';
import type { Sample } from '../dataset/layouts.ts';
import { LesionError } from '../errors.ts';
import type { EventSink, StageName } from '../events.ts';
import { plannedStages } from './display.ts';
import { buildDeepLabV3 } from '../model/deeplab.ts';
import { exportMetadata, initialiseEncoder, loadStageModel, planSplit, type RunInputs } from './pipeline.ts';
import { expertLabelFiles, maskFileName, modelFiles, type ProductFile } from './products.ts';
import type { RunStore, TrainingStage } from './run-store.ts';

export const JOB_FORMAT = 'lesion-studio-job/1';
export const JOB_FILE = 'job.json';
export const JOB_INIT_DIR = 'init';
export const JOB_EXPERT_DIR = 'expert-labels';

export type JobSplit = 'train' | 'val' | 'test' | 'unlabeled';

export interface JobImage {
  id: string;
  set: string;
  role: 'labeled' | 'unlabeled';
  split: JobSplit;
  /** The data root (a folder name in `roots`) the paths below are relative to. */
  root: string;
  image: string;
  /** Relative to the root, or to the job folder when `maskInJob` (an expert label). */
  mask?: string;
  maskInJob?: true;
}

export interface JobManifest {
  format: typeof JOB_FORMAT;
  createdAt: string;
  card: RunCard;
  /** Each data root by folder name, where the exporting host found it; the cluster may point a name elsewhere. */
  roots: Record<string, string>;
  /** The folder (studio model format) every training stage starts from, and what its weights are. */
  init: { dir: typeof JOB_INIT_DIR; from: string };
  stages: StageName[];
  counts: Record<JobSplit, number> & { labelsHidden: number };
  images: JobImage[];
}

export interface JobSpec {
  card: RunCard;
  inputs: RunInputs;
  roots: Record<string, string>;
  /** The card's model in its export build, holding the weights the stages start from, and what they are. */
  init: { model: tf.LayersModel; from: string };
  /** Saved labels for the inputs' expert-labeled images (the Label view's). */
  expertLabels?: ExpertLabel[];
  /** Where python/ (the lesion_studio_torch package) and the job itself are, for the README's command lines. */
  packageRoot?: string;
  location?: string;
  emit?: EventSink;
}

/** What a job's init/ holds when it starts from the card's own initialisation (as a run of the card starts). */
export function cardInitDescription(card: RunCard): string {
  return card.model.init === 'nsfwjs' || card.model.init === 'imagenet-through-block10'
    ? `the offline MobileNetV2 encoder (${card.model.init}), the rest drawn from the card's seed`
    : 'weights drawn from the card\'s seed, as the studio draws them';
}

/**
 * The model a job starts from, in its export build, and what its weights are:
 * a stored run's stage (its best checkpoint), or the card's own
 * initialisation, for which a card asking for the user's weights needs them
 * given as `userHint` says. The caller disposes the model.
 */
export async function jobStartModel(card: RunCard, start: { run: RunStore; stage: TrainingStage } | { userHint: string; emit?: EventSink }): Promise<JobSpec['init']> {
  if ('run' in start) {
    const { model } = await loadStageModel(start.run.kv, start.run.runId, start.stage);
    return { model, from: `the best checkpoint of ${start.stage} in run ${start.run.runId}` };
  }
  if (card.model.init === 'user') throw new LesionError('model', `model.init is "user": ${start.userHint}`);
  const model = buildDeepLabV3(card.model, 'export', card.seed);
  try {
    await initialiseEncoder(card, model, undefined, start.emit ?? (() => {}));
  } catch (error) {
    model.dispose();
    throw error;
  }
  return { model, from: cardInitDescription(card) };
}

export async function jobFiles(spec: JobSpec): Promise<ProductFile[]> {
  const { card, roots } = spec;
  const plan = planSplit(card, spec.inputs, spec.emit);
  const labels = new Map((spec.expertLabels ?? []).map((l) => [l.image, l]));
  const usedLabels: ExpertLabel[] = [];
  const entry = (sample: Sample, split: JobSplit): JobImage => {
    const slash = sample.image.indexOf('/');
    const root = sample.image.slice(0, slash);
    if (slash < 0 || !Object.hasOwn(roots, root)) throw new LesionError('dataset', `is not below any of the job's data roots (${Object.keys(roots).join(', ')})`, sample.image);
    const image: JobImage = { id: sample.id, set: sample.set, role: split === 'unlabeled' ? 'unlabeled' : 'labeled', split, root, image: sample.image.slice(slash + 1) };
    if (split === 'unlabeled' || !sample.mask) return image;
    if (hasExpertLabel(sample)) {
      const label = labels.get(sample.image);
      if (!label) throw new LesionError('dataset', 'is expert-labeled but its label was not handed to the job', sample.image);
      usedLabels.push(label);
      return { ...image, mask: `${JOB_EXPERT_DIR}/${maskFileName(label.id)}`, maskInJob: true };
    }
    if (!sample.mask.startsWith(`${root}/`)) throw new LesionError('dataset', `its mask ${sample.mask} is under another root than the image`, sample.image);
    return { ...image, mask: sample.mask.slice(root.length + 1) };
  };
  const images = [
    ...plan.train.map((s) => entry(s, 'train')),
    ...plan.val.map((s) => entry(s, 'val')),
    ...plan.test.map((s) => entry(s, 'test')),
    ...plan.unlabeled.map((s) => entry(s, 'unlabeled')),
  ];
  const manifest: JobManifest = {
    format: JOB_FORMAT,
    createdAt: new Date().toISOString(),
    card,
    roots,
    init: { dir: JOB_INIT_DIR, from: spec.init.from },
    stages: plannedStages(card),
    counts: { train: plan.train.length, val: plan.val.length, test: plan.test.length, unlabeled: plan.unlabeled.length, labelsHidden: plan.labelsHidden },
    images,
  };
  const text = (s: string): Uint8Array => new TextEncoder().encode(s);
  // The init's metadata is the template every stage's metadata.json is written from (stage and results replaced).
  const init = await modelFiles(spec.init.model, exportMetadata(card, 'teacher', null));
  return [
    { name: JOB_FILE, bytes: text(`${JSON.stringify(manifest, null, 2)}\n`) },
    { name: 'run-card.json', bytes: text(`${JSON.stringify(card, null, 2)}\n`) },
    ...init.map((f) => ({ ...f, name: `${JOB_INIT_DIR}/${f.name}` })),
    ...(usedLabels.length > 0 ? expertLabelFiles(usedLabels).map((f) => ({ ...f, name: `${JOB_EXPERT_DIR}/${f.name}` })) : []),
    { name: 'README.md', bytes: text(jobReadme(manifest, spec.packageRoot ?? '<lesion-studio checkout>/python', spec.location ?? '<this folder>')) },
  ];
}

function jobReadme(job: JobManifest, packageRoot: string, location: string): string {
  const c = job.counts;
  const rootLines = Object.entries(job.roots).map(([name, where]) => `- \`${name}\`: ${where}`);
  return `# Lesion Studio job: ${job.card.name}

Exported ${job.createdAt}. Stages: ${job.stages.join(', ')}. Split: ${c.train} train, ${c.val} val, ${c.test} test labeled images; ${c.unlabeled} unlabeled${c.labelsHidden > 0 ? ` (${c.labelsHidden} with their masks hidden by data.labeledFraction)` : ''}. The stages start from \`${JOB_INIT_DIR}/\` (${job.init.from}).

Data roots (paths in \`${JOB_FILE}\` are relative to them):

${rootLines.join('\n')}

On another machine, point a root elsewhere with \`--data-root <name>=<path>\` (repeatable).

## Run

Needs Python 3 with PyTorch (1.13 or newer; on GPUs, a CUDA build), OpenCV (cv2) and numpy, and
Lesion Studio's \`python/\` folder on PYTHONPATH. One machine, N processes (N GPUs, or N CPU processes):

\`\`\`sh
PYTHONPATH=${packageRoot} torchrun --standalone --nproc_per_node <N> -m lesion_studio_torch ${location}
\`\`\`

Several machines (run on each; the same rendezvous endpoint):

\`\`\`sh
PYTHONPATH=${packageRoot} torchrun --nnodes <machines> --nproc_per_node <N> --rdzv_backend c10d --rdzv_endpoint <host>:29400 --rdzv_id lesion-studio-job -m lesion_studio_torch ${location}
\`\`\`

torch 1.13 on Python 3.11 (Debian 12's python3-torch) fails at start with \`AttributeError: 'NoneType'
object has no attribute 'get'\` (it cannot parse its own default \`--redirects 0\`): add
\`--redirects 2 --tee 2\` after \`--nproc_per_node <N>\` (workers' stderr to log files and the console).

The card's batch size is the global batch: it must be a multiple of the number of processes.
GPUs train with NCCL, SyncBatchNorm and, with \`--amp\`, mixed precision; CPUs with gloo. A stopped
job resumes from its last checkpoint when the same command runs again. Results go to \`out/\`:
per training stage \`<stage>/model/\` (open it in the studio, or \`lesion-studio eval --model\`) and
\`<stage>/metrics.json\`, per pseudo-label stage its masks and CSV, and the run's \`metrics.json\`
and \`metrics.csv\`.
`;
}
