/**
 * `lesion-studio compare --model <dir>[,<dir>...] --model <dir>[,<dir>...]...
 *  --data <dir>... [--json] [--backend auto|cpu|wasm|webgpu] [--batch <n>] [--resamples <n>]`
 *
 * Scores two or more arms on the same labeled images and prints what
 * src/core/scoring/compare.ts makes of them, the figures the studio's Compare
 * shows: each arm's figures with 95 % intervals, each arm's paired difference
 * to the first with its interval and permutation-test p-value, P(A > B) over
 * paired repeats, and per-image wins and losses.
 *
 * Each --model is one arm, named A, B, C... in order; a comma list in one
 * --model is several runs of one recipe (seeds of one card), so that the
 * intervals cover training noise too. Run i of each arm is paired with run i
 * of the first for P(A > B).
 * Models are the exported model folders `eval --model` takes. Every model is
 * scored at the same input size, so models taking different inputs, or data
 * without masks, are refused (exit 2).
 */
import { stat } from 'node:fs/promises';
import { evaluate } from '../../core/scoring/evaluate.ts';
import { METRIC_KEYS, METRIC_TITLES, type Interval } from '../../core/scoring/bootstrap.ts';
import { compareArms, type CompareArm, type Comparison } from '../../core/scoring/compare.ts';
import { itemFromSample, PixelCache } from '../../core/dataset/samples.ts';
import { backendLine, initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type Command } from '../command.ts';
import { SharpDecoder } from '../decode.ts';
import { FsFileSource } from '../files.ts';
import { describeReadout, loadExportedModel } from '../model-files.ts';
import { NO_PSEUDO_LABELS } from '../store.ts';

/** The official validation batch, as eval's default. */
const PAPER_BATCH = 10;
/** Decoded images kept while the models take turns, so each file is decoded once. */
const CACHE_BYTES = 1 << 28;

const compare: Command = {
  usage: '--model <dir>[,<dir>...] --model <dir>[,<dir>...]... --data <dir>... [--json] [--backend auto|cpu|wasm|webgpu] [--batch <n>] [--resamples <n>]',
  options: {
    model: { type: 'string', multiple: true },
    data: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    backend: { type: 'string' },
    batch: { type: 'string' },
    resamples: { type: 'string' },
  },
  // --model values are comma lists of folders: the command checks those itself.
  paths: { data: 'folder' },
  async run({ values }, io) {
    const armFlags = (values.model as string[] | undefined) ?? [];
    const dataDirs = (values.data as string[] | undefined) ?? [];
    const batchSize = Number(values.batch ?? PAPER_BATCH);
    const resamples = Number(values.resamples ?? 2000);
    const usage = (problem: string): number => {
      io.err(`lesion-studio compare: ${problem}\nusage: lesion-studio compare ${compare.usage}`);
      return EXIT_USAGE;
    };
    if (armFlags.length < 2) return usage(`give two --model arms or more (got ${armFlags.length})`);
    if (dataDirs.length === 0) return usage('give the labeled images to score on with --data');
    if (!Number.isInteger(batchSize) || batchSize < 1) return usage(`--batch must be a positive integer, got '${String(values.batch)}'`);
    if (!Number.isInteger(resamples) || resamples < 100) return usage(`--resamples must be an integer of at least 100, got '${String(values.resamples)}'`);
    // Arms are named A, B, C... in the given order: their folders are listed once, not in every line.
    const arms = armFlags.map((flag, i) => ({ name: String.fromCharCode(65 + i), flag, dirs: flag.split(',').filter((d) => d !== '') }));
    if (arms.length > 26) return usage(`compare takes at most 26 arms, got ${arms.length}`);
    const empty = arms.find((a) => a.dirs.length === 0);
    if (empty) return usage(`--model '${empty.flag}' names no folder`);
    for (const dir of [...dataDirs, ...arms.flatMap((a) => a.dirs)]) {
      if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
        io.err(`lesion-studio compare: ${dir}: no such folder`);
        return EXIT_USAGE;
      }
    }

    const source = new FsFileSource(dataDirs);
    const index = await source.index();
    const labeled = index.sets.flatMap((set) => set.labeled);
    const unlabeled = index.sets.reduce((n, set) => n + set.unlabeled.length, 0);
    if (labeled.length === 0) {
      io.err(`lesion-studio compare: no labeled images (image + mask pairs) in ${dataDirs.join(', ')}${unlabeled > 0 ? ` (${unlabeled} images without masks)` : ''}: models are compared against ground-truth masks`);
      return EXIT_USAGE;
    }
    if (unlabeled > 0) io.err(`note: ${unlabeled} images without masks are left out`);

    const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? 'auto');
    io.err(backendLine(backend));
    // Every model first, so that a mismatch is refused before anything is scored.
    const inputs = new Map<string, number>();
    for (const dir of arms.flatMap((a) => a.dirs)) {
      const { model, inputSize } = await loadExportedModel(dir, io);
      model.dispose();
      inputs.set(dir, inputSize);
    }
    const sizes = new Set(inputs.values());
    if (sizes.size > 1) {
      const list = [...inputs].map(([dir, size]) => `${dir} takes ${size}x${size} RGB`).join(', ');
      io.err(`lesion-studio compare: the models take different inputs (${list}); a paired comparison scores every model on the same pixels against the same masks, so compare models of one input size`);
      return EXIT_USAGE;
    }
    const [inputSize] = sizes;

    const items = labeled.map(itemFromSample);
    const cache = new PixelCache(source, new SharpDecoder(), NO_PSEUDO_LABELS, { width: inputSize, height: inputSize }, (e) => {
      if (e.type === 'warning') io.err(`warning: ${e.message}`);
    }, CACHE_BYTES);
    const compared: CompareArm[] = [];
    for (const arm of arms) {
      const runs = [];
      for (const dir of arm.dirs) {
        const { model, readout, seed } = await loadExportedModel(dir, io);
        io.err(`scoring ${dir} on ${labeled.length} images at ${inputSize}x${inputSize}, ${describeReadout(readout)}`);
        try {
          runs.push({ name: dir, seed, images: (await evaluate(model, items, cache, { ...readout, batchSize })).overall.perImage });
        } finally {
          model.dispose();
        }
      }
      compared.push({ name: arm.name, runs });
    }
    const comparison = compareArms(compared, { resamples });
    const scoredAt = `model input ${inputSize}x${inputSize}`;
    io.out(values.json ? JSON.stringify({ scoredAt, ...comparison }, null, 2) : comparisonText(comparison, scoredAt));
    return 0;
  },
};

export default compare;

const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(2) : '--');
const signed = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)}` : '--');
const interval = (i: Interval, show: (x: number) => string): string => `[${show(i[0])}, ${show(i[1])}]`;

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)];
}

/** What compare prints without --json: the arms, then each difference with its test and wins. */
function comparisonText(c: Comparison, scoredAt: string): string {
  const out = [
    `compared on ${c.images} images at ${scoredAt}; percentages, each with its 95 % interval (bootstrap of ${c.resamples.toLocaleString('en')} resamples: ${c.pairedBySeed ? 'the same seeds for every arm (the arms were paired by seed)' : 'runs within each arm'}, then images, the same images for every arm)`,
    ...(c.note ? [`note: ${c.note}`] : []),
    ...c.arms.map((a) => `${a.name}: ${a.runs.join(', ')}`),
    '',
    ...table(
      ['arm', 'runs', ...METRIC_KEYS.map((k) => METRIC_TITLES[k])],
      c.arms.map((a) => [a.name, String(a.runs.length), ...METRIC_KEYS.map((k) => `${pct(a.value[k])} ${interval(a.ci95[k], pct)}`)]),
    ),
  ];
  for (const a of c.arms.filter((arm) => arm.runs.length > 1)) {
    const s = a.spread.lesionIoU;
    out.push(`${a.name}: lesion IoU per run ${a.perRun.map((m) => pct(m.lesionIoU)).join(', ')}; mean ${pct(s.mean)}, sd ${pct(s.sd)}, range ${pct(s.min)}-${pct(s.max)}`);
  }
  for (const d of c.differences) {
    out.push('', `${d.arm} minus ${d.reference}, paired on the same images (points; p from a ${c.test}):`);
    const better = d.probabilityBetter;
    out.push(
      ...table(
        ['figure', 'difference', '95 % interval', 'p', ...(better ? [`P(${d.arm} > ${d.reference})`] : [])],
        METRIC_KEYS.map((k) => [METRIC_TITLES[k], signed(d.difference[k]), interval(d.ci95[k], signed), d.pValue[k].toPrecision(2), ...(better ? [better[k].toFixed(2)] : [])]),
      ),
    );
    if (better) out.push(`P(${d.arm} > ${d.reference}): the share of ${d.pairs} paired runs (run i of each arm) where ${d.arm} scores higher`);
    const ranked = [...d.perImage].sort((x, y) => y.difference - x.difference);
    const named = (list: typeof ranked): string => list.map((o) => `${o.id} ${signed(o.difference)}`).join(', ');
    out.push(`per image, lesion IoU: ${d.arm} wins ${d.wins}, loses ${d.losses}, ties ${d.ties}`);
    if (d.wins > 0) out.push(`  largest wins: ${named(ranked.filter((o) => o.difference > 0).slice(0, 5))}`);
    if (d.losses > 0) out.push(`  largest losses: ${named(ranked.filter((o) => o.difference < 0).reverse().slice(0, 5))}`);
    if (d.warning) out.push(`warning: ${d.warning}`);
  }
  return out.join('\n');
}
