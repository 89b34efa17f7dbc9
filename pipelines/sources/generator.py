"""A Python generator as a source (``tf.data.Dataset.from_generator``).

This is how the reference lab's timed dataset reads: Python code yields one
example at a time, holding the GIL while it does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf

from pipelines.element import ID, IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.sources.base import Record, Source
from pipelines.sources.memory import decode_pixels


def generator_source(
    make_examples: Callable[[], Iterable[tuple[np.ndarray, int]]],
    *,
    num_examples: int,
    image_shape: tuple[int, int, int],
    num_classes: int,
    split: str = "all",
    name: str = "<generator>",
) -> Source:
    """A source whose examples come from a Python generator.

    Args:
        make_examples: called once per epoch; yields ``(uint8 H x W x C image, label)``.
            The n-th example yielded gets id n.
        num_examples: how many examples one call yields.
        image_shape: (height, width, channels) of every image.
        num_classes: labels must lie in ``[0, num_classes)``.
        split: the split the generator yields.
        name: shown in messages instead of a path.
    """
    if num_examples <= 0:
        raise DataError(name, "the dataset is empty")

    def tagged() -> Iterable[tuple[np.ndarray, np.int64, np.int64]]:
        count = 0
        for index, (image, label) in enumerate(make_examples()):
            if not 0 <= int(label) < num_classes:
                raise DataError(
                    name, f"label {int(label)} of example {index} is outside 0..{num_classes - 1}"
                )
            count += 1
            yield np.asarray(image, dtype=np.uint8), np.int64(label), np.int64(index)
        if count != num_examples:
            raise DataError(name, f"yielded {count} examples, {num_examples} were declared")

    signature = (
        tf.TensorSpec(image_shape, tf.uint8),
        tf.TensorSpec((), tf.int64),
        tf.TensorSpec((), tf.int64),
    )

    def read_shard(_: Record) -> tf.data.Dataset:
        examples = tf.data.Dataset.from_generator(tagged, output_signature=signature)
        return examples.map(lambda image, label, i: {IMAGE: image, LABEL: label, ID: i})

    return Source(
        kind="generator",
        location=name,
        split=split,
        shards={"shard": np.zeros(1, np.int64)},  # a generator is read in one piece
        read_shard=read_shard,
        decode=decode_pixels,
        num_examples=num_examples,
        num_classes=num_classes,
        image_shape=image_shape,
        decode_batchable=True,
    )
