"""Runs a job that `lesion-studio export-job` wrote: the card's four stages
(teacher, pseudo-labels, noisy student, pseudo-labels, student*) with
DistributedDataParallel, one process per GPU (NCCL) or per CPU share (gloo),
as torchrun starts them.

What the studio's pipeline does, and where this differs on purpose:
- the split, the card and the starting weights are the job's, so the run is
  the studio's experiment; stage models, metrics and pseudo-labels come out
  in the studio's formats (products.ts), and `lesion-studio eval` and the
  studio open them;
- the card's batch size is the global batch, cut evenly over the processes
  by a DistributedSampler (seeded, reshuffled every epoch); the ragged end is
  dropped, as the studio drops its ragged last batch;
- the Dice loss is pooled over the whole global batch as the studio's is:
  its three sums are all-reduced before the quotient, and each process
  back-propagates the exact global gradient of its own outputs (DDP then
  averages); batch norm is synchronised across GPUs (SyncBatchNorm) and
  per process on CPUs, where PyTorch has no synchronised one; the card's
  loss (dice, bce, dice+bce) and its learning-rate schedule (warm-up, then
  constant or poly) per global step, as training.py says;
- predictions are read as the studio reads them (readout.py): eval.tta in
  validation and test, pseudo.flipTta in pseudo-labelling, and with
  eval.postprocess 'auto' the best checkpoint keeps the largest lesion,
  holes filled, iff that scores better on the validation images; the
  decision goes into the stage's results and its model's metadata.json, and
  the producer's decision into its pseudo-labels;
- the card is read by card.py: a knob this package does not run is refused;
- validation, the EMA rule for the best epoch, test scoring and every file
  are rank 0's; pseudo-labelling is sharded over the ranks;
- rank 0 checkpoints every card.train.checkpointEverySteps steps and at each
  epoch's end (written whole, then renamed); running the same command again
  resumes the stage at the step after the checkpoint, with the same sample
  order, noise and dropout draws as an unbroken run.
"""
import argparse
import csv
import io
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .card import CardError, normalise_card
from .images import ImageError, read_image, read_mask, read_stored_mask, resize_nearest, write_mask_png
from .metrics import MetricAccumulator
from .model import DeepLabV3
from .noise import NoiseError, apply_noise, check_noise
from .readout import largest_lesion_filled, predict_logits, read_mask as read_prediction, to_tensor
from .tfjs_io import METADATA_FILE, ModelFormatError, load_weights, save_model
from .training import learning_rate_scale, loss_function, make_optimizer, set_learning_rate

JOB_FORMAT = 'lesion-studio-job/1'
PSEUDO_OF = {'student': 'pseudo-teacher', 'student-star': 'pseudo-student'}
PRODUCER = {'pseudo-teacher': 'teacher', 'pseudo-student': 'student'}
STAGE_INDEX = {'teacher': 0, 'pseudo-teacher': 1, 'student': 2, 'pseudo-student': 3, 'student-star': 4}


class JobError(Exception):
    pass


def seed_of(*parts):
    """One 63-bit seed from the card's seed and a stage, epoch, step, image or rank."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def clean(value):
    """JSON as the studio writes it: NaN and infinities become null (JSON.stringify's way)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(json.dumps(clean(value), indent=2) + '\n')
    os.replace(tmp, path)


def read_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


# ---- the job -----------------------------------------------------------------

class Job:
    def __init__(self, folder, data_roots, out):
        self.folder = os.path.abspath(folder)
        path = os.path.join(self.folder, 'job.json')
        try:
            doc = read_json(path)
        except (OSError, ValueError) as error:
            raise JobError(f'{path}: cannot read the job ({error}); make one with `lesion-studio export-job`') from None
        if doc.get('format') != JOB_FORMAT:
            raise JobError(f'{path}: format {doc.get("format")!r}; this package runs {JOB_FORMAT}')
        try:
            self.card = normalise_card(doc['card'])
        except CardError as error:
            raise JobError(f'{path}: {error}') from None
        self.stages = doc['stages']
        self.counts = doc['counts']
        roots = dict(doc['roots'])
        for spec in data_roots:
            name, sep, where = spec.partition('=')
            if not sep or name not in roots:
                raise JobError(f'--data-root {spec}: expected <name>=<path> with a name among {", ".join(roots)}')
            roots[name] = where
        for name, where in roots.items():
            if not os.path.isdir(where):
                raise JobError(f'data root {name}: {where} is not a folder here; point it with --data-root {name}=<path>')
        self.images = []
        for entry in doc['images']:
            item = dict(entry)
            item['path'] = os.path.join(roots[entry['root']], entry['image'])
            item['studio_path'] = f"{entry['root']}/{entry['image']}"
            if 'mask' in entry:
                item['mask_path'] = os.path.join(self.folder if entry.get('maskInJob') else roots[entry['root']], entry['mask'])
            self.images.append(item)
        self.init_dir = os.path.join(self.folder, doc['init']['dir'])
        self.out = os.path.abspath(out or os.path.join(self.folder, 'out'))
        self.store = os.path.join(self.out, 'store')
        try:
            check_noise(self.card['noise'])
        except NoiseError as error:
            raise JobError(f'{path}: {error}') from None

    def part(self, split):
        return [i for i in self.images if i['split'] == split]

    def checkpoint(self, stage, kind):
        return os.path.join(self.store, 'checkpoints', stage, f'{kind}.pt')

    def state(self):
        path = os.path.join(self.store, 'state.json')
        return read_json(path) if os.path.exists(path) else {'completed': [], 'results': []}


# ---- processes ---------------------------------------------------------------

class World:
    def __init__(self):
        self.distributed = 'RANK' in os.environ and 'WORLD_SIZE' in os.environ
        self.cuda = torch.cuda.is_available()
        local = int(os.environ.get('LOCAL_RANK', 0))
        self.device = torch.device(f'cuda:{local}' if self.cuda else 'cpu')
        if self.cuda:
            torch.cuda.set_device(self.device)
        if self.distributed:
            dist.init_process_group('nccl' if self.cuda else 'gloo')
        self.rank = dist.get_rank() if self.distributed else 0
        self.size = dist.get_world_size() if self.distributed else 1
        self.backend = dist.get_backend() if self.distributed else 'none'

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def all_reduce(self, tensor):
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def say(self, text):
        if self.rank == 0:
            print(text, flush=True)


# ---- data --------------------------------------------------------------------

PIXELS = {}


def pixels(item, size):
    """An image and its mask (expert or pseudo-label) at the training size, decoded once per process (PixelCache's role)."""
    key = (item['path'], item.get('stored_mask') or item['mask_path'], size)
    if key not in PIXELS:
        image, _ = read_image(item['path'], size)
        mask = read_stored_mask(item['stored_mask']) if 'stored_mask' in item else read_mask(item['mask_path'], size)
        PIXELS[key] = (image, mask)
    return PIXELS[key]


class Samples(Dataset):
    """Training pairs at the card's size, noised per (stage, epoch, image) seed."""

    def __init__(self, items, card, stage):
        self.items, self.card, self.stage = items, card, stage
        self.size = card['model']['inputSize']
        self.epoch = 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image, mask = pixels(self.items[i], self.size)
        rng = np.random.default_rng(seed_of(self.card['seed'], STAGE_INDEX[self.stage], self.epoch, i))
        image, mask = apply_noise(image, mask, self.card['noise'], rng)
        return to_tensor(image), torch.from_numpy(np.ascontiguousarray(mask))[None].float()


def build_model(job, world):
    model = DeepLabV3(job.card['model'])
    try:
        load_weights(model, job.init_dir)
    except ModelFormatError as error:
        raise JobError(str(error)) from None
    return model.to(world.device)


def evaluate(model, items, card, device, postprocess=False, also_postprocessed=False):
    """evaluate.ts with the card's readout (eval.tta, the threshold, the stage's post-processing): batches
    of the card's batch size, overall and per set (each set's share of a batch is one batch); with
    `also_postprocessed`, the same predictions post-processed, to decide whether that helps."""
    size, batch = card['model']['inputSize'], card['train']['batchSize']
    threshold, tta = card['eval']['logitThreshold'], card['eval']['tta']
    overall, by_set = MetricAccumulator(), {}
    postprocessed = MetricAccumulator() if also_postprocessed else None
    model.eval()
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        images, truths = zip(*(pixels(i, size) for i in chunk))
        ids = [i['id'] for i in chunk]
        preds = [read_prediction(l, threshold, postprocess) for l in predict_logits(model, images, tta, device)]
        overall.add_batch(preds, truths, ids)
        if postprocessed is not None:
            postprocessed.add_batch([largest_lesion_filled(p) for p in preds], truths, ids)
        for s in dict.fromkeys(i['set'] for i in chunk):
            idx = [k for k, i in enumerate(chunk) if i['set'] == s]
            by_set.setdefault(s, MetricAccumulator()).add_batch([preds[k] for k in idx], [truths[k] for k in idx], [chunk[k]['id'] for k in idx])
    summaries = overall.summary(), {s: a.summary() for s, a in by_set.items()}
    return summaries + (postprocessed.summary(),) if postprocessed is not None else summaries


def decide_postprocess(model, val, card, device):
    """pipeline.ts decidePostprocess: with eval.postprocess 'auto', keep the largest lesion, holes filled,
    iff that scores a strictly higher lesion IoU on the validation images; None when not asked or none to validate on."""
    if card['eval']['postprocess'] != 'auto' or not val:
        return None
    without, _, with_it = evaluate(model, val, card, device, also_postprocessed=True)
    return {'applied': with_it['lesionIoU'] > without['lesionIoU'], 'valLesionIoU': {'without': without['lesionIoU'], 'with': with_it['lesionIoU']}}


# ---- stages ------------------------------------------------------------------

def save_checkpoint(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train_stage(job, world, stage, items, val, args):
    card = job.card
    t = card['train']
    per_rank, rest = divmod(t['batchSize'], world.size)
    if rest or per_rank == 0:
        raise JobError(f"train.batchSize {t['batchSize']} cannot be cut evenly over {world.size} processes; give a multiple of {world.size}")
    if len(items) < t['batchSize']:
        raise JobError(f"{stage}: {len(items)} training images are fewer than one batch of {t['batchSize']}")
    model = build_model(job, world)
    if stage != 'teacher' and card['student']['init'] == 'teacher-weights':
        model.load_state_dict(torch.load(job.checkpoint('teacher', 'best'), map_location=world.device))
    if world.cuda and world.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = DistributedDataParallel(model, device_ids=[world.device.index] if world.cuda else None) if world.distributed else model
    optimizer = make_optimizer(card, ddp.parameters())
    amp = bool(args.amp and world.cuda)
    scaler = torch.cuda.amp.GradScaler(enabled=amp)
    position = {'epoch': 0, 'stepInEpoch': 0, 'step': 0, 'ema': None, 'bestEma': None, 'bestEpoch': None, 'bestValidation': None, 'lastValidation': None}
    latest = job.checkpoint(stage, 'latest')
    if os.path.exists(latest):
        saved = torch.load(latest, map_location=world.device)
        model.load_state_dict(saved['model'])
        optimizer.load_state_dict(saved['optimizer'])
        scaler.load_state_dict(saved['scaler'])
        position = saved['position']
        world.say(f"{stage}: resumed from its checkpoint at epoch {position['epoch'] + 1}, step {position['stepInEpoch']} of the epoch ({position['step']} in all)")

    def checkpoint(kind):
        if world.rank == 0:
            save_checkpoint(latest, {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(), 'position': position})
            if kind == 'best':
                save_checkpoint(job.checkpoint(stage, 'best'), model.state_dict())
            where = f"the end of epoch {position['epoch']}" if position['stepInEpoch'] == 0 else f"epoch {position['epoch'] + 1}, step {position['stepInEpoch']}"
            print(f"{stage}: checkpoint ({kind}) at {where} ({position['step']} steps in all)", flush=True)

    data = Samples(items, card, stage)
    sampler = DistributedSampler(data, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed_of(card['seed'], STAGE_INDEX[stage]), drop_last=True)
    steps = len(sampler) // per_rank
    loss_of = loss_function(t, world)
    epochs = t['epochs']
    # Global steps: a DistributedSampler that drops the ragged end gives each epoch floor(images / batch), as train.ts.
    total_steps = epochs * steps
    while position['epoch'] < epochs:
        epoch = position['epoch']
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        data.epoch = epoch
        # The steps a checkpoint already holds are skipped, not redrawn: the order is the unbroken run's.
        order = list(sampler)[position['stepInEpoch'] * per_rank:steps * per_rank]
        loader = DataLoader(data, batch_size=per_rank, sampler=order, drop_last=True, num_workers=args.workers)
        ddp.train()
        losses, pending = [], []
        for x, y in loader:
            x, y = x.to(world.device, non_blocking=True), y.to(world.device, non_blocking=True)
            # Dropout's masks, drawn per step and rank: a resumed run draws the unbroken run's.
            torch.manual_seed(seed_of(card['seed'], STAGE_INDEX[stage], position['step'], world.rank))
            with torch.autocast('cuda', dtype=torch.float16, enabled=amp):
                logits = ddp(x)
            surrogate, value = loss_of(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            # A function of the step alone (optim.ts learningRateScale), so a resumed stage takes the unbroken one's rates.
            set_learning_rate(optimizer, card, learning_rate_scale(t, position['step'], total_steps, steps))
            scaler.scale(surrogate).backward()
            scaler.step(optimizer)
            scaler.update()
            pending.append(value)
            position['step'] += 1
            position['stepInEpoch'] += 1
            if len(pending) >= t['readEverySteps'] or position['stepInEpoch'] == steps:
                read = torch.stack(pending).cpu().tolist()
                pending = []
                bad = next((v for v in read if not math.isfinite(v)), None)
                if bad is not None:
                    raise JobError(f"{stage}: the loss became {bad} at step {position['step']}; the latest checkpoint (saved after finite losses only) is the last good one")
                losses += read
            if position['step'] % t['checkpointEverySteps'] == 0 and position['stepInEpoch'] < steps:
                checkpoint('latest')
        validation = None
        best = True
        if world.rank == 0 and val:
            validation, _ = evaluate(model, val, card, world.device)
            metric = validation['paperMIoU']
            position['ema'] = metric if position['ema'] is None else t['emaSmoothing'] * position['ema'] + (1 - t['emaSmoothing']) * metric
            best = position['bestEma'] is None or position['ema'] > position['bestEma']
        position.update(epoch=epoch + 1, stepInEpoch=0, lastValidation=validation)
        if best:
            position.update(bestEma=position['ema'], bestEpoch=epoch + 1, bestValidation=validation)
        seconds = time.perf_counter() - started
        loss = sum(losses) / len(losses) if losses else float('nan')
        figures = f"val paper mIoU {validation['paperMIoU']:.4f}, lesion IoU {validation['lesionIoU']:.4f}, EMA {position['ema']:.4f}" if validation else 'no validation images'
        world.say(f"{stage} epoch {epoch + 1}/{epochs}: loss {loss:.4f}, {figures}{' (best)' if best else ''}; {len(losses)} steps in {seconds:.1f} s ({len(losses) * t['batchSize'] / seconds:.1f} images/s, {world.size} process{'es' if world.size > 1 else ''})")
        checkpoint('best' if best else 'latest')
        world.barrier()
    world.barrier()
    return model, position


def pseudo_stage(job, world, stage, pool, state):
    """pseudo.ts on this rank's shard of the pool; rank 0 merges the records in pool order. The masks are
    read with pseudo.flipTta (a horizontal flip; not eval.tta) and the producer's validated post-processing."""
    card = job.card
    producer = next((r for r in state['results'] if r['stage'] == PRODUCER[stage]), {})
    postprocess = bool((producer.get('postprocess') or {}).get('applied', False))
    tta = 'hflip' if card['pseudo']['flipTta'] else 'none'
    size, batch = card['model']['inputSize'], card['train']['batchSize']
    threshold = math.log(card['pseudo']['threshold'] / (1 - card['pseudo']['threshold']))
    model = build_model(job, world)
    model.load_state_dict(torch.load(job.checkpoint(PRODUCER[stage], 'best'), map_location=world.device))
    model.eval()
    folder = os.path.join(job.store, 'pseudo', stage)
    os.makedirs(folder, exist_ok=True)
    mine = list(range(world.rank, len(pool), world.size))
    records = {}
    started = time.perf_counter()
    for start in range(0, len(mine), batch):
        chunk = mine[start:start + batch]
        images, sizes = [], {}
        for i in list(chunk):
            try:
                image, sizes[i] = read_image(pool[i]['path'], size)
                images.append(image)
            except ImageError as error:
                print(f'warning: {pool[i]["studio_path"]}: skipped: {error}', file=sys.stderr, flush=True)
                chunk.remove(i)
        for i, logits in zip(chunk, predict_logits(model, images, tta, world.device) if images else []):
            mask = read_prediction(logits, threshold, postprocess)
            p = 1 / (1 + np.exp(-logits.astype(np.float64)))
            with np.errstate(divide='ignore', invalid='ignore'):
                entropy = np.where((p > 0) & (p < 1), -(p * np.log2(p) + (1 - p) * np.log2(1 - p)), 0)
            fraction = float(mask.mean())
            write_mask_png(os.path.join(folder, f'{i}.png'), mask)
            records[i] = {'id': pool[i]['id'], 'image': pool[i]['studio_path'], 'key': f'{stage}/{i}', 'lesionFraction': fraction,
                          'uncertainty': float(entropy.mean()), 'dropped': fraction < card['pseudo']['minLesionFraction'], 'size': sizes[i]}
    write_json(os.path.join(folder, f'records.rank{world.rank}.json'), records)
    world.barrier()
    if world.rank == 0:
        merged = {}
        for r in range(world.size):
            merged.update({int(k): v for k, v in read_json(os.path.join(folder, f'records.rank{r}.json')).items()})
        ordered = [merged[i] for i in sorted(merged)]
        write_json(os.path.join(folder, 'records.json'), ordered)
        write_pseudo_products(job, stage, ordered, folder)
        kept = sum(not r['dropped'] for r in ordered)
        world.say(f'{stage}: {len(ordered)} pseudo-labels ({kept} kept, {len(ordered) - kept} dropped) in {time.perf_counter() - started:.1f} s over {world.size} process{"es" if world.size > 1 else ""}')
    world.barrier()


def write_pseudo_products(job, stage, records, folder):
    """products.ts pseudoLabelFiles: kept masks at their image's own size, and the CSV of every record."""
    out = os.path.join(job.out, stage)
    masks = os.path.join(out, 'masks')
    os.makedirs(masks, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['id', 'image', 'lesion_fraction', 'uncertainty_bits', 'dropped', 'rejected', 'exported_mask'])
    for r in records:
        name = ''
        if not r['dropped']:
            name = f"{r['id']}_segmentation.png"
            stored = read_stored_mask(os.path.join(folder, f"{r['key'].split('/')[1]}.png"))
            write_mask_png(os.path.join(masks, name), resize_nearest(stored, *r['size']))
        writer.writerow([r['id'], r['image'], f"{r['lesionFraction']:.6f}", f"{r['uncertainty']:.6f}", str(r['dropped']).lower(), 'false', name])
    with open(os.path.join(out, 'pseudo-labels.csv'), 'w', encoding='utf-8') as f:
        f.write(buffer.getvalue())


METRIC_COLUMNS = ['paperMIoU', 'pooledMIoU', 'lesionIoU', 'dice', 'thresholdedJaccard', 'images']


def write_run_metrics(job, state, status):
    """products.ts metricsFiles: metrics.json and metrics.csv beside the stage folders."""
    split = {k: job.counts[k] for k in ('train', 'val', 'test', 'unlabeled')}
    write_json(os.path.join(job.out, 'metrics.json'), {'runId': 'job', 'card': job.card, 'status': status, 'split': split, 'results': state['results']})
    rows = [','.join(['stage', 'split', 'set', 'epoch'] + METRIC_COLUMNS)]

    def row(stage, split, s, epoch, m):
        def cell(v):
            if isinstance(v, float):
                return 'NaN' if not math.isfinite(v) else repr(v) if v != int(v) else str(int(v))
            return '' if v is None else str(v)
        return ','.join(cell(v) for v in [stage, split, s, epoch] + [m[k] for k in METRIC_COLUMNS])

    for r in state['results']:
        if r['best']['val']:
            rows.append(row(r['stage'], 'val', 'all', r['best']['epoch'], r['best']['val']))
        if r['last']['val']:
            rows.append(row(r['stage'], 'val-last', 'all', r['last']['epoch'], r['last']['val']))
        if r['test']:
            rows.append(row(r['stage'], 'test', 'all', r['best']['epoch'], r['test']['overall']))
            for s, m in r['test']['bySet'].items():
                rows.append(row(r['stage'], 'test', s, r['best']['epoch'], m))
    with open(os.path.join(job.out, 'metrics.csv'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(rows) + '\n')


def finish_training_stage(job, world, stage, model, position, val, test, state):
    """Rank 0: the best epoch, its post-processing decided on the validation images (eval.postprocess), scored on the
    test images, written as the studio's stage products (its metadata.json says how to read its predictions)."""
    model.load_state_dict(torch.load(job.checkpoint(stage, 'best'), map_location=world.device))
    postprocess = decide_postprocess(model, val, job.card, world.device)
    if postprocess:
        v = postprocess['valLesionIoU']
        world.say(f"{stage}: post-processing (largest lesion, holes filled) {'kept' if postprocess['applied'] else 'left off'}: "
                  f"validation lesion IoU {100 * v['without']:.1f}% without, {100 * v['with']:.1f}% with")
    applied = bool(postprocess and postprocess['applied'])
    result = {'stage': stage, 'best': {'epoch': position['bestEpoch'], 'val': position['bestValidation']},
              'last': {'epoch': position['epoch'], 'val': position['lastValidation']}, 'test': None}
    if test:
        overall, by_set = evaluate(model, test, job.card, world.device, postprocess=applied)
        result['test'] = {'overall': overall, 'bySet': by_set}
        world.say(f"{stage} test: lesion IoU {overall['lesionIoU']:.4f}, Dice {overall['dice']:.4f}, paper mIoU {overall['paperMIoU']:.4f} on {overall['images']} images")
    if postprocess:
        result['postprocess'] = postprocess
    metadata = read_json(os.path.join(job.init_dir, METADATA_FILE))
    # pipeline.ts exportMetadata: how the model's predictions are read (eval, predict and the studio follow these).
    metadata.update(stage=stage, tta=job.card['eval']['tta'], postprocess=applied, results=result)
    save_model(model, job.init_dir, os.path.join(job.out, stage, 'model'), clean(metadata))
    write_json(os.path.join(job.out, stage, 'metrics.json'), result)
    state['results'] = [r for r in state['results'] if r['stage'] != stage] + [result]


def run(args):
    world = World()
    job = Job(args.job, args.data_root, args.out)
    if args.threads or not world.cuda:
        # The machine's cores shared among this machine's processes (some PyTorch builds start with one thread).
        torch.set_num_threads(args.threads or max(1, len(os.sched_getaffinity(0)) // int(os.environ.get('LOCAL_WORLD_SIZE', 1))))
    world.say(f"job {job.card['name']}: {world.size} process{'es' if world.size > 1 else ''} on {world.device.type} ({world.backend}), "
              f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''} each, torch {torch.__version__}")
    print(f'rank {world.rank} of {world.size}: pid {os.getpid()}', flush=True)
    train = job.part('train')
    val, test, pool = job.part('val'), job.part('test'), job.part('unlabeled')
    world.say(f'split: {len(train)} train, {len(val)} val, {len(test)} test labeled images; {len(pool)} unlabeled')
    state = job.state()
    for stage in job.stages:
        if stage in state['completed']:
            world.say(f'{stage}: already completed')
            continue
        world.say(f'{stage}: started')
        if stage in PRODUCER:
            pseudo_stage(job, world, stage, pool, state)
        else:
            items = list(train)
            if stage in PSEUDO_OF:
                folder = os.path.join(job.store, 'pseudo', PSEUDO_OF[stage])
                by_image = {p['studio_path']: p for p in pool}
                kept = [r for r in read_json(os.path.join(folder, 'records.json')) if not r['dropped']]
                items += [{**by_image[r['image']], 'stored_mask': os.path.join(folder, f"{r['key'].split('/')[1]}.png")} for r in kept]
                world.say(f'{stage}: {len(train)} labeled + {len(kept)} pseudo-labeled images')
            model, position = train_stage(job, world, stage, items, val, args)
            if world.rank == 0:
                finish_training_stage(job, world, stage, model, position, val, test, state)
        if world.rank == 0:
            state['completed'].append(stage)
            write_json(os.path.join(job.store, 'state.json'), state)
            write_run_metrics(job, state, 'completed' if stage == job.stages[-1] else 'running')
        world.barrier()
        state = job.state()
    world.say(f'done: models, metrics and pseudo-labels in {job.out}')
    if world.distributed:
        dist.destroy_process_group()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m lesion_studio_torch', description='Run a Lesion Studio job (lesion-studio export-job) on PyTorch; launch with torchrun for several processes.')
    parser.add_argument('job', help='the job folder export-job wrote')
    parser.add_argument('--data-root', action='append', default=[], metavar='NAME=PATH', help='where a data root of the job is on this machine')
    parser.add_argument('--out', help='where results and checkpoints go (default: <job>/out)')
    parser.add_argument('--amp', action='store_true', help='mixed precision (float16) on GPUs')
    parser.add_argument('--workers', type=int, default=0, help='data-loading processes per rank')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads per process (default on CPUs: the cores over the processes on this machine)')
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (JobError, ImageError, ModelFormatError) as error:
        print(f'lesion_studio_torch: {error}', file=sys.stderr, flush=True)
        return 1
