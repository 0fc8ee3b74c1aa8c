"""DeepLabV3 exactly as src/core/model builds it, in PyTorch.

Every layer is registered under the name tfjs gives it (``Conv1``,
``block_3_depthwise_BN``, ``layer2_0_downsample_0``, ``aspp_pool_conv``...),
so a studio model's weights.bin maps onto this module by name (tfjs_io.py)
and back. What has to match TensorFlow.js beyond the layer shapes:

- Keras/TensorFlow 'same' padding: a stride-2 convolution or max pool on an
  even map pads one pixel more at the bottom and right than at the top and
  left (PyTorch's symmetric padding would shift every feature by a pixel);
  MobileNetV2's strided layers pad (0, 1) explicitly, as Keras does;
- batch norm's epsilons (1e-3 in MobileNetV2, 1e-5 elsewhere) and tfjs's
  momentum 0.9, which is PyTorch's 0.1;
- tfjs's UpSampling2D resizes bilinearly WITHOUT half-pixel centres
  (tf.image.resizeBilinear's legacy sampling), which no F.interpolate mode
  reproduces: source = target * in / out, edges clamped.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(v, divisor=8):
    """Keras' _make_divisible (src/core/model/layers.ts makeDivisible)."""
    rounded = max(divisor, int(math.floor(v + divisor / 2)) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def js_round(v):
    """JavaScript's Math.round (halves up), not Python's round-half-even."""
    return int(math.floor(v + 0.5))


def same_padding(size, kernel, stride, rate):
    """TensorFlow's 'same' padding along one axis: (before, after)."""
    extent = (kernel - 1) * rate + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


class Conv(nn.Conv2d):
    """A Keras Conv2D or DepthwiseConv2D: 'same' (TensorFlow's) or 'valid' padding."""

    def __init__(self, cin, cout, kernel, stride=1, rate=1, groups=1, bias=False, padding='same'):
        super().__init__(cin, cout, kernel, stride, 0, dilation=rate, groups=groups, bias=bias)
        self.same = padding == 'same'

    def forward(self, x):
        if self.same:
            k, s, r = self.kernel_size[0], self.stride[0], self.dilation[0]
            top, bottom = same_padding(x.shape[2], k, s, r)
            left, right = same_padding(x.shape[3], k, s, r)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def batch_norm(channels, eps):
    # tfjs's moving = 0.9 * moving + 0.1 * batch is PyTorch's momentum 0.1.
    return nn.BatchNorm2d(channels, eps=eps, momentum=0.1)


def tf_resize_bilinear(x, height, width):
    """tf.image.resizeBilinear(x, [height, width]) with alignCorners and halfPixelCenters false."""

    def axis(src, dst):
        pos = torch.arange(dst, dtype=torch.float64) * (src / dst)
        lo = pos.floor().long().clamp(max=src - 1)
        hi = (lo + 1).clamp(max=src - 1)
        frac = (pos - lo).to(x.dtype)
        m = torch.zeros(dst, src, dtype=x.dtype)
        m[torch.arange(dst), lo] += 1 - frac
        m[torch.arange(dst), hi] += frac
        return m.to(x.device)

    return torch.einsum('oh,bchw,pw->bcop', axis(x.shape[2], height), x, axis(x.shape[3], width))


MOBILENET_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
RESNET_STAGES = [(64, 3), (128, 4), (256, 6), (512, 3)]


class DeepLabV3(nn.Module):
    """The card's model (its ``model`` section as a dict); input NCHW in [0, 1], output NCHW logits."""

    def __init__(self, model):
        super().__init__()
        if model['inputSize'] % model['outputStride'] != 0:
            raise ValueError(f"model.inputSize {model['inputSize']} must be a multiple of the output stride {model['outputStride']}")
        self.config = dict(model)
        self.layers = nn.ModuleDict()
        self.plan = []
        self.output_stride = model['outputStride']
        self.symmetric = model['inputRange'] == 'symmetric'
        if model['encoder'] == 'mobilenetv2':
            channels = self._mobilenet(model['width'], model['outputStride'])
        elif model['encoder'] == 'resnet34':
            channels = self._resnet(model['width'], model['outputStride'])
        else:
            raise ValueError(f"model.encoder {model['encoder']!r} is neither mobilenetv2 nor resnet34")
        c = model['asppChannels']
        self.aspp_rates = list(model['atrousRates'])
        self._conv_bn('aspp_0', channels, c, 1, 1)
        for i, rate in enumerate(self.aspp_rates):
            self._conv_bn(f'aspp_{i + 1}', channels, c, 3, rate)
        self._conv_bn('aspp_pool', channels, c, 1, 1)
        self._conv_bn('aspp_project', c * (len(self.aspp_rates) + 2), c, 1, 1)
        self.dropout = nn.Dropout(model['dropout'])
        self._conv_bn('decoder', c, c, 3, 1)
        self.layers['head'] = Conv(c, 1, 1, bias=True)

    # ---- building ---------------------------------------------------------

    def _add(self, name, module):
        self.layers[name] = module
        return name

    def _conv_bn(self, name, cin, cout, kernel, rate):
        self._add(f'{name}_conv', Conv(cin, cout, kernel, rate=rate))
        self._add(f'{name}_bn', batch_norm(cout, 1e-5))

    def _mobilenet(self, alpha, output_stride):
        first = make_divisible(32 * alpha)
        self._add('Conv1', Conv(3, first, 3, 2, padding='valid'))
        self._add('bn_Conv1', batch_norm(first, 1e-3))
        self.plan.append(('keras_pad', 'Conv1', 'bn_Conv1', 6))
        cin, stride, rate, index = first, 2, 1, 0
        for expansion, channels, repeats, first_stride in MOBILENET_BLOCKS:
            cout = make_divisible(channels * alpha)
            for r in range(repeats):
                s = first_stride if r == 0 else 1
                if s == 2 and stride >= output_stride:
                    rate, s = rate * 2, 1
                elif s == 2:
                    stride *= 2
                prefix = 'expanded_conv_' if index == 0 else f'block_{index}_'
                hidden = cin * expansion
                expand = None
                if index > 0:
                    expand = (self._add(f'{prefix}expand', Conv(cin, hidden, 1)), self._add(f'{prefix}expand_BN', batch_norm(hidden, 1e-3)))
                depthwise = self._add(f'{prefix}depthwise', Conv(hidden, hidden, 3, s, 1 if s == 2 else rate, groups=hidden, padding='valid' if s == 2 else 'same'))
                self._add(f'{prefix}depthwise_BN', batch_norm(hidden, 1e-3))
                self._add(f'{prefix}project', Conv(hidden, cout, 1))
                self._add(f'{prefix}project_BN', batch_norm(cout, 1e-3))
                self.plan.append(('inverted', prefix, expand, s == 2, cin == cout and s == 1))
                cin = cout
                index += 1
        last = make_divisible(1280 * alpha) if alpha > 1 else 1280
        self._add('Conv_1', Conv(cin, last, 1))
        self._add('Conv_1_bn', batch_norm(last, 1e-3))
        self.plan.append(('conv_bn', 'Conv_1', 'Conv_1_bn', 6))
        return last

    def _resnet(self, width, output_stride):
        stem = max(8, js_round(64 * width))
        self._add('conv1', Conv(3, stem, 7, 2))
        self._add('bn1', batch_norm(stem, 1e-5))
        self.plan.append(('conv_bn', 'conv1', 'bn1', 0))
        self.plan.append(('maxpool',))
        cin, stride, rate = stem, 4, 1
        for stage, (channels, blocks) in enumerate(RESNET_STAGES):
            cout = max(8, js_round(channels * width))
            for b in range(blocks):
                s = 2 if b == 0 and stage > 0 else 1
                if s == 2 and stride >= output_stride:
                    rate, s = rate * 2, 1
                elif s == 2:
                    stride *= 2
                name = f'layer{stage + 1}_{b}'
                self._add(f'{name}_conv1', Conv(cin, cout, 3, s, rate))
                self._add(f'{name}_bn1', batch_norm(cout, 1e-5))
                self._add(f'{name}_conv2', Conv(cout, cout, 3, 1, rate))
                self._add(f'{name}_bn2', batch_norm(cout, 1e-5))
                downsample = s != 1 or cin != cout
                if downsample:
                    self._add(f'{name}_downsample_0', Conv(cin, cout, 1, s))
                    self._add(f'{name}_downsample_1', batch_norm(cout, 1e-5))
                self.plan.append(('basic', name, downsample))
                cin = cout
        return cin

    # ---- running ----------------------------------------------------------

    def _cba(self, x, conv, bn, clip):
        x = self.layers[bn](self.layers[conv](x))
        return F.relu6(x) if clip == 6 else F.relu(x)

    def encode(self, x):
        L = self.layers
        for step in self.plan:
            kind = step[0]
            if kind == 'keras_pad':
                x = self._cba(F.pad(x, (0, 1, 0, 1)), *step[1:])
            elif kind == 'conv_bn':
                x = self._cba(x, *step[1:])
            elif kind == 'maxpool':
                top, bottom = same_padding(x.shape[2], 3, 2, 1)
                left, right = same_padding(x.shape[3], 3, 2, 1)
                x = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float('-inf')), 3, 2)
            elif kind == 'inverted':
                _, prefix, expand, strided, residual = step
                y = x
                if expand:
                    y = self._cba(y, *expand, 6)
                if strided:
                    y = F.pad(y, (0, 1, 0, 1))
                y = self._cba(y, f'{prefix}depthwise', f'{prefix}depthwise_BN', 6)
                y = L[f'{prefix}project_BN'](L[f'{prefix}project'](y))
                x = x + y if residual else y
            else:
                _, name, downsample = step
                y = self._cba(x, f'{name}_conv1', f'{name}_bn1', 0)
                y = L[f'{name}_bn2'](L[f'{name}_conv2'](y))
                shortcut = L[f'{name}_downsample_1'](L[f'{name}_downsample_0'](x)) if downsample else x
                x = F.relu(y + shortcut)
        return x

    def forward(self, x):
        size = x.shape[2:]
        if self.symmetric:
            x = x * 2 - 1
        f = self.encode(x)
        outs = [self._cba(f, f'aspp_{i}_conv', f'aspp_{i}_bn', 0) for i in range(len(self.aspp_rates) + 1)]
        pooled = self._cba(f.mean(dim=(2, 3), keepdim=True), 'aspp_pool_conv', 'aspp_pool_bn', 0)
        # Upsampling a 1x1 map bilinearly is a broadcast.
        outs.append(pooled.expand(-1, -1, f.shape[2], f.shape[3]))
        y = self._cba(torch.cat(outs, 1), 'aspp_project_conv', 'aspp_project_bn', 0)
        y = self._cba(self.dropout(y), 'decoder_conv', 'decoder_bn', 0)
        logits = self.layers['head'](y)
        return tf_resize_bilinear(logits, size[0], size[1])
