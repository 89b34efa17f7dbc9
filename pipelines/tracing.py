"""In-graph span recording: each element carries the times its stages ran.

With tracing on (``pipelines.build_traced``), every element holds one more
key, `SPANS`: a float64 tensor ``[stages, 2]`` (``[batch, stages, 2]``
once batched) of (start, end) wall-clock times in seconds since the Unix
epoch, one row per stage it went through, in order. The times are
`tf.timestamp` ops ordered by control dependencies inside the dataset's own
functions: no sleeps, no `tf.py_function` round trips, no Python in the map
stages, so tracing changes little of what it measures.

Steps do not know whether they are traced. Each hands the work a tracer
could observe (reading a shard, crossing a generator, a map call, a batch)
to its build's observer: `UNTRACED` passes it through unchanged, a `Tracer`
wraps it so that it adds its row, and records the row's `Stage` (which stage
it is, and whether it runs in parallel). `pipelines.build_traced` hands the
tracer's stages back, and its `pipelines.span_log.SpanLog`: the stages seen
inside a user's pipeline function (`pipelines.function_calls`) cannot add a
key to the user's elements, and log their spans there instead.

A stage that does not happen for an element gets the row (-1, -1): the
shard's "open" is paid by its first record only. Elements replayed from a
cache carry the spans of the epoch that filled it; `pipelines.timeline`
drops spans that ended before their epoch began, so a cached epoch shows no
open, read or map work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import tensorflow as tf

# `Dataset.map` has no public switch for running a function inline, nor for
# how its function is instantiated; the internal pieces below take both.
# Internal, hence pinned with TensorFlow.
from tensorflow.python.data.ops import dataset_ops, structured_function
from tensorflow.python.ops import gen_dataset_ops

from pipelines.sources.base import Record

if TYPE_CHECKING:
    from pipelines.span_log import SpanLog

SPANS = "spans"
NOT_RECORDED = -1.0

# The pipeline's kinds, then the trainer's (recorded in Python by `pipelines.timeline`).
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
            (`pipelines.function_calls`); its spans are logged beside the
            elements (`pipelines.span_log`), not carried in `SPANS`.
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


class _StampDataset(dataset_ops.UnaryDataset):
    """A map whose function runs inline and is instantiated without Grappler (see `stamp_map`)."""

    def __init__(
        self,
        input_dataset: tf.data.Dataset,
        function: Callable[..., object],
        over: tf.data.Dataset | None = None,
    ) -> None:
        self._input_dataset = input_dataset
        # The dataset whose elements it stamps, when it is not its input (a zip with
        # `requests`): `pipelines.function_calls.seen_steps` steps over the stamp to it.
        self.stamped_over = over
        self._name = None
        # A tf.data function is instantiated as a multi-device function, which
        # runs Grappler over it, unless it carries this attribute (TensorFlow's
        # data/captured_function.cc). Its other effect, keeping int32 tensors
        # on the function's own device, changes nothing here: a stamp function
        # runs on the iterator's CPU.
        self._function = structured_function.StructuredFunctionWrapper(
            function,
            "stamp_map()",
            dataset=input_dataset,
            defun_kwargs={"experimental_ints_on_device": True},
        )
        variant_tensor = gen_dataset_ops.map_dataset(
            input_dataset._variant_tensor,
            self._function.function.captured_inputs,
            f=self._function.function,
            use_inter_op_parallelism=False,
            preserve_cardinality=True,
            **self._common_args,
        )
        super().__init__(input_dataset, variant_tensor)

    def _functions(self) -> list[structured_function.StructuredFunctionWrapper]:
        return [self._function]

    @property
    def element_spec(self) -> object:
        return self._function.output_structure


def stamp_map(
    ds: tf.data.Dataset, function: Callable[..., object], over: tf.data.Dataset | None = None
) -> tf.data.Dataset:
    """``ds.map(function)`` for a function of a few ops, made as cheap as tf.data allows.

    ``over``: the dataset whose elements ``ds`` holds beside others (what a zip with
    `requests` stamps), for whoever walks the pipeline's datasets back.

    Two costs of a plain ``map`` are nearly all of a stamp's, and this map
    skips both (measured on this project's two-core machine):

    - every call is handed to TensorFlow's inter-op thread pool: about 55 us
      a call through the pool, 7 us run inline by the thread that asks for
      the element (a one-stamp map over 2000 cached elements). Inline, the
      stamp is also taken closer to the moment it marks.
    - every new iterator, so every epoch, instantiates the function again
      and runs Grappler over it: 2 to 3 ms for a one-stamp function, about
      0.2 ms without Grappler (there is nothing in a stamp for it to optimize).
    """
    return _StampDataset(ds, function, over)


def now_after(tensors: object) -> tf.Tensor:
    """`tf.timestamp` taken once every tensor in ``tensors`` (any nest) has been computed."""
    flat = tf.nest.flatten(tensors, expand_composites=True)
    with tf.control_dependencies([t for t in flat if tf.is_tensor(t)]):
        return tf.timestamp()


def call_timed(
    function: Callable[..., object], parts: tuple
) -> tuple[object, tf.Tensor, tf.Tensor]:
    """``function(*parts)``, and when it started (its inputs ready) and ended (its outputs
    computed): ``(outputs, start, end)``. The work cannot start before ``start``."""
    start = now_after(parts)
    with tf.control_dependencies([start]):
        # Identity inside the block: the work cannot start before `start`.
        parts = tf.nest.map_structure(tf.identity, parts, expand_composites=True)
    outputs = function(*parts)
    return outputs, start, now_after(outputs)


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
        outputs, start, end = call_timed(lambda inputs: dict(function(inputs)), (record,))
        outputs[SPANS] = append_span(spans, start, end)
        return outputs

    return traced


def requests() -> tf.data.Dataset:
    """Endless numbered timestamps, (0, t0), (1, t1), ..., each taken when it is asked for.

    Zipped in front of a dataset, it stamps the moment each of that
    dataset's elements is requested, before the work of producing it starts.
    """
    return stamp_map(tf.data.Dataset.range(2**62), lambda number: (number, tf.timestamp()))


def on_arrival(ds: tf.data.Dataset, mark: Callable[[tf.Tensor, object], object]) -> tf.data.Dataset:
    """``ds``'s elements, each passed through ``mark(requested, element)`` once it has
    arrived, ``requested`` being when it was asked for (`requests` zipped in front)."""
    arrivals = tf.data.Dataset.zip(requests(), ds)
    return stamp_map(arrivals, lambda request, element: mark(request[1], element), over=ds)


# What a shard reader makes of each record and its span: (record, first of its shard,
# start, end) -> the element.
SpanMark = Callable[[Record, tf.Tensor, tf.Tensor, tf.Tensor], Record]


def shard_spans(
    read_shard: Callable[[Record], tf.data.Dataset],
    mark: SpanMark,
    one_record: bool = False,
) -> Callable[[Record], tf.data.Dataset]:
    """Wrap a source's ``read_shard`` so that each record is passed to ``mark`` with its span.

    Each span runs from the request for a record to its arrival: a stamp
    dataset zipped in front of the records is asked first, so its
    timestamp is taken when the request comes in, before the read starts.
    The first record's span is the shard's "open", from the moment its reader
    is being made (opening a file, the reader's own setup and its first read
    are one wait); later records' spans are reads.

    ``one_record``: every shard holds one record (a file per image), whose span is
    the open: it is stamped by one stamp map on the shard's reader, with no numbered
    requests zipped in front. Those are two more datasets and iterators per file,
    and on a folder of small images each costs about what reading a file does
    (docs/measurements.md, 2026-12-04). The span still ends when the record leaves
    the shard's reader, so it holds the making of that reader, as the open must.
    """

    def read(shard: Record) -> tf.data.Dataset:
        # Taken when the shard's reader is being made (the interleave or flat_map calls
        # this per shard): a reader per file costs tf.data a dataset and its
        # iterator, before any record is asked for. That is part of opening the
        # file (with many small files, most of it), so the open span starts here.
        opened = tf.timestamp()
        with tf.control_dependencies([opened]):  # the reader is made after the stamp
            reader = read_shard(shard)
        if one_record:
            first = tf.constant(True)
            return stamp_map(reader, lambda record: mark(record, first, opened, now_after(record)))
        # The request's number tells the shard's first record (no enumerate step).
        records = tf.data.Dataset.zip(requests(), reader)

        def stamp(request: tuple[tf.Tensor, tf.Tensor], record: Record) -> Record:
            index, requested = request
            first = index == 0
            start = tf.where(first, tf.minimum(opened, requested), requested)
            return mark(record, first, start, now_after(record))

        return stamp_map(records, stamp)

    return read


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
    (`pipelines.function_calls`); None until one does.
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
