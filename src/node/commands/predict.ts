/**
 * `lesion-studio predict --model <dir> --images <dir>... --out <dir>
 *  [--backend auto|cpu|wasm|webgpu] [--batch 8]`
 *
 * Segments every image of the folders (any recognised layout, or plain
 * folders of images) and writes `<id>_segmentation.png` at the image's
 * original size, 8-bit grey 0/255, as the ISIC challenge scorer expects.
 * The model runs at its input size; its logits are resized bilinearly to the
 * original size and thresholded row by row (src/core/resize.ts), so no
 * full-size float copy of a photograph is ever made. An image that cannot be
 * read is skipped with a warning naming it; the others go on.
 */
import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { Jimp } from 'jimp';
import type { Sample } from '../../core/dataset/layouts.ts';
import { loadSample } from '../../core/dataset/loader.ts';
import { LesionError } from '../../core/errors.ts';
import type { BinaryMask, RgbImage } from '../../core/io.ts';
import type { ExportMetadata } from '../../core/pipeline.ts';
import { predictLogits } from '../../core/predict.ts';
import { resizeAndThreshold } from '../../core/resize.ts';
import { initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, type CliIo, type Command } from '../cli.ts';
import { JimpDecoder } from '../decode.ts';
import { FsFileSource, outInsideData } from '../files.ts';
import { loadLayersModel } from '../model-files.ts';

export interface ExportedModel {
  model: tf.LayersModel;
  inputSize: number;
  logitThreshold: number;
}

/** The paper's threshold on raw logits, for a model saved without metadata. */
const DEFAULT_LOGIT_THRESHOLD = 0.5;

/**
 * A model exported by `train` or the studio: `<dir>/model.json` (or
 * `<dir>/model/model.json`, a stage folder) with metadata.json beside it.
 */
export async function loadExportedModel(dir: string, io: CliIo): Promise<ExportedModel> {
  const modelDir = !existsSync(path.join(dir, 'model.json')) && existsSync(path.join(dir, 'model', 'model.json')) ? path.join(dir, 'model') : dir;
  const { model, metadata } = await loadLayersModel<Partial<ExportMetadata>>(modelDir);
  const [, h, w, c] = model.inputs[0].shape;
  const [, oh, ow, oc] = model.outputs[0].shape;
  if (h === null || h !== w || c !== 3 || oh !== h || ow !== w || oc !== 1) {
    model.dispose();
    throw new LesionError('model', `expected a square RGB input and one channel of logits at the same size; got input ${JSON.stringify(model.inputs[0].shape)}, output ${JSON.stringify(model.outputs[0].shape)}`, modelDir);
  }
  if (metadata?.inputSize !== undefined && metadata.inputSize !== h) {
    model.dispose();
    throw new LesionError('model', `metadata.json says inputSize ${metadata.inputSize} but the model takes ${h}x${w}`, modelDir);
  }
  let logitThreshold = metadata?.logitThreshold;
  if (typeof logitThreshold !== 'number') {
    io.err(`warning: ${modelDir} has no logitThreshold in metadata.json; using ${DEFAULT_LOGIT_THRESHOLD} (the paper's)`);
    logitThreshold = DEFAULT_LOGIT_THRESHOLD;
  }
  return { model, inputSize: h, logitThreshold };
}

/** Where a set's masks go when several sets share ids: a folder name safe on every file system. */
export function setFolderName(set: string): string {
  return set.replace(/[^A-Za-z0-9._-]+/g, '_');
}

export const maskFileName = (id: string): string => `${id}_segmentation.png`;

/**
 * An 8-bit greyscale PNG (colour type 0) of 0/255, the format of the ISIC
 * ground truth. Consumes the mask: its bytes become 0/255 in place, so a
 * full-size mask is never copied.
 */
export async function encodeMaskPng(mask: BinaryMask): Promise<Buffer> {
  const grey = Buffer.from(mask.data.buffer, mask.data.byteOffset, mask.data.byteLength);
  for (let i = 0; i < grey.length; i++) grey[i] = grey[i] ? 255 : 0;
  // One byte per pixel in, one out: no RGBA copy of a full-size mask.
  return new Jimp({ width: mask.width, height: mask.height, data: grey }).getBuffer('image/png', { colorType: 0, inputColorType: 0, inputHasAlpha: false });
}

const predict: Command = {
  usage: '--model <dir> --images <dir>... --out <dir> [--backend auto|cpu|wasm|webgpu] [--batch <n>]',
  options: {
    model: { type: 'string' },
    images: { type: 'string', multiple: true },
    out: { type: 'string' },
    backend: { type: 'string' },
    batch: { type: 'string' },
  },
  async run({ values }, io) {
    const modelDir = values.model as string | undefined;
    const imageDirs = (values.images as string[] | undefined) ?? [];
    const out = values.out as string | undefined;
    const batchSize = Number(values.batch ?? 8);
    if (!modelDir || imageDirs.length === 0 || !out || !Number.isInteger(batchSize) || batchSize < 1) {
      io.err(`usage: lesion-studio predict ${predict.usage}`);
      return EXIT_USAGE;
    }
    for (const dir of imageDirs) {
      if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
        io.err(`lesion-studio predict: ${dir}: no such folder`);
        return EXIT_USAGE;
      }
    }
    const inside = await outInsideData(out, [{ flag: 'images', dirs: imageDirs }]);
    if (inside) {
      io.err(`lesion-studio predict: ${inside}`);
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
    const target = (s: Sample): string => path.join(out, ...(perSet ? [setFolderName(s.set)] : []), maskFileName(s.id));

    const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? 'auto');
    io.err(`backend: ${backend.name} (${backend.detail})`);
    const { model, inputSize, logitThreshold } = await loadExportedModel(modelDir, io);
    io.err(`model: ${inputSize}x${inputSize} input, logits thresholded at ${logitThreshold}; ${samples.length} images${perSet ? ', one folder per set (ids repeat across sets)' : ''}`);
    await mkdir(out, { recursive: true });

    const decoder = new JimpDecoder();
    const progress = new Progress(io, samples.length);
    let written = 0;
    let skipped = 0;
    let queue: { sample: Sample; image: RgbImage; width: number; height: number }[] = [];
    const flush = async (): Promise<void> => {
      if (queue.length === 0) return;
      const logits = await predictLogits(model, queue.map((q) => q.image), { batchSize });
      for (let i = 0; i < queue.length; i++) {
        const { sample, width, height } = queue[i];
        const mask = resizeAndThreshold({ width: inputSize, height: inputSize, data: logits[i] }, width, height, logitThreshold);
        const file = target(sample);
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, await encodeMaskPng(mask));
        written++;
      }
      queue = [];
    };
    try {
      for (const [i, sample] of samples.entries()) {
        try {
          const loaded = await loadSample({ ...sample, mask: undefined }, source, decoder, { width: inputSize, height: inputSize });
          for (const warning of loaded.warnings) progress.warn(`warning: ${warning.message}`);
          queue.push({ sample, image: loaded.image, width: loaded.sourceWidth, height: loaded.sourceHeight });
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
    io.err(`wrote ${written} masks to ${out}${skipped > 0 ? `; ${skipped} images skipped (see the warnings above)` : ''}`);
    return written > 0 ? 0 : 1;
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
