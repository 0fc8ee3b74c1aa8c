"""The job's run card as src/core/config.ts parseRunCard reads it, for the
knobs this package acts on: cards written before a knob existed get the
paper's behaviour (the same defaults as there), 'imagenet' reads as 'nsfwjs',
and a knob or value this package does not run is refused with one line that
names the field, never ignored.

The split (data.*) and the starting weights (model.init, written into the
job's init/ by export-job: jobStartModel in src/core/run/job.ts) are decided
by the studio before the job is written; here model.init is only checked.
"""
import copy
import numbers


class CardError(Exception):
    pass


# What this package runs, section by section (the keys are config.ts's).
KNOWN_KEYS = {
    'card': ('version', 'name', 'seed', 'backend', 'model', 'train', 'noise', 'data', 'pseudo', 'student', 'eval'),
    'model': ('encoder', 'width', 'outputStride', 'atrousRates', 'asppChannels', 'dropout', 'inputSize', 'init', 'inputRange'),
    'train': ('epochs', 'batchSize', 'optimizer', 'loss', 'lrSchedule', 'warmupEpochs', 'posWeight', 'readEverySteps', 'checkpointEverySteps', 'emaSmoothing'),
    'train.optimizer': ('kind', 'lr', 'momentum', 'beta1', 'beta2', 'epsilon', 'weightDecay'),
    'pseudo': ('threshold', 'minLesionFraction', 'flipTta'),
    'student': ('init', 'rounds'),
    'eval': ('logitThreshold', 'tta', 'postprocess'),
}

CHOICES = {
    'model.encoder': ('mobilenetv2', 'resnet34'),
    'model.init': ('nsfwjs', 'imagenet-through-block10', 'random', 'user'),
    'model.inputRange': ('unit', 'symmetric'),
    'train.optimizer.kind': ('sgd', 'adam'),
    'train.loss': ('dice', 'bce', 'dice+bce'),
    'train.lrSchedule': ('constant', 'poly'),
    'student.init': ('same-as-teacher', 'teacher-weights'),
    'eval.tta': ('none', 'flips'),
    'eval.postprocess': ('none', 'auto'),
}

# Cards written before these knobs existed run the paper's way (parseRunCard's defaults).
DEFAULTS = {
    'train.lrSchedule': 'constant',
    'train.warmupEpochs': 0,
    'eval.tta': 'none',
    'eval.postprocess': 'none',
}


def _section(card, field):
    node = card
    for part in field.split('.') if field != 'card' else []:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise CardError(f'card {field}: must be an object')
    return node


def _get(card, field):
    *parents, key = field.split('.')
    return _section(card, '.'.join(parents)), key


def normalise_card(card):
    """A copy of the card with parseRunCard's defaults and legacy names; CardError names the first knob not run here."""
    card = copy.deepcopy(card)
    for section, keys in KNOWN_KEYS.items():
        node = _section(card, section)
        for key in node:
            if key not in keys:
                where = key if section == 'card' else f'{section}.{key}'
                raise CardError(f'card {where}: a knob this package does not run (it knows {", ".join(keys)}); '
                                'update python/lesion_studio_torch or drop the key')
    for field, value in DEFAULTS.items():
        node, key = _get(card, field)
        node.setdefault(key, value)
    model = card['model']
    if model.get('init') == 'imagenet':
        # What cards called the nsfwjs weights before their name said what they are (config.ts).
        model['init'] = 'nsfwjs'
    for field, allowed in CHOICES.items():
        node, key = _get(card, field)
        if node.get(key) not in allowed:
            raise CardError(f'card {field}: {node.get(key)!r} is not run here (it runs {", ".join(allowed)})')
    warmup = card['train']['warmupEpochs']
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Real) or not warmup >= 0:
        raise CardError(f'card train.warmupEpochs: must be a number of epochs >= 0, got {warmup!r}')
    if not isinstance(card['pseudo'].get('flipTta'), bool):
        raise CardError(f"card pseudo.flipTta: must be true or false, got {card['pseudo'].get('flipTta')!r}")
    return card
