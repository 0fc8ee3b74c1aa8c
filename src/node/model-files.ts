/**
 * A model on disk, in the tfjs layers format that plain tfjs (and the
 * studio's browser side) loads: model.json and weights.bin, plus the
 * caller's metadata.json beside them. The files are the core's model
 * product (src/core/run/products.ts), the bytes the studio exports.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { LesionError } from '../core/errors.ts';
import type { ExportMetadata } from '../core/run/pipeline.ts';
import type { Readout, TtaKind } from '../core/scoring/readout.ts';
import { METADATA_FILE, MODEL_FILE, modelFiles } from '../core/run/products.ts';
import type { CliIo } from './command.ts';
import { writeProducts } from './files.ts';

export async function saveLayersModel(model: tf.LayersModel, dir: string, metadata?: unknown): Promise<void> {
  await writeProducts(dir, await modelFiles(model, metadata));
  // No stale metadata from an earlier model may outlive it.
  if (metadata === undefined) await rm(path.join(dir, METADATA_FILE), { force: true });
}

/**
 * The metadata format loadStageModel (core/run/pipeline.ts) writes; metadata of a
 * later version comes from a newer studio and may mean something else.
 */
const METADATA_FORMAT = /^lesion-studio-model\/(\d+)$/;
const METADATA_VERSION = 1;

/**
 * Loads a saved model, or rejects with a LesionError naming the file at fault
 * and leaves nothing behind: every file is read and checked against the
 * others before a tensor is made, and whatever a failed build made is disposed.
 */
export async function loadLayersModel<M = unknown>(dir: string): Promise<{ model: tf.LayersModel; metadata?: M }> {
  const modelPath = path.join(dir, MODEL_FILE);
  const json = checkModelJson(await readJson(dir, MODEL_FILE), modelPath);
  const metadata = existsSync(path.join(dir, METADATA_FILE)) ? await readJson(dir, METADATA_FILE) : undefined;
  checkMetadataFormat(metadata, path.join(dir, METADATA_FILE));

  const specs = json.weightsManifest.flatMap((group) => group.weights);
  const files = json.weightsManifest.flatMap((group) => group.paths);
  const shards = await Promise.all(
    files.map(async (file) => {
      const bytes = await readBytes(dir, file);
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    }),
  );
  const expected = specs.reduce((n, spec) => n + weightBytes(spec, modelPath), 0);
  const actual = shards.reduce((n, shard) => n + shard.byteLength, 0);
  if (actual !== expected) {
    const where = files.length === 1 ? path.join(dir, files[0]) : `${dir} (${files.join(', ')})`;
    throw new LesionError('model', `holds ${actual} bytes of weights but ${MODEL_FILE} describes ${expected}`, where);
  }

  const model = await buildModel(json.modelTopology, modelPath);
  let weights: tf.NamedTensorMap | undefined;
  try {
    checkWeightsMatch(model, specs, modelPath);
    weights = tf.io.decodeWeights(shards, specs);
    model.loadWeights(weights);
  } catch (error) {
    model.dispose();
    throw error instanceof LesionError ? error : new LesionError('model', `weights do not fit the model (${(error as Error).message})`, modelPath);
  } finally {
    if (weights) tf.dispose(Object.values(weights));
  }
  return metadata === undefined ? { model } : { model, metadata: metadata as M };
}

function checkModelJson(json: unknown, where: string): tf.io.ModelJSON {
  const o = json as Partial<tf.io.ModelJSON> | null;
  const manifestOk =
    Array.isArray(o?.weightsManifest) &&
    o.weightsManifest.every(
      (group) =>
        Array.isArray(group?.paths) &&
        group.paths.every((file) => typeof file === 'string' && file !== '' && !file.split(/[\\/]/).includes('..')) &&
        Array.isArray(group.weights) &&
        group.weights.every((spec) => typeof spec?.name === 'string' && Array.isArray(spec.shape) && spec.shape.every((d) => Number.isInteger(d) && d >= 0)),
    );
  if (typeof o?.modelTopology !== 'object' || o.modelTopology === null || !manifestOk) {
    throw new LesionError('model', 'not a tfjs layers model (needs modelTopology and a weightsManifest of paths and weights)', where);
  }
  return o as tf.io.ModelJSON;
}

function checkMetadataFormat(metadata: unknown, where: string): void {
  const format = (metadata as { format?: unknown } | undefined)?.format;
  const version = typeof format === 'string' ? METADATA_FORMAT.exec(format)?.[1] : undefined;
  if (version !== undefined && Number(version) > METADATA_VERSION) {
    throw new LesionError('model', `format ${format} comes from a newer studio; this one reads up to lesion-studio-model/${METADATA_VERSION}`, where);
  }
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

function weightBytes(spec: tf.io.WeightsManifestEntry, where: string): number {
  const dtype = spec.quantization?.dtype ?? spec.dtype;
  const bytes = DTYPE_BYTES[dtype];
  if (bytes === undefined) throw new LesionError('model', `weight ${spec.name} has unsupported dtype ${JSON.stringify(dtype)}`, where);
  return spec.shape.reduce((n, d) => n * d, 1) * bytes;
}

/** Builds the layers (random initial values); a topology that fails half-way leaves no variables behind. */
function buildModel(topology: tf.io.ModelJSON['modelTopology'], where: string): Promise<tf.LayersModel> {
  const variables = tf.engine().state.registeredVariables;
  const before = new Set(Object.keys(variables));
  return tf.models.modelFromJSON({ modelTopology: topology } as Parameters<typeof tf.models.modelFromJSON>[0]).catch((error: unknown) => {
    for (const [name, variable] of Object.entries(variables)) if (!before.has(name)) variable.dispose();
    throw new LesionError('model', `the model cannot be built (${(error as Error).message.split('\n')[0]})`, where);
  });
}

/** Every weight of the model once in the manifest, at the model's shape; optimizer state is ignored. */
function checkWeightsMatch(model: tf.LayersModel, specs: tf.io.WeightsManifestEntry[], where: string): void {
  const byName = new Map(specs.filter((spec) => spec.group !== 'optimizer').map((spec) => [spec.name, spec]));
  for (const weight of model.weights) {
    const spec = byName.get(weight.originalName);
    if (!spec) throw new LesionError('model', `weight ${weight.originalName} is missing from the weightsManifest`, where);
    if (spec.shape.join('x') !== weight.shape.join('x')) {
      throw new LesionError('model', `weight ${weight.originalName} is [${spec.shape}] in the weightsManifest but the model needs [${weight.shape}]`, where);
    }
    byName.delete(weight.originalName);
  }
  const extra = [...byName.keys()];
  if (extra.length > 0) throw new LesionError('model', `the weightsManifest holds weights no layer has: ${extra.slice(0, 3).join(', ')}`, where);
}

async function readBytes(dir: string, file: string): Promise<Uint8Array> {
  const where = path.join(dir, file);
  try {
    return await readFile(where);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file is missing' : (error as Error).message;
    throw new LesionError('read', `cannot read the saved model: ${reason}`, where);
  }
}

async function readJson(dir: string, file: string): Promise<unknown> {
  const text = new TextDecoder().decode(await readBytes(dir, file));
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new LesionError('read', `not valid JSON (${(error as Error).message})`, path.join(dir, file));
  }
}

export interface ExportedModel {
  model: tf.LayersModel;
  inputSize: number;
  /** How its masks are read; a model saved before TTA and post-processing existed reads them as the paper does. */
  readout: Readout;
  /** The seed of the card that trained it, when its metadata says (compare pairs arms by it). */
  seed?: number;
}

/** How a command says it reads masks, e.g. 'logits thresholded at 0.5, flips TTA, largest lesion kept'. */
export function describeReadout(readout: Readout): string {
  return [
    `logits thresholded at ${readout.logitThreshold}`,
    ...(readout.tta === 'none' ? [] : [`${readout.tta} test-time augmentation`]),
    ...(readout.postprocess ? ['largest lesion kept, holes filled'] : []),
  ].join(', ');
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
  const tta: TtaKind = metadata?.tta === 'flips' || metadata?.tta === 'hflip' ? metadata.tta : 'none';
  const seed = metadata?.card?.seed;
  return { model, inputSize: h, readout: { logitThreshold, tta, postprocess: metadata?.postprocess === true }, ...(typeof seed === 'number' && { seed }) };
}
