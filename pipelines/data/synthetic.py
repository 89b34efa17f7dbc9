"""Synthetic labelled images: ten classes a small CNN learns in a few epochs.

Each class is a shape drawn in its own hue on a dim, noisy background, at a
random position, size, saturation and brightness. Both cues survive the
reference lab's augmentations:

- every shape is left-right symmetric and is drawn well inside the frame, so
  a random 24x24 crop of a 32x32 image and a left-right flip keep it;
- random brightness adds the same amount to every channel and random
  contrast scales each channel about its own mean, so the differences
  between channel means (the hue) survive both, and per-image
  standardization too.

Every image is drawn from its own random stream, seeded by (seed, split,
index), so a set is the same bytes whatever order or process draws it.
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Sequence

import numpy as np

CLASS_NAMES = (
    "disk",
    "square",
    "triangle",
    "ring",
    "cross",
    "hbars",
    "vbars",
    "checker",
    "diamond",
    "saltire",
)
NUM_CLASSES = len(CLASS_NAMES)
_SPLIT_CODES = {"train": 1, "test": 2, "folder_train": 3, "folder_test": 4}


def shape_mask(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of class ``label``'s shape; (u, v) are coordinates in shape radii."""
    au, av = np.abs(u), np.abs(v)
    box = (au <= 1) & (av <= 1)
    masks = {
        0: u * u + v * v <= 1,  # disk
        1: (au <= 0.8) & (av <= 0.8),  # square
        2: (v >= -0.85) & (v <= 0.85) & (au <= (v + 0.85) * 0.55),  # triangle, apex up
        3: (u * u + v * v <= 1) & (u * u + v * v >= 0.35),  # ring
        4: ((au <= 0.3) | (av <= 0.3)) & box,  # cross
        5: box & (np.floor((v + 1) * 2.5) % 2 == 0),  # horizontal bars
        6: box & (np.floor((u + 1) * 2.5) % 2 == 0),  # vertical bars
        7: box & ((np.floor((u + 1) * 2) + np.floor((v + 1) * 2)) % 2 == 0),  # checker
        8: au + av <= 1,  # diamond
        9: (np.abs(au - av) <= 0.3) & box,  # saltire (diagonal cross)
    }
    return masks[label]


@functools.lru_cache(maxsize=16)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    return ys, xs


def draw_image(rng: np.random.Generator, label: int, height: int, width: int) -> np.ndarray:
    """Draw one uint8 H x W x 3 image of class ``label``."""
    ys, xs = _pixel_grid(height, width)
    side = min(height, width)
    cy = height * (0.5 + rng.uniform(-0.06, 0.06))
    cx = width * (0.5 + rng.uniform(-0.06, 0.06))
    radius = side * rng.uniform(0.26, 0.36)
    mask = shape_mask(label, (xs - cx) / radius, (ys - cy) / radius)
    hue = (label / NUM_CLASSES + rng.uniform(-0.012, 0.012)) % 1.0
    fg = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))) * 255
    bg = rng.uniform(15, 80, size=3)
    image = np.where(mask[..., None], fg, bg) + rng.normal(0, 10, size=(height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_examples(
    seed: int, split: str, count: int, sizes: Sequence[int] = (32, 32)
) -> tuple[list[np.ndarray], np.ndarray]:
    """Draw ``count`` examples of ``split``: (images, labels).

    Labels are balanced and shuffled. Image sides are drawn uniformly from
    ``sizes[0]..sizes[1]`` (height and width independently), so a set can
    hold mixed sizes.
    """
    code = _SPLIT_CODES[split]
    labels = np.random.default_rng([seed, code]).permutation(np.arange(count) % NUM_CLASSES)
    images = []
    for index, label in enumerate(labels):
        rng = np.random.default_rng([seed, code, index])
        height, width = rng.integers(sizes[0], sizes[1] + 1, size=2)
        images.append(draw_image(rng, int(label), int(height), int(width)))
    return images, labels.astype(np.int64)
