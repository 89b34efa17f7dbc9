"""In-memory arrays as a source (``tf.data`` reads slices of them)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipelines.element import ID, IMAGE, LABEL, to_unit_float
from pipelines.errors import DataError
from pipelines.sources.base import Record, Source, check_labels, shard_ranges


def arrays_source(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int | None = None,
    num_shards: int = 1,
    split: str = "all",
    name: str = "<memory>",
) -> Source:
    """A source over arrays in memory.

    Args:
        images: N x H x W x C, uint8 (0..255) or float (already in [0, 1]).
        labels: N integer class labels.
        num_classes: labels must lie in ``[0, num_classes)``; default ``max(labels) + 1``.
        num_shards: contiguous slices that a variant may read in parallel.
        split: the split these arrays are.
        name: shown in messages instead of a path.
    """
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 4:
        raise DataError(name, f"images must be N x H x W x C, got shape {images.shape}")
    if len(images) == 0:
        raise DataError(name, "the dataset is empty")
    if len(labels) != len(images):
        raise DataError(name, f"{len(images)} images but {len(labels)} labels")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    check_labels(labels, num_classes, name)

    # Created once, eagerly: shard readers capture these tensors instead of
    # embedding copies of the arrays as graph constants.
    image_table = tf.constant(images)
    label_table = tf.constant(labels)

    def read_shard(shard: Record) -> tf.data.Dataset:
        ids = tf.data.Dataset.range(shard["start"], shard["stop"])
        return ids.map(
            lambda i: {IMAGE: tf.gather(image_table, i), LABEL: tf.gather(label_table, i), ID: i}
        )

    return Source(
        kind="memory",
        location=name,
        split=split,
        shards=shard_ranges(len(images), num_shards),
        read_shard=read_shard,
        decode=decode_pixels,
        num_examples=len(images),
        num_classes=num_classes,
        image_shape=tuple(int(d) for d in images.shape[1:]),
        decode_batchable=True,
    )


def decode_pixels(record: Record) -> Record:
    """Decode raw pixel records (one or a batch): scale to float32 in [0, 1]."""
    return {**record, IMAGE: to_unit_float(record[IMAGE])}
