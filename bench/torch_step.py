"""One training step of the paper card's model in plain PyTorch, timed.

The reference that bench/torch.ts sets the wasm step beside: DeepLabV3
with a MobileNetV2 (width 1) encoder at output stride 8, as
segmentation_models_pytorch builds it and as src/core/model/deeplab.ts does
(Keras' stride-2 padding, the last two stages dilated 2 and 4, ASPP 256 with
rates 12/24/36 and image pooling, dropout 0.5, a 3x3 decoder conv, a 1x1 head,
bilinear upsampling), the card's pooled soft Dice loss and its SGD (lr 0.006,
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

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(v, divisor=8):
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


class ConvBnAct(nn.Sequential):
    def __init__(self, cin, cout, kernel, stride=1, rate=1, groups=1, act='relu6', eps=1e-3, keras_pad=False):
        layers = []
        if keras_pad:
            # Keras pads stride-2 convolutions by one row and column at the end only.
            layers.append(nn.ZeroPad2d((0, 1, 0, 1)))
            padding = 0
        else:
            padding = rate * (kernel - 1) // 2
        layers.append(nn.Conv2d(cin, cout, kernel, stride, padding, dilation=rate, groups=groups, bias=False))
        layers.append(nn.BatchNorm2d(cout, eps=eps, momentum=0.1))
        if act == 'relu6':
            layers.append(nn.ReLU6())
        elif act == 'relu':
            layers.append(nn.ReLU())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expansion, stride, rate):
        super().__init__()
        hidden = cin * expansion
        layers = [] if expansion == 1 else [ConvBnAct(cin, hidden, 1)]
        layers.append(ConvBnAct(hidden, hidden, 3, stride, rate if stride == 1 else 1, groups=hidden, keras_pad=stride == 2))
        layers.append(ConvBnAct(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = cin == cout and stride == 1

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, output_stride=8):
        super().__init__()
        layers = [ConvBnAct(3, 32, 3, 2, keras_pad=True)]
        cin, stride, rate = 32, 2, 1
        for expansion, channels, repeats, first_stride in BLOCKS:
            cout = make_divisible(channels)
            for r in range(repeats):
                s = first_stride if r == 0 else 1
                if s == 2 and stride >= output_stride:
                    rate, s = rate * 2, 1
                elif s == 2:
                    stride *= 2
                layers.append(InvertedResidual(cin, cout, expansion, s, rate))
                cin = cout
        layers.append(ConvBnAct(cin, 1280, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


class DeepLabV3(nn.Module):
    def __init__(self, rates=(12, 24, 36), channels=256, dropout=0.5, output_stride=8):
        super().__init__()
        self.encoder = MobileNetV2(output_stride)
        self.output_stride = output_stride
        cin = 1280
        self.branches = nn.ModuleList(
            [ConvBnAct(cin, channels, 1, act='relu', eps=1e-5)]
            + [ConvBnAct(cin, channels, 3, rate=r, act='relu', eps=1e-5) for r in rates]
        )
        self.pool = ConvBnAct(cin, channels, 1, act='relu', eps=1e-5)
        self.project = ConvBnAct(channels * (len(rates) + 2), channels, 1, act='relu', eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.decoder = ConvBnAct(channels, channels, 3, act='relu', eps=1e-5)
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, x):
        f = self.encoder(x * 2 - 1)
        outs = [b(f) for b in self.branches]
        pooled = self.pool(F.adaptive_avg_pool2d(f, 1))
        outs.append(F.interpolate(pooled, size=f.shape[2:], mode='bilinear', align_corners=False))
        y = self.decoder(self.dropout(self.project(torch.cat(outs, 1))))
        return F.interpolate(self.head(y), scale_factor=self.output_stride, mode='bilinear', align_corners=False)


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
    model = DeepLabV3().train().to(device)
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
