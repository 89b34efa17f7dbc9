"""Pipelines written as plain functions: a user's own `tf.data` code as a variant.

    @pipelines.pipeline(Contract(shuffle="elements", augmentation="fresh", augmentations=()))
    def my_pipeline(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
        return ds.shuffle(params.shuffle_buffer, seed=params.seed).batch(params.batch_size)

The function receives the source's examples, decoded (float32 images in
[0, 1] at the source's size), in source order, as ``(image, label)`` tuples
(or ``{"image", "label"}`` dicts with ``elements="dict"``), and the build's
`BuildParams`. It returns batches, as tuples or dicts, of float32 images at
``params.image_size``. A function that arranges the reading itself (an
interleave over the files) starts from ``params.shards`` and
``params.read_shard`` instead of ``ds``.

No ``id`` is needed: the property tests follow each example through the
function by the index its tagged image encodes (``pipelines/checks/tagged.py``).

What happens inside the function is seen without rewriting it
(`pipelines.observing.function_calls`): while it builds, each map and batch it calls
becomes a stage that a traced build times (``open``, ``read``,
``map(decode)``, ``map(sharpen)``, ``batch``), and the dataset it returned,
walked back to the one it was given (`seen_steps`), makes the variant's
steps read e.g. ``function(mine: shuffle -> map(parallel) -> batch ->
prefetch)``, so a baseline comparison names an optimization it lost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import tensorflow as tf

from pipelines.element import IMAGE, LABEL
from pipelines.observing.function_calls import SeenStep, Watch, seen_steps
from pipelines.observing.tracing import Stage
from pipelines.sources.base import Record
from pipelines.steps import MAX_READERS, BuildContext, count_speed
from pipelines.variants import Contract, Variant

ElementForm = Literal["tuple", "dict"]


@dataclasses.dataclass(frozen=True)
class BuildParams:
    """What a pipeline function is built with; honour them, or the property tests will say so.

    Attributes:
        batch_size: examples per batch.
        seed: the build's seed, for shuffles and random ops (a new seed must
            give a new order where the contract shuffles).
        shuffle_buffer: a buffer that shuffles the whole split.
        image_size: (height, width) the yielded images must have.
        num_classes: labels lie in ``[0, num_classes)``.
        shards: one element per shard (file or slice) of the source.
        read_shard: a shard -> its examples, decoded, in the function's element form.
    """

    batch_size: int
    seed: int | None
    shuffle_buffer: int
    image_size: tuple[int, int]
    num_classes: int
    shards: tf.data.Dataset
    read_shard: Callable[[Any], tf.data.Dataset]


PipelineFunction = Callable[[tf.data.Dataset, BuildParams], tf.data.Dataset]


def _as_form(record: Record, form: ElementForm) -> Any:
    if form == "tuple":
        return record[IMAGE], record[LABEL]
    return {IMAGE: record[IMAGE], LABEL: record[LABEL]}


def as_records(ds: tf.data.Dataset, shape: tuple[int, int, int]) -> tf.data.Dataset:
    """Batches of ``(image, label)`` tuples or dicts as the suite's ``{"image", "label"}`` dicts.

    Images whose static shape a function left unknown are checked to be ``shape``.

    Raises:
        ValueError: the elements are neither.
    """
    spec = ds.element_spec
    if isinstance(spec, tuple) and len(spec) == 2:
        image_spec = spec[0]
    elif isinstance(spec, dict) and IMAGE in spec and LABEL in spec:
        image_spec = spec[IMAGE]
    else:
        raise ValueError(
            f"it yields elements {spec}; expected batches of (image, label) tuples"
            " or {'image': ..., 'label': ...} dicts"
        )
    known = image_spec.shape.rank == 4 and image_spec.shape[1:].is_fully_defined()
    if isinstance(spec, dict) and known:
        return ds

    def as_dict(*element: Any) -> Record:
        record = (
            dict(element[0])
            if isinstance(spec, dict)
            else dict(zip((IMAGE, LABEL), element, strict=True))
        )
        if not known and image_spec.shape.rank in (None, 4):
            record[IMAGE] = tf.ensure_shape(record[IMAGE], (None, *shape))
        return record

    return ds.map(as_dict)


@dataclasses.dataclass(frozen=True)
class FunctionPipeline:
    """The step a function variant is made of: the whole pipeline, from the shards to batches.

    ``seen``: what its last build did, filled in by each build (`seen_steps`).
    ``inside``: the stages its last build was seen to make (`Watch.stages`).
    ``parallelized``: map stages (``map(sharpen)``) its builds run in parallel, and
    ``parallel_reads``: the examples it is given are read from several shards at
    once; changes the analysis suggested (`pipelines.fixes`).
    """

    function: PipelineFunction
    name: str
    elements: ElementForm = "tuple"
    parallelized: frozenset[str] = frozenset()
    parallel_reads: bool = False
    seen: list[SeenStep] = dataclasses.field(default_factory=list, compare=False, repr=False)
    inside: list[Stage] = dataclasses.field(default_factory=list, compare=False, repr=False)

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        source, form = ctx.source, self.elements
        watch = Watch(ctx.observer, parallelized=self.parallelized)
        read_shard = watch.reader(
            source.read_shard,
            lambda r: _as_form(source.decode(r), form),
            source.one_record_per_shard,
        )
        params = BuildParams(
            batch_size=ctx.batch_size,
            seed=ctx.seed,
            shuffle_buffer=ctx.shuffle_buffer,
            image_size=ctx.image_shape[:2],
            num_classes=source.num_classes,
            shards=ds,
            read_shard=read_shard,
        )
        given = ds.flat_map(read_shard)
        if self.parallel_reads:
            readers = max(1, min(source.num_shards, MAX_READERS))
            given = ds.interleave(read_shard, cycle_length=readers, num_parallel_calls=readers)
            watch.reads_in_parallel()
        watch.given = (given, ds)
        try:
            with watch.watching():
                out = self.function(given, params)
        except (ValueError, TypeError, tf.errors.OpError):
            raise
        except Exception as error:  # a user's code: any failure is theirs to read in one line
            raise ValueError(f"{type(error).__name__}: {error}") from error
        if not isinstance(out, tf.data.Dataset):
            raise TypeError(f"it returned {type(out).__name__}, not a tf.data.Dataset")
        self.seen[:] = seen_steps(out, watch.given)
        self.inside[:] = watch.stages
        return as_records(out, ctx.image_shape)

    def parallelizing(self, stage: str) -> FunctionPipeline | None:
        """A copy whose builds run map ``stage`` in parallel; None where its last build
        had no such map running one call at a time."""
        sequential = {s.name for s in self.inside if s.kind == "map" and not s.parallel}
        if stage not in sequential:
            return None
        return self._changed({stage}, parallelized=self.parallelized | {stage})

    def reading_in_parallel(self) -> FunctionPipeline | None:
        """A copy whose examples are read from several shards at once (as `Read` with
        ``parallel``); None where its last build read them so already."""
        if any(s.kind == "open" and s.parallel for s in self.inside):
            return None
        return self._changed({"open", "read"}, parallel_reads=True)

    def _changed(self, parallel: set[str], **change: Any) -> FunctionPipeline:
        """A copy with ``change``, whose stages are expected as this one's, ``parallel``
        ones running in parallel (until its own build says), so that a second change
        can be made to it; its own lists, which its builds fill."""
        inside = [
            dataclasses.replace(s, parallel=s.parallel or s.name in parallel) for s in self.inside
        ]
        return dataclasses.replace(self, seen=list(self.seen), inside=inside, **change)

    def speed(self, batched: bool) -> tuple[str, ...]:
        """What the steps its last build was seen to make do for speed."""
        return tuple(count_speed(self.seen, batched).elements())

    def __str__(self) -> str:
        inside = " -> ".join(str(step) for step in self.seen)
        return f"function({self.name}: {inside})" if inside else f"function({self.name})"


def function_variant(
    function: PipelineFunction,
    contract: Contract,
    *,
    name: str | None = None,
    description: str | None = None,
    elements: ElementForm = "tuple",
    benchmarked: bool = True,
) -> Variant:
    """A variant whose pipeline is ``function``, promising ``contract``.

    ``name`` defaults to the function's name, ``description`` to the first
    line of its docstring. Register it with `pipelines.register`, or use the
    `pipelines.pipeline` decorator, which does both.
    """
    name = name or function.__name__
    doc = (function.__doc__ or "").strip().splitlines()
    step = FunctionPipeline(function, name, elements)
    return Variant(name, (step,), contract, description or (doc[0] if doc else ""), benchmarked)
