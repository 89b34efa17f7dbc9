"""Spans recorded beside the elements: for stages inside a user's pipeline function.

A steps variant's elements carry their spans (`pipelines.observing.tracing.SPANS`). A
user's function passes its own elements, ``(image, label)`` tuples, from one
tf.data call to the next, and one more key would break its code. So the
stages seen inside a function (`pipelines.observing.function_calls`) write each span
as a row ``(stage, start, end)`` into a `SpanLog`, a TensorFlow queue the
dataset's functions enqueue into as they run; the trainer's recorder
(`pipelines.observing.timeline.TimelineRecorder`) drains it at each epoch's end.

A row costs one enqueue beside the stamps: the same two `tf.timestamp` ops
as a carried span, no Python and no `tf.py_function`. Spans are per call,
so a logged stage's spans name no examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines.observing.stamps import call_timed, now_after, on_arrival, shard_spans
from pipelines.sources.base import Record

# Far more rows than an epoch makes (examples times stages); the queue holds
# what it is given, allocating per row.
_CAPACITY = 2**31 - 1


class SpanLog:
    """A queue of ``(stage index, start, end)`` rows, Unix times in seconds."""

    def __init__(self) -> None:
        self._queue = tf.queue.FIFOQueue(
            _CAPACITY, [tf.int32, tf.float64, tf.float64], shapes=[(), (), ()]
        )

    def record(self, stage: int | tf.Tensor, start: tf.Tensor, end: tf.Tensor) -> tf.Operation:
        """The op that logs one span of stage ``stage`` (its index among the build's stages)."""
        return self._queue.enqueue(
            [tf.cast(stage, tf.int32), tf.cast(start, tf.float64), tf.cast(end, tf.float64)]
        )

    def drain(self) -> np.ndarray:
        """Every row logged so far, removed from the log: ``[rows, 3]`` float64."""
        size = int(self._queue.size())
        if not size:
            return np.zeros((0, 3))
        stage, start, end = self._queue.dequeue_many(size)
        return np.stack([stage.numpy().astype(np.float64), start.numpy(), end.numpy()], axis=1)


def _passed_after(structure: Any, op: tf.Operation | tf.Tensor) -> Any:
    """``structure`` unchanged, its tensors computed only after ``op`` has run."""
    with tf.control_dependencies([op]):
        return tf.nest.map_structure(tf.identity, structure, expand_composites=True)


def logged_call(function: Callable[..., Any], log: SpanLog, stage: int) -> Callable[..., Any]:
    """``function`` (a map's, called with the element's parts) logging one span per call:
    from its inputs being ready to its outputs being computed."""

    def call(*parts: Any) -> Any:
        outputs, start, end = call_timed(function, parts)
        return _passed_after(outputs, log.record(stage, start, end))

    return call


def logged_batches(ds: tf.data.Dataset, log: SpanLog, stage: int) -> tf.data.Dataset:
    """``ds`` (a batch's output) unchanged, logging per batch the span from its request
    to its arrival; like `pipelines.observing.tracing.traced_batch`, the analysis counts only the
    part no earlier stage accounts for."""

    def stamp(requested: tf.Tensor, batch: Any) -> Any:
        return _passed_after(batch, log.record(stage, requested, now_after(batch)))

    return on_arrival(ds, stamp)


def logged_reader(
    read_shard: Callable[[Any], tf.data.Dataset],
    log: SpanLog,
    opening: int,
    reading: int,
    one_record: bool = False,
) -> Callable[[Any], tf.data.Dataset]:
    """``read_shard`` logging each shard's "open" (its first record) and each later
    record's "read", the spans `pipelines.observing.tracing.traced_shard_reader` puts in the
    elements (`pipelines.observing.stamps.shard_spans`, which says what ``one_record`` spares)."""

    def log_span(record: Record, first: tf.Tensor, start: tf.Tensor, end: tf.Tensor) -> Record:
        return _passed_after(record, log.record(tf.where(first, opening, reading), start, end))

    return shard_spans(read_shard, log_span, one_record)
