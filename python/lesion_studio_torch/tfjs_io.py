"""The studio's model format (src/core/run/products.ts modelFiles): model.json
(tfjs layers topology and a weightsManifest) and one weights.bin of float32
values in the manifest's order, plus metadata.json.

The topology is the studio's own export build, written by `export-job` into
the job (init/model.json): this package never invents a topology, it only
reads and writes the weight values the manifest lists, so what it writes
loads in `lesion-studio eval` and the studio exactly like a studio export.
"""
import json
import os

import numpy as np
import torch

MODEL_FILE = 'model.json'
WEIGHTS_FILE = 'weights.bin'
METADATA_FILE = 'metadata.json'

BN_PARAMS = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean', 'moving_variance': 'running_var'}


class ModelFormatError(Exception):
    pass


def read_manifest(model_dir):
    path = os.path.join(model_dir, MODEL_FILE)
    try:
        with open(path, encoding='utf-8') as f:
            doc = json.load(f)
    except (OSError, ValueError) as error:
        raise ModelFormatError(f'{path}: cannot read the model ({error})') from None
    groups = doc.get('weightsManifest')
    if not isinstance(groups, list) or 'modelTopology' not in doc:
        raise ModelFormatError(f'{path}: not a tfjs layers model (needs modelTopology and a weightsManifest)')
    return doc


def _target(model, name, path):
    layer, _, param = name.rpartition('/')
    module = model.layers[layer] if layer in model.layers else None
    if module is None:
        raise ModelFormatError(f'{path}: weight {name} belongs to no layer of the card\'s model ({model.config["encoder"]})')
    attr = BN_PARAMS.get(param) or {'kernel': 'weight', 'depthwise_kernel': 'weight', 'bias': 'bias'}.get(param)
    tensor = getattr(module, attr, None) if attr else None
    if tensor is None:
        raise ModelFormatError(f'{path}: weight {name} has no counterpart in layer {layer}')
    return tensor, param


def _to_torch(value, param):
    # tfjs kernels are [kh, kw, in, out] (depthwise: [kh, kw, channels, 1]); PyTorch's [out, in, kh, kw].
    if param == 'kernel':
        return value.transpose(3, 2, 0, 1)
    if param == 'depthwise_kernel':
        return value.transpose(2, 3, 0, 1)
    return value


def _to_tfjs(value, param):
    if param == 'kernel':
        return value.transpose(2, 3, 1, 0)
    if param == 'depthwise_kernel':
        return value.transpose(2, 3, 0, 1)
    return value


def load_weights(model, model_dir):
    """Copies a studio model's weights into `model`; every weight of either must have its counterpart."""
    doc = read_manifest(model_dir)
    path = os.path.join(model_dir, MODEL_FILE)
    seen = set()
    with torch.no_grad():
        for group in doc['weightsManifest']:
            blob = b''.join(_read(os.path.join(model_dir, p)) for p in group['paths'])
            offset = 0
            for spec in group['weights']:
                if spec.get('dtype') != 'float32' or 'quantization' in spec:
                    raise ModelFormatError(f'{path}: weight {spec["name"]} is {spec.get("dtype")}{" quantised" if "quantization" in spec else ""}; only float32 weights are read')
                count = int(np.prod(spec['shape'])) if spec['shape'] else 1
                if offset + 4 * count > len(blob):
                    raise ModelFormatError(f'{os.path.join(model_dir, group["paths"][0])}: holds {len(blob)} bytes, fewer than {path} describes')
                value = np.frombuffer(blob, '<f4', count, offset).reshape(spec['shape'])
                offset += 4 * count
                tensor, param = _target(model, spec['name'], path)
                value = _to_torch(value, param)
                if tuple(value.shape) != tuple(tensor.shape):
                    raise ModelFormatError(f'{path}: weight {spec["name"]} is {list(spec["shape"])}, but the card\'s model needs {list(_to_tfjs(np.empty(tuple(tensor.shape)), param).shape)}')
                tensor.copy_(torch.from_numpy(value.copy()))
                seen.add(spec['name'])
            if offset != len(blob):
                raise ModelFormatError(f'{path}: weights.bin holds {len(blob)} bytes but the manifest describes {offset}')
    missing = [n for n in weight_names(model) if n not in seen]
    if missing:
        raise ModelFormatError(f'{path}: the card\'s model has weights the file lacks: {", ".join(missing[:3])}')
    return doc


def weight_names(model):
    names = []
    for layer, module in model.layers.items():
        if isinstance(module, torch.nn.BatchNorm2d):
            names += [f'{layer}/{p}' for p in BN_PARAMS]
        else:
            names.append(f'{layer}/{"depthwise_kernel" if module.groups > 1 else "kernel"}')
            if module.bias is not None:
                names.append(f'{layer}/bias')
    return names


def save_model(model, template_dir, out_dir, metadata=None):
    """model.json from the template (the studio's topology), weights.bin from `model`, metadata.json."""
    doc = read_manifest(template_dir)
    path = os.path.join(template_dir, MODEL_FILE)
    chunks = []
    with torch.no_grad():
        for group in doc['weightsManifest']:
            for spec in group['weights']:
                tensor, param = _target(model, spec['name'], path)
                chunks.append(_to_tfjs(tensor.detach().float().cpu().numpy(), param).astype('<f4').tobytes())
    doc['weightsManifest'] = [{'paths': [WEIGHTS_FILE], 'weights': [w for g in doc['weightsManifest'] for w in g['weights']]}]
    os.makedirs(out_dir, exist_ok=True)
    _write(os.path.join(out_dir, WEIGHTS_FILE), b''.join(chunks))
    _write(os.path.join(out_dir, MODEL_FILE), json.dumps(doc).encode())
    if metadata is not None:
        _write(os.path.join(out_dir, METADATA_FILE), (json.dumps(metadata, indent=2) + '\n').encode())


def _read(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as error:
        raise ModelFormatError(f'{path}: cannot read the model\'s weights ({error.strerror})') from None


def _write(path, data):
    """Whole or not at all: a killed process leaves the previous file."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)
