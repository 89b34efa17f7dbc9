"""Guarding the guards: deliberately broken variants are caught by the contract checks.

Each broken variant is caught by the property it breaks, and by no check
before it: every property in `pipelines.checks.contract.CHECKS` has at least one here.
The broken variants live here, never in `pipelines.VARIANTS`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from pipelines import Contract, Variant, augment
from pipelines.checks.contract import CHECKS, ContractViolation, NotMeasured, check_variant
from pipelines.checks.tagged import readable, tagged_source
from pipelines.element import ID, IMAGE, LABEL
from pipelines.functions import function_variant
from pipelines.steps import (
    Batch,
    Cache,
    Map,
    Read,
    Repeat,
    Shuffle,
    Unbatch,
    register_transform,
)
from pipelines.variants import AUGMENT, DECODE_STANDARDIZE


def _roll_labels(ctx, batched):
    """Move every label to the next example of its batch: images and labels part ways."""

    def transform(record, seed):
        return {**record, LABEL: tf.roll(record[LABEL], shift=1, axis=0)}

    return transform


register_transform("_test_roll_labels", _roll_labels)


def _augment_with(change):
    """The real augmentation with one slip: ``change(images, params)`` returns new
    (images, params) before the parameters are applied."""

    def factory(ctx, batched):
        def transform(record, seed):
            images = record[IMAGE]
            params = augment.draw_params(tf.shape(images)[:-3], seed)
            images, params = change(images, params)
            return {**record, IMAGE: augment.apply_augmentation(images, params)}

        return transform

    return factory


def _never_flip(images, params):
    return images, dataclasses.replace(params, flipped=tf.zeros_like(params.flipped))


def _brightness_then_standardize(images, params):
    # The lab's slip: standardizing after the shift takes the shift away again.
    shifted = augment.brightness(augment.standardize(images), params.delta)
    return augment.standardize(shifted), dataclasses.replace(params, delta=params.delta * 0)


def _flip_every_image(ctx, batched):
    def transform(record, seed):
        return {**record, IMAGE: tf.reverse(record[IMAGE], axis=[-2])}

    return transform


register_transform("_test_augment_never_flips", _augment_with(_never_flip))
register_transform("_test_augment_standardized_last", _augment_with(_brightness_then_standardize))
register_transform("_test_flip_every_image", _flip_every_image)


@dataclasses.dataclass(frozen=True)
class DropFirst:
    """A step that silently loses example 0."""

    def apply(self, ds, ctx):
        return ds.filter(lambda record: record[ID] != 0)

    def __str__(self):
        return "drop_first"


@dataclasses.dataclass(frozen=True)
class FixedSeedShuffle:
    """A shuffle that ignores the build's seed: every build has the same order."""

    def apply(self, ds, ctx):
        return ds.shuffle(ctx.shuffle_buffer, seed=42)

    def __str__(self):
        return "shuffle(seed=42)"


@dataclasses.dataclass(frozen=True)
class UnseededShuffle:
    """A shuffle with no seed at all: every build a different order."""

    def apply(self, ds, ctx):
        return ds.shuffle(ctx.shuffle_buffer)

    def __str__(self):
        return "shuffle(seed=None)"


@dataclasses.dataclass(frozen=True)
class MapWithSeed(Map):
    """A map whose random seeds come from ``fixed`` instead of the build's seed."""

    fixed: int | None = 7

    def apply(self, ds, ctx):
        return super().apply(ds, dataclasses.replace(ctx, seed=self.fixed))


SHUFFLED = Contract(shuffle="elements")
AUGMENTED = Contract(shuffle="elements", augmentation="fresh")
BROKEN = {
    "labels shuffled apart from images": (
        Variant(
            "labels_detached",
            (Read(), DECODE_STANDARDIZE, Shuffle(), Batch(), Map(("_test_roll_labels",))),
            Contract(shuffle="elements"),
        ),
        "pairing",
    ),
    "batch after shuffle, contract says before": (
        Variant(
            "claims_batch_shuffle",
            (Read(), DECODE_STANDARDIZE, Shuffle(), Batch()),
            Contract(shuffle="batches"),
        ),
        "shuffle",
    ),
    "an element dropped": (
        Variant("loses_one", (Read(), DECODE_STANDARDIZE, DropFirst(), Batch()), Contract()),
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
    "remainder kept, contract says dropped": (
        Variant(
            "keeps_remainder", (Read(), DECODE_STANDARDIZE, Batch()), Contract(drop_remainder=True)
        ),
        "drop_remainder",
    ),
    "repeat then batch, contract says clean boundaries": (
        Variant("straddles", (Read(), DECODE_STANDARDIZE, Repeat(2), Batch()), Contract(repeats=2)),
        "epoch_boundaries",
    ),
    "interleaved shards, contract says source order": (
        Variant("interleaves", (Read(parallel=True), DECODE_STANDARDIZE, Batch()), Contract()),
        "order",
    ),
    "unseeded shuffle, contract says deterministic": (
        Variant("unseeded", (Read(), DECODE_STANDARDIZE, UnseededShuffle(), Batch()), SHUFFLED),
        "deterministic",
    ),
    "shuffle ignores the seed": (
        Variant("fixed_seed", (Read(), DECODE_STANDARDIZE, FixedSeedShuffle(), Batch()), SHUFFLED),
        "seed",
    ),
    "augmentation ignores the seed": (
        Variant(
            "fixed_seed_augment",
            (Read(), Map(("decode",)), MapWithSeed(("augment",)), Batch()),
            Contract(augmentation="fresh"),
        ),
        "seed",
    ),
    "unseeded augmentation, contract says deterministic": (
        Variant(
            "unseeded_augment",
            (Read(), Map(("decode",)), MapWithSeed(("augment",), fixed=None), Batch()),
            Contract(augmentation="fresh"),
        ),
        "deterministic",
    ),
    "shuffled once, every epoch the same order": (
        Variant(
            "shuffles_once",
            (Read(), DECODE_STANDARDIZE, Shuffle(reshuffle_each_iteration=False), Batch()),
            Contract(shuffle="elements"),
        ),
        "reshuffles",
    ),
    "reshuffled, contract says every epoch repeats": (
        Variant(
            "reshuffles_anyway",
            (Read(), DECODE_STANDARDIZE, Shuffle(), Batch()),
            Contract(shuffle="elements", reshuffles=False),
        ),
        "reshuffles",
    ),
    "decoded in blocks that drop the tail, hidden by the final drop": (
        Variant(
            "loses_tail",
            (
                Read(),
                Batch(drop_remainder=True),
                Map(("decode", "standardize")),
                Unbatch(),
                Shuffle(),
                Batch(drop_remainder=True),
            ),
            Contract(shuffle="elements", drop_remainder=True),
        ),
        "remainder",
    ),
    "flip never happens": (
        Variant(
            "never_flips",
            (Read(), Map(("decode",)), Shuffle(), Map(("_test_augment_never_flips",)), Batch()),
            AUGMENTED,
        ),
        "augmentation_rates",
    ),
    "brightness undone by standardizing last": (
        Variant(
            "standardized_last",
            (
                Read(),
                Map(("decode",)),
                Shuffle(),
                Map(("_test_augment_standardized_last",)),
                Batch(),
            ),
            AUGMENTED,
        ),
        "augmentation_rates",
    ),
    "every image flipped, contract says no augmentation": (
        Variant(
            "flips_unannounced",
            (Read(), DECODE_STANDARDIZE, Map(("_test_flip_every_image",)), Batch()),
            Contract(),
        ),
        "augmentation_rates",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_variant_is_caught_by_the_right_property(case):
    variant, prop = BROKEN[case]
    with pytest.raises(ContractViolation) as caught:
        check_variant(variant, n=40, num_shards=2, batch_size=6, seed=1)
    assert caught.value.prop == prop, str(caught.value)
    print(f"{case}: {caught.value}")


def test_every_property_has_a_broken_variant_that_it_alone_catches():
    # "shape" has none: `pipelines.build` itself refuses a variant with the wrong images.
    assert {prop for prop, _ in CHECKS} - {"shape"} <= {prop for _, prop in BROKEN.values()}


def test_broken_variants_stay_out_of_the_registry():
    import pipelines

    assert not {variant.name for variant, _ in BROKEN.values()} & set(pipelines.VARIANTS)


def _blur(ctx, batched):
    """A 3x3 box blur, per channel: a legitimate augmentation that changes pixels."""

    def transform(record, seed):
        images = record[IMAGE]
        kernel = tf.ones((3, 3, images.shape[-1], 1)) / 9.0
        x = images if batched else images[None]
        blurred = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")
        return {**record, IMAGE: blurred if batched else blurred[0]}

    return transform


register_transform("_test_blur", _blur)
BLURRED_STEPS = (Read(), DECODE_STANDARDIZE, Shuffle(), AUGMENT, Map(("_test_blur",)), Batch())


def test_a_pixel_changing_step_leaves_the_augmentation_rates_unmeasured_not_broken():
    blurred = Variant("augmented_then_blurred", BLURRED_STEPS, AUGMENTED)
    with pytest.warns(NotMeasured, match="augmented_then_blurred: augmentation_rates: not meas"):
        notes = check_variant(blurred, n=40, num_shards=2, batch_size=6, seed=1)
    (note,) = notes
    assert "120 of 120 images were changed by a step beyond crops, flips" in note


def _sharpen(ctx, batched):
    """Six rounds of a clipped 3x3 sharpen: a filter that scrambles the encoded id."""

    def transform(record, seed):
        kernel = tf.constant([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], tf.float32)
        kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
        x = record[IMAGE] if batched else record[IMAGE][None]
        for _ in range(6):
            x = tf.clip_by_value(tf.nn.depthwise_conv2d(x, kernel, [1] * 4, "SAME"), -3.0, 3.0)
        return {**record, IMAGE: x if batched else x[0]}

    return transform


register_transform("_test_sharpen", _sharpen)


def test_a_filter_that_hides_the_id_leaves_the_images_pairing_unmeasured_not_broken():
    steps = (Read(), DECODE_STANDARDIZE, Map(("_test_sharpen",)), Shuffle(), AUGMENT, Batch())
    sharpened = Variant("sharpened", steps, AUGMENTED)
    with pytest.warns(NotMeasured) as warned:
        notes = check_variant(sharpened, n=40, num_shards=2, batch_size=6, seed=1)
    said = [str(warning.message) for warning in warned]
    assert any(line.startswith("sharpened: pairing: images not measured: ") for line in said)
    assert any(note.startswith("pairing: images not measured: ") for note in notes)
    assert any(note.startswith("augmentation_rates: not measured") for note in notes)


def test_after_a_pixel_changing_step_the_other_promises_are_still_checked():
    # Shuffled, though it promises the order: still caught, blur or not.
    blurred = Variant(
        "blurred_claims_order", BLURRED_STEPS, dataclasses.replace(AUGMENTED, shuffle="none")
    )
    with pytest.raises(ContractViolation) as caught:
        check_variant(blurred, n=40, num_shards=2, batch_size=6, seed=1)
    assert caught.value.prop == "order"


def test_the_seed_augmentation_is_always_readable_and_a_blur_never():
    source = tagged_source(40, 2)
    for steps, expected in ((BLURRED_STEPS[:4], True), (BLURRED_STEPS[:5], False)):
        variant = Variant("readable_or_not", (*steps, Batch()), AUGMENTED)
        images = np.concatenate(
            [b[IMAGE].numpy() for b in pipelines.build(variant, source, batch_size=6, seed=3)]
        )
        assert (readable(images) == expected).all()


def _clipped_sharpen(image, label):
    kernel = tf.tile(
        tf.constant([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], tf.float32)[:, :, None, None],
        [1, 1, 3, 1],
    )
    for _ in range(6):
        image = tf.clip_by_value(
            tf.nn.depthwise_conv2d(image[None], kernel, [1] * 4, "SAME")[0], 0.0, 1.0
        )
    return image, label


def test_a_function_whose_filter_hides_the_ids_is_not_followed_but_still_checked():
    # A user's function carries no ids: after a clipping filter, nothing says which example
    # an image is. The checks that follow examples are not measured, and say so; the rest run.
    def sharpened(ds, params):
        ds = ds.shuffle(params.shuffle_buffer, seed=params.seed).map(_clipped_sharpen)
        return ds.batch(params.batch_size)

    variant = function_variant(sharpened, Contract(shuffle="elements"))
    with pytest.warns(NotMeasured, match="sharpened: pairing, multiset, epoch_boundaries"):
        notes = check_variant(variant, n=40, num_shards=2, batch_size=6, seed=1)
    assert "the function's elements carry no id" in notes[0]
    assert notes[0].startswith("pairing, multiset, epoch_boundaries, order, shuffle, seed,")
    assert "drop_remainder" not in notes[0] and "deterministic" not in notes[0]

    def dropping(ds, params):  # drops the remainder, though the contract keeps it
        return ds.map(_clipped_sharpen).batch(params.batch_size, drop_remainder=True)

    with pytest.raises(ContractViolation) as caught:
        check_variant(
            function_variant(dropping, Contract()), n=40, num_shards=2, batch_size=6, seed=1
        )
    assert caught.value.prop == "drop_remainder"
