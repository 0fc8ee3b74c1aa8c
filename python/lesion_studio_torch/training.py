"""The card's loss, optimiser and learning-rate schedule, as
src/core/training/losses.ts and optim.ts run them, over the processes of a
DistributedDataParallel run (`world`: size and all_reduce; Solo for one)."""
import math

import torch
import torch.nn.functional as F


class Solo:
    """The world of one process."""
    size = 1

    @staticmethod
    def all_reduce(tensor):
        return tensor


def dice_loss(logits, targets, world, eps=1e-7):
    """losses.ts softDiceLoss pooled over the GLOBAL batch: (surrogate to back-propagate, the loss)."""
    p = torch.sigmoid(logits)
    local = torch.stack([(p * targets).sum(), p.sum(), targets.sum()])
    intersection, predicted, truth = world.all_reduce(local.detach().clone())
    denominator = predicted + truth
    has_lesion = (truth > 0).float()
    value = (1 - 2 * intersection / torch.clamp(denominator, min=eps)) * has_lesion
    if denominator <= eps:
        return local.sum() * 0, value
    # d loss / d (local sums), times the world size that DDP's gradient averaging divides out.
    surrogate = world.size * has_lesion * (-(2 / denominator) * local[0] + (2 * intersection / denominator ** 2) * local[1])
    return surrogate, value


def bce_loss(logits, targets, world, pos_weight):
    """losses.ts bceWithLogitsLoss: each process's mean over its share, which DDP averages into the global mean."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor([pos_weight], device=logits.device))
    return loss, world.all_reduce(loss.detach().clone()) / world.size


def loss_function(train, world):
    """losses.ts lossByName for the card's train section: (logits, targets) -> (surrogate, value)."""
    name = train['loss']
    if name == 'dice':
        return lambda y, t: dice_loss(y, t, world)
    if name == 'bce':
        return lambda y, t: bce_loss(y, t, world, train['posWeight'])
    if name == 'dice+bce':
        def both(y, t):
            dice_surrogate, dice_value = dice_loss(y, t, world)
            bce_surrogate, bce_value = bce_loss(y, t, world, train['posWeight'])
            return dice_surrogate + bce_surrogate, dice_value + bce_value
        return both
    raise ValueError(f'train.loss {name!r} is not run here (dice, bce, dice+bce)')


def make_optimizer(card, parameters):
    o = card['train']['optimizer']
    if o['kind'] == 'sgd':
        return torch.optim.SGD(parameters, lr=o['lr'], momentum=o['momentum'], weight_decay=o['weightDecay'])
    return torch.optim.Adam(parameters, lr=o['lr'], betas=(o['beta1'], o['beta2']), eps=o['epsilon'], weight_decay=o['weightDecay'])


def js_round(x):
    """JavaScript's Math.round (halves up), not Python's round (halves to even)."""
    return math.floor(x + 0.5)


def learning_rate_scale(train, step, total_steps, steps_per_epoch):
    """optim.ts learningRateScale: the factor on the card's rate at the stage's step `step` (0-based)
    of `total_steps`: linear warm-up over warmupEpochs, then constant or poly (power 0.9)."""
    warmup = min(js_round(train['warmupEpochs'] * steps_per_epoch), total_steps - 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if train['lrSchedule'] == 'constant':
        return 1
    return (1 - (step - warmup) / (total_steps - warmup)) ** 0.9


def set_learning_rate(optimizer, card, scale):
    """The card's rate times `scale` for the next step (the optimisers' lr, as optim.ts's apply takes lrScale)."""
    for group in optimizer.param_groups:
        group['lr'] = card['train']['optimizer']['lr'] * scale
