/**
 * `lesion-studio fine-tune --run <dir> --data <dir>... --labels <dir>...
 *  [--stage teacher|student|student-star] [--epochs 5]
 *  [--backend auto|cpu|wasm|webgpu] [--run-id run] [--json <file>]`
 *
 * The studio's *Fine-tune with my new labels* for a run that `train` wrote,
 * by the same core function (core/active/fine-tune.ts): --data are the
 * folders the run trained on, --labels folders of new image + mask pairs.
 * The stage's best checkpoint is fine-tuned for --epochs with the new labels
 * and, as the control, without them (their images left out), and both are
 * scored on the run's test images. Prints what the labels bought (with minus
 * without, paired over those images, with its interval and p-value) beside
 * the figures; writes the with-labels model and the whole result to
 * `<run>/<stage>-finetuned/` (model files and fine-tune.json). The
 * fine-tunes' checkpoints stay in `<run>/fine-tunes/`.
 */
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fineTune, fineTunedModelFiles } from '../../core/active/fine-tune.ts';
import { FINE_TUNE_ARMS } from '../../core/run/display.ts';
import { inputsByRole, rootOf } from '../../core/dataset/layouts.ts';
import { ConfigError } from '../../core/errors.ts';
import { METRIC_KEYS, type MetricKey } from '../../core/scoring/bootstrap.ts';
import { backendLine, initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, positiveFlag, type Command } from '../command.ts';
import { SharpDecoder } from '../decode.ts';
import { FsFileSource, writeProducts } from '../files.ts';
import { openRunFolder } from '../run-folder.ts';
import { FsKeyValueStore } from '../store.ts';

const TITLES: Record<MetricKey, string> = {
  paperMIoU: 'paper mIoU',
  pooledMIoU: 'pooled mIoU',
  lesionIoU: 'lesion IoU',
  dice: 'Dice',
  thresholdedJaccard: 'ISIC thresholded Jaccard',
};

const fineTuneCommand: Command = {
  usage: '--run <dir> --data <dir>... --labels <dir>... [--stage teacher|student|student-star] [--epochs <n>] [--backend auto|cpu|wasm|webgpu] [--run-id <id>] [--json <file>]',
  options: {
    run: { type: 'string' },
    data: { type: 'string', multiple: true },
    labels: { type: 'string', multiple: true },
    stage: { type: 'string' },
    epochs: { type: 'string' },
    backend: { type: 'string' },
    'run-id': { type: 'string' },
    json: { type: 'string' },
  },
  async run({ values }, io) {
    const runDir = values.run as string | undefined;
    const dataDirs = (values.data as string[] | undefined) ?? [];
    const labelDirs = (values.labels as string[] | undefined) ?? [];
    const refuse = (problem: string): number => {
      io.err(`lesion-studio fine-tune: ${problem}\nusage: lesion-studio fine-tune ${fineTuneCommand.usage}`);
      return EXIT_USAGE;
    };
    if (!runDir || dataDirs.length === 0 || labelDirs.length === 0) return refuse('--run, --data and --labels are needed');
    let epochs: number;
    try {
      epochs = positiveFlag(values.epochs, '--epochs', 5);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return refuse(error.message);
    }
    for (const dir of [...dataDirs, ...labelDirs]) {
      if (!(await stat(dir).catch(() => undefined))?.isDirectory()) return refuse(`${dir}: no such folder`);
    }
    const folder = await openRunFolder(runDir, (values['run-id'] as string | undefined) ?? 'run', values.stage as string | undefined);
    const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? (folder.card.backend === 'webgl' ? 'auto' : folder.card.backend));
    io.err(backendLine(backend));

    const source = new FsFileSource([...dataDirs, ...labelDirs]);
    const { labeled } = inputsByRole(await source.index(), () => true);
    const labelRoots = new Set(labelDirs.map((d) => path.basename(path.resolve(d))));
    const newLabels = labeled.filter((s) => labelRoots.has(rootOf(s.image)));
    const store = new FsKeyValueStore(path.join(runDir, 'fine-tunes'));
    let shown = '';
    const result = await fineTune(
      {
        source,
        decoder: new SharpDecoder(),
        runs: folder.store,
        store,
        emit: (e) => {
          if (e.type === 'warning') io.err(`warning: ${e.message}`);
        },
      },
      { runId: folder.run.runId, stage: folder.stage, epochs, roots: dataDirs, labeled, newLabels },
      (arm, step, total) => {
        const line = `fine-tune ${FINE_TUNE_ARMS[arm]}: step ${step}/${total}`;
        if (step === total || process.stderr.isTTY) {
          if (line !== shown) io.err(line);
          shown = line;
        }
      },
    );

    const out = path.join(runDir, `${folder.stage}-finetuned`);
    await writeProducts(out, await fineTunedModelFiles(folder.store, store, folder.run.runId, folder.stage));
    const json = `${JSON.stringify(result, null, 2)}\n`;
    await writeFile(path.join(out, 'fine-tune.json'), json);
    if (values.json !== undefined) await writeFile(values.json as string, json);

    const [difference] = result.labels.differences;
    const pts = (v: number): string => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}`;
    const pct = (v: number): string => `${(100 * v).toFixed(1)} %`;
    io.out(
      `${folder.stage} of ${runDir}, ${epochs} epochs from its best checkpoint; ${result.expertLabels} new label${result.expertLabels === 1 ? '' : 's'}; ` +
        `scored on ${result.scored} ${result.split === 'test' ? 'test' : 'validation'} images`,
    );
    io.out(`control: the same schedule on the run's ${result.withoutLabels.train} training images without the new labels (with them: ${result.withLabels.train})`);
    const rows = METRIC_KEYS.map((k) => [
      TITLES[k],
      pct(result.before[k]),
      pct(result.withoutLabels.scores[k]),
      pct(result.withLabels.scores[k]),
      `${pts(difference.difference[k])} [${pts(difference.ci95[k][0])}, ${pts(difference.ci95[k][1])}]`,
      difference.pValue[k].toPrecision(2),
    ]);
    const header = ['metric', 'before', 'without labels', 'with labels', 'labels bought (points, 95 % CI)', 'p'];
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
    for (const row of [header, ...rows]) io.out(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
    io.out(`lesion IoU per image, with against without: ${difference.wins} better, ${difference.losses} worse, ${difference.ties} equal; p from a ${result.labels.test}`);
    for (const note of [result.labels.note, difference.warning]) if (note) io.out(`note: ${note}`);
    io.err(`wrote ${out}`);
    return 0;
  },
};

export default fineTuneCommand;
