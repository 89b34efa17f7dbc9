"""In-graph span recording: each element carries the times its stages ran.

With tracing on (``pipelines.build_traced``), every element holds one more
key, `SPANS`: a float64 tensor ``[stages, 2]`` (``[batch, stages, 2]``
once batched) of (start, end) wall-clock times in seconds since the Unix
epoch, one row per stage it went through, in order. The times are
`tf.timestamp` ops ordered by control dependencies inside the dataset's own
functions (`pipelines.observing.stamps`): no sleeps, no `tf.py_function` round trips,
no Python in the map stages, so tracing changes little of what it measures.

Steps do not know whether they are traced. Each hands the work a tracer
could observe (reading a shard, crossing a generator, a map call, a batch)
to its build's observer: `UNTRACED` passes it through unchanged, a `Tracer`
wraps it so that it adds its row, and records the row's `Stage` (which stage
it is, and whether it runs in parallel). `pipelines.build_traced` hands the
tracer's stages back, and its `pipelines.observing.span_log.SpanLog`: the stages seen
inside a user's pipeline function (`pipelines.observing.function_calls`) cannot add a
key to the user's elements, and log their spans there instead.

A stage that does not happen for an element gets the row (-1, -1): the
shard's "open" is paid by its first record only. Elements replayed from a
cache carry the spans of the epoch that filled it; `pipelines.observing.timeline`
drops spans that ended before their epoch began, so a cached epoch shows no
open, read or map work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import tensorflow as tf

from pipelines.observing.span_log import SpanLog
from pipelines.observing.stamps import (
    SPANS,
    append_span,
    last_end,
    now_after,
    on_arrival,
    shard_spans,
    stamp_map,
    timed,
)
from pipelines.sources.base import Record

NOT_RECORDED = -1.0

# The pipeline's kinds, then the trainer's (recorded in Python by `pipelines.observing.timeline`).
# A "function" stage, a whole pipeline function timed from outside only, is
# found in runs saved before the stages inside functions were seen.
StageKind = Literal[
    "open", "read", "generator", "map", "batch", "function", "wait", "train", "test"
]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One traced stage of a pipeline: its row in `SPANS`.

    Attributes:
        name: shown in timelines, e.g. ``open``, ``read``, ``map(decode)``.
        kind: what sort of work it is (the bottleneck analysis reasons on it).
        parallel: whether several elements can be in this stage at once.
        batched: whether it runs once per batch rather than per example.
        observed: seen inside a pipeline function, from a tf.data call it made
            (`pipelines.observing.function_calls`); its spans are logged beside the
            elements (`pipelines.observing.span_log`), not carried in `SPANS`.
        inside_read: it runs inside each shard's reader (a pipeline function's
            decode), so tf.data's runtime model counts it with the read.
        elided: tf.data drops it from an untraced build as doing nothing (a map
            returning its arguments: noop_elimination); its runtime model lacks it.
    """

    name: str
    kind: StageKind
    parallel: bool = False
    batched: bool = False
    observed: bool = False
    inside_read: bool = False
    elided: bool = False


def traced_shard_reader(
    read_shard: Callable[[Record], tf.data.Dataset], one_record: bool = False
) -> Callable[[Record], tf.data.Dataset]:
    """Wrap a source's ``read_shard`` so that its records carry an "open" and a "read" row
    (`shard_spans`): the first record has an open row and no read row, later records a
    read row and no open row."""

    def rows(record: Record, first: tf.Tensor, start: tf.Tensor, end: tf.Tensor) -> Record:
        span = tf.stack([start, end])
        missing = tf.constant([NOT_RECORDED, NOT_RECORDED], tf.float64)
        return {
            **record,
            SPANS: tf.where(first, tf.stack([span, missing]), tf.stack([missing, span])),
        }

    return shard_spans(read_shard, rows, one_record)


def traced_batch(ds: tf.data.Dataset, size: int, drop_remainder: bool) -> tf.data.Dataset:
    """``ds.batch(...)``, each batch with one more row: the "batch" span, the same on every example.

    The span runs from the later of the batch's request and its latest
    example's last recorded stage to the batch being ready: the batching
    itself, and the wait for examples that no traced stage accounts for
    (a shuffle buffer, a cache). Work a traced stage did is in that stage's
    rows, not here. Two stamps per batch and none per example: tf.data pays
    per function call per element, and on a small CPU that cost, not the
    stamps, is what tracing adds.
    """

    def close(requested: tf.Tensor, batch: Record) -> Record:
        spans = batch[SPANS]
        start = tf.maximum(requested, tf.reduce_max(last_end(spans)))
        return {**batch, SPANS: append_span(spans, start, now_after(batch))}

    return on_arrival(ds.batch(size, drop_remainder=drop_remainder), close)


def after_generator(record: Record) -> Record:
    """Append the span of crossing into Python and back: end of the read to now."""
    now = now_after(record)
    return {**record, SPANS: append_span(record[SPANS], last_end(record[SPANS]), now)}


def numbered(name: str, taken: set[str]) -> str:
    """``name``, or ``name 2``, ``name 3``... the first not in ``taken``."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} {number}"
    return candidate


class Untraced:
    """How a build does the work a tracer could observe, untraced: as it is."""

    def shard_reader(
        self,
        read_shard: Callable[[Record], tf.data.Dataset],
        parallel: bool,
        one_record: bool = False,
    ) -> Callable[[Record], tf.data.Dataset]:
        """The function that reads one shard's records (``parallel``: shards read at once;
        ``one_record``: each holds one, `pipelines.sources.Source.one_record_per_shard`)."""
        return read_shard

    def after_generator(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """The records once they have crossed a Python generator."""
        return ds

    def map_call(
        self, function: Callable[[Record, tf.Tensor], Record], stage: Stage
    ) -> Callable[[Record, tf.Tensor], Record]:
        """The function a `Map` step calls per element, ``(record, seed) -> record``."""
        return function

    def batch(self, ds: tf.data.Dataset, size: int, drop_remainder: bool) -> tf.data.Dataset:
        """``ds`` in batches of ``size``."""
        return ds.batch(size, drop_remainder=drop_remainder)


UNTRACED = Untraced()


class Tracer(Untraced):
    """A traced build's observer: each piece of work adds its row to `SPANS`.

    ``stages`` lists the rows' stages in order, as the steps added them.
    ``log``: where the stages seen inside a pipeline function log their spans
    (`pipelines.observing.function_calls`); None until one does.
    """

    def __init__(self) -> None:
        self.stages: list[Stage] = []
        self.log: SpanLog | None = None

    def add_stage(self, stage: Stage) -> None:
        """Add a stage; a name already taken gets a number (``batch``, ``batch 2``)."""
        name = numbered(stage.name, {existing.name for existing in self.stages})
        self.stages.append(dataclasses.replace(stage, name=name))

    def shard_reader(
        self,
        read_shard: Callable[[Record], tf.data.Dataset],
        parallel: bool,
        one_record: bool = False,
    ) -> Callable[[Record], tf.data.Dataset]:
        self.add_stage(Stage("open", "open", parallel))
        self.add_stage(Stage("read", "read", parallel))
        return traced_shard_reader(read_shard, one_record)

    def after_generator(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        self.add_stage(Stage("generator", "generator"))
        return stamp_map(ds, after_generator)

    def map_call(
        self, function: Callable[[Record, tf.Tensor], Record], stage: Stage
    ) -> Callable[[Record, tf.Tensor], Record]:
        self.add_stage(stage)

        def traced(record: Record, seed: tf.Tensor) -> Record:
            return timed(lambda inputs: function(inputs, seed))(record)

        return traced

    def batch(self, ds: tf.data.Dataset, size: int, drop_remainder: bool) -> tf.data.Dataset:
        self.add_stage(Stage("batch", "batch", batched=True))
        return traced_batch(ds, size, drop_remainder)
