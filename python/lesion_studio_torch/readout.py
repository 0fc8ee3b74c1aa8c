"""How logits become a lesion mask, as src/core/scoring/predict.ts and
readout.ts read them: test-time flips (the mean sigmoid probability over
the flipped copies, back to a logit), the threshold, and nnU-Net's
post-processing (the largest lesion, its holes filled)."""
import cv2
import numpy as np
import torch

# The flips each TTA averages over, as NCHW axes (predict.ts FLIPS: horizontal = width, vertical = height).
FLIPS = {'none': [()], 'hflip': [(), (3,)], 'flips': [(), (3,), (2,), (2, 3)]}


def to_tensor(image):
    """HxWx3 uint8 RGB to a 3xHxW float tensor in [0, 1] (imagesToBatch)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255


def predict_logits(model, images, tta, device):
    """predict.ts predictLogits on a list of HxWx3 uint8 images: per image the HxW float32 logits.
    The model must be in eval mode; with a TTA, the mean probability over the flips, back to logits."""
    flips = FLIPS[tta]
    x = torch.stack([to_tensor(i) for i in images]).to(device)
    with torch.no_grad():
        if len(flips) == 1:
            y = model(x).float()
        else:
            def flip(t, axes):
                return t.flip(axes) if axes else t
            p = sum(torch.sigmoid(flip(model(flip(x, axes)).float(), axes)) for axes in flips) / len(flips)
            # Back to logits so every consumer thresholds the same quantity.
            p = p.clamp(1e-6, 1 - 1e-6)
            y = torch.log(p / (1 - p))
    return y[:, 0].cpu().numpy()


def largest_lesion_filled(mask):
    """readout.ts largestLesionFilled: the largest 8-connected lesion component of an HxW 0/1 mask,
    its holes (background not 4-connected to the border) filled; a new uint8 0/1 mask, empty for an
    empty one. Of equal largest components, the first in raster order is kept, as there."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((mask != 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = np.flatnonzero(areas == areas.max()) + 1
    if len(largest) == 1:
        best = int(largest[0])
    else:
        flat = labels.ravel()
        best = min((int(np.argmax(flat == label)), int(label)) for label in largest)[1]
    # Everything but the kept lesion, in a frame of its own so one 4-connected flood from a corner
    # reaches exactly what is 4-connected to the border.
    others = np.pad((labels != best).astype(np.uint8), 1, constant_values=1)
    cv2.floodFill(others, None, (0, 0), 2, flags=4)
    return (others[1:-1, 1:-1] != 2).astype(np.uint8)


def read_mask(logits, logit_threshold, postprocess):
    """readout.ts readMask: the 0/1 mask of HxW logits (their TTA is already in them)."""
    mask = (logits >= logit_threshold).astype(np.uint8)
    return largest_lesion_filled(mask) if postprocess else mask
