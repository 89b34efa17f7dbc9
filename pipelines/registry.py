"""The variant registry: `VARIANTS`, `register` and `build`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import tensorflow as tf

from pipelines.element import IMAGE, LABEL
from pipelines.errors import DataError, UsageError
from pipelines.functions import ElementForm, FunctionPipeline, PipelineFunction, function_variant
from pipelines.observing.runtime_model import Legend
from pipelines.observing.span_log import SpanLog
from pipelines.observing.tracing import Stage, Tracer
from pipelines.sources.base import Source
from pipelines.sources.latency import Latency
from pipelines.steps import CHECK_ONLY, BuildContext, GeneratorRead, Read, apply_steps
from pipelines.variants import SEED_VARIANTS, Contract, Variant

VARIANTS: dict[str, Variant] = {}
# While a base version of a user's registrations loads (`pipelines.versions`): how a
# name it registers is renamed (None: registered as written).
_renaming: Callable[[Variant], Variant] | None = None


@contextlib.contextmanager
def renaming(rename: Callable[[Variant], Variant]) -> Iterator[None]:
    """Within the block, every variant registered goes through ``rename`` first."""
    global _renaming
    _renaming = rename
    try:
        yield
    finally:
        _renaming = None


def register(variant: Variant, *, replace: bool = False) -> Variant:
    """Add ``variant`` to `VARIANTS`; the property tests and benchmarks then cover it.

    Raises:
        ValueError: the name is taken (unless ``replace``), or the first step does not
            read (a function pipeline does its own reading, and is the only step).
    """
    if _renaming is not None:
        variant = _renaming(variant)
    if variant.name in VARIANTS and not replace:
        raise ValueError(f"a variant named {variant.name!r} is already registered")
    first = variant.steps[0] if variant.steps else None
    if isinstance(first, FunctionPipeline) and len(variant.steps) > 1:
        raise ValueError(f"variant {variant.name!r}: a function pipeline must be its only step")
    if not isinstance(first, GeneratorRead | Read | FunctionPipeline):
        raise ValueError(
            f"variant {variant.name!r} must start with a read step (Read or GeneratorRead)"
        )
    VARIANTS[variant.name] = variant
    return variant


def pipeline(
    contract: Contract,
    *,
    name: str | None = None,
    description: str | None = None,
    elements: ElementForm = "tuple",
    benchmarked: bool = True,
    replace: bool = False,
) -> Callable[[PipelineFunction], PipelineFunction]:
    """Register the decorated function ``f(ds, params) -> dataset`` as a variant.

    See `pipelines.functions` for what the function receives and must
    return; the arguments are `function_variant`'s, and ``replace`` is
    `register`'s. The function is returned unchanged.
    """

    def add(function: PipelineFunction) -> PipelineFunction:
        variant = function_variant(
            function,
            contract,
            name=name,
            description=description,
            elements=elements,
            benchmarked=benchmarked,
        )
        register(variant, replace=replace)
        return function

    return add


def unregister(name: str) -> None:
    """Remove a variant (for tests that register temporary ones)."""
    VARIANTS.pop(name, None)


def get(name: str) -> Variant:
    """The registered variant called ``name``; an unknown name lists the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(
            f"variant {name!r}", f"unknown variant; known variants: {', '.join(VARIANTS)}"
        ) from None


def build(
    variant: str | Variant,
    source: Source,
    *,
    batch_size: int = 64,
    shuffle_buffer: int = 1024,
    seed: int | None = 0,
    cache_dir: str | None = None,
    service: str | None = None,
    image_size: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """The `tf.data.Dataset` of ``variant`` over ``source``: batches of elements.

    ``service``: the tf.data service dispatcher for variants with a `Distribute` step.
    ``image_size``: (height, width) of the images yielded; None: the source's
    (`decode` centre-crops or pads to it; a function pipeline must yield it).

    Raises:
        UsageError: the variant is unknown.
        DataError: a step does not fit the source
            (the message names the step).
    """
    ctx = BuildContext(
        source, batch_size, shuffle_buffer, seed, cache_dir, image_size, service=service
    )
    return _build(variant, ctx)


def check_fits(
    variant: str | Variant, source: Source, image_size: tuple[int, int] | None = None
) -> None:
    """Raise `DataError` (naming the step) if ``variant`` cannot run on ``source``.

    Builds the pipeline without iterating it; a tf.data service step checks
    what it can without a dispatcher (its workers cannot run Python).
    """
    _build(variant, BuildContext(source, image_size=image_size, service=CHECK_ONLY))


class TracedBuild(NamedTuple):
    """A traced build: the dataset, its stages as the build added them (a stage carried
    in `SPANS` has its row there in this order; one `Stage.observed` inside a pipeline
    function logs its spans), and where the observed ones log (None when none does)."""

    dataset: tf.data.Dataset
    stages: tuple[Stage, ...]
    log: SpanLog | None


def build_traced(variant: str | Variant, source: Source, **options: Any) -> TracedBuild:
    """`build` (same keyword options) with tracing on: batches also carry `SPANS`, and
    stages inside a pipeline function log their spans.

    Record a run of it with ``TimelineRecorder(traced.stages, traced.log)``.
    See `pipelines.observing.tracing`.
    """
    tracer = Tracer()
    ctx = BuildContext(source, observer=tracer, **options)
    dataset = _build(variant, ctx)
    return TracedBuild(dataset, tuple(tracer.stages), tracer.log)


def legend(variant: str | Variant, source: Source, **options: Any) -> Legend:
    """What names ``variant``'s stages in tf.data's runtime model
    (`pipelines.observing.runtime_model`): the stages of a traced build (same keyword
    options as `build`; built, not run) on the pipeline's main line, none that runs
    inside a shard's reader or that tf.data drops, and the storage latency ``source``
    simulates."""
    stages = build_traced(variant, source, **options).stages
    kept = tuple((s.name, s.kind) for s in stages if not (s.inside_read or s.elided))
    return Legend(kept, source.latency or Latency())


def _build(variant: str | Variant, ctx: BuildContext) -> tf.data.Dataset:
    variant = get(variant) if isinstance(variant, str) else variant
    where = f"variant {variant.name!r}"
    ds = apply_steps(variant.steps, ctx, where)
    spec = ds.element_spec
    image, label = spec.get(IMAGE), spec.get(LABEL)
    if label is not None and label.shape.rank == 2:
        raise DataError(
            where, f"yields labels of shape {label.shape} (one-hot?): yield class indices"
        )
    if image is None or label is None or label.shape.rank != 1:
        raise DataError(
            where, "must end with batches of {'image', 'label', 'id'} (add a Batch step)"
        )
    if image.dtype != tf.float32 or tuple(image.shape[1:]) != ctx.image_shape:
        raise DataError(
            where,
            f"yields images {image.dtype.name} {tuple(image.shape[1:])}, the run's are"
            f" float32 {ctx.image_shape} (missing decode, or a crop to another size?)",
        )
    # Steps mean what they say. By default tf.data runs a stateless
    # Map(parallel=False) in parallel on its own (map_parallelization), but not
    # a traced one, whose stamps are stateful: the timed pipeline would differ
    # from the traced one that its timeline and gates come from, and
    # `augmented` would not be the sequential baseline it claims to be.
    options = tf.data.Options()
    options.experimental_optimization.map_parallelization = False
    # Nor may a pipeline read ahead unless a step says so: tf.data adds a
    # prefetch after a synchronous last step (inject_prefetch), and fuses a map
    # followed by a batch into one op that computes batches in the background
    # (map_and_batch_fusion), so `naive` and `augmented` read ahead while the
    # model trains, and `prefetch` would measure nothing but a buffer size.
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_and_batch_fusion = False
    return ds.with_options(options)


for _variant in SEED_VARIANTS:
    register(_variant)
