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
function by the index its tagged image encodes (``pipelines/checks/tagged.py``). The
tracing cannot time inside a function: it times each batch the function
yields, as one stage. What the function built is seen, though: each build
walks the dataset it returned back to the one it was given (`seen_steps`), so
the variant's steps read e.g. ``function(mine: shuffle -> map(parallel) -> batch
-> prefetch)``, and a baseline comparison names an optimization it lost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import tensorflow as tf

from pipelines.element import IMAGE, LABEL
from pipelines.sources.base import Record
from pipelines.steps import BuildContext, count_speed
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
    from ``built`` (stops at one it was given, or at a source)."""
    found = []
    dataset = built
    for _ in range(1000):  # a guard: a chain this long is not a user's pipeline
        if any(dataset is start for start in given):
            break
        name = type(dataset).__name__.lstrip("_")
        parallel = getattr(dataset, "_num_parallel_calls", None) is not None
        found.append(SeenStep(SEEN_KINDS.get(name, name), parallel))
        inputs = dataset._inputs() if hasattr(dataset, "_inputs") else []
        if not inputs:
            found.pop()  # a source (range, the shards), not a transformation
            break
        dataset = inputs[0]
    return tuple(reversed(found))


@dataclasses.dataclass(frozen=True)
class FunctionPipeline:
    """The step a function variant is made of: the whole pipeline, from the shards to batches.

    ``seen``: what its last build did, filled in by each build (`seen_steps`).
    """

    function: PipelineFunction
    name: str
    elements: ElementForm = "tuple"
    seen: list[SeenStep] = dataclasses.field(default_factory=list, compare=False, repr=False)

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        source, form = ctx.source, self.elements

        def read_shard(shard: Any) -> tf.data.Dataset:
            return source.read_shard(shard).map(lambda r: _as_form(source.decode(r), form))

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
        try:
            out = self.function(given, params)
        except (ValueError, TypeError, tf.errors.OpError):
            raise
        except Exception as error:  # a user's code: any failure is theirs to read in one line
            raise ValueError(f"{type(error).__name__}: {error}") from error
        if not isinstance(out, tf.data.Dataset):
            raise TypeError(f"it returned {type(out).__name__}, not a tf.data.Dataset")
        self.seen[:] = seen_steps(out, (given, ds))
        records = as_records(out, ctx.image_shape)
        return ctx.observer.function_output(records, f"function({self.name})")

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
