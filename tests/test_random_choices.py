"""Each random choice of `pipelines.augment` drawn as stated: every value of its range at its
share, both ends of a real range reached, and the choices independent of each other.

The checks are the ones the contract applies to a variant's measured
augmentation (`pipelines.checks.chance`), at its false-failure rate of one in a
million per check; here they run on the drawn parameters themselves, in the
batched form and in the per-example form the pipelines use (one seed per
element). The last tests hold the checks themselves to catching what they are for.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from pipelines.augment import RANDOM_CHOICES, AugmentParams, RandomChoice, draw_params
from pipelines.checks.chance import (
    FALSE_FAILURE_RATE,
    choice_p_value,
    independence_p_value,
)

# The parameter each choice sets.
FIELDS = {"crop_top": "top", "crop_left": "left", "flip": "flipped", "brightness": "delta",
          "contrast": "factor"}  # fmt: skip
DRAWS = 20_000


def values_of(params: AugmentParams) -> dict[str, np.ndarray]:
    return {name: getattr(params, field).numpy() for name, field in FIELDS.items()}


@pytest.fixture(scope="module")
def batched() -> dict[str, np.ndarray]:
    """One batch's draws: the batched augmentation's form."""
    return values_of(draw_params((DRAWS,), tf.constant([7, 1])))


@pytest.fixture(scope="module")
def per_example() -> dict[str, np.ndarray]:
    """One draw per element, each from its own seed, as `Map` hands them out."""

    def draw(seed: tf.Tensor) -> tf.Tensor:
        params = draw_params((), seed)
        return tf.stack([tf.cast(getattr(params, FIELDS[name]), tf.float32) for name in FIELDS])

    seeds = tf.data.Dataset.random(seed=5).batch(2).take(4000)
    (params,) = seeds.map(draw).batch(4000).as_numpy_iterator()
    return {name: params[:, k] for k, name in enumerate(FIELDS)}


def test_every_choice_of_the_augmentation_is_named_here():
    assert set(FIELDS) == set(RANDOM_CHOICES)


@pytest.mark.parametrize("form", ["batched", "per_example"])
@pytest.mark.parametrize("name", sorted(RANDOM_CHOICES))
def test_each_choice_follows_its_stated_distribution(request, form, name):
    values = request.getfixturevalue(form)[name]
    p, seen = choice_p_value(RANDOM_CHOICES[name], values)
    assert p >= FALSE_FAILURE_RATE, f"{name}: {seen} (p={p:.1e})"


@pytest.mark.parametrize("name", ["crop_top", "crop_left"])
def test_every_integer_of_a_range_occurs_at_its_share(batched, name):
    choice = RANDOM_CHOICES[name]
    levels = np.arange(choice.low, choice.high + 1)
    shares = np.array([np.mean(batched[name] == level) for level in levels])
    # 20,000 draws over 9 levels: a share's standard error is about 0.2 points.
    np.testing.assert_allclose(shares, 1 / len(levels), atol=0.015)


@pytest.mark.parametrize("name", ["brightness", "contrast"])
def test_a_real_range_is_covered_to_both_ends(batched, name):
    choice = RANDOM_CHOICES[name]
    width = choice.high - choice.low
    values = batched[name]
    assert values.min() >= choice.low and values.max() < choice.high
    # The chance that 20,000 uniform draws stay 0.1% of the width from an end: e^-20.
    assert values.min() - choice.low < width * 1e-3 and choice.high - values.max() < width * 1e-3


@pytest.mark.parametrize("form", ["batched", "per_example"])
def test_the_choices_are_independent_of_each_other(request, form):
    values = request.getfixturevalue(form)
    pairs = list(itertools.combinations(sorted(RANDOM_CHOICES), 2))
    for first, second in pairs:
        p = independence_p_value(
            RANDOM_CHOICES[first], values[first], RANDOM_CHOICES[second], values[second]
        )
        assert p is not None and p * len(pairs) >= FALSE_FAILURE_RATE, (first, second, p)


# The checks catch what they are for: samples drawn the way a broken augmentation would.
RNG = np.random.default_rng(0)
CROP = RANDOM_CHOICES["crop_top"]
BRIGHTNESS = RANDOM_CHOICES["brightness"]


def test_the_check_catches_a_range_whose_largest_value_is_never_drawn():
    short = RNG.integers(CROP.low, CROP.high, size=2000)  # high exclusive: 8 never drawn
    p, seen = choice_p_value(CROP, short)
    assert p < FALSE_FAILURE_RATE and "8: 0" in seen


def test_the_check_catches_a_level_drawn_at_the_wrong_share():
    values = RNG.integers(CROP.low, CROP.high + 1, size=2000)
    values[:300] = 4  # a level drawn about twice its share
    assert choice_p_value(CROP, values)[0] < FALSE_FAILURE_RATE


def test_the_check_catches_a_real_range_cut_short_at_one_end():
    width = BRIGHTNESS.high - BRIGHTNESS.low
    values = RNG.uniform(BRIGHTNESS.low, BRIGHTNESS.high - 0.02 * width, size=2000)
    assert choice_p_value(BRIGHTNESS, values)[0] < FALSE_FAILURE_RATE


def test_the_check_catches_two_choices_drawn_from_one_stream():
    # The same random numbers read for the top and the left offset.
    top = RNG.integers(CROP.low, CROP.high + 1, size=2000)
    p = independence_p_value(CROP, top, RANDOM_CHOICES["crop_left"], top.copy())
    assert p is not None and p < FALSE_FAILURE_RATE
    # A flip read from the uniform number behind brightness: one predicts the other.
    uniform = RNG.uniform(size=2000)
    flip = RANDOM_CHOICES["flip"]
    brightness = BRIGHTNESS.low + uniform * (BRIGHTNESS.high - BRIGHTNESS.low)
    p = independence_p_value(flip, uniform < flip.rate, BRIGHTNESS, brightness)
    assert p is not None and p < FALSE_FAILURE_RATE


def test_too_few_values_for_the_independence_test_say_so():
    few = RNG.integers(0, 9, size=30)
    assert independence_p_value(CROP, few, RANDOM_CHOICES["crop_left"], few) is None


def test_a_correct_sample_passes_each_check():
    values = RNG.integers(CROP.low, CROP.high + 1, size=2000)
    assert choice_p_value(CROP, values)[0] >= FALSE_FAILURE_RATE
    other = RNG.integers(CROP.low, CROP.high + 1, size=2000)
    assert independence_p_value(CROP, values, CROP, other) >= FALSE_FAILURE_RATE
    uniform = RandomChoice("u", "uniform", 0.0, 1.0)
    assert choice_p_value(uniform, RNG.uniform(size=2000))[0] >= FALSE_FAILURE_RATE


def test_no_two_choices_read_one_random_stream(monkeypatch):
    # Two choices read from one stream can look independent to any test of their values:
    # an offset is the whole 32-bit word modulo 9, a flip its top bit. So the streams
    # themselves are watched: every draw of the augmentation asks with a seed of its own.
    seeds = []
    draw = tf.random.stateless_uniform

    def recording(shape, seed, *args, **kwargs):
        seeds.append(tuple(np.asarray(seed).tolist()))
        return draw(shape, seed, *args, **kwargs)

    monkeypatch.setattr(tf.random, "stateless_uniform", recording)
    for seed in ([0, 0], [1, 7]):
        seeds.clear()
        draw_params((16,), tf.constant(seed, tf.int64))
        assert len(seeds) == len(RANDOM_CHOICES) == len(set(seeds))
        assert tuple(seed) not in seeds  # nor the element's own seed, which others split
