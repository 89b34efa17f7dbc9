"""Index-tagged sources for property tests: every example can be followed through a pipeline.

Example ``i`` has label ``label_of(i)`` and a 12x12 image: a left-to-right
ramp, the same in every channel, on top of three channel levels that encode
``i`` in the ratio of their differences, ``(v0 - v1) / (v1 - v2) = (i + 1) / STEP``.

That ratio survives every transform the seed variants apply: a pad-and-crop
of up to 4 pixels leaves the central pixels original, a flip keeps them
central, and per-image standardization, brightness and per-channel contrast
are affine maps with the same scale for every channel (the padding's zeros
shift each channel's mean in proportion to its level, so the ratio holds at
every pixel). So `decode_ids` reads the id back from the image, and a label
can be checked against its own image.

The ramp and the zero padding make the augmentation itself visible:
`read_augmentation` measures, from an augmented image alone, the crop offset,
whether it was flipped, the brightness shift and the contrast factor, so the
property tests can check that each random choice happens at its stated rate.
"""

from __future__ import annotations

import numpy as np

from pipelines import sources
from pipelines.augment import PAD

SIDE = 12
STEP = 50.0
LOW, MID = 10, 60
# The ramp rises by RAMP per column: its direction shows a left-right flip.
RAMP = 4
MAX_EXAMPLES = 255 - MID - 1 - RAMP * (SIDE - 1)
CENTRE = SIDE // 2


def label_of(ids: np.ndarray) -> np.ndarray:
    """The label of each id: a known function, so pairing can be checked."""
    return (np.asarray(ids) * 7 + 3) % 10


def tagged_images(n: int) -> np.ndarray:
    """n uint8 images, 12x12x3: channel levels (61 + i, 60, 10) plus RAMP x column."""
    if n > MAX_EXAMPLES:
        raise ValueError(f"at most {MAX_EXAMPLES} tagged examples")
    levels = np.stack([MID + 1 + np.arange(n), np.full(n, MID), np.full(n, LOW)], axis=1)
    ramp = RAMP * np.arange(SIDE)
    images = levels[:, None, None, :] + ramp[None, None, :, None]
    return np.broadcast_to(images, (n, SIDE, SIDE, 3)).astype(np.uint8)


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
    """Read the id each image encodes (from its central pixel); works after augmentation.

    Every source pixel encodes the id, so a crop to a smaller size (a user's
    pipeline at another image size) still has it at its centre. An image that
    encodes none reads as -1.
    """
    steps = _centre_steps(np.asarray(images, np.float64))
    # An image that encodes nothing (a flat channel, a saturated one) reads as id -1.
    steps = np.where(np.isfinite(steps) & (np.abs(steps) < 2**62), steps, 0.0)
    return np.rint(steps).astype(np.int64) - 1


def id_legible(images: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Per image, whether the id it encodes can still be read: at the centre pixel and
    its four neighbours the channels' ratio lies within ``tolerance`` of one whole
    step, the same one. Crops, flips, colour shifts and linear filters (a blur) keep
    it; a step that clips or mixes channels otherwise leaves arbitrary ratios."""
    x = np.asarray(images, np.float64)
    centre = np.rint(_centre_steps(x))
    legible = np.ones(centre.shape, bool)
    for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
        # The neighbour moved to the centre.
        steps = _centre_steps(np.roll(x, (-dr, -dc), axis=(-3, -2)))
        legible &= np.abs(steps - centre) <= tolerance
    return legible


def _centre_steps(x: np.ndarray) -> np.ndarray:
    """The channels' ratio at each image's centre pixel, in steps of the id's encoding."""
    centre = x[..., x.shape[-3] // 2, x.shape[-2] // 2, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (centre[..., 0] - centre[..., 1]) / (centre[..., 1] - centre[..., 2]) * STEP


def original_pixels(images: np.ndarray) -> np.ndarray:
    """Which pixels of each image come from the source, not from the crop's zero padding.

    Channels 1 and 2 differ by the same amount at every source pixel, and by
    a different amount (a fraction of it, or nothing) at every padded one:
    the centre pixel, never padded, gives the source's difference.
    """
    x = np.asarray(images, np.float64)
    difference = x[..., 1] - x[..., 2]
    centre = difference[..., CENTRE, CENTRE][..., None, None]
    return np.abs(difference - centre) <= 0.05 * np.abs(centre)


def readable(images: np.ndarray, tolerance: float = 0.02) -> np.ndarray:
    """Per image, whether its pixels are what crops, flips and affine colour maps make of a
    tagged image, so that `read_augmentation` can read them back.

    Those keep every source row identical and the ramp's steps between neighbouring
    source pixels equal. A filter (blur, sharpen), a gamma or a hue change does not:
    after it the crop, flip, brightness and contrast read from the pixels are not the
    ones drawn. ``tolerance``: the deviation allowed, as a fraction of the ramp's step.
    """
    x = np.asarray(images, np.float64).reshape(-1, SIDE, SIDE, 3)
    original = original_pixels(x)[..., None]
    rows = np.maximum(original.sum(axis=-3, keepdims=True), 1)
    column = (x * original).sum(axis=-3, keepdims=True) / rows
    off_row = np.where(original, np.abs(x - column), 0.0).max(axis=(-3, -2, -1))
    steps = np.diff(x, axis=-2)
    both = np.broadcast_to(original[..., 1:, :] & original[..., :-1, :], steps.shape)
    step = np.array(
        [np.median(np.abs(s[b])) if b.any() else 0.0 for s, b in zip(steps, both, strict=True)]
    )
    typical = np.sign(np.where(both, steps, 0.0).sum(axis=(-3, -2, -1)))[:, None, None, None]
    off_step = np.where(both, np.abs(steps - typical * step[:, None, None, None]), 0.0)
    worst = np.maximum(off_row, off_step.max(axis=(-3, -2, -1)))
    affine = worst <= tolerance * np.maximum(step, 1e-12)
    # A crop pads one side of each axis at most, with whole rows or columns of one value.
    mask = original[..., 0]
    top, bottom = _padding(mask, axis=-1)
    left, right = _padding(mask, axis=-2)
    one_side = ~((top > 0) & (bottom > 0)) & ~((left > 0) & (right > 0))
    rows, cols = mask.any(axis=-1), mask.any(axis=-2)
    whole = (mask == (rows[..., :, None] & cols[..., None, :])).all(axis=(-2, -1))
    padded = ~mask[..., None] & np.ones_like(x, bool)
    low = np.where(padded, x, np.inf).min(axis=(-3, -2))
    high = np.where(padded, x, -np.inf).max(axis=(-3, -2))
    flat = (~padded.any(axis=(-3, -2)) | (high - low <= tolerance * step[:, None])).all(axis=-1)
    return affine & one_side & whole & flat


def _padding(original: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (axis -2) or columns (axis -1) wholly padded at the start and at the end."""
    padded_line = ~original.any(axis=axis)  # per column if axis=-2, per row if axis=-1
    leading = np.argmin(padded_line, axis=-1)
    trailing = np.argmin(padded_line[..., ::-1], axis=-1)
    return leading, trailing


def read_augmentation(images: np.ndarray) -> dict[str, np.ndarray]:
    """Measure each random choice of `pipelines.augment` from augmented tagged images.

    Returns one array per choice in `pipelines.augment.RANDOM_CHOICES`, one
    value per image: ``crop_top`` and ``crop_left`` (0 to 2 x PAD; PAD is no
    shift), ``flip`` (bool), ``brightness`` (the image's mean, which
    standardization sets to 0 before the shift) and ``contrast`` (the factor
    on each channel's deviations, from the standardized image's unit variance).
    Brightness and contrast mean something only after standardization.
    """
    x = np.asarray(images, np.float64).reshape(-1, SIDE, SIDE, 3)
    original = original_pixels(x)
    top_pad, bottom_pad = _padding(original, axis=-1)
    left_pad, right_pad = _padding(original, axis=-2)
    # The ramp rises to the right unless the image was flipped; only steps
    # between two source pixels count (the padding's edge is a jump).
    both = original[..., 1:] & original[..., :-1]
    steps = np.diff(x.mean(axis=-1), axis=-1)
    flip = (np.where(both, steps, 0.0).sum(axis=(-2, -1))) < 0
    # A flip mirrors the padding too: the crop's left edge is then on the right.
    left_edge = np.where(flip, right_pad, left_pad)
    right_edge = np.where(flip, left_pad, right_pad)
    channel_means = x.mean(axis=(-3, -2))
    mean = channel_means.mean(axis=-1)
    between = ((channel_means - mean[:, None]) ** 2).mean(axis=-1)
    within = ((x - channel_means[:, None, None, :]) ** 2).mean(axis=(-3, -2, -1))
    contrast = np.sqrt(within / np.maximum(1.0 - between, 1e-12))
    return {
        "crop_top": PAD - top_pad + bottom_pad,
        "crop_left": PAD - left_edge + right_edge,
        "flip": flip,
        "brightness": mean,
        "contrast": contrast,
    }
