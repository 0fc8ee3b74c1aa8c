"""Reading images and masks the way the Node host does (src/node/decode.ts,
src/core/dataset/loader.ts), so a job trains and scores on the pixels that
`lesion-studio eval` sees:

- pixels as stored, whatever the EXIF orientation (ISIC masks are drawn on
  the stored grid);
- images shrunk with the triangle filter widened by the scale factor
  (as PIL does), in two 8-bit passes, rounding after each;
- masks resized with nearest neighbour, lesion where the brightest channel
  is above 127, or 1 in a mask stored as 0/1.

JPEG decoders differ by a grey level here and there (libjpeg-turbo here,
jpeg-js in Node); after the resize that is noise far below the figures.
"""
import os

import cv2
import numpy as np

cv2.setNumThreads(1)


class ImageError(Exception):
    pass


def read_rgb(path):
    """8-bit RGB as stored, HxWx3."""
    data = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise ImageError(f'{path}: no such file')
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ImageError(f'{path}: not an image OpenCV can decode (corrupt, truncated or an unsupported format)')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _linear_taps(src, dst):
    """src/node/decode.ts linearTaps: per target position, the source indices it reads and their weights (summing to 1)."""
    scale = src / dst
    radius = max(scale, 1.0)
    stride = int(np.ceil(radius)) * 2 + 1
    index = np.zeros((dst, stride), np.int64)
    weight = np.zeros((dst, stride))
    for i in range(dst):
        centre = (i + 0.5) * scale
        lo = max(0, int(np.floor(centre - radius)))
        hi = min(src, int(np.ceil(centre + radius)))
        j = np.arange(lo, hi)
        w = np.maximum(0, 1 - np.abs(j + 0.5 - centre) / radius)
        index[i, :hi - lo] = j
        weight[i, :hi - lo] = w / w.sum()
    return index, weight


def resize_linear(image, width, height):
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    # Each pass rounds to 8 bits, as decode.ts stores its passes.
    index, weight = _linear_taps(w, width)
    between = np.floor(np.einsum('hxtc,xt->hxc', image[:, index].astype(np.float64), weight) + 0.5)
    index, weight = _linear_taps(h, height)
    return np.floor(np.einsum('ytxc,yt->yxc', between[index], weight) + 0.5).astype(np.uint8)


def resize_nearest(array, width, height):
    """The source pixel under each target pixel's centre (decode.ts resizeNearest, resize.ts resizeMask)."""
    h, w = array.shape[:2]
    if (w, h) == (width, height):
        return array
    rows = np.minimum(h - 1, np.floor((np.arange(height) + 0.5) * h / height).astype(np.int64))
    cols = np.minimum(w - 1, np.floor((np.arange(width) + 0.5) * w / width).astype(np.int64))
    return array[rows][:, cols]


def read_image(path, size):
    """RGB at size x size, and the file's own (width, height)."""
    rgb = read_rgb(path)
    return resize_linear(rgb, size, size), (rgb.shape[1], rgb.shape[0])


def binarise(rgb):
    """loader.ts binariseMask: 0/1 mask from the brightest channel."""
    v = rgb.max(axis=2)
    zero_one = v.max() <= 1 and v.any()
    return (v > (0 if zero_one else 127)).astype(np.uint8)


def read_mask(path, size):
    return binarise(resize_nearest(read_rgb(path), size, size))


def write_mask_png(path, mask):
    """0/255 PNG, the ISIC convention; the file appears whole or not at all."""
    ok, png = cv2.imencode('.png', (mask * 255).astype(np.uint8))
    if not ok:
        raise ImageError(f'{path}: could not encode the mask')
    tmp = f'{path}.tmp{os.getpid()}.png'
    png.tofile(tmp)
    os.replace(tmp, path)


def read_stored_mask(path):
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ImageError(f'{path}: cannot read the stored mask')
    return (mask > 127).astype(np.uint8)
