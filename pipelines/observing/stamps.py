"""In-graph timestamps: the primitives a traced build stamps its elements with.

`tf.timestamp` ops ordered by control dependencies inside the dataset's own
functions (`now_after`, `call_timed`), a map cheap enough to stamp every element
with (`stamp_map`), the moment each element is asked for (`requests`,
`on_arrival`), and a shard reader whose records each come with their span
(`shard_spans`). `pipelines.observing.tracing` carries the spans in each element's `SPANS`
key; `pipelines.observing.span_log` logs them beside a pipeline function's elements.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

# `Dataset.map` has no public switch for running a function inline, nor for
# how its function is instantiated; the internal pieces below take both.
# Internal, hence pinned with TensorFlow.
from tensorflow.python.data.ops import dataset_ops, structured_function
from tensorflow.python.ops import gen_dataset_ops

from pipelines.sources.base import Record

# The key a traced element carries its spans in (`pipelines.observing.tracing`).
SPANS = "spans"


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
        # `requests`): `pipelines.observing.function_calls.seen_steps` steps over the stamp to it.
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
