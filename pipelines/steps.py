"""Steps (Transform): small frozen objects with ``apply(ds, ctx) -> ds``.

A variant is an ordered list of these. The first step reads the source's
shards (`GeneratorRead` or `Read`); the rest are the usual tf.data
transformations, one class each, so the code for "shuffle" is `Shuffle`.
Named per-element functions for `Map` live in `TRANSFORMS`; a user adds one
with `register_transform`. Each takes ``(record, seed)``: ``seed`` (shape [2])
is new for every element and every epoch, and repeats with the build's seed,
for stateless random ops.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, Protocol

import tensorflow as tf

from pipelines.augment import augment, standardize
from pipelines.element import IMAGE, LABEL
from pipelines.errors import DataError, one_line
from pipelines.observing.tracing import UNTRACED, Stage, Untraced
from pipelines.sources.base import Record, Source

AUTOTUNE = tf.data.AUTOTUNE
# The service of a build that only checks that a variant fits its source
# (`pipelines.registry.check_fits`): `Distribute` checks and goes no further.
CHECK_ONLY = "check-only"
# Parallel reads: enough files in flight to hide remote-storage latency,
# more than the default (one per core) that suits local disks.
MAX_READERS = 32


def image_shape_for(source: Source, image_size: tuple[int, int] | None) -> tuple[int, int, int]:
    """(height, width, channels) of a run's images: ``image_size`` if given, else the source's."""
    height, width, channels = source.image_shape
    return (*image_size, channels) if image_size else (height, width, channels)


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What steps need besides the dataset: the source and the build options."""

    source: Source
    batch_size: int = 64
    shuffle_buffer: int = 1024
    seed: int | None = 0
    cache_dir: str | None = None
    # The (height, width) images reach the model at; None: the source's own.
    image_size: tuple[int, int] | None = None
    # The tf.data service's dispatcher ("grpc://host:port") for `Distribute`.
    service: str | None = None
    # Where steps hand the work a tracer could observe (`pipelines.observing.tracing`):
    # `UNTRACED` does it as it is, a `Tracer` adds each stage's row to elements.
    observer: Untraced = UNTRACED

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the images the build must yield."""
        return image_shape_for(self.source, self.image_size)

    def shard_reader(self, parallel: bool) -> Callable[[Record], tf.data.Dataset]:
        """The source's ``read_shard``, as the build's observer has it."""
        source = self.source
        return self.observer.shard_reader(source.read_shard, parallel, source.one_record_per_shard)


def is_batched(ds: tf.data.Dataset) -> bool:
    """Whether elements are batches (labels are vectors) rather than single examples."""
    return ds.element_spec[LABEL].shape.rank >= 1


class Step(Protocol):
    """One transformation of a dataset.

    A step that does something for speed also says what (``speed(batched)``: words
    from `SPEED`, where ``batched`` tells whether it stands after a batch), so that
    a baseline comparison names an optimization a change lost
    (`benchmarks.judging.structure`). A step without ``speed`` does nothing for speed.
    """

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        """Return ``ds`` transformed."""
        ...


def count_speed(steps: Iterable[object], batched: bool = False) -> Counter[str]:
    """How many of each optimization ``steps`` declare (their ``speed``), in order: a
    map after a batch (and before an unbatch) is a vectorized one."""
    found: Counter[str] = Counter()
    for step in steps:
        speed = getattr(step, "speed", None)
        if speed is not None:
            found.update(speed(batched))
        kind = getattr(step, "kind", None)
        if kind in ("batch", "unbatch"):
            batched = kind == "batch"
    return found


# What a step can do for speed, and how a lost one is said.
SPEED = {
    "prefetch": "a prefetch",
    "cache": "a cache",
    "interleave": "parallel reads (interleave)",
    "parallel map": "a parallel map",
    "vectorized map": "a map after the batch (vectorized)",
}


Transform = Callable[[Record, tf.Tensor], Record]
TransformFactory = Callable[[BuildContext, bool], Transform]
TRANSFORMS: dict[str, TransformFactory] = {}


def register_transform(name: str, factory: TransformFactory) -> None:
    """Make ``Map(name)`` available: ``factory(ctx, batched)`` returns the element function.

    The element function takes ``(record, seed)``. The factory raises
    `ValueError` if it cannot work on batched (or single) elements.
    """
    TRANSFORMS[name] = factory


def fit_to(image: tf.Tensor, shape: tuple[int, int, int]) -> tf.Tensor:
    """``image`` (or a batch) centre-cropped or zero-padded to ``shape``'s height and width.

    What the reference lab does to its test images (32x32 CIFAR to 24x24); a
    no-op when the sizes already agree.
    """
    if tuple(image.shape[-3:-1]) == shape[:2]:
        return image
    return tf.image.resize_with_crop_or_pad(image, shape[0], shape[1])


def decoder(ctx: BuildContext) -> Callable[[Record], Record]:
    """The source's ``decode``, its images brought to the build's image size (`fit_to`)."""
    decode, shape = ctx.source.decode, ctx.image_shape
    if shape == ctx.source.image_shape:
        return decode

    def decode_and_fit(record: Record) -> Record:
        decoded = decode(record)
        return {**decoded, IMAGE: fit_to(decoded[IMAGE], shape)}

    return decode_and_fit


def _decode(ctx: BuildContext, batched: bool) -> Transform:
    decode = decoder(ctx)
    if not batched or ctx.source.decode_batchable:
        return lambda record, seed: decode(record)
    image_spec = tf.TensorSpec(ctx.image_shape, tf.float32)

    def decode_each(record: Record, seed: tf.Tensor) -> Record:
        # Encoded images (JPEG, PNG) decode one at a time, but a loop inside one
        # call skips tf.data's cost per element: on a small CPU that cost is
        # larger than decoding a small image (about half the first epoch's
        # pipeline time of `optimized` on the smoke data).
        signature = {key: tf.TensorSpec(v.shape[1:], v.dtype) for key, v in record.items()}
        return tf.map_fn(decode, record, fn_output_signature={**signature, IMAGE: image_spec})

    return decode_each


def _on_image(function: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> Transform:
    def transform(record: Record, seed: tf.Tensor) -> Record:
        return {**record, IMAGE: function(record[IMAGE], seed)}

    return transform


register_transform("decode", _decode)
register_transform("standardize", lambda ctx, batched: _on_image(lambda x, _: standardize(x)))
register_transform("augment", lambda ctx, batched: _on_image(augment))


@dataclasses.dataclass(frozen=True)
class GeneratorRead:
    """Read records through a Python generator, one at a time (the lab's naive reader).

    Every record crosses into Python and back, holding the GIL, with no
    parallelism or read-ahead: the baseline the optimizations are measured against.
    """

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        records = ds.flat_map(ctx.shard_reader(parallel=False))
        signature = records.element_spec
        ds = tf.data.Dataset.from_generator(records.as_numpy_iterator, output_signature=signature)
        return ctx.observer.after_generator(ds)

    def __str__(self) -> str:
        return "generator_read"


@dataclasses.dataclass(frozen=True)
class Read:
    """Read the shards: one after another, or ``parallel`` (interleaved) with autotuned calls."""

    parallel: bool = False
    deterministic: bool = True

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        read_shard = ctx.shard_reader(self.parallel)
        if not self.parallel:
            return ds.flat_map(read_shard)
        readers = max(1, min(ctx.source.num_shards, MAX_READERS))
        # Reading waits on storage, not on the CPU: AUTOTUNE would size the
        # readers by core count; one per file in flight hides the latency.
        return ds.interleave(
            read_shard,
            cycle_length=readers,
            num_parallel_calls=readers,
            deterministic=self.deterministic,
        )

    def speed(self, batched: bool) -> tuple[str, ...]:
        return ("interleave",) if self.parallel else ()

    def __str__(self) -> str:
        return "interleave" if self.parallel else "read"


@dataclasses.dataclass(frozen=True)
class Map:
    """Apply named transforms (from `TRANSFORMS`) in one map call, per example or per batch.

    Whether it is per example or per batch follows from where it stands: after
    `Batch` it is the vectorized (batched) form.
    """

    transforms: tuple[str, ...]
    parallel: bool = False
    deterministic: bool = True

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        batched = is_batched(ds)
        unknown = [name for name in self.transforms if name not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transform {unknown[0]!r}; known: {', '.join(TRANSFORMS)}")
        functions = [TRANSFORMS[name](ctx, batched) for name in self.transforms]

        def apply_all(record: Record, seed: tf.Tensor) -> Record:
            for number, function in enumerate(functions):
                record = function(record, tf.stack([seed, number]))
            return record

        stage = Stage(f"map({'+'.join(self.transforms)})", "map", self.parallel, batched)
        # One fresh random int64 per element, a new sequence each epoch, the
        # same sequences for the same build seed.
        seeds = tf.data.Dataset.random(seed=ctx.seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip(ds, seeds).map(
            ctx.observer.map_call(apply_all, stage),
            num_parallel_calls=AUTOTUNE if self.parallel else None,
            deterministic=self.deterministic if self.parallel else None,
        )

    def speed(self, batched: bool) -> tuple[str, ...]:
        return ("parallel map",) * self.parallel + ("vectorized map",) * batched

    def __str__(self) -> str:
        mode = "parallel" if self.parallel else "sequential"
        return f"map({'+'.join(self.transforms)}, {mode})"


@dataclasses.dataclass(frozen=True)
class Shuffle:
    """Shuffle with a buffer (default: the build's ``shuffle_buffer``), reshuffled each epoch."""

    buffer: int | None = None
    reshuffle_each_iteration: bool = True

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        return ds.shuffle(
            self.buffer or ctx.shuffle_buffer,
            seed=ctx.seed,
            reshuffle_each_iteration=self.reshuffle_each_iteration,
        )

    def __str__(self) -> str:
        return "shuffle"


@dataclasses.dataclass(frozen=True)
class Batch:
    """Batch by ``size`` (default: the build's batch size); a short last batch kept or dropped."""

    kind: ClassVar[str] = "batch"  # what `count_speed` reads: maps after it are vectorized
    drop_remainder: bool = False
    size: int | None = None

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        if is_batched(ds):
            raise ValueError("elements are already batched")
        return ctx.observer.batch(ds, self.size or ctx.batch_size, self.drop_remainder)

    def __str__(self) -> str:
        details = ([str(self.size)] if self.size else []) + (
            ["drop_remainder"] if self.drop_remainder else []
        )
        return f"batch({', '.join(details)})" if details else "batch"


@dataclasses.dataclass(frozen=True)
class Unbatch:
    """Split batches back into examples: after a vectorized `Map`, for steps that need examples.

    ``batch -> map -> unbatch`` makes one function call per block instead of
    one per example (tf.data's cost per call can outweigh small work), and
    the cache and shuffle after it still see examples.
    """

    kind: ClassVar[str] = "unbatch"

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        if not is_batched(ds):
            raise ValueError("elements are not batched")
        return ds.unbatch()

    def __str__(self) -> str:
        return "unbatch"


@dataclasses.dataclass(frozen=True)
class Repeat:
    """Repeat the data ``count`` times within one pass of the pipeline (one epoch)."""

    count: int = 2

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        return ds.repeat(self.count)

    def __str__(self) -> str:
        return f"repeat({self.count})"


@dataclasses.dataclass(frozen=True)
class Cache:
    """Cache elements after the first epoch, in memory or in a file under the build's cache_dir."""

    to_file: bool = False

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        if not self.to_file:
            return ds.cache()
        folder = Path(ctx.cache_dir or tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        # A fresh name per build: tf.data refuses to reuse a cache file that another
        # iterator is still writing, and a stale one would replay old data.
        return ds.cache(str(Path(tempfile.mkdtemp(prefix="tfdata-cache-", dir=folder)) / "cache"))

    def speed(self, batched: bool) -> tuple[str, ...]:
        return ("cache",)

    def __str__(self) -> str:
        return "cache(file)" if self.to_file else "cache"


@dataclasses.dataclass(frozen=True)
class Prefetch:
    """Prefetch ``buffer`` elements (autotuned by default) to overlap producer and consumer."""

    buffer: int = AUTOTUNE

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        return ds.prefetch(self.buffer)

    def speed(self, batched: bool) -> tuple[str, ...]:
        return ("prefetch",)

    def __str__(self) -> str:
        return "prefetch"


@dataclasses.dataclass(frozen=True)
class Distribute:
    """Send the steps before this one to the tf.data service's workers.

    ``processing_mode``: "distributed_epoch" shards the data dynamically (each
    worker takes the next shard when it is free: every element once per
    epoch); "parallel_epochs" has every worker produce the whole epoch (each
    element once per worker). The build's ``service`` names the dispatcher.
    """

    processing_mode: str = "distributed_epoch"

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        # Workers run the graph in other processes: a Python function in it (a
        # generator, numpy_function) exists only here, and they would fail on it.
        graph = ds._as_serialized_graph().numpy()
        if b"PyFunc" in graph:
            raise ValueError(
                f"the steps before it run Python ({ctx.source.kind} source), which tf.data"
                " service workers cannot: use a TFRecord, image-folder or in-memory source"
            )
        if ctx.service == CHECK_ONLY:
            return ds  # a check that the variant fits its source: no dispatcher to ask
        if not ctx.service:
            raise ValueError(
                "needs a tf.data service: pass service= to the build"
                " (the benchmarks start one, or use --perf-data-service grpc://HOST:PORT)"
            )
        return ds.apply(tf.data.experimental.service.distribute(self.processing_mode, ctx.service))

    def __str__(self) -> str:
        return f"distribute({self.processing_mode})"


def apply_steps(steps: tuple[Step, ...], ctx: BuildContext, where: str) -> tf.data.Dataset:
    """Apply ``steps`` to the source's shards; a step that does not fit fails naming it."""
    ds = ctx.source.shard_dataset()
    for number, step in enumerate(steps, start=1):
        try:
            ds = step.apply(ds, ctx)
        except (ValueError, TypeError, tf.errors.OpError) as error:
            raise DataError(f"{where} step {number} ({step})", one_line(error)) from None
    return ds
