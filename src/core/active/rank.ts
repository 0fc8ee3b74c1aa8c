/**
 * The label queue: every pool image scored from a stage's best checkpoint
 * and ranked, highest score first (acquisition.ts says what each score is).
 * The studio's Label view shows the top of it with thumbnails; `lesion-studio
 * rank` prints it. An image that cannot be read is left out and listed.
 */
import type { RunCard } from '../config.ts';
import { loadSample } from '../dataset/loader.ts';
import type { Sample } from '../dataset/layouts.ts';
import { LesionError } from '../errors.ts';
import type { BinaryMask, FileSource, KeyValueStore, PixelDecoder, RgbImage } from '../io.ts';
import { buildDeepLabV3, copyWeights } from '../model/deeplab.ts';
import { RunStore, type TrainingStage } from '../run/run-store.ts';
import { withStageModel } from '../run/stage-model.ts';
import { predictLogits } from '../scoring/predict.ts';
import { readMask } from '../scoring/readout.ts';
import { explainRank, median, rankBy, scoreImages, scoreOf, type AcquisitionScore, type ImageScores } from './acquisition.ts';

export interface RankRequest {
  runId: string;
  stage: TrainingStage;
  score: AcquisitionScore;
  /** Dropout passes for 'mc-dropout'. */
  mcPasses: number;
}

export interface RankedImage {
  sample: Sample;
  /** From 1. */
  rank: number;
  /** The ranking score's value. */
  value: number;
  /** Why it ranks there, in words. */
  why: string;
  scores: ImageScores;
  /** The stage's mask at its input size, read through its readout. */
  mask: BinaryMask;
  lesionFraction: number;
}

export interface Ranking {
  card: RunCard;
  ranked: RankedImage[];
  /** Pool images that could not be read, with the reason. */
  skipped: { image: string; reason: string }[];
}

export async function rankPool(
  host: { source: FileSource; decoder: PixelDecoder; runs: KeyValueStore },
  pool: readonly Sample[],
  request: RankRequest,
  onProgress: (done: number, total: number) => void = () => {},
): Promise<Ranking> {
  if (pool.length === 0) throw new LesionError('dataset', 'there are no unlabeled images to rank');
  const run = new RunStore(host.runs, request.runId);
  const card = await run.card();
  if (!card) throw new LesionError('storage', `run ${request.runId} is not stored here`);
  const size = { width: card.model.inputSize, height: card.model.inputSize };
  const batch = card.train.batchSize;
  const skipped: Ranking['skipped'] = [];
  const scored = await withStageModel(run, request.stage, 'best', async (exportModel, readout) => {
    // MC-dropout needs the training build: it holds the seeded dropout layer (the export build's is tfjs's own).
    const mc = request.score === 'mc-dropout' ? buildDeepLabV3(card.model, 'train', card.seed) : undefined;
    if (mc) copyWeights(exportModel, mc);
    const model = mc ?? exportModel;
    try {
      const out: { sample: Sample; scores: ImageScores; mask: BinaryMask }[] = [];
      for (let start = 0; start < pool.length; start += batch) {
        const loaded: { sample: Sample; image: RgbImage }[] = [];
        for (const sample of pool.slice(start, start + batch)) {
          try {
            loaded.push({ sample, image: (await loadSample({ ...sample, mask: undefined }, host.source, host.decoder, size)).image });
          } catch (error) {
            // Whatever the host's decoder throws: one unreadable image must not empty the queue.
            skipped.push({ image: sample.image, reason: (error as Error).message });
          }
        }
        if (loaded.length > 0) {
          const images = loaded.map((l) => l.image);
          const keys = loaded.map((l) => l.sample.image);
          const plain = readout.tta === 'none';
          const scores = await scoreImages(model, images, keys, { batchSize: batch, seed: card.seed, mcPasses: mc ? request.mcPasses : 0, keepLogits: plain });
          // The scores stay on the one plain pass acquisition.ts defines them on (under flips TTA the
          // flip disagreement would vanish by construction); the mask is the stage's readout, as eval and Predict read it.
          const logits = plain ? scores.map((s) => s.logits!) : await predictLogits(model, images, { batchSize: batch, tta: readout.tta });
          loaded.forEach((l, i) => {
            const { logits: _plain, ...kept } = scores[i];
            out.push({ sample: l.sample, scores: kept, mask: { ...size, data: readMask(logits[i], size.width, size.height, readout) } });
          });
        }
        onProgress(Math.min(start + batch, pool.length), pool.length);
      }
      return out;
    } finally {
      mc?.dispose();
    }
  });
  const ranked = rankBy(scored, (s) => scoreOf(s.scores, request.score));
  const mid = median(ranked.map((r) => r.value));
  return {
    card,
    skipped,
    ranked: ranked.map(({ item, rank, value }) => ({
      sample: item.sample,
      rank,
      value,
      why: explainRank(item.scores, request.score, rank, ranked.length, mid),
      scores: item.scores,
      mask: item.mask,
      lesionFraction: item.mask.data.reduce((n, v) => n + v, 0) / item.mask.data.length,
    })),
  };
}
