/**
 * `lesion-studio predict --model <dir> --images <dir>... --out <dir>
 *  [--overwrite] [--backend auto|cpu|wasm|webgpu] [--batch 8]`
 *
 * Segments every image of the folders (any recognised layout, or plain
 * folders of images) and writes `<id>_segmentation.png` at the image's
 * original size, 8-bit grey 0/255, as the ISIC challenge scorer expects.
 * The model runs at its input size; its logits are resized bilinearly to the
 * original size and thresholded row by row, so no full-size float copy of a
 * photograph is ever made: the core's prediction product
 * (src/core/run/products.ts), which the studio's Predict view uses too. An image that cannot be
 * read is skipped with a warning naming it; the others go on.
 *
 * Masks look the same whoever drew them: --out may not hold a data set's
 * images nor lie inside a folder predict reads, and a file there that
 * predict did not write (its WRITTEN_LIST says which it did) is replaced
 * only with --overwrite.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Sample } from '../../core/dataset/layouts.ts';
import { loadSample } from '../../core/dataset/loader.ts';
import { LesionError } from '../../core/errors.ts';
import { maskFileName, predictions, type PredictionInput } from '../../core/run/products.ts';
import { backendLine, initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type CliIo, type Command } from '../command.ts';
import { SharpDecoder } from '../decode.ts';
import { FsFileSource, outInsideData, setFolderName } from '../files.ts';
import { describeReadout, loadExportedModel } from '../model-files.ts';
import { outHoldsData, overwriteRefusal, WrittenFiles } from '../outputs.ts';

const predict: Command = {
  usage: '--model <dir> --images <dir>... --out <dir> [--overwrite] [--backend auto|cpu|wasm|webgpu] [--batch <n>]',
  options: {
    model: { type: 'string' },
    images: { type: 'string', multiple: true },
    out: { type: 'string' },
    overwrite: { type: 'boolean' },
    backend: { type: 'string' },
    batch: { type: 'string' },
  },
  paths: { model: 'folder', images: 'folder', out: 'out-folder' },
  async run({ values }, io) {
    const modelDir = values.model as string | undefined;
    const imageDirs = (values.images as string[] | undefined) ?? [];
    const out = values.out as string | undefined;
    const batchSize = Number(values.batch ?? 8);
    if (!modelDir || imageDirs.length === 0 || !out || !Number.isInteger(batchSize) || batchSize < 1) {
      io.err(`usage: lesion-studio predict ${predict.usage}`);
      return EXIT_USAGE;
    }
    const written = await WrittenFiles.open(out, 'lesion-studio predict');
    const misplaced = (await outInsideData(out, [{ flag: 'images', dirs: imageDirs }, { flag: 'model', dirs: [modelDir] }])) ?? (await outHoldsData(out, (name) => written.has(name)));
    if (misplaced) {
      io.err(`lesion-studio predict: ${misplaced}`);
      return EXIT_USAGE;
    }
    const source = new FsFileSource(imageDirs);
    const index = await source.index();
    for (const link of source.brokenLinks) io.err(`warning: ${link.path}: ${link.detail}; no mask written for it`);
    const samples = index.sets.flatMap((set) => [...set.labeled, ...set.unlabeled]);
    if (samples.length === 0) throw new LesionError('dataset', `no JPEG, PNG or BMP images in ${imageDirs.join(', ')}`);
    const ids = new Set(samples.map((s) => s.id.toLowerCase()));
    // Ids repeat across sets (ISIC 2017 and 2018 share images): then one folder per set.
    const perSet = ids.size < samples.length;
    const target = (s: Sample): string => [...(perSet ? [setFolderName(s.set)] : []), maskFileName(s.id)].join('/');
    const refusal = overwriteRefusal('--out', out, 'predict', (await written.foreign(samples.map(target))).map((name) => path.join(out, name)), Boolean(values.overwrite));
    if (refusal) {
      io.err(`lesion-studio predict: ${refusal}`);
      return EXIT_USAGE;
    }

    const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? 'auto');
    io.err(backendLine(backend));
    const { model, inputSize, readout } = await loadExportedModel(modelDir, io);
    io.err(`model: ${inputSize}x${inputSize} input, ${describeReadout(readout)}; ${samples.length} images${perSet ? ', one folder per set (ids repeat across sets)' : ''}`);
    await mkdir(out, { recursive: true });

    const decoder = new SharpDecoder();
    const progress = new Progress(io, samples.length);
    let count = 0;
    let skipped = 0;
    let queue: { sample: Sample; input: PredictionInput }[] = [];
    const flush = async (): Promise<void> => {
      const made = await predictions(model, queue.map((q) => q.input), { inputSize, readout, batchSize });
      await written.add(queue.map((q) => target(q.sample)));
      for (let i = 0; i < queue.length; i++) {
        const file = path.join(out, ...target(queue[i].sample).split('/'));
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, made[i].file.bytes);
        count++;
      }
      queue = [];
    };
    try {
      for (const [i, sample] of samples.entries()) {
        try {
          const loaded = await loadSample({ ...sample, mask: undefined }, source, decoder, { width: inputSize, height: inputSize });
          for (const warning of loaded.warnings) progress.warn(`warning: ${warning.message}`);
          queue.push({ sample, input: { id: sample.id, image: loaded.image, width: loaded.sourceWidth, height: loaded.sourceHeight } });
        } catch (error) {
          if (!(error instanceof LesionError)) throw error;
          skipped++;
          progress.warn(`warning: skipped ${error.message}`);
        }
        if (queue.length === batchSize) await flush();
        progress.show(i + 1, skipped);
      }
      await flush();
      progress.show(samples.length, skipped, true);
    } finally {
      model.dispose();
    }
    io.err(`wrote ${count} masks to ${out}${skipped > 0 ? `; ${skipped} images skipped (see the warnings above)` : ''}`);
    return count > 0 ? 0 : 1;
  },
};

export default predict;

/** A live line on a terminal; in a log, a line every ten seconds and at the end. */
class Progress {
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly started = performance.now();
  private lastLine = this.started;
  private live = false;

  constructor(
    private readonly io: CliIo,
    private readonly total: number,
  ) {}

  show(done: number, skipped: number, final = false): void {
    const now = performance.now();
    const rate = done / Math.max((now - this.started) / 1000, 1e-3);
    const text = `predict: ${done}/${this.total} images${skipped > 0 ? `, ${skipped} skipped` : ''}, ${rate.toFixed(2)} img/s`;
    if (this.tty) {
      process.stderr.write(`\r${text.padEnd(80)}${final ? '\n' : ''}`);
      this.live = !final;
    } else if (final || now - this.lastLine > 10_000) {
      this.io.err(text);
      this.lastLine = now;
    }
  }

  warn(text: string): void {
    if (this.live) process.stderr.write('\n');
    this.live = false;
    this.io.err(text);
  }
}
