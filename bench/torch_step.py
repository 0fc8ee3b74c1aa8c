"""One training step of the paper card's model in plain PyTorch, timed.

The reference that bench/torch.ts sets the wasm step beside: the paper
card's DeepLabV3 (MobileNetV2 width 1, output stride 8, ASPP 256 at rates
12/24/36) from python/lesion_studio_torch/model.py, the replica of
src/core/model that the PyTorch jobs train and that test/torch.test.ts holds
to the tfjs logits; the card's pooled soft Dice loss and its SGD (lr 0.006,
momentum 0.81, weight decay 0.02). Only torch itself is needed (no
torchvision, no smp). Weights are random: they do not change the arithmetic.

  python3 bench/torch_step.py --size 128 --batch 4 --steps 5 --warmup 2 --threads 2
  python3 bench/torch_step.py --size 256 --batch 10 --device cuda   (bench/gpu.ts)

Prints one JSON line after every step (the last holds all figures), as
bench/step.ts does: parameters counts the running statistics too, as
countParameters does for the tfjs model. With --conv-rate it times instead
the pointwise convolution of bench/conv-rate.ts and prints its rate.
"""
import argparse
import json
import sys
import time

import os

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'python'))
from lesion_studio_torch.model import DeepLabV3  # noqa: E402

# The paper card's model section (src/core/config.ts paperCard).
PAPER_MODEL = {'encoder': 'mobilenetv2', 'width': 1, 'outputStride': 8, 'atrousRates': [12, 24, 36], 'asppChannels': 256,
               'dropout': 0.5, 'inputSize': 256, 'init': 'nsfwjs', 'inputRange': 'symmetric'}


def dice_loss(logits, target, eps=1e-7):
    """smp 0.2.1's binary DiceLoss, pooled over the batch (src/core/training/losses.ts)."""
    p = torch.sigmoid(logits)
    score = 2 * (p * target).sum() / torch.clamp(p.sum() + target.sum(), min=eps)
    return (1 - score) * (target.sum() > 0).float()


def conv_rate():
    # bench/conv-rate.ts's shape: batch 4, 32x32, 256 -> 256 channels, 1x1.
    x = torch.randn(4, 256, 32, 32)
    w = torch.randn(256, 256, 1, 1)
    times = []
    with torch.no_grad():
        for i in range(23):
            t = time.perf_counter()
            F.conv2d(x, w)
            if i >= 3:
                times.append((time.perf_counter() - t) * 1000)
    ms = sorted(times)[len(times) // 2]
    print(json.dumps({'ms': ms, 'gflops': 2 * 4 * 32 * 32 * 256 * 256 / 1e6 / ms}), flush=True)
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--conv-rate', action='store_true')
    parser.add_argument('--device', default='cpu')
    a = parser.parse_args()
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        print(f'RuntimeError: torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda})', file=sys.stderr)
        return 1
    device = torch.device(a.device)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.conv_rate:
        return conv_rate()
    torch.manual_seed(2137)
    model = DeepLabV3(PAPER_MODEL).train().to(device)
    parameters = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for name, b in model.named_buffers() if not name.endswith('num_batches_tracked')
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.006, momentum=0.81, weight_decay=0.02)
    x = torch.rand(a.batch, 3, a.size, a.size, device=device)
    yy, xx = torch.meshgrid(torch.arange(a.size), torch.arange(a.size), indexing='ij')
    y = (((yy - a.size / 2) ** 2 + (xx - a.size / 2) ** 2) < (a.size / 4) ** 2).float().expand(a.batch, 1, a.size, a.size).contiguous().to(device)
    result = {'parameters': parameters, 'threads': torch.get_num_threads(), 'torch': torch.__version__, 'timesMs': [], 'warmupMs': []}
    if device.type == 'cuda':
        result['device'] = torch.cuda.get_device_name(device)
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = dice_loss(model(x), y)
        loss.backward()
        optimizer.step()
        # Waits for the device, as reading the loss does in bench/step.ts.
        loss.item()
        result['warmupMs' if i < a.warmup else 'timesMs'].append((time.perf_counter() - t) * 1000)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
