"""The reference lab's two input pipelines, as plain `tf.data` functions, registered as variants.

Load them with ``--perf-plugin lab_pipelines.py`` (benchmarks and property
tests) or ``--plugin lab_pipelines.py`` (``models.train``, ``benchmarks.report``).
Each function gets the source's decoded examples as ``(image, label)``
tuples and the build's parameters, and returns batches; its contract says
what it promises, and the property tests hold it to that.

The augmentation is the lab's CIFAR map (random crop to the run's image
size, flip, brightness, contrast, per-image standardization) with stateless
random ops seeded from ``params.seed``: the same seed gives the same images,
another seed other images, and every epoch new ones.
"""

from __future__ import annotations

import tensorflow as tf

import pipelines
from pipelines import BuildParams, Contract

AUTOTUNE = tf.data.AUTOTUNE


def with_seeds(ds: tf.data.Dataset, seed: int | None) -> tf.data.Dataset:
    """Each element with a seed pair for stateless random ops: new every epoch, repeatable."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(ds, seeds)


def augment(images: tf.Tensor, size: tuple[int, int], seed: tf.Tensor) -> tf.Tensor:
    """The lab's train-time map, on one image or a batch (one crop window per batch)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    crop = (*images.shape[:-3], *size, images.shape[-1])
    images = tf.image.stateless_random_crop(images, crop, seeds[0])
    images = tf.image.stateless_random_flip_left_right(images, seeds[1])
    images = tf.image.stateless_random_brightness(images, 0.2, seeds[2])
    images = tf.image.stateless_random_contrast(images, 0.2, 1.8, seeds[3])
    return tf.image.per_image_standardization(images)


# Of the lab's random choices, the property tests can measure the flip (the
# suite's own rate, 0.5), so the contracts name it. The lab's standardization
# comes last and undoes the brightness shift, and the contrast but for a
# trace; its crop takes no padding. So only the flip is promised.
LAB_CHOICES = ("flip",)


# The lab reads through a Python generator, maps each example, and batches.
# Nothing shuffles or runs in parallel, and every epoch is augmented anew.
@pipelines.pipeline(Contract(augmentation="fresh", augmentations=LAB_CHOICES))
def lab_naive(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """The lab's naive pipeline: generator, per-example augment, batch."""
    ds = tf.data.Dataset.from_generator(ds.as_numpy_iterator, output_signature=ds.element_spec)
    ds = with_seeds(ds, params.seed)
    ds = ds.map(lambda example, seed: (augment(example[0], params.image_size, seed), example[1]))
    return ds.batch(params.batch_size)


# The lab caches after the augmentation and after the shuffle: the cache
# replays the first epoch's batches, so later epochs repeat its order and its
# augmentation (reshuffles=False, augmentation="frozen"), and drop the same
# remainder. This contract says so; `optimized` in the suite caches before both.
@pipelines.pipeline(
    Contract(
        shuffle="elements",
        drop_remainder=True,
        augmentation="frozen",
        reshuffles=False,
        augmentations=LAB_CHOICES,
    )
)
def lab_optimized(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """The lab's optimized pipeline: interleave, shuffle, batch, batched map, cache, prefetch."""
    ds = params.shards.interleave(params.read_shard, num_parallel_calls=AUTOTUNE)
    ds = ds.shuffle(params.shuffle_buffer, seed=params.seed)
    ds = with_seeds(ds.batch(params.batch_size, drop_remainder=True), params.seed)
    ds = ds.map(
        lambda batch, seed: (augment(batch[0], params.image_size, seed), batch[1]),
        num_parallel_calls=AUTOTUNE,
    )
    return ds.cache().prefetch(AUTOTUNE)
