"""Guarding the guards: deliberately broken variants are caught by the contract checks.

The broken variants live here, never in `pipelines.VARIANTS`.
"""

from __future__ import annotations

import dataclasses

import pytest
import tensorflow as tf

from contract_checks import ContractViolation, check_variant
from pipelines import Contract, Variant
from pipelines.element import ID, LABEL
from pipelines.steps import Batch, Cache, Map, Read, Shuffle, register_transform


def _roll_labels(ctx, batched):
    """Move every label to the next example of its batch: images and labels part ways."""

    def transform(record, seed):
        return {**record, LABEL: tf.roll(record[LABEL], shift=1, axis=0)}

    return transform


register_transform("_test_roll_labels", _roll_labels)


@dataclasses.dataclass(frozen=True)
class DropFirst:
    """A step that silently loses example 0."""

    def apply(self, ds, ctx):
        return ds.filter(lambda record: record[ID] != 0)

    def __str__(self):
        return "drop_first"


PLAIN = Map(("decode", "standardize"))
BROKEN = {
    "labels shuffled apart from images": (
        Variant(
            "labels_detached",
            (Read(), PLAIN, Shuffle(), Batch(), Map(("_test_roll_labels",))),
            Contract(shuffle="elements"),
        ),
        "pairing",
    ),
    "batch after shuffle, contract says before": (
        Variant(
            "claims_batch_shuffle", (Read(), PLAIN, Shuffle(), Batch()), Contract(shuffle="batches")
        ),
        "shuffle",
    ),
    "an element dropped": (
        Variant("loses_one", (Read(), PLAIN, DropFirst(), Batch()), Contract()),
        "multiset",
    ),
    "cache freezes augmentation, contract says fresh": (
        Variant(
            "frozen_as_fresh",
            (Read(), Map(("decode",)), Map(("augment",)), Cache(), Batch()),
            Contract(augmentation="fresh"),
        ),
        "augmentation",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_variant_is_caught_by_the_right_property(case):
    variant, prop = BROKEN[case]
    with pytest.raises(ContractViolation) as caught:
        check_variant(variant, n=40, num_shards=2, batch_size=6, seed=1)
    assert caught.value.prop == prop, str(caught.value)
    print(f"{case}: {caught.value}")


def test_broken_variants_stay_out_of_the_registry():
    import pipelines

    assert not {variant.name for variant, _ in BROKEN.values()} & set(pipelines.VARIANTS)
