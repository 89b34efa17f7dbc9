"""The element that flows through every pipeline.

Every element is a dict ``{IMAGE: ..., LABEL: ..., ID: ...}``. ``ID`` is the
example's index in its source and survives every step (batching makes it a
vector), so tests can follow examples through a pipeline; the trainer ignores
it. After decoding, ``IMAGE`` is float32 in [0, 1], height x width x channels.
"""

from __future__ import annotations

import tensorflow as tf

IMAGE = "image"
LABEL = "label"
ID = "id"


def to_unit_float(image: tf.Tensor) -> tf.Tensor:
    """Scale uint8 pixels to float32 in [0, 1]; float input is taken as already scaled.

    Works on one image or a batch, so it serves per-example and batched maps alike.
    """
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32)
