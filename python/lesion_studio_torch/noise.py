"""The paper's noise (src/core/noise/chain.ts) with OpenCV, as the paper's
code gets it from albumentations 1.1.0 on top of OpenCV: the same steps in
the same order, the same probabilities and ranges (PAPER_LIMITS), applied to
the image at the training size as the studio applies them. Draws come from
a numpy Generator seeded per image, epoch and stage, so a resumed job draws
what an unbroken one would; they are not the studio's draws (its Rng), so
the two hosts noise the same way, not byte for byte.
"""
import cv2
import numpy as np

PAPER_PROBABILITIES = {
    'transpose': 0.5,
    'verticalFlip': 0.5,
    'horizontalFlip': 0.5,
    'brightnessContrast': 0.75,
    'blurOrNoise': 0.7,
    'distortion': 0.7,
    'clahe': 0.7,
    'hueSaturationValue': 0.5,
    'shiftScaleRotate': 0.85,
}
DISTORTIONS = ('optical', 'grid', 'elastic', 'coarse-dropout')


class NoiseError(Exception):
    pass


def _remap(image, mask, map_x, map_y):
    image = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if mask is not None:
        mask = cv2.remap(mask, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return image, mask


def _warp(image, mask, matrix):
    h, w = image.shape[:2]
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if mask is not None:
        mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return image, mask


def _blur_or_noise(image, rng):
    choice = rng.integers(0, 4)
    if choice == 0:
        # MotionBlur: a line between two random points of a 3 or 5 kernel, never a dot.
        size = int(rng.choice([3, 5]))
        kernel = np.zeros((size, size), np.uint8)
        x0, x1 = rng.integers(0, size, 2)
        y0, y1 = rng.choice(size, 2, replace=False) if x0 == x1 else rng.integers(0, size, 2)
        cv2.line(kernel, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=1)
        return cv2.filter2D(image, -1, kernel.astype(np.float32) / kernel.sum())
    if choice == 1:
        return cv2.medianBlur(image, int(rng.choice([3, 5])))
    if choice == 2:
        drawn = int(rng.integers(3, 6))
        size = drawn if drawn % 2 == 1 else (drawn + 1) % 6
        return cv2.GaussianBlur(image, (size, size), float(rng.uniform(0, 1)))
    sigma = np.sqrt(rng.uniform(5, 30))
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def _distortion(image, mask, kind, rng):
    h, w = image.shape[:2]
    if kind == 'optical':
        k = rng.uniform(-1, 1)
        camera = np.array([[w, 0, w * 0.5], [0, h, h * 0.5], [0, 0, 1]], np.float32)
        coefficients = np.array([k, k, 0, 0, 0], np.float32)
        map_x, map_y = cv2.initUndistortRectifyMap(camera, coefficients, None, None, (w, h), cv2.CV_32FC1)
        return _remap(image, mask, map_x, map_y)
    if kind == 'grid':
        steps = 5

        def axis(size, factors):
            step = size // steps
            out = np.zeros(size, np.float32)
            prev = 0.0
            for i, factor in enumerate(factors):
                start, end = i * step, min(size, i * step + step)
                cur = size if end >= size else prev + step * factor
                out[start:end] = np.linspace(prev, cur, end - start, endpoint=False)
                prev = cur
            return out

        xs = axis(w, 1 + rng.uniform(-1, 1, steps + 1))
        ys = axis(h, 1 + rng.uniform(-1, 1, steps + 1))
        map_x, map_y = np.meshgrid(xs, ys)
        return _remap(image, mask, map_x.astype(np.float32), map_y.astype(np.float32))
    if kind == 'elastic':
        alpha, sigma, alpha_affine = 3, 50, 50
        centre = np.float32([w, h]) // 2
        square = min(w, h) // 3
        src = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
        dst = src + rng.uniform(-alpha_affine, alpha_affine, src.shape).astype(np.float32)
        image, mask = _warp(image, mask, cv2.getAffineTransform(src, dst))
        dx = cv2.GaussianBlur(rng.random((h, w), np.float32) * 2 - 1, (17, 17), sigma) * alpha
        dy = cv2.GaussianBlur(rng.random((h, w), np.float32) * 2 - 1, (17, 17), sigma) * alpha
        x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return _remap(image, mask, x + dx, y + dy)
    # CoarseDropout: always 6 holes of exactly 20 % x 20 % (albumentations 1.1.0 with min_* unset); the mask keeps its pixels.
    hw, hh = int(w * 0.2), int(h * 0.2)
    image = image.copy()
    for _ in range(6):
        y, x = int(rng.integers(0, h - hh + 1)), int(rng.integers(0, w - hw + 1))
        image[y:y + hh, x:x + hw] = 0
    return image, mask


def _clahe(image, rng):
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=float(rng.uniform(1, 4)), tileGridSize=(8, 8)).apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _hue_saturation_value(image, rng):
    hue, sat, val = rng.uniform(-10, 10), rng.uniform(-20, 20), rng.uniform(-10, 10)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    levels = np.arange(256, dtype=np.float64)
    hsv[:, :, 0] = ((levels + hue) % 180).astype(np.uint8)[hsv[:, :, 0]]
    hsv[:, :, 1] = np.clip(levels + sat, 0, 255).astype(np.uint8)[hsv[:, :, 1]]
    hsv[:, :, 2] = np.clip(levels + val, 0, 255).astype(np.uint8)[hsv[:, :, 2]]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _shift_scale_rotate(image, mask, rng):
    h, w = image.shape[:2]
    angle, scale = rng.uniform(-15, 15), rng.uniform(0.9, 1.1)
    dx, dy = rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[0, 2] += dx * w
    matrix[1, 2] += dy * h
    return _warp(image, mask, matrix)


def _brightness_contrast(image, rng):
    alpha, beta = 1 + rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)
    lut = np.clip(np.arange(256) * alpha + beta * 255, 0, 255).astype(np.uint8)
    return lut[image]


STEPS = {
    'transpose': lambda i, m, rng, kind: (i.transpose(1, 0, 2).copy(), None if m is None else m.T.copy()),
    'verticalFlip': lambda i, m, rng, kind: (i[::-1].copy(), None if m is None else m[::-1].copy()),
    'horizontalFlip': lambda i, m, rng, kind: (i[:, ::-1].copy(), None if m is None else m[:, ::-1].copy()),
    'brightnessContrast': lambda i, m, rng, kind: (_brightness_contrast(i, rng), m),
    'blurOrNoise': lambda i, m, rng, kind: (_blur_or_noise(i, rng), m),
    'distortion': lambda i, m, rng, kind: _distortion(i, m, kind, rng),
    'clahe': lambda i, m, rng, kind: (_clahe(i, rng), m),
    'hueSaturationValue': lambda i, m, rng, kind: (_hue_saturation_value(i, rng), m),
    'shiftScaleRotate': lambda i, m, rng, kind: _shift_scale_rotate(i, m, rng),
}


def check_noise(noise):
    """The card's noise section, refused naming what this package cannot run."""
    if noise['preset'] not in ('paper', 'none'):
        raise NoiseError(f"noise.preset {noise['preset']!r} is not implemented here (paper, none)")
    if noise['distortion'] not in DISTORTIONS:
        raise NoiseError(f"noise.distortion {noise['distortion']!r} is not implemented here ({', '.join(DISTORTIONS)})")
    for step in noise.get('probabilities') or {}:
        if step not in STEPS:
            raise NoiseError(f'noise.probabilities.{step}: noise step not implemented here (implemented: {", ".join(STEPS)})')


def apply_noise(image, mask, noise, rng):
    """The chain on HxWx3 uint8 RGB and its HxW 0/1 mask (the size is kept: the studio noises at the training size)."""
    if noise['preset'] != 'paper':
        return image, mask
    probabilities = {**PAPER_PROBABILITIES, **(noise.get('probabilities') or {})}
    for step in PAPER_PROBABILITIES:
        if rng.random() < probabilities[step]:
            image, mask = STEPS[step](image, mask, rng, noise['distortion'])
    return image, mask
