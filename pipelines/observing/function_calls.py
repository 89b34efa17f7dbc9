"""What a user's pipeline function does inside, seen from the tf.data calls it makes.

Two views, both without asking the user to rewrite anything:

- **While it builds** (`Watch`): `tf.data.Dataset.map`, ``batch``,
  ``padded_batch`` and ``interleave`` are stood in for while the function
  runs. Each map and batch it calls becomes a named stage (``map(sharpen)``,
  ``batch``); in a traced build each map call and each batch logs its span
  (`pipelines.observing.span_log`), as a steps variant's stages record theirs. The
  reading the suite hands the function (its examples, or
  ``params.read_shard``) is the "open", "read" and "map(decode)" stages.
- **Once built** (`seen_steps`): the dataset it returned, walked back to the
  one it was given, says which transformations it made and which of them
  run in parallel, prefetch or cache.

A stage is named after the function its map was given (a lambda by its
line), numbered when the name repeats, the same in every build of the
function; so a change the analysis suggests (``parallelize:map(sharpen)``)
can be made in the next build: `Watch.parallelized` names the maps to run
in parallel.

Not seen: the work inside one map's function is one stage; a filter's
predicate, a shuffle's buffer and files the function opens itself fall in
the batch's span, which counts only what no earlier stage accounts for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import tensorflow as tf

# The methods a watch stands in for, on the class every dataset inherits them from.
from tensorflow.python.data.ops import dataset_ops

from pipelines.observing.span_log import SpanLog, logged_batches, logged_call, logged_reader
from pipelines.observing.tracing import Stage, StageKind, Tracer, Untraced, numbered

_DATASET = dataset_ops.DatasetV2
_WATCHED = ("map", "batch", "padded_batch", "interleave")
_ORIGINAL = {name: getattr(_DATASET, name) for name in _WATCHED}
_SIGNATURE = {name: inspect.signature(method) for name, method in _ORIGINAL.items()}

# tf.data's dataset classes (their names without the leading "_"), as a function's steps.
SEEN_KINDS = {
    "PrefetchDataset": "prefetch",
    "CacheDataset": "cache",
    "ShuffleDataset": "shuffle",
    "BatchDataset": "batch",
    "ParallelBatchDataset": "batch",
    "PaddedBatchDataset": "batch",
    "UnbatchDataset": "unbatch",
    "MapDataset": "map",
    "ParallelMapDataset": "map",
    "InterleaveDataset": "interleave",
    "ParallelInterleaveDataset": "interleave",
    "FlatMapDataset": "flat_map",
    "RepeatDataset": "repeat",
    "FilterDataset": "filter",
    "TakeDataset": "take",
    "ShardDataset": "shard",
}


@dataclasses.dataclass(frozen=True)
class SeenStep:
    """A transformation a function applied, read from the dataset it built."""

    kind: str  # a value of `SEEN_KINDS`, or the dataset class's own name
    parallel: bool = False

    def speed(self, batched: bool) -> tuple[str, ...]:
        """What it does for speed (`pipelines.steps.SPEED`), as a step declares it."""
        if self.kind in ("prefetch", "cache"):
            return (self.kind,)
        if self.kind == "interleave" and self.parallel:
            return ("interleave",)
        if self.kind == "map":
            return ("parallel map",) * self.parallel + ("vectorized map",) * batched
        return ()

    def __str__(self) -> str:
        return f"{self.kind}(parallel)" if self.parallel and self.kind == "map" else self.kind


def seen_steps(built: tf.data.Dataset, given: tuple[tf.data.Dataset, ...]) -> tuple[SeenStep, ...]:
    """The transformations between what the function was ``given`` (its examples, or the
    shards) and what it ``built``, first to last: each dataset's first input followed back
    from ``built`` (stops at one it was given, or at a source). A traced build's stamps
    (`pipelines.observing.stamps.stamp_map`) are stepped over."""
    found = []
    dataset = built
    for _ in range(1000):  # a guard: a chain this long is not a user's pipeline
        if any(dataset is start for start in given):
            break
        stamped = getattr(dataset, "stamped_over", None)
        if stamped is not None:
            dataset = stamped
            continue
        name = type(dataset).__name__.lstrip("_")
        parallel = getattr(dataset, "_num_parallel_calls", None) is not None
        found.append(SeenStep(SEEN_KINDS.get(name, name), parallel))
        inputs = dataset._inputs() if hasattr(dataset, "_inputs") else []
        if not inputs:
            found.pop()  # a source (range, the shards), not a transformation
            break
        dataset = inputs[0]
    return tuple(reversed(found))


def call_name(function: Callable[..., Any]) -> str:
    """What a map's function is called in its stage's name: its own name, a lambda by
    its line (``lambda@12``), a partial by the function it wraps."""
    inner = getattr(function, "func", function)  # functools.partial
    name = getattr(inner, "__name__", type(inner).__name__)
    code = getattr(inner, "__code__", None)
    if name == "<lambda>":
        return f"lambda@{code.co_firstlineno}" if code else "lambda"
    return name


def returns_its_arguments(mapped: tf.data.Dataset) -> bool:
    """Whether ``mapped`` is a map whose function returns its arguments as they are (through
    identities only): tf.data drops such a map from a pipeline (noop_elimination)."""
    function = getattr(getattr(mapped, "_map_func", None), "function", None)
    graph = getattr(function, "graph", None)
    if graph is None or graph.captures:
        return False

    def source(tensor: tf.Tensor) -> tf.Tensor:
        while tensor.op.type == "Identity":
            tensor = tensor.op.inputs[0]
        return tensor

    arguments = [tensor.name for tensor in graph.inputs]
    return [source(tensor).name for tensor in graph.outputs] == arguments


def unwatched_map(ds: tf.data.Dataset, function: Callable[..., Any]) -> tf.data.Dataset:
    """``ds.map(function)``, never taken for a call of the function being watched."""
    return _ORIGINAL["map"](ds, function)


@dataclasses.dataclass
class Watch:
    """One build of a pipeline function, as its tf.data calls show it.

    Attributes:
        observer: the build's; a `pipelines.observing.tracing.Tracer` makes the stages log spans.
        given: the datasets the function was handed (where `seen_steps` stops).
        parallelized: map stages to run in parallel (a fix the analysis suggested).
        stages: every stage seen so far, in order (traced or not).
    """

    observer: Untraced
    given: tuple[tf.data.Dataset, ...] = ()
    parallelized: frozenset[str] = frozenset()
    stages: list[Stage] = dataclasses.field(default_factory=list)
    _reader: Callable[[Any], tf.data.Dataset] | None = None
    _reads: tuple[int, int] = (0, 1)  # the open and read stages' places in ``stages``
    _suite_code: bool = False  # the suite's reader is building: its calls are not the user's

    def __post_init__(self) -> None:
        tracer = self.tracer
        # Where this build's stages will stand among the tracer's (`watching` adds them).
        self._first = len(tracer.stages) if tracer is not None else 0

    @property
    def tracer(self) -> Tracer | None:
        """The build's tracer, or None in an untraced build."""
        return self.observer if isinstance(self.observer, Tracer) else None

    def _log(self) -> SpanLog:
        tracer = self.tracer
        assert tracer is not None
        if tracer.log is None:
            tracer.log = SpanLog()
        return tracer.log

    def stage(
        self,
        name: str,
        kind: StageKind,
        parallel: bool = False,
        batched: bool = False,
        **flags: bool,
    ) -> int:
        """Add the next stage (``name``, numbered if taken; ``flags``: `Stage.inside_read`,
        `Stage.elided`); returns the index its logged spans carry."""
        stage = Stage(self.free(name), kind, parallel, batched, observed=True, **flags)
        self.stages.append(stage)
        return self._first + len(self.stages) - 1

    def free(self, name: str) -> str:
        """``name``, numbered if a stage seen so far has it."""
        return numbered(name, {stage.name for stage in self.stages})

    def reader(
        self,
        read_records: Callable[[Any], tf.data.Dataset],
        decode: Callable[[Any], Any],
        one_record: bool = False,
    ) -> Callable[[Any], tf.data.Dataset]:
        """The function that reads one shard and decodes its records, handed to the
        function as ``params.read_shard`` (and used for the examples it is given)."""
        self._reads = (len(self.stages), len(self.stages) + 1)
        opening, reading = self.stage("open", "open"), self.stage("read", "read")
        decoding = self.stage("map(decode)", "map", inside_read=True)
        read = read_records
        if self.tracer is not None:
            log = self._log()
            read = logged_reader(read_records, log, opening, reading, one_record)
            decode = logged_call(decode, log, decoding)

        def read_shard(shard: Any) -> tf.data.Dataset:
            self._suite_code = True
            try:
                return unwatched_map(read(shard), decode)
            finally:
                self._suite_code = False

        self._reader = read_shard
        return read_shard

    def batched(self, ds: tf.data.Dataset) -> bool:
        """Whether ``ds``'s elements are batches, by the steps since what was given."""
        batched = False
        for step in seen_steps(ds, self.given):
            if step.kind in ("batch", "unbatch"):
                batched = step.kind == "batch"
        return batched

    def _map(self, ds: tf.data.Dataset, *args: Any, **kwargs: Any) -> tf.data.Dataset:
        call = _SIGNATURE["map"].bind(ds, *args, **kwargs).arguments
        name = self.free(f"map({call_name(call['map_func'])})")
        if name in self.parallelized and call.get("num_parallel_calls") is None:
            call["num_parallel_calls"] = tf.data.AUTOTUNE
        parallel = call.get("num_parallel_calls") is not None
        batched = self.batched(ds)
        if self.tracer is None:
            mapped = _ORIGINAL["map"](**call)
            self.stage(name, "map", parallel, batched, elided=returns_its_arguments(mapped))
            return mapped
        # Logged, the function does something; whether tf.data drops it untraced is
        # asked of the map of the function as the user wrote it.
        elided = returns_its_arguments(_ORIGINAL["map"](ds, call["map_func"]))
        index = self.stage(name, "map", parallel, batched, elided=elided)
        call["map_func"] = logged_call(call["map_func"], self._log(), index)
        return _ORIGINAL["map"](**call)

    def _batch(self, method: str, ds: tf.data.Dataset, *args: Any, **kwargs: Any):
        call = _SIGNATURE[method].bind(ds, *args, **kwargs).arguments
        batches = _ORIGINAL[method](**call)
        parallel = call.get("num_parallel_calls") is not None
        index = self.stage("batch", "batch", parallel, batched=True)
        return batches if self.tracer is None else logged_batches(batches, self._log(), index)

    def reads_in_parallel(self) -> None:
        """Mark the open and read stages as running several shards at once."""
        for index in self._reads:
            self.stages[index] = dataclasses.replace(self.stages[index], parallel=True)

    def _interleave(self, ds: tf.data.Dataset, *args: Any, **kwargs: Any) -> tf.data.Dataset:
        call = _SIGNATURE["interleave"].bind(ds, *args, **kwargs).arguments
        if call.get("num_parallel_calls") is not None and call["map_func"] is self._reader:
            self.reads_in_parallel()  # the shards the suite hands it, several at once
        return _ORIGINAL["interleave"](**call)

    @contextlib.contextmanager
    def watching(self) -> Iterator[Watch]:
        """While inside, every dataset's ``map``, ``batch``, ``padded_batch`` and
        ``interleave`` go through this watch (the function is being built)."""
        standing_in = {
            "map": self._map,
            "batch": functools.partial(self._batch, "batch"),
            "padded_batch": functools.partial(self._batch, "padded_batch"),
            "interleave": self._interleave,
        }

        def stand_in(name: str) -> Callable[..., tf.data.Dataset]:
            def method(ds: tf.data.Dataset, *args: Any, **kwargs: Any) -> tf.data.Dataset:
                if self._suite_code:
                    return _ORIGINAL[name](ds, *args, **kwargs)
                return standing_in[name](ds, *args, **kwargs)

            return method

        for name in standing_in:
            setattr(_DATASET, name, stand_in(name))
        try:
            yield self
        finally:
            for name, method in _ORIGINAL.items():
                setattr(_DATASET, name, method)
        if self.tracer is not None:
            self.tracer.stages.extend(self.stages)
