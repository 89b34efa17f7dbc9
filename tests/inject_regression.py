"""A pytest plugin that injects a regression into the `optimized` variant, for gate tests.

Loaded with ``-p inject_regression``; ``$INJECT`` picks the regression:
"slow" adds a delay to one stage (after the augmentation map), "mislabel"
pairs images with the wrong labels. Anything else leaves the variant alone.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf
from tensorflow.python.data.experimental.ops.testing import sleep

import pipelines
from pipelines.element import ID, LABEL
from pipelines.steps import Map, register_transform

SLOW_BATCH_S = 0.06


@dataclasses.dataclass(frozen=True)
class Delay:
    """Every element of this stage takes ``seconds`` longer."""

    seconds: float

    def apply(self, ds, ctx):
        return ds.apply(sleep(round(self.seconds * 1e6)))

    def __str__(self):
        return f"delay({self.seconds}s)"


def _mislabel(ctx, batched):
    """Pair each image with a label drawn from its id alone: images and labels no longer match."""

    def transform(record, seed):
        return {**record, LABEL: tf.math.floormod(record[ID] * 7919 + 13, 10)}

    return transform


register_transform("_inject_mislabel", _mislabel)
MISLABEL = Map(("_inject_mislabel",))


def pytest_configure(config):
    mode = os.environ.get("INJECT", "")
    base = pipelines.VARIANTS["optimized"]
    steps = list(base.steps)
    augment_at = next(i for i, step in enumerate(steps) if "augment" in str(step))
    if mode == "slow":
        steps.insert(augment_at + 1, Delay(SLOW_BATCH_S))
    elif mode == "mislabel":
        steps.insert(augment_at + 1, MISLABEL)
    else:
        return
    pipelines.register(dataclasses.replace(base, steps=tuple(steps)), replace=True)
