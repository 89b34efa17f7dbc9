"""Image augmentations, each one function that works on one image or a batch.

Every augmentation is split into two parts: drawing its random parameters
(one value per image) and applying them (a deterministic function of image
and parameters that broadcasts over a leading batch axis). The per-example
and the batched form therefore share the same code and agree whenever the
parameters agree; `tests/test_augment.py` checks it.

Departures from the reference lab, on purpose:
- brightness is a shift in the units the image is in; the lab's
  ``max_delta=63`` was meant for 0..255 pixels and wipes out [0, 1] images;
- per-image standardization runs *before* brightness and contrast, since
  standardizing afterwards removes exactly the shift brightness added;
- the crop pads by 4 pixels and crops back to the input size (the usual
  CIFAR recipe), so augmented and plain variants feed the same model.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import tensorflow as tf

PAD = 4
BRIGHTNESS_MAX_DELTA = 0.4  # in standard deviations, as it runs after standardization
CONTRAST_RANGE = (0.2, 1.8)  # the lab's random_contrast(lower=0.2, upper=1.8)
FLIP_RATE = 0.5  # the lab's random_flip_left_right


@dataclasses.dataclass(frozen=True)
class RandomChoice:
    """One random choice of the augmentation, as it is stated: its distribution per image.

    ``distribution``: "bernoulli" (true with probability ``rate``), "uniform"
    (a real number in [``low``, ``high``)) or "integers" (``low`` to ``high``
    inclusive, each equally likely). `draw_params` draws from these, and the
    property tests measure the augmented images against them.
    """

    name: str
    distribution: Literal["bernoulli", "uniform", "integers"]
    low: float = 0.0
    high: float = 1.0
    rate: float = 0.5


RANDOM_CHOICES: dict[str, RandomChoice] = {
    choice.name: choice
    for choice in (
        RandomChoice("crop_top", "integers", 0, 2 * PAD),
        RandomChoice("crop_left", "integers", 0, 2 * PAD),
        RandomChoice("flip", "bernoulli", rate=FLIP_RATE),
        RandomChoice("brightness", "uniform", -BRIGHTNESS_MAX_DELTA, BRIGHTNESS_MAX_DELTA),
        RandomChoice("contrast", "uniform", *CONTRAST_RANGE),
    )
}


def standardize(images: tf.Tensor) -> tf.Tensor:
    """Per-image standardization to zero mean and unit variance.

    The same as `tf.image.per_image_standardization`, for one image or a batch.
    """
    axes = (-3, -2, -1)
    mean = tf.reduce_mean(images, axis=axes, keepdims=True)
    count = tf.cast(tf.reduce_prod(tf.shape(images)[-3:]), images.dtype)
    std = tf.math.reduce_std(images, axis=axes, keepdims=True)
    return (images - mean) / tf.maximum(std, tf.math.rsqrt(count))


def _per_image(values: tf.Tensor) -> tf.Tensor:
    """Reshape per-image parameters (shape () or (B,)) to broadcast over H, W, C."""
    return values[..., tf.newaxis, tf.newaxis, tf.newaxis]


def crop(images: tf.Tensor, top: tf.Tensor, left: tf.Tensor) -> tf.Tensor:
    """Zero-pad by `PAD` pixels and cut the original size back out at (top, left)."""
    height, width = images.shape[-3], images.shape[-2]
    paddings = [[0, 0]] * (images.shape.rank - 3) + [[PAD, PAD], [PAD, PAD], [0, 0]]
    padded = tf.pad(images, paddings)
    batch_dims = images.shape.rank - 3
    rows = top[..., tf.newaxis] + tf.range(height)
    cols = left[..., tf.newaxis] + tf.range(width)
    padded = tf.gather(padded, rows, axis=batch_dims, batch_dims=batch_dims)
    return tf.gather(padded, cols, axis=batch_dims + 1, batch_dims=batch_dims)


def flip(images: tf.Tensor, flipped: tf.Tensor) -> tf.Tensor:
    """Mirror left-right the images whose ``flipped`` is true."""
    return tf.where(_per_image(flipped), tf.reverse(images, axis=[-2]), images)


def brightness(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """Add ``delta`` to every pixel of each image."""
    return images + _per_image(delta)


def contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Scale each channel's deviation from its mean by ``factor`` (`tf.image.adjust_contrast`)."""
    mean = tf.reduce_mean(images, axis=(-3, -2), keepdims=True)
    return (images - mean) * _per_image(factor) + mean


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """The random choices for one image, or for each image of a batch."""

    top: tf.Tensor
    left: tf.Tensor
    flipped: tf.Tensor
    delta: tf.Tensor
    factor: tf.Tensor


def draw_params(batch_shape: tf.Tensor | tuple[int, ...], seed: tf.Tensor) -> AugmentParams:
    """Draw random parameters from ``seed`` (shape [2]): shape () for one image, (B,) for a batch.

    Stateless: the same seed gives the same parameters. Pipelines pass a new
    seed for every element and every epoch (see `pipelines.steps.Map`); a
    seeded stateful op would instead restart its sequence with every new
    iterator and replay the same augmentation each epoch.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)

    def draw(name: str, k: int) -> tf.Tensor:
        choice = RANDOM_CHOICES[name]
        if choice.distribution == "integers":
            return tf.random.stateless_uniform(
                batch_shape, seeds[k], int(choice.low), int(choice.high) + 1, dtype=tf.int32
            )
        if choice.distribution == "bernoulli":
            return tf.random.stateless_uniform(batch_shape, seeds[k]) < choice.rate
        return tf.random.stateless_uniform(batch_shape, seeds[k], choice.low, choice.high)

    return AugmentParams(
        top=draw("crop_top", 0),
        left=draw("crop_left", 1),
        flipped=draw("flip", 2),
        delta=draw("brightness", 3),
        factor=draw("contrast", 4),
    )


def apply_augmentation(images: tf.Tensor, params: AugmentParams) -> tf.Tensor:
    """The training augmentation with given parameters, fused into few passes over the pixels.

    The same as `crop`, `flip`, `standardize`, `brightness` and `contrast` in
    that order (`reference_augmentation`; the tests hold the two equal), but
    crop and flip are one pair of gathers and the three affine steps one
    multiply-add with per-image, per-channel coefficients. On two CPU cores
    the pipeline's augmentation competes with training for the same cores,
    so its cost shows up directly in epoch time: the composed form takes
    about four times as long.
    """
    height, width = images.shape[-3], images.shape[-2]
    batch_dims = images.shape.rank - 3
    paddings = [[0, 0]] * batch_dims + [[PAD, PAD], [PAD, PAD], [0, 0]]
    padded = tf.pad(images, paddings)
    rows = params.top[..., tf.newaxis] + tf.range(height)
    # A flipped crop reads the same columns right to left.
    columns = tf.where(
        params.flipped[..., tf.newaxis], tf.range(width - 1, -1, -1), tf.range(width)
    )
    cropped = tf.gather(padded, rows, axis=batch_dims, batch_dims=batch_dims)
    x = tf.gather(
        cropped, params.left[..., tf.newaxis] + columns, axis=batch_dims + 1, batch_dims=batch_dims
    )
    # standardize -> + delta -> contrast is affine in x:
    #   out = (x - channel_mean) * factor / std + (channel_mean - mean) / std + delta
    channel_mean = tf.reduce_mean(x, axis=(-3, -2), keepdims=True)
    mean = tf.reduce_mean(channel_mean, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.square(x), axis=(-3, -2, -1), keepdims=True) - tf.square(mean)
    count = tf.cast(height * width * images.shape[-1], images.dtype)
    std = tf.maximum(tf.sqrt(tf.maximum(variance, 0.0)), tf.math.rsqrt(count))
    scale = _per_image(params.factor) / std
    offset = (channel_mean - mean) / std + _per_image(params.delta) - channel_mean * scale
    return x * scale + offset


def reference_augmentation(images: tf.Tensor, params: AugmentParams) -> tf.Tensor:
    """The training augmentation as the plain composition of its steps (what the fused form equals).

    Crop, flip, standardize, brightness, contrast, in that order.
    """
    images = crop(images, params.top, params.left)
    images = flip(images, params.flipped)
    images = standardize(images)
    images = brightness(images, params.delta)
    return contrast(images, params.factor)


def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Randomly augment one image (H x W x C) or a batch (B x H x W x C); ``seed`` has shape [2]."""
    batch_shape = tf.shape(images)[:-3]
    return apply_augmentation(images, draw_params(batch_shape, seed))
