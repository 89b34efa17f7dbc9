"""The statistics held to their whole promise, on generated samples (hypothesis).

- Pairing: a ratio taken within each pass recovers the true ratio whatever the
  machine's load does from pass to pass (random, not only monotonic drift).
- Intervals: every `Estimate` the suite derives, and every figure written to a
  saved run, keeps low <= value <= high, and the right direction.
- Decisions: `benchmarks.judging.decide` agrees with its definition (a regression is a
  change beyond the tolerance that the one-sided Mann-Whitney test finds
  significant) on shifted, scaled, tied and tiny samples.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from constructed import constructed_passes
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from benchmarks.judging.decide import Rule, decide, smallest_p
from benchmarks.measuring.intervals import Estimate, geometric, mean, paired_ratio
from benchmarks.measuring.pass_figures import CEILING, pass_figures
from benchmarks.measuring.passes import Trial
from benchmarks.saving import metrics

loads = st.lists(st.floats(0.2, 5.0), min_size=2, max_size=12)
ratios = st.floats(0.2, 5.0)
positive_samples = st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12)


def ordered(estimate: Estimate) -> bool:
    """low <= value <= high (with float slack), or no interval at all."""
    if estimate.low is None or estimate.high is None:
        return estimate.low is None and estimate.high is None
    slack = 1e-9 * max(1.0, abs(estimate.value))
    return estimate.low - slack <= estimate.value <= estimate.high + slack


@given(load=loads, ratio=ratios)
def test_a_paired_ratio_recovers_the_true_ratio_under_any_per_pass_load(load, ratio):
    # Pass i runs both sides under the same load; the load jumps about between passes.
    below = [2.0 * factor for factor in load]
    above = [ratio * b for b in below]
    estimate = paired_ratio(above, below)
    assert estimate.value == pytest.approx(ratio, rel=1e-9)
    if len(load) > 1:
        assert estimate.to_list() == pytest.approx([ratio, ratio], rel=1e-9)


NAIVE, CACHE = Trial("training", "naive"), Trial("training", "cache")


@given(load=loads, speedup=ratios, of_ceiling=st.floats(0.05, 1.0))
def test_the_run_s_ratios_are_paired_pass_by_pass_under_any_load(load, speedup, of_ceiling):
    naive = [4.0 * factor for factor in load]
    cache = [n / speedup for n in naive]
    ceiling = [c * of_ceiling for c in cache]
    figures = pass_figures(constructed_passes({CEILING: ceiling, NAIVE: naive, CACHE: cache}))[
        CACHE
    ]
    for full, steady, expected in (
        (figures.speedup_over_naive, figures.steady_speedup_over_naive, speedup),
        (figures.fraction_of_ceiling, figures.steady_fraction_of_ceiling, of_ceiling),
    ):
        for estimate in (full, steady):
            assert estimate.value == pytest.approx(expected, rel=1e-6)
            if len(load) > 2 and len(set(load)) > 1:
                assert estimate.half_width == pytest.approx(0.0, abs=1e-6)


@given(samples=positive_samples, by=st.floats(-5.0, 5.0))
def test_every_estimate_operation_keeps_its_interval_in_order(samples, by):
    for estimate in (
        geometric(samples),
        mean(samples),
        mean([s / (1 + s) for s in samples], within=(0, 1)),
        mean(samples, within=(0.0, math.inf)),
    ):
        assert ordered(estimate)
        assert ordered(estimate.shifted(by))
        inverse = estimate.inverse()
        assert ordered(inverse)
        # The direction: the inverse of a larger value is smaller, a shift moves all three.
        assert inverse.value == pytest.approx(1 / estimate.value)
        if estimate.low is not None:
            assert inverse.low == pytest.approx(1 / estimate.high)
            assert estimate.shifted(by).low == pytest.approx(estimate.low + by)


@given(
    load=loads,
    naive=st.lists(st.floats(0.5, 2.0), min_size=12, max_size=12),
    cache=st.lists(st.floats(0.5, 2.0), min_size=12, max_size=12),
)
@settings(max_examples=60)
def test_every_paired_figure_is_an_ordered_interval(load, naive, cache):
    n = len(load)
    passes = constructed_passes(
        {
            CEILING: [0.3 * f for f in load],
            NAIVE: [4.0 * f * noise for f, noise in zip(load, naive[:n], strict=True)],
            CACHE: [2.0 * f * noise for f, noise in zip(load, cache[:n], strict=True)],
            Trial("traced", "cache"): [2.2 * f for f in load],
        }
    )
    for figures in pass_figures(passes).values():
        estimates = figures.figures()
        for name, estimate in estimates.items():
            assert ordered(estimate), name
        value = {name: estimate.value for name, estimate in estimates.items()}
        # A slowdown is the inverse of a fraction, an overhead the ratio less one.
        if "ceiling_slowdown" in value:
            assert value["ceiling_slowdown"] == pytest.approx(1 / value["fraction_of_ceiling"])
        if "tracing_overhead" in value:
            assert value["tracing_overhead"] == pytest.approx(value["traced_over_untraced"] - 1)


THROUGHPUT = metrics.FRACTION_OF_CEILING
CPU = metrics.CPU_S_PER_EXAMPLE
RULE = Rule(tolerance=0.05, test="mann-whitney", alpha=0.05)
samples = st.lists(st.floats(0.5, 2.0), min_size=1, max_size=10)


def expected_outcome(
    metric: metrics.Metric, before: list[float], after: list[float], rule: Rule
) -> str:
    """The decision rule written out from its definition (module docstring of decide)."""
    if smallest_p(len(before), len(after)) >= rule.alpha:
        return "inconclusive"
    change = statistics.median(after) / statistics.median(before)
    worse_by = (1 - change) if metric.higher_is_better else (change - 1)
    worse, better = ("less", "greater") if metric.higher_is_better else ("greater", "less")
    p_worse = stats.mannwhitneyu(after, before, alternative=worse).pvalue
    p_better = stats.mannwhitneyu(after, before, alternative=better).pvalue
    if worse_by > rule.tolerance:
        return "regression" if p_worse < rule.alpha else "inconclusive"
    if -worse_by > rule.tolerance and p_better < rule.alpha:
        return "improvement"
    return "ok"


def assert_decided_as_defined(before, after, shift, higher_is_better):
    metric = THROUGHPUT if higher_is_better else CPU
    moved = [value * shift for value in after]
    verdict = decide("v", metric, before, moved, RULE)
    assert verdict.outcome == expected_outcome(metric, before, moved, RULE)


@given(before=samples, after=samples, shift=st.floats(0.5, 2.0), higher_is_better=st.booleans())
@settings(max_examples=150)
def test_decisions_agree_with_their_definition_on_shifted_samples(
    before, after, shift, higher_is_better
):
    assert_decided_as_defined(before, after, shift, higher_is_better)


tight = st.lists(st.floats(0.99, 1.01), min_size=4, max_size=10)


@given(before=tight, after=tight, shift=st.floats(0.9, 1.1), higher_is_better=st.booleans())
@settings(max_examples=150)
def test_decisions_agree_with_their_definition_near_the_tolerance(
    before, after, shift, higher_is_better
):
    # Tight samples: small changes are significant, so the tolerance decides.
    assert_decided_as_defined(before, after, shift, higher_is_better)


@given(before=samples, after=samples, scale=st.floats(0.01, 100.0))
@settings(max_examples=100)
def test_a_ratio_metric_s_decision_does_not_depend_on_its_unit(before, after, scale):
    plain = decide("v", THROUGHPUT, before, after, RULE)
    scaled = decide("v", THROUGHPUT, [b * scale for b in before], [a * scale for a in after], RULE)
    assert scaled.outcome == plain.outcome
    if plain.change is not None:
        assert scaled.change == pytest.approx(plain.change)


@given(value=st.floats(0.5, 2.0), n=st.integers(1, 10), m=st.integers(1, 10))
def test_tied_samples_never_regress_and_tiny_samples_are_inconclusive(value, n, m):
    verdict = decide("v", THROUGHPUT, [value] * n, [value] * m, RULE)
    tiny = smallest_p(n, m) >= RULE.alpha
    assert verdict.outcome == ("inconclusive" if tiny else "ok")


@given(n=st.integers(4, 10), drop=st.floats(0.10, 0.5))
def test_a_clear_loss_is_a_regression_in_the_metric_s_own_direction(n, drop):
    rng = np.random.default_rng(n)
    before = list(1.0 + 0.01 * rng.standard_normal(n))
    worse_throughput = [b * (1 - drop) for b in before]
    worse_cpu = [b * (1 + drop) for b in before]
    assert decide("v", THROUGHPUT, before, worse_throughput, RULE).outcome == "regression"
    assert decide("v", CPU, before, worse_cpu, RULE).outcome == "regression"
    # The same moves are improvements the other way round.
    assume(drop > RULE.tolerance)
    assert decide("v", THROUGHPUT, worse_throughput, before, RULE).outcome == "improvement"
    assert decide("v", CPU, worse_cpu, before, RULE).outcome == "improvement"
