"""Injected regressions of `optimized`, for the gate tests and the gate trials.

A pytest plugin, loaded with ``-p trials.inject``. ``$PERF_INJECT``
lists regressions by name (comma-separated):

- ``slow_read``: the read stage 25% slower (each record waits a quarter of the
  source's read latency more, as if the storage had slowed down);
- ``serial_map``: every map of `optimized` loses its parallelism;
- ``mislabel``: images paired with the wrong labels;
- ``delay``: a fixed delay added after the augmentation (a stalled stage);
- ``no_prefetch``, ``no_cache``: the prefetch, or the cache, lost;
- ``sequential_read``: the shards read one at a time instead of interleaved;
- ``unvectorized_augment``: the augmentation mapped per example, before the batch;
- ``costly_augment``: a blur added after the augmentation, `BLUR_PASSES` passes of
  a 5x5 filter: about 30% more pipeline CPU per example (measured alone on the
  smoke data; docs/measurements.md);
- ``mislabel_some``: one training example in ``MISLABEL_EVERY`` paired with a wrong
  label (an accuracy regression of a few points, not a collapse).

By default each replaces `optimized` (so the ordinary gates judge it); with
``$PERF_INJECT_ALONGSIDE=1`` each is registered beside it instead, as
``optimized_<name>``, so one run measures the unchanged variant and every
regressed copy under the same load (`trials.gate_trials` does this).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops.testing import sleep

import pipelines
from pipelines.element import ID, IMAGE, LABEL
from pipelines.steps import (
    Batch,
    BuildContext,
    Cache,
    Map,
    Prefetch,
    Read,
    Step,
    register_transform,
)
from pipelines.variants import Variant

BASE = "optimized"
SLOWDOWN = 0.25  # the slow_read regression: 25% more time per record
# The delay regression, per batch: long enough that the prefetch after it cannot
# hide it from the gates (docs/measurements.md).
DELAY_S = 0.15
# Without a latency profile a read costs microseconds; slow it by this much instead.
BARE_READ_S = 0.001


@dataclasses.dataclass(frozen=True)
class Delay:
    """Every element of this stage takes ``seconds`` longer."""

    seconds: float

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        return ds.apply(sleep(round(self.seconds * 1e6)))

    def __str__(self) -> str:
        return f"delay({self.seconds}s)"


@dataclasses.dataclass(frozen=True)
class SlowRead(Read):
    """`Read`, with every record waiting ``slowdown`` of the read latency more."""

    slowdown: float = SLOWDOWN

    def apply(self, ds: tf.data.Dataset, ctx: BuildContext) -> tf.data.Dataset:
        source = ctx.source
        latency = source.latency.read_s if source.latency else BARE_READ_S
        extra_us = round(latency * self.slowdown * 1e6)
        inner = source.read_shard

        def read_shard(shard):
            return inner(shard).apply(sleep(extra_us))

        slower = dataclasses.replace(source, read_shard=read_shard)
        # The same observer: a traced build still records this read's spans.
        return super().apply(ds, dataclasses.replace(ctx, source=slower))


def _mislabel(ctx: BuildContext, batched: bool):
    """Pair each image with a label drawn from its id alone: images and labels no longer match."""

    def transform(record, seed):
        return {**record, LABEL: tf.math.floormod(record[ID] * 7919 + 13, 10)}

    return transform


register_transform("_inject_mislabel", _mislabel)
MISLABEL = Map(("_inject_mislabel",))
MISLABEL_EVERY = 6


def _mislabel_some(ctx: BuildContext, batched: bool):
    """Every ``MISLABEL_EVERY``-th example (by id) gets a label shifted by one class."""

    def transform(record, seed):
        wrong = tf.math.floormod(record[LABEL] + 1, ctx.source.num_classes)
        chosen = tf.math.floormod(record[ID], MISLABEL_EVERY) == 0
        return {**record, LABEL: tf.where(chosen, wrong, record[LABEL])}

    return transform


BLUR_PASSES = 12


def _blur(ctx: BuildContext, batched: bool):
    """`BLUR_PASSES` passes of a 5x5 box blur over each image: more work per example."""
    kernel = tf.ones((5, 5, ctx.image_shape[-1], 1)) / 25.0

    def transform(record, seed):
        images = record[IMAGE]
        batch = images if batched else images[tf.newaxis]
        for _ in range(BLUR_PASSES):
            batch = tf.nn.depthwise_conv2d(batch, kernel, [1, 1, 1, 1], "SAME")
        return {**record, IMAGE: batch if batched else batch[0]}

    return transform


register_transform("_inject_mislabel_some", _mislabel_some)
register_transform("_inject_blur", _blur)


def _augment_index(steps: list[Step]) -> int:
    return next(i for i, step in enumerate(steps) if "augment" in str(step))


def _slow_read(steps: list[Step]) -> list[Step]:
    return [
        SlowRead(step.parallel, step.deterministic) if isinstance(step, Read) else step
        for step in steps
    ]


def _serial_map(steps: list[Step]) -> list[Step]:
    return [
        dataclasses.replace(step, parallel=False) if isinstance(step, Map) else step
        for step in steps
    ]


def _after_augment(step: Step) -> Callable[[list[Step]], list[Step]]:
    def insert(steps: list[Step]) -> list[Step]:
        at = _augment_index(steps) + 1
        return [*steps[:at], step, *steps[at:]]

    return insert


def _without(kind: type) -> Callable[[list[Step]], list[Step]]:
    return lambda steps: [step for step in steps if not isinstance(step, kind)]


def _sequential_read(steps: list[Step]) -> list[Step]:
    return [Read() if isinstance(step, Read) else step for step in steps]


def _unvectorized_augment(steps: list[Step]) -> list[Step]:
    """The augmenting map moved before the last batch: one call per example."""
    at = _augment_index(steps)
    batch = max(i for i, step in enumerate(steps[:at]) if isinstance(step, Batch))
    return [*steps[:batch], steps[at], steps[batch], *steps[batch + 1 : at], *steps[at + 1 :]]


def _costly_augment(steps: list[Step]) -> list[Step]:
    """The augmenting map does a blur's work too (in the same call, as a user's code would)."""
    at = _augment_index(steps)
    costly = dataclasses.replace(steps[at], transforms=(*steps[at].transforms, "_inject_blur"))
    return [*steps[:at], costly, *steps[at + 1 :]]


REGRESSIONS: dict[str, Callable[[list[Step]], list[Step]]] = {
    "slow_read": _slow_read,
    "serial_map": _serial_map,
    "mislabel": _after_augment(MISLABEL),
    "delay": _after_augment(Delay(DELAY_S)),
    "no_prefetch": _without(Prefetch),
    "no_cache": _without(Cache),
    "sequential_read": _sequential_read,
    "unvectorized_augment": _unvectorized_augment,
    "costly_augment": _costly_augment,
    "mislabel_some": _after_augment(Map(("_inject_mislabel_some",))),
}


def regressed(name: str, base: Variant) -> Variant:
    """``base`` with the regression ``name`` applied to its steps."""
    if name not in REGRESSIONS:
        raise ValueError(f"unknown regression {name!r}; known: {', '.join(REGRESSIONS)}")
    return dataclasses.replace(base, steps=tuple(REGRESSIONS[name](list(base.steps))))


@pytest.hookimpl(tryfirst=True)  # before the suite's plugin checks --perf-variants
def pytest_configure(config: pytest.Config) -> None:
    names = [n.strip() for n in os.environ.get("PERF_INJECT", "").split(",") if n.strip()]
    alongside = os.environ.get("PERF_INJECT_ALONGSIDE") == "1"
    base = pipelines.get(BASE)
    for name in names:
        variant = regressed(name, base)
        if alongside:
            pipelines.register(
                dataclasses.replace(variant, name=f"{BASE}_{name}", benchmarked=False),
                replace=True,
            )
        else:
            pipelines.register(variant, replace=True)
