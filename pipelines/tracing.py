"""In-graph span recording: each element carries the times its stages ran.

With tracing on (``pipelines.build(..., trace=True)``), every element holds
one more key, `SPANS`: a float64 tensor ``[stages, 2]`` (``[batch, stages, 2]``
once batched) of (start, end) wall-clock times in seconds since the Unix
epoch, one row per stage it went through, in order. The times are
`tf.timestamp` ops ordered by control dependencies inside the dataset's own
functions: no sleeps, no `tf.py_function` round trips, no Python in the map
stages, so tracing changes little of what it measures.

Which stage a row is, and whether that stage runs in parallel, is decided
once per build: the steps append a `Stage` to the build context's list as
they add their row, and `pipelines.build_traced` hands that list back.

A stage that does not happen for an element gets the row (-1, -1): the
shard's "open" is paid by its first record only. Elements replayed from a
cache carry the spans of the epoch that filled it; `pipelines.timeline`
drops spans that ended before their epoch began, so a cached epoch shows no
open, read or map work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import tensorflow as tf

from pipelines.sources.base import Record

SPANS = "spans"
NOT_RECORDED = -1.0

# The pipeline's kinds, then the trainer's (recorded in Python by `pipelines.timeline`).
StageKind = Literal["open", "read", "generator", "map", "batch", "wait", "train", "test"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One traced stage of a pipeline: its row in `SPANS`.

    Attributes:
        name: shown in timelines, e.g. ``open``, ``read``, ``map(decode)``.
        kind: what sort of work it is (the bottleneck analysis reasons on it).
        parallel: whether several elements can be in this stage at once.
        batched: whether it runs once per batch rather than per example.
    """

    name: str
    kind: StageKind
    parallel: bool = False
    batched: bool = False


def now_after(tensors: object) -> tf.Tensor:
    """`tf.timestamp` taken once every tensor in ``tensors`` (any nest) has been computed."""
    with tf.control_dependencies([t for t in tf.nest.flatten(tensors) if tf.is_tensor(t)]):
        return tf.timestamp()


def empty_spans() -> tf.Tensor:
    """The spans of an element that has not been through any traced stage."""
    return tf.zeros([0, 2], tf.float64)


def append_span(spans: tf.Tensor, start: tf.Tensor, end: tf.Tensor) -> tf.Tensor:
    """``spans`` with one more row (start, end); a batched ``spans`` gets it on every example.

    ``start`` and ``end`` are scalars (the same span for the whole element or
    batch) or, for a batch, vectors with one value per example.
    """
    row = tf.stack([tf.cast(start, tf.float64), tf.cast(end, tf.float64)], axis=-1)
    if spans.shape.rank == 3:
        row = tf.broadcast_to(row, tf.stack([tf.shape(spans)[0], 2]))
    return tf.concat([spans, row[..., tf.newaxis, :]], axis=-2)


def last_end(spans: tf.Tensor) -> tf.Tensor:
    """When each element's most recent stage ended (per example for a batch)."""
    return spans[..., -1, 1]


def timed(function: Callable[[Record], Record]) -> Callable[[Record], Record]:
    """Wrap a record -> record function so that it appends its own (start, end) span."""

    def traced(record: Record) -> Record:
        record = dict(record)
        spans = record.pop(SPANS)
        start = now_after(record)
        with tf.control_dependencies([start]):
            # Identity inside the block: the work cannot start before `start`.
            inputs = tf.nest.map_structure(tf.identity, record)
        outputs = dict(function(inputs))
        end = now_after(outputs)
        outputs[SPANS] = append_span(spans, start, end)
        return outputs

    return traced


def traced_shard_reader(
    read_shard: Callable[[Record], tf.data.Dataset],
) -> Callable[[Record], tf.data.Dataset]:
    """Wrap a source's ``read_shard`` so that its records carry an "open" and a "read" row.

    Each span runs from the request for a record to its arrival: a stamp
    dataset zipped in front of the records is asked first, so its
    timestamp is taken when the request comes in, before the read starts.
    The first record's span is the shard's "open" (opening a file and its
    first read are one wait on real storage) and it has no read row; later
    records have a read row and no open row.
    """

    def read(shard: Record) -> tf.data.Dataset:
        requests = tf.data.Dataset.from_tensors(0).repeat().map(lambda _: tf.timestamp())
        records = tf.data.Dataset.zip(requests, read_shard(shard)).enumerate()

        def stamp(index: tf.Tensor, request_and_record: tuple[tf.Tensor, Record]) -> Record:
            requested, record = request_and_record
            span = tf.stack([requested, now_after(record)])
            missing = tf.constant([NOT_RECORDED, NOT_RECORDED], tf.float64)
            first = index == 0
            spans = tf.stack([tf.where(first, span, missing), tf.where(first, missing, span)])
            return {**record, SPANS: spans}

        return records.map(stamp)

    return read


def arrival_stamp(record: Record) -> Record:
    """Append a zero-length span marking when the element reached the next step (a batcher)."""
    now = now_after(record)
    return {**record, SPANS: append_span(record[SPANS], now, now)}


def close_batch(batch: Record) -> Record:
    """Turn the arrival rows of a fresh batch into one "batch" span: last arrival to now.

    The arrival row is the last; it becomes (latest arrival, batch ready) on
    every example of the batch: the batching itself. The wait for the batch
    to fill is upstream work, already in the examples' own rows.
    """
    spans = batch[SPANS]
    last_arrival = tf.reduce_max(spans[:, -1, 0])
    now = now_after(batch)
    return {**batch, SPANS: append_span(spans[:, :-1, :], last_arrival, now)}


def after_generator(record: Record) -> Record:
    """Append the span of crossing into Python and back: end of the read to now."""
    now = now_after(record)
    return {**record, SPANS: append_span(record[SPANS], last_end(record[SPANS]), now)}
