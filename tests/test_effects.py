"""Why a variant shows no steady gain (`benchmarks.diagnosing.effects`): each of three reasons."""

from __future__ import annotations

import pytest

import pipelines
from benchmarks.diagnosing.effects import (
    adds_only_overlap,
    gain_bound,
    no_gain_lines,
    passes_needed,
)
from benchmarks.saving.schema import nested

PRECISION = 0.05


def trained(value: float, low: float, high: float, input_bound: float = 0.5, **more) -> dict:
    return nested(
        {
            "kind": "training",
            "batch_size": 64,
            "passes": 6,
            "steady_examples_per_s": 1000.0,
            "steady_input_bound": input_bound,
            "steady_speedup_over_augmented": value,
            "steady_speedup_over_augmented_ci": [low, high],
            **more,
        }
    )


def lines(metrics: dict) -> list[str]:
    return no_gain_lines(metrics, pipelines.VARIANTS, PRECISION)


def test_the_bound_is_what_an_infinitely_fast_input_or_a_perfect_overlap_could_give():
    assert gain_bound(nested({"steady_input_bound": 0.5}), overlap_only=False) == pytest.approx(2.0)
    assert gain_bound(nested({"steady_input_bound": 0.5}), overlap_only=True) == pytest.approx(2.0)
    # Waiting 90% of the time: a faster input could give 10x, overlap only 1.11x.
    assert gain_bound(nested({"steady_input_bound": 0.9}), overlap_only=False) == pytest.approx(
        10.0
    )
    assert gain_bound(nested({"steady_input_bound": 0.9}), overlap_only=True) == pytest.approx(
        1 / 0.9
    )


def test_only_a_variant_that_adds_a_prefetch_and_nothing_else_is_an_overlap():
    augmented = pipelines.get("augmented")
    assert adds_only_overlap(pipelines.get("prefetch"), augmented)
    for name in ("optimized", "cache", "vectorized_map", "augmented"):
        assert not adds_only_overlap(pipelines.get(name), augmented), name


def test_a_gain_above_one_gets_no_line():
    base = trained(1.0, 1.0, 1.0)
    assert lines({"augmented": base, "cache": trained(1.5, 1.3, 1.7)}) == []


def test_nothing_to_gain_when_the_reference_hardly_waits():
    base = trained(1.0, 1.0, 1.0, input_bound=0.02)
    (line,) = lines({"augmented": base, "cache": trained(1.01, 0.98, 1.04)})
    assert "no effect possible on this machine" in line and "only 2%" in line
    # Prefetch: waiting 96% of a step, overlap can hide at most the 4% of training.
    base = trained(1.0, 1.0, 1.0, input_bound=0.96)
    (line,) = lines({"augmented": base, "prefetch": trained(1.02, 0.99, 1.05)})
    assert "no effect possible" in line and "train step" in line and "1.04x" in line


def test_a_wide_interval_says_how_many_passes_would_tell():
    base = trained(1.0, 1.0, 1.0, input_bound=0.6)
    (line,) = lines({"augmented": base, "prefetch": trained(1.05, 0.76, 1.45)})
    assert "not told apart from no change" in line and "after 6 passes" in line
    # +-38% after 6 passes: a per-pass spread of 0.323 x sqrt(6) / t(5) = 0.308 in log;
    # +-5% needs t(n-1) x 0.308 / sqrt(n) <= ln 1.05: n = 156.
    assert passes_needed([0.76, 1.45], 1.05, 6, PRECISION) == 156
    # Already precise enough at one more pass.
    assert passes_needed([0.99, 1.01], 1.0, 6, PRECISION) == 7


def test_precise_without_a_gain_where_there_was_room_points_at_the_timeline():
    base = trained(1.0, 1.0, 1.0, input_bound=0.6)
    (line,) = lines({"augmented": base, "vectorized_map": trained(1.0, 0.98, 1.02)})
    assert line.startswith("vectorized_map: 1.00x [0.98, 1.02] over augmented: no effect:")
    assert "timeline" in line


def test_a_variant_that_does_not_augment_is_not_an_optimization_of_augmented():
    base = trained(1.0, 1.0, 1.0, input_bound=0.6)
    assert lines({"augmented": base, "naive": trained(0.8, 0.5, 1.1)}) == []


def test_without_the_reference_there_is_nothing_to_say():
    assert lines({"prefetch": trained(1.0, 0.9, 1.1)}) == []
