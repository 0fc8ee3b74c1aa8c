/**
 * The run card: one JSON document that holds every knob of a Noisy Student
 * run, so that a run can be exported, imported, resumed and reproduced.
 * Validation names the offending field and what it accepts, and never
 * half-applies a card.
 */
import { ConfigError } from './errors.ts';
import type { EncoderInit, ModelConfig } from './model/deeplab.ts';

export const ENCODER_INITS: readonly EncoderInit[] = ['nsfwjs', 'imagenet-through-block10', 'random', 'user'];
/** The initialisations shipped offline: MobileNetV2 at width 1 only. */
export const BUILT_IN_INITS: readonly EncoderInit[] = ['nsfwjs', 'imagenet-through-block10'];

export const LOSS_NAMES = ['dice', 'bce', 'dice+bce'] as const;
export type LossName = (typeof LOSS_NAMES)[number];
import { DISTORTION_KINDS, NOISE_STEPS, type NoiseConfig } from './noise/chain.ts';

export const RUN_CARD_VERSION = 1;

export type BackendChoice = 'auto' | 'webgpu' | 'wasm' | 'webgl' | 'cpu';

export type OptimizerConfig =
  | { kind: 'sgd'; lr: number; momentum: number; weightDecay: number }
  | { kind: 'adam'; lr: number; beta1: number; beta2: number; epsilon: number; weightDecay: number };

export interface TrainConfig {
  epochs: number;
  batchSize: number;
  optimizer: OptimizerConfig;
  loss: LossName;
  /**
   * How the learning rate moves over a stage: constant (the paper's code), or
   * DeepLabV3's poly decay, lr * (1 - t/T)^0.9, after warmupEpochs of linear warm-up.
   */
  lrSchedule: 'constant' | 'poly';
  /** Epochs over which the learning rate rises linearly from near zero (0 = none). */
  warmupEpochs: number;
  /** BCE only: weight of lesion pixels (the paper's alternative used 1.25). */
  posWeight: number;
  /** Scalars are read back from the device every this many steps, not every step. */
  readEverySteps: number;
  /** A resumable checkpoint every this many steps, and at every epoch's end. */
  checkpointEverySteps: number;
  /** nnU-Net's rule: the best checkpoint maximises an EMA of the validation metric. */
  emaSmoothing: number;
}

export interface DataConfig {
  /** How labeled images are held out: seeded fractions, or the paper's mod-15 folds. */
  split: { kind: 'fractions'; val: number; test: number } | { kind: 'paper-fold'; valFold: number; test: number };
  /** The paper's 1/m: unlabeled images used per labeled training image (all when fewer). */
  unlabeledPerLabeled: number;
  /**
   * Fraction of the labeled training images that keep their masks; the rest
   * join the unlabeled pool with masks hidden (the semi-supervised benchmark
   * setting, to measure what self-training adds when labels are scarce).
   */
  labeledFraction: number;
  /**
   * Seeds which labeled images are held out for validation and test, in
   * place of the card's seed. *Repeat with seeds* keeps the first run's, so
   * the repeats differ in training noise and are scored on the same images,
   * which a paired comparison needs.
   */
  splitSeed?: number;
}

export interface PseudoLabelConfig {
  /** Lesion probability at or above which a pixel is lesion in a pseudo-label. */
  threshold: number;
  /** Pseudo-labels with a smaller lesion fraction are dropped (the paper: ~34 px at 256x256). */
  minLesionFraction: number;
  /** Average the prediction with its horizontally flipped twin. */
  flipTta: boolean;
}

export interface StudentConfig {
  /** The paper: the student starts from the teacher's initialisation, not its weights. */
  init: 'same-as-teacher' | 'teacher-weights';
  /** 2 = student and student*, as in the paper. */
  rounds: number;
}

export interface EvalConfig {
  /** The paper thresholds RAW logits at 0.5 (a lesion probability of 0.622). */
  logitThreshold: number;
  /** Test-time augmentation of validation, test, eval and predict (pseudo-labels have pseudo.flipTta). */
  tta: 'none' | 'flips';
  /**
   * auto = after each stage, keep the largest lesion and fill its holes when
   * that scores a higher lesion IoU on the validation images (nnU-Net's rule);
   * the decision is stored with the stage and its exported model.
   */
  postprocess: 'none' | 'auto';
}

export interface RunCard {
  version: number;
  name: string;
  seed: number;
  backend: BackendChoice;
  model: ModelConfig;
  train: TrainConfig;
  noise: NoiseConfig;
  data: DataConfig;
  pseudo: PseudoLabelConfig;
  student: StudentConfig;
  eval: EvalConfig;
}

export type PresetName = 'paper' | 'quick';

/** The paper's protocol (paper-protocol.md), with the offline MobileNetV2 initialisation. */
export function paperCard(): RunCard {
  return {
    version: RUN_CARD_VERSION,
    name: 'paper',
    seed: 2137,
    backend: 'auto',
    model: {
      encoder: 'mobilenetv2',
      width: 1,
      outputStride: 8,
      atrousRates: [12, 24, 36],
      asppChannels: 256,
      dropout: 0.5,
      inputSize: 256,
      init: 'nsfwjs',
      inputRange: 'symmetric',
    },
    train: {
      epochs: 65,
      batchSize: 10,
      optimizer: { kind: 'sgd', lr: 0.006, momentum: 0.81, weightDecay: 0.02 },
      loss: 'dice',
      lrSchedule: 'constant',
      warmupEpochs: 0,
      posWeight: 1.25,
      readEverySteps: 5,
      checkpointEverySteps: 20,
      emaSmoothing: 0.9,
    },
    noise: { preset: 'paper', distortion: 'optical' },
    data: { split: { kind: 'paper-fold', valFold: 0, test: 0.2 }, unlabeledPerLabeled: 4, labeledFraction: 1 },
    pseudo: { threshold: 0.5, minLesionFraction: 34 / (256 * 256), flipTta: false },
    student: { init: 'same-as-teacher', rounds: 2 },
    eval: { logitThreshold: 0.5, tta: 'none', postprocess: 'none' },
  };
}

/** Small enough to run the four stages on a laptop CPU in minutes (wasm backend). */
export function quickCard(): RunCard {
  const card = paperCard();
  return {
    ...card,
    name: 'quick',
    // The defaults below beat the paper's protocol on validation images (README, "Defaults, measured"):
    // only nsfwjs's ImageNet blocks, DeepLabV3's poly decay after a warm-up epoch, flips TTA, and
    // post-processing where validation says it helps. The paper card keeps every one of them off.
    model: { ...card.model, outputStride: 16, atrousRates: [6, 12, 18], asppChannels: 128, inputSize: 128, init: 'imagenet-through-block10' },
    train: {
      ...card.train,
      lrSchedule: 'poly',
      warmupEpochs: 1,
      epochs: 15,
      batchSize: 8,
      optimizer: { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
      readEverySteps: 2,
      checkpointEverySteps: 10,
      // Few epochs: a long EMA would still remember the first ones.
      emaSmoothing: 0.5,
    },
    data: { split: { kind: 'fractions', val: 0.2, test: 0.2 }, unlabeledPerLabeled: 4, labeledFraction: 1 },
    pseudo: { ...card.pseudo, minLesionFraction: 34 / (256 * 256) },
    eval: { ...card.eval, tta: 'flips', postprocess: 'auto' },
  };
}

export function presetCard(name: PresetName): RunCard {
  return name === 'paper' ? paperCard() : quickCard();
}

// ---- validation -------------------------------------------------------------

type Obj = Record<string, unknown>;

/**
 * `v` as an object holding only the keys given: a misspelt key would
 * otherwise be dropped and its knob left at a value nobody chose (a
 * `labelledFraction` of 0.5 training on every label). `others` are keys
 * that belong to another kind of this object (an SGD card's `beta1`).
 */
function obj(v: unknown, field: string, keys: readonly string[], others: { kind: string; keys: readonly string[] }[] = []): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(field, 'must be an object');
  for (const key of Object.keys(v)) {
    if (keys.includes(key)) continue;
    const where = `${field}.${key}`;
    const owner = others.find((other) => other.keys.includes(key));
    if (owner) throw new ConfigError(where, `belongs to kind "${owner.kind}", not to this one; its keys are ${keys.join(', ')}`);
    const nearest = nearestKey(key, keys);
    throw new ConfigError(where, nearest === undefined ? `unknown key; the keys here are ${keys.join(', ')}` : `unknown key; did you mean ${field}.${nearest}?`);
  }
  return v as Obj;
}

/** The known key a typo most likely meant: fewest single-letter edits, ignoring case, within a third of its length. */
function nearestKey(key: string, keys: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const known of keys) {
    const distance = editDistance(key.toLowerCase(), known.toLowerCase());
    if (distance <= Math.max(2, Math.floor(known.length / 3)) && (!best || distance < best.distance)) best = { key: known, distance };
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length];
}

function num(o: Obj, key: string, field: string, min: number, max: number, integer = false): number {
  const v = o[key];
  const where = `${field}.${key}`;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(where, `must be a number, got ${JSON.stringify(v)}`);
  if (integer && !Number.isInteger(v)) throw new ConfigError(where, `must be an integer, got ${v}`);
  if (v < min || v > max) throw new ConfigError(where, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function oneOf<T extends string | number | boolean>(o: Obj, key: string, field: string, allowed: readonly T[]): T {
  const v = o[key] as T;
  if (!allowed.includes(v)) {
    throw new ConfigError(`${field}.${key}`, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function str(o: Obj, key: string, field: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 200) throw new ConfigError(`${field}.${key}`, 'must be a non-empty string of at most 200 characters');
  return v;
}

const MODEL_KEYS = ['encoder', 'width', 'outputStride', 'atrousRates', 'asppChannels', 'dropout', 'inputSize', 'init', 'inputRange'] as const;
const TRAIN_KEYS = ['epochs', 'batchSize', 'optimizer', 'loss', 'lrSchedule', 'warmupEpochs', 'posWeight', 'readEverySteps', 'checkpointEverySteps', 'emaSmoothing'] as const;

function model(o: Obj): ModelConfig {
  const f = 'model';
  const encoder = oneOf(o, 'encoder', f, ['mobilenetv2', 'resnet34'] as const);
  const outputStride = oneOf(o, 'outputStride', f, [8, 16] as const);
  const inputSize = num(o, 'inputSize', f, 32, 1024, true);
  if (inputSize % 32 !== 0) throw new ConfigError('model.inputSize', `must be a multiple of 32, got ${inputSize}`);
  const rates = o.atrousRates;
  if (!Array.isArray(rates) || rates.length !== 3 || !rates.every((r) => Number.isInteger(r) && r >= 1 && r <= 64)) {
    throw new ConfigError('model.atrousRates', `must be three integers between 1 and 64, got ${JSON.stringify(rates)}`);
  }
  const width = num(o, 'width', f, 0.1, 2);
  // 'imagenet' is what cards called the nsfwjs weights before their name said what they are.
  const init = o.init === 'imagenet' ? 'nsfwjs' : oneOf(o, 'init', f, ENCODER_INITS);
  if (BUILT_IN_INITS.includes(init) && (encoder !== 'mobilenetv2' || width !== 1)) {
    throw new ConfigError('model.init', `"${init}" is available for mobilenetv2 at width 1 only (offline weights); got ${encoder} at width ${width}`);
  }
  return {
    encoder,
    width,
    outputStride,
    atrousRates: rates as [number, number, number],
    asppChannels: num(o, 'asppChannels', f, 8, 1024, true),
    dropout: num(o, 'dropout', f, 0, 0.95),
    inputSize,
    init,
    inputRange: oneOf(o, 'inputRange', f, ['unit', 'symmetric'] as const),
  };
}

const OPTIMIZER_KEYS = { sgd: ['kind', 'lr', 'momentum', 'weightDecay'], adam: ['kind', 'lr', 'beta1', 'beta2', 'epsilon', 'weightDecay'] } as const;

function optimizer(v: unknown): OptimizerConfig {
  const f = 'train.optimizer';
  const kind = oneOf(obj(v, f, [...OPTIMIZER_KEYS.sgd, ...OPTIMIZER_KEYS.adam]), 'kind', f, ['sgd', 'adam'] as const);
  const other = kind === 'sgd' ? 'adam' : 'sgd';
  const o = obj(v, f, OPTIMIZER_KEYS[kind], [{ kind: other, keys: OPTIMIZER_KEYS[other] }]);
  const lr = num(o, 'lr', f, 1e-7, 10);
  const weightDecay = num(o, 'weightDecay', f, 0, 1);
  if (kind === 'sgd') return { kind, lr, momentum: num(o, 'momentum', f, 0, 0.999), weightDecay };
  return {
    kind,
    lr,
    beta1: num(o, 'beta1', f, 0, 0.9999),
    beta2: num(o, 'beta2', f, 0, 0.99999),
    epsilon: num(o, 'epsilon', f, 1e-12, 1),
    weightDecay,
  };
}

function train(o: Obj): TrainConfig {
  const f = 'train';
  return {
    epochs: num(o, 'epochs', f, 1, 10000, true),
    batchSize: num(o, 'batchSize', f, 1, 512, true),
    optimizer: optimizer(o.optimizer),
    loss: oneOf(o, 'loss', f, LOSS_NAMES),
    // Cards written before these knobs existed ran the paper's constant rate.
    lrSchedule: o.lrSchedule === undefined ? 'constant' : oneOf(o, 'lrSchedule', f, ['constant', 'poly'] as const),
    warmupEpochs: o.warmupEpochs === undefined ? 0 : num(o, 'warmupEpochs', f, 0, 10000),
    posWeight: num(o, 'posWeight', f, 0.01, 100),
    readEverySteps: num(o, 'readEverySteps', f, 1, 1000, true),
    checkpointEverySteps: num(o, 'checkpointEverySteps', f, 1, 100000, true),
    emaSmoothing: num(o, 'emaSmoothing', f, 0, 0.999),
  };
}

function noise(o: Obj): NoiseConfig {
  const f = 'noise';
  const config: NoiseConfig = {
    preset: oneOf(o, 'preset', f, ['paper', 'none'] as const),
    distortion: oneOf(o, 'distortion', f, DISTORTION_KINDS),
  };
  if (o.probabilities !== undefined) {
    const p = obj(o.probabilities, 'noise.probabilities', NOISE_STEPS);
    for (const key of Object.keys(p)) num(p, key, 'noise.probabilities', 0, 1);
    config.probabilities = p as NoiseConfig['probabilities'];
  }
  return config;
}

const SPLIT_KEYS = { fractions: ['kind', 'val', 'test'], 'paper-fold': ['kind', 'valFold', 'test'] } as const;

function data(o: Obj): DataConfig {
  const f = 'data.split';
  const kind = oneOf(obj(o.split, f, [...SPLIT_KEYS.fractions, 'valFold']), 'kind', f, ['fractions', 'paper-fold'] as const);
  const other = kind === 'fractions' ? 'paper-fold' : 'fractions';
  const split = obj(o.split, f, SPLIT_KEYS[kind], [{ kind: other, keys: SPLIT_KEYS[other] }]);
  const test = num(split, 'test', 'data.split', 0, 0.9);
  const parsed: DataConfig['split'] = kind === 'fractions'
    ? { kind, val: num(split, 'val', 'data.split', 0, 0.9), test }
    : { kind, valFold: num(split, 'valFold', 'data.split', 0, 4, true), test };
  if (parsed.kind === 'fractions' && parsed.val + parsed.test >= 1) {
    throw new ConfigError('data.split', `val + test must leave images to train on, got ${parsed.val} + ${parsed.test}`);
  }
  const unlabeledPerLabeled = num(o, 'unlabeledPerLabeled', 'data', 0, 1000);
  if (unlabeledPerLabeled === 0) {
    throw new ConfigError('data.unlabeledPerLabeled', 'must be above 0, got 0: it is how many unlabeled images the student takes per labeled one (the paper: 4)');
  }
  return {
    split: parsed,
    unlabeledPerLabeled,
    labeledFraction: o.labeledFraction === undefined ? 1 : num(o, 'labeledFraction', 'data', 0.01, 1),
    ...(o.splitSeed !== undefined && { splitSeed: num(o, 'splitSeed', 'data', 0, 2 ** 32 - 1, true) }),
  };
}

/** Parses and validates an imported card; throws ConfigError naming the first bad field. */
export function parseRunCard(input: unknown): RunCard {
  const o = obj(input, 'card', ['version', 'name', 'seed', 'backend', 'model', 'train', 'noise', 'data', 'pseudo', 'student', 'eval']);
  const version = num(o, 'version', 'card', 1, Number.MAX_SAFE_INTEGER, true);
  if (version > RUN_CARD_VERSION) {
    throw new ConfigError('card.version', `this studio reads run cards up to version ${RUN_CARD_VERSION}; this one is version ${version}, made by a newer studio`);
  }
  const pseudo = obj(o.pseudo, 'pseudo', ['threshold', 'minLesionFraction', 'flipTta']);
  const student = obj(o.student, 'student', ['init', 'rounds']);
  const evalConfig = obj(o.eval, 'eval', ['logitThreshold', 'tta', 'postprocess']);
  if (typeof pseudo.flipTta !== 'boolean') throw new ConfigError('pseudo.flipTta', 'must be true or false');
  return {
    version,
    name: str(o, 'name', 'card'),
    seed: num(o, 'seed', 'card', 0, 2 ** 32 - 1, true),
    backend: oneOf(o, 'backend', 'card', ['auto', 'webgpu', 'wasm', 'webgl', 'cpu'] as const),
    model: model(obj(o.model, 'model', MODEL_KEYS)),
    train: train(obj(o.train, 'train', TRAIN_KEYS)),
    noise: noise(obj(o.noise, 'noise', ['preset', 'distortion', 'probabilities'])),
    data: data(obj(o.data, 'data', ['split', 'unlabeledPerLabeled', 'labeledFraction', 'splitSeed'])),
    pseudo: {
      threshold: num(pseudo, 'threshold', 'pseudo', 0.01, 0.99),
      minLesionFraction: num(pseudo, 'minLesionFraction', 'pseudo', 0, 0.5),
      flipTta: pseudo.flipTta,
    },
    student: {
      init: oneOf(student, 'init', 'student', ['same-as-teacher', 'teacher-weights'] as const),
      rounds: num(student, 'rounds', 'student', 0, 2, true),
    },
    eval: {
      logitThreshold: num(evalConfig, 'logitThreshold', 'eval', -20, 20),
      // Cards written before these knobs read masks as the paper does.
      tta: evalConfig.tta === undefined ? 'none' : oneOf(evalConfig, 'tta', 'eval', ['none', 'flips'] as const),
      postprocess: evalConfig.postprocess === undefined ? 'none' : oneOf(evalConfig, 'postprocess', 'eval', ['none', 'auto'] as const),
    },
  };
}

export interface CardDifference {
  /** Dotted path of the knob, e.g. 'model.inputSize'. */
  field: string;
  a: unknown;
  b: unknown;
}

/** Every knob whose value differs between two cards (lists compared whole), in the cards' order. */
export function cardDifferences(a: RunCard, b: RunCard): CardDifference[] {
  const out: CardDifference[] = [];
  const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
  const walk = (x: unknown, y: unknown, field: string): void => {
    if (isObject(x) && isObject(y)) {
      for (const key of new Set([...Object.keys(x), ...Object.keys(y)])) walk(x[key], y[key], field ? `${field}.${key}` : key);
    } else if (JSON.stringify(x) !== JSON.stringify(y)) {
      out.push({ field, a: x, b: y });
    }
  };
  walk(a, b, '');
  return out;
}

/**
 * Why `batchSize` cannot train on `trainImages` images (a step takes a full
 * batch), with the largest batch that would, or undefined when one fits. The
 * training stage fails with this message; the studio checks it against the
 * split's plan before a run starts.
 */
export function batchTooLarge(trainImages: number, batchSize: number): { message: string; largestBatch?: number } | undefined {
  if (trainImages >= batchSize) return undefined;
  if (trainImages === 0) return { message: 'the split leaves no training image' };
  const images = trainImages === 1 ? '1 training image is' : `${trainImages} training images are`;
  return { message: `${images} fewer than one batch of ${batchSize}`, largestBatch: trainImages };
}

/** One line per knob, for the studio's configure view and the CLI's help. */
export const KNOB_HELP: Record<string, string> = {
  seed: 'Seeds the initial weights, the splits, the shuffles, the noise and dropout: the same seed gives the same run.',
  backend: 'auto = WebGPU on a graphics card (not a software adapter such as SwiftShader), else wasm, else WebGL, else CPU.',
  'model.encoder': 'MobileNetV2 (fast, offline ImageNet-derived init) or ResNet-34 (the paper\'s likely backbone).',
  'model.width': 'Channel width multiplier; 1 is the standard network.',
  'model.outputStride': '8 keeps more detail (rates 12/24/36); 16 is about 3x cheaper (rates 6/12/18).',
  'model.atrousRates': 'Dilation rates of the three ASPP 3x3 branches.',
  'model.asppChannels': 'Channels of every ASPP branch and of the decoder (256 in the paper).',
  'model.dropout': 'Dropout after the ASPP projection: the student\'s model noise (0.5 in the paper).',
  'model.inputSize': 'Images and masks are resized to this square side (256 in the paper).',
  'model.init': 'nsfwjs = the MobileNetV2 shipped in nsfwjs (ImageNet through block_10, later blocks tuned by nsfwjs for its own task); imagenet-through-block10 = only its ImageNet blocks, the rest random; random; user = a tfjs layers model you supply.',
  'model.inputRange': 'unit feeds pixels in [0,1] (the paper); symmetric rescales to [-1,1] (what MobileNetV2 weights expect).',
  'train.epochs': 'Passes over the training images per stage (65 in the paper).',
  'train.batchSize': 'Images per step; the ragged last batch is dropped (10 in the paper).',
  'train.optimizer': 'SGD lr 0.006, momentum 0.81, weight decay 0.02 in the paper; Adam converges faster on small sets.',
  'train.loss': 'dice = soft Dice pooled over the batch (the paper); bce = BCE with logits and pos_weight; dice+bce = their sum.',
  'train.lrSchedule': 'constant = the paper\'s code; poly = DeepLabV3\'s decay to zero, lr * (1 - step/steps)^0.9.',
  'train.warmupEpochs': 'The learning rate rises linearly over these first epochs (0 = the paper).',
  'train.posWeight': 'BCE only: the weight of lesion pixels.',
  'train.readEverySteps': 'How often the loss is read back from the device (reading every step stalls a GPU).',
  'train.checkpointEverySteps': 'How often a resumable checkpoint is saved (and at every epoch\'s end).',
  'train.emaSmoothing': 'Smoothing of the validation mIoU whose maximum picks the best checkpoint (nnU-Net: 0.9).',
  noise: 'paper = the ten augmentations of the paper; none = resize only.',
  'noise.distortion': 'The one distortion of step 6: optical, grid, elastic or coarse-dropout.',
  'data.split': 'Held-out labeled images: seeded fractions, or the paper\'s mod-15 folds plus a test fraction.',
  'data.unlabeledPerLabeled': 'The paper\'s 1/m ratio: unlabeled images used per labeled training image (m = 4).',
  'data.labeledFraction': 'Keep masks for this fraction of the training images; the rest become unlabeled (to measure self-training with scarce labels).',
  'pseudo.threshold': 'Lesion probability at which a pseudo-label pixel becomes lesion.',
  'pseudo.minLesionFraction': 'Pseudo-labels with less lesion than this fraction of the image are dropped.',
  'pseudo.flipTta': 'Average the teacher\'s prediction with that of the flipped image.',
  'student.init': 'same-as-teacher = the paper (fresh from the same init); teacher-weights = fine-tune the teacher.',
  'student.rounds': '2 = student and student*, as in the paper; 0 = teacher only.',
  'eval.logitThreshold': 'Metrics threshold raw logits here (the paper: 0.5, i.e. probability 0.622).',
  'eval.tta': 'flips = average the prediction over the image and its three flips (validation, test, eval, predict); none = the paper.',
  'eval.postprocess': 'auto = keep the largest lesion and fill its holes when that scores better on the validation images; none = the paper.',
};
