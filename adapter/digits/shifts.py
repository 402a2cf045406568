"""Named image shifts with graded severities, the drift the server is meant to adapt to.

Each shift maps a batch of float images in [0, 1] (shape N x H x W x 3) to a shifted batch, with a severity
from 1 (mild) to 5 (severe), in the spirit of ImageNet-C. Randomness comes only from the `rng` passed in,
so a stream is reproducible from its seed.

>>> import numpy as np
>>> x = np.full((1, 4, 4, 3), 0.5)
>>> round(float(apply_shift(x, "brightness", 2, np.random.default_rng(0)).mean()), 6)
0.7
>>> sorted(SHIFTS)
['brightness', 'contrast', 'gaussian_blur', 'gaussian_noise', 'rotation']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

Images = NDArray[np.float64]


@dataclass(frozen=True)
class Shift:
    """A named corruption: `levels[s - 1]` is its parameter at severity s."""

    name: str
    levels: tuple[float, float, float, float, float]
    apply: Callable[[Images, float, np.random.Generator], Images]
    what: str


def _noise(x: Images, sigma: float, rng: np.random.Generator) -> Images:
    return x + rng.normal(0.0, sigma, size=x.shape)


def _blur(x: Images, sigma: float, rng: np.random.Generator) -> Images:
    return np.asarray(ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0)), dtype=np.float64)


def _contrast(x: Images, factor: float, rng: np.random.Generator) -> Images:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.asarray((x - mean) * factor + mean, dtype=np.float64)


def _brightness(x: Images, delta: float, rng: np.random.Generator) -> Images:
    return x + delta


def _rotation(x: Images, degrees: float, rng: np.random.Generator) -> Images:
    # Alternate the direction image by image, so the stream is not one consistent rotation.
    signs = np.where(np.arange(len(x)) % 2 == 0, 1.0, -1.0)
    return np.stack(
        [
            ndimage.rotate(im, s * degrees, axes=(0, 1), reshape=False, order=1)
            for im, s in zip(x, signs, strict=True)
        ]
    )


SHIFTS: dict[str, Shift] = {
    s.name: s
    for s in (
        Shift("gaussian_noise", (0.5, 0.9, 1.3, 1.7, 2.2), _noise, "additive gaussian noise, std"),
        Shift("gaussian_blur", (2.5, 3.5, 4.5, 5.5, 6.5), _blur, "gaussian blur, std in pixels"),
        Shift("contrast", (0.5, 0.3, 0.2, 0.15, 0.1), _contrast, "contrast scaled about the mean"),
        Shift("brightness", (0.1, 0.2, 0.3, 0.4, 0.5), _brightness, "brightness offset"),
        Shift("rotation", (8.0, 14.0, 20.0, 26.0, 32.0), _rotation, "rotation, degrees (alternating sign)"),
    )
}


def apply_shift(images: Images, name: str, severity: int, rng: np.random.Generator) -> Images:
    """Shift `images` (floats in [0, 1]) by the named shift at `severity` 1..5; clips back to [0, 1]."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; choose one of {', '.join(sorted(SHIFTS))}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    shift = SHIFTS[name]
    return np.clip(shift.apply(images, shift.levels[severity - 1], rng), 0.0, 1.0)
