/**
 * `lesion-studio export-job (--config <run.json> | --preset paper|quick)
 *  --labeled <dir>... [--unlabeled <dir>...] --out <job> [--init <model dir>]`
 *
 * Packs the run a card describes for a PyTorch cluster (src/core/run/job.ts):
 * the card, the split the studio would train on as a manifest of paths
 * relative to the data folders, the model the stages start from (the card's
 * seeded or ImageNet initialisation, or --init: a model the studio or
 * `train` exported, to continue from), and a README with the torchrun
 * command lines. The images stay where they are.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { inputsByRole } from '../../core/dataset/layouts.ts';
import { LesionError } from '../../core/errors.ts';
import type { RunCard } from '../../core/config.ts';
import { jobFiles, jobStartModel, type JobSpec } from '../../core/run/job.ts';
import { buildDeepLabV3, copyWeights } from '../../core/model/deeplab.ts';
import { initNodeBackend } from '../backends.ts';
import { EXIT_USAGE, listOf, type CliIo, type Command } from '../command.ts';
import { FsFileSource, outInsideData, writeProducts } from '../files.ts';
import { loadExportedModel } from '../model-files.ts';
import { TORCH_PACKAGE_ROOT } from '../python.ts';
import { readCard } from '../run-card.ts';

const exportJob: Command = {
  usage: '(--config <run.json> | --preset paper|quick) --labeled <dir>... [--unlabeled <dir>...] --out <job> [--init <model dir>]',
  options: {
    config: { type: 'string' },
    preset: { type: 'string' },
    labeled: { type: 'string', multiple: true },
    unlabeled: { type: 'string', multiple: true },
    out: { type: 'string' },
    init: { type: 'string' },
  },
  paths: { config: 'file', labeled: 'folder', unlabeled: 'folder', out: 'out-folder', init: 'folder' },
  async run({ values }, io) {
    const labeledDirs = listOf(values.labeled);
    const unlabeledDirs = listOf(values.unlabeled);
    const out = values.out as string | undefined;
    if (labeledDirs.length === 0 || !out || (values.config === undefined) === (values.preset === undefined)) {
      io.err(`usage: lesion-studio export-job ${exportJob.usage}`);
      return EXIT_USAGE;
    }
    const inside = await outInsideData(out, [{ flag: 'labeled', dirs: labeledDirs }, { flag: 'unlabeled', dirs: unlabeledDirs }]);
    if (inside) {
      io.err(`lesion-studio export-job: ${inside}`);
      return EXIT_USAGE;
    }
    // A job folder also collects the job's results: writing a new job over one would mix two runs.
    if ((await readdir(out).catch(() => [])).length > 0) {
      io.err(`lesion-studio export-job: ${out} is not empty; give a new folder for the job`);
      return EXIT_USAGE;
    }
    const card = await readCard(values.config as string | undefined, values.preset as string | undefined);
    await initNodeBackend('cpu');

    const dirs = [...labeledDirs, ...unlabeledDirs];
    const source = new FsFileSource(dirs);
    const index = await source.index();
    const unlabeledRoots = new Set(unlabeledDirs.map((d) => path.basename(path.resolve(d))));
    const inputs = inputsByRole(index, (root) => !unlabeledRoots.has(root));
    io.err(`data: ${inputs.labeled.length} labeled pairs, ${inputs.unlabeled.length} unlabeled images, ${index.strays.length} strays`);
    for (const stray of index.strays) io.err(`warning: ${stray.path}: ${stray.detail}`);

    const initDir = values.init as string | undefined;
    const init = initDir === undefined
      ? await jobStartModel(card, { userHint: 'give the model to start from with --init <model dir>', emit: (e) => e.type === 'log' && io.err(e.message) })
      : await initFromModelDir(card, initDir, io);
    try {
      const roots = Object.fromEntries(dirs.map((d) => [path.basename(path.resolve(d)), path.resolve(d)]));
      const files = await jobFiles({
        card,
        inputs,
        roots,
        init,
        packageRoot: TORCH_PACKAGE_ROOT,
        location: path.resolve(out),
        emit: (e) => e.type === 'warning' && io.err(`warning: ${e.file}: ${e.message}`),
      });
      await writeProducts(out, files);
    } finally {
      init.model.dispose();
    }
    io.out(`wrote the job to ${out}; run it with:\n  PYTHONPATH=${TORCH_PACKAGE_ROOT} torchrun --standalone --nproc_per_node <N> -m lesion_studio_torch ${out}`);
    return 0;
  },
};

export default exportJob;

/** The card's model holding the weights of an exported model (--init), which must fit it. */
async function initFromModelDir(card: RunCard, dir: string, io: CliIo): Promise<JobSpec['init']> {
  const start = await loadExportedModel(dir, io);
  const model = buildDeepLabV3(card.model, 'export', card.seed);
  try {
    copyWeights(start.model, model);
  } catch (error) {
    model.dispose();
    throw new LesionError('model', `does not fit the card's model (${(error as Error).message.split('\n')[0]})`, dir);
  } finally {
    start.model.dispose();
  }
  return { model, from: `the weights of ${path.resolve(dir)}` };
}
