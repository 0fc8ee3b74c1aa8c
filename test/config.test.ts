import { describe, expect, it } from 'vitest';
import { MemoryStore } from './helpers/memory-store.ts';
import { RunStore } from '../src/core/run/run-store.ts';
import { batchTooLarge, cardDifferences, paperCard, parseRunCard, presetCard, quickCard, RUN_CARD_VERSION, type RunCard } from '../src/core/config.ts';
import { ConfigError } from '../src/core/errors.ts';

/** A JSON copy of the paper card with one edit applied, as an imported file would hold it. */
function edited(edit: (card: Record<string, any>) => void): unknown {
  const card = JSON.parse(JSON.stringify(paperCard())) as Record<string, any>;
  edit(card);
  return card;
}

/** parseRunCard must throw a ConfigError naming `field`, and return nothing. */
function expectRejected(input: unknown, field: string, message?: RegExp): ConfigError {
  const before = JSON.stringify(input);
  let parsed: RunCard | undefined;
  let caught: unknown;
  try {
    parsed = parseRunCard(input);
  } catch (error) {
    caught = error;
  }
  expect(parsed).toBeUndefined();
  expect(caught).toBeInstanceOf(ConfigError);
  const error = caught as ConfigError;
  expect(error.code).toBe('config');
  expect(error.field).toBe(field);
  expect(error.message).toContain(field);
  if (message) expect(error.message).toMatch(message);
  // Validation reads the input and never writes to it.
  expect(JSON.stringify(input)).toBe(before);
  return error;
}

describe('presets', () => {
  it('the paper card validates and round-trips through JSON unchanged', () => {
    expect(parseRunCard(paperCard())).toEqual(paperCard());
    expect(parseRunCard(JSON.parse(JSON.stringify(paperCard())))).toEqual(paperCard());
  });

  it('the quick card validates and round-trips through JSON unchanged', () => {
    expect(parseRunCard(quickCard())).toEqual(quickCard());
    expect(parseRunCard(JSON.parse(JSON.stringify(quickCard())))).toEqual(quickCard());
    expect(presetCard('quick')).toEqual(quickCard());
    expect(presetCard('paper')).toEqual(paperCard());
  });

  it("the paper card holds the paper's protocol", () => {
    const card = paperCard();
    expect(card.version).toBe(RUN_CARD_VERSION);
    expect(card.seed).toBe(2137);
    expect(card.model).toMatchObject({ inputSize: 256, outputStride: 8, atrousRates: [12, 24, 36], asppChannels: 256, dropout: 0.5 });
    expect(card.train).toMatchObject({ epochs: 65, batchSize: 10, loss: 'dice' });
    expect(card.train.optimizer).toEqual({ kind: 'sgd', lr: 0.006, momentum: 0.81, weightDecay: 0.02 });
    expect(card.noise.preset).toBe('paper');
    expect(card.data.unlabeledPerLabeled).toBe(4);
    expect(card.data.labeledFraction).toBe(1);
    expect(card.student).toEqual({ init: 'same-as-teacher', rounds: 2 });
    expect(card.eval.logitThreshold).toBe(0.5);
    // The paper's "masks not created or too small": about 34 pixels at 256 x 256.
    expect(card.pseudo.minLesionFraction * 256 * 256).toBeCloseTo(34, 9);
  });

  it("keeps every default added since off in the paper card: constant rate, no warm-up, Dice alone, no TTA, no post-processing, the whole pretrained encoder", () => {
    const card = paperCard();
    expect(card.train).toMatchObject({ lrSchedule: 'constant', warmupEpochs: 0, loss: 'dice' });
    expect(card.eval).toEqual({ logitThreshold: 0.5, tta: 'none', postprocess: 'none' });
    expect(card.pseudo.flipTta).toBe(false);
    expect(card.model.init).toBe('nsfwjs');
  });

  it('a run stored with such a card reads back in today\'s shape, so it resumes without a card difference', async () => {
    const legacy = JSON.parse(JSON.stringify(quickCard())) as Record<string, any>;
    delete legacy.train.lrSchedule;
    delete legacy.train.warmupEpochs;
    legacy.eval = { logitThreshold: 0.5 };
    legacy.model.init = 'imagenet';
    const store = new MemoryStore();
    const run = new RunStore(store, 'old');
    await run.setCard(legacy as RunCard);
    const read = await run.card();
    expect(read).toEqual(parseRunCard(legacy));
    expect(cardDifferences(read!, parseRunCard(JSON.parse(JSON.stringify(legacy))))).toEqual([]);
  });

  it('reads a card written before these knobs as the paper ran: constant rate, Dice, no TTA or post-processing, "imagenet" as nsfwjs', () => {
    const legacy = JSON.parse(JSON.stringify(quickCard())) as Record<string, any>;
    delete legacy.train.lrSchedule;
    delete legacy.train.warmupEpochs;
    legacy.eval = { logitThreshold: 0.5 };
    legacy.model.init = 'imagenet';
    const card = parseRunCard(legacy);
    expect(card.train).toMatchObject({ lrSchedule: 'constant', warmupEpochs: 0 });
    expect(card.eval).toEqual({ logitThreshold: 0.5, tta: 'none', postprocess: 'none' });
    expect(card.model.init).toBe('nsfwjs');
  });

  it('presets are fresh objects: editing one does not change the next', () => {
    const card = paperCard();
    card.model.atrousRates[0] = 99;
    card.train.optimizer.lr = 1;
    expect(paperCard().model.atrousRates[0]).toBe(12);
    expect(paperCard().train.optimizer.lr).toBe(0.006);
  });
});

describe('bad cards are rejected with the field named', () => {
  it('rejects what is not a card at all', () => {
    expectRejected(null, 'card');
    expectRejected([paperCard()], 'card');
    expectRejected('paper', 'card');
  });

  it('rejects wrong types', () => {
    expectRejected(edited((c) => (c.train.batchSize = '10')), 'train.batchSize', /number/);
    expectRejected(edited((c) => (c.seed = 1.5)), 'card.seed', /integer/);
    expectRejected(edited((c) => (c.model = 'deeplab')), 'model', /object/);
    expectRejected(edited((c) => (c.train.optimizer = null)), 'train.optimizer', /object/);
    expectRejected(edited((c) => (c.model.atrousRates = [12, 24])), 'model.atrousRates');
    expectRejected(edited((c) => (c.model.atrousRates = [12, '24', 36])), 'model.atrousRates');
    expectRejected(edited((c) => (c.pseudo.flipTta = 'yes')), 'pseudo.flipTta');
    expectRejected(edited((c) => (c.name = '')), 'card.name');
  });

  it('rejects missing fields', () => {
    expectRejected(edited((c) => delete c.train.epochs), 'train.epochs');
    expectRejected(edited((c) => delete c.model), 'model');
    expectRejected(edited((c) => delete c.train.optimizer.momentum), 'train.optimizer.momentum');
    expectRejected(edited((c) => delete c.eval), 'eval');
    expectRejected(edited((c) => delete c.version), 'card.version');
  });

  it('rejects absurd sizes and values out of range', () => {
    expectRejected(edited((c) => (c.model.inputSize = 100000)), 'model.inputSize', /between 32 and 1024/);
    expectRejected(edited((c) => (c.model.inputSize = 40)), 'model.inputSize', /multiple of 32/);
    expectRejected(edited((c) => (c.model.inputSize = 0)), 'model.inputSize');
    expectRejected(edited((c) => (c.train.batchSize = 0)), 'train.batchSize');
    expectRejected(edited((c) => (c.train.batchSize = 100000)), 'train.batchSize');
    expectRejected(edited((c) => (c.train.epochs = 0)), 'train.epochs');
    expectRejected(edited((c) => (c.train.optimizer.lr = -0.1)), 'train.optimizer.lr');
    expectRejected(edited((c) => (c.model.dropout = 1)), 'model.dropout');
    expectRejected(edited((c) => (c.model.outputStride = 32)), 'model.outputStride');
    expectRejected(edited((c) => (c.data.split = { kind: 'fractions', val: 0.5, test: 0.5 })), 'data.split', /leave images to train/);
    expectRejected(edited((c) => (c.data.labeledFraction = 0)), 'data.labeledFraction');
  });

  it('rejects unknown choices', () => {
    expectRejected(edited((c) => (c.noise.probabilities = { transpose: 0.2, sharpen: 0.5 })), 'noise.probabilities.sharpen', /unknown key; the keys here are transpose, /);
    expectRejected(edited((c) => (c.noise.probabilities = { clahe: 2 })), 'noise.probabilities.clahe');
    expectRejected(edited((c) => (c.noise.distortion = 'swirl')), 'noise.distortion');
    expectRejected(edited((c) => (c.train.optimizer.kind = 'rmsprop')), 'train.optimizer.kind');
    expectRejected(edited((c) => (c.train.loss = 'focal')), 'train.loss');
    expectRejected(edited((c) => (c.backend = 'cuda')), 'card.backend');
  });

  it('refuses an unknown key anywhere, naming its path and the known key it most likely meant', () => {
    const misspelt = expectRejected(edited((c) => {
      c.data.labelledFraction = 0.5;
    }), 'data.labelledFraction');
    expect(misspelt.message).toBe('data.labelledFraction: unknown key; did you mean data.labeledFraction?');
    expectRejected(edited((c) => (c.seeed = 1)), 'card.seeed', /did you mean card\.seed\?$/);
    expectRejected(edited((c) => (c.model.inputsize = 128)), 'model.inputsize', /did you mean model\.inputSize\?$/);
    expectRejected(edited((c) => (c.train.optimizer.momentun = 0.9)), 'train.optimizer.momentun', /did you mean train\.optimizer\.momentum\?$/);
    expectRejected(edited((c) => (c.data.split.valFolds = 1)), 'data.split.valFolds', /did you mean data\.split\.valFold\?$/);
    expectRejected(edited((c) => (c.pseudo.treshold = 0.4)), 'pseudo.treshold', /did you mean pseudo\.threshold\?$/);
    expectRejected(edited((c) => (c.noise.probabilities = { transpos: 0.2 })), 'noise.probabilities.transpos', /did you mean noise\.probabilities\.transpose\?$/);
    // Nothing near it: the keys that exist are listed instead.
    expectRejected(edited((c) => (c.eval.comment = 'x')), 'eval.comment', /unknown key; the keys here are logitThreshold, tta, postprocess$/);
    // A key of the other kind would be ignored just the same.
    expectRejected(edited((c) => (c.train.optimizer.beta1 = 0.9)), 'train.optimizer.beta1', /belongs to kind "adam"/);
    expectRejected(edited((c) => (c.data.split.val = 0.2)), 'data.split.val', /belongs to kind "fractions"/);
  });

  it('refuses data.unlabeledPerLabeled 0 at validation, naming the field', () => {
    expectRejected(edited((c) => (c.data.unlabeledPerLabeled = 0)), 'data.unlabeledPerLabeled', /must be above 0/);
    expect(parseRunCard(edited((c) => (c.data.unlabeledPerLabeled = 0.25))).data.unlabeledPerLabeled).toBe(0.25);
  });

  it('accepts known noise steps with valid probabilities', () => {
    const card = parseRunCard(edited((c) => (c.noise.probabilities = { transpose: 0, clahe: 1 })));
    expect(card.noise.probabilities).toEqual({ transpose: 0, clahe: 1 });
  });

  it('rejects a card from a newer studio, saying so', () => {
    const error = expectRejected(edited((c) => (c.version = RUN_CARD_VERSION + 1)), 'card.version', /newer studio/);
    expect(error.message).toContain(String(RUN_CARD_VERSION + 1));
  });

  it('rejects the offline ImageNet initialisation for encoders it does not exist for', () => {
    expectRejected(edited((c) => (c.model.encoder = 'resnet34')), 'model.init', /resnet34/);
    expectRejected(edited((c) => (c.model.width = 0.5)), 'model.init');
    const random = parseRunCard(edited((c) => Object.assign(c.model, { encoder: 'resnet34', init: 'random' })));
    expect(random.model.encoder).toBe('resnet34');
  });

  it('validates every section: a fault in the last one still rejects the whole card', () => {
    expectRejected(edited((c) => (c.eval.logitThreshold = 'high')), 'eval.logitThreshold');
    expectRejected(edited((c) => (c.student.rounds = 3)), 'student.rounds');
  });
});

describe('one batch against the training part of the split', () => {
  it('fits when the training images fill at least one batch', () => {
    expect(batchTooLarge(8, 8)).toBeUndefined();
    expect(batchTooLarge(100, 10)).toBeUndefined();
  });

  it('says how many images there are and offers the largest batch that fits', () => {
    expect(batchTooLarge(7, 8)).toEqual({ message: '7 training images are fewer than one batch of 8', largestBatch: 7 });
    expect(batchTooLarge(1, 4)).toEqual({ message: '1 training image is fewer than one batch of 4', largestBatch: 1 });
  });

  it('offers no batch when the split leaves no training image', () => {
    expect(batchTooLarge(0, 4)).toEqual({ message: 'the split leaves no training image' });
  });
});
