"""Index-tagged sources for property tests: every example can be followed through a pipeline.

Example ``i`` has label ``label_of(i)`` and a flat 12x12 image whose three
channel levels encode ``i`` in the ratio of their differences,
``(v0 - v1) / (v1 - v2) = (i + 1) / STEP``. That ratio survives every
transform the seed variants apply: a pad-and-crop of up to 4 pixels leaves
the central pixels original, a flip keeps them central, and per-image
standardization, brightness and per-channel contrast are affine maps with the
same scale for every channel. So `decode_ids` reads the id back from the
image, and a label can be checked against its own image.
"""

from __future__ import annotations

import numpy as np

from pipelines import sources

SIDE = 12
STEP = 50.0
LOW, MID = 10, 60
MAX_EXAMPLES = 255 - MID - 1
CENTRE = SIDE // 2


def label_of(ids: np.ndarray) -> np.ndarray:
    """The label of each id: a known function, so pairing can be checked."""
    return (np.asarray(ids) * 7 + 3) % 10


def tagged_images(n: int) -> np.ndarray:
    """n uint8 images, 12x12x3, channel levels (61 + i, 60, 10)."""
    if n > MAX_EXAMPLES:
        raise ValueError(f"at most {MAX_EXAMPLES} tagged examples")
    levels = np.stack([MID + 1 + np.arange(n), np.full(n, MID), np.full(n, LOW)], axis=1)
    return np.broadcast_to(levels[:, None, None, :], (n, SIDE, SIDE, 3)).astype(np.uint8)


def tagged_source(n: int, num_shards: int = 1) -> sources.Source:
    """An in-memory source of n tagged examples in ``num_shards`` shards."""
    return sources.arrays_source(
        tagged_images(n),
        label_of(np.arange(n)),
        num_classes=10,
        num_shards=num_shards,
        name=f"<tagged n={n}>",
    )


def decode_ids(images: np.ndarray) -> np.ndarray:
    """Read the id each image encodes (from its central pixel); works after augmentation."""
    centre = np.asarray(images, np.float64)[..., CENTRE, CENTRE, :]
    ratio = (centre[..., 0] - centre[..., 1]) / (centre[..., 1] - centre[..., 2])
    return np.rint(ratio * STEP).astype(np.int64) - 1
