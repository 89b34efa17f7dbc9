"""The statistical decision against a baseline, on constructed samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.judging import compare, gates
from benchmarks.judging.decide import Rule, decide, smallest_p
from benchmarks.saving import metrics
from benchmarks.saving.metrics import saved
from pipelines.errors import DataError

FRACTION = metrics.FRACTION_OF_CEILING
CPU = metrics.CPU_S_PER_EXAMPLE
ACCURACY = metrics.TEST_ACCURACY
RULE = Rule(0.10, origin="thresholds.toml:3 [defaults] max_throughput_drop")


def noisy(centre: float, n: int, spread: float = 0.03, seed: int = 0) -> list[float]:
    """``n`` values around ``centre``, within +-``spread`` of it (a run's passes)."""
    rng = np.random.default_rng(seed)
    return list(centre * (1 + rng.uniform(-spread, spread, n)))


@pytest.mark.parametrize("test", ["mann-whitney", "bootstrap"])
def test_a_shift_beyond_the_tolerance_is_a_regression(test):
    rule = Rule(0.10, test=test)
    verdict = decide("optimized", FRACTION, noisy(0.62, 5), noisy(0.50, 5, seed=1), rule)
    assert verdict.outcome == "regression"
    assert verdict.change == pytest.approx(0.50 / 0.62, rel=0.05)
    low, high = verdict.interval
    assert low < verdict.change < high < 0.9


@pytest.mark.parametrize("test", ["mann-whitney", "bootstrap"])
def test_identical_samples_are_not(test):
    sample = noisy(0.62, 6)
    verdict = decide("optimized", FRACTION, sample, list(sample), Rule(0.10, test=test))
    assert verdict.outcome == "ok"
    assert verdict.change == pytest.approx(1.0)


def test_a_significant_shift_within_the_tolerance_is_not_a_regression():
    verdict = decide("optimized", FRACTION, noisy(0.62, 6, 0.01), noisy(0.58, 6, 0.01, 1), RULE)
    assert verdict.p_value < 0.05
    assert verdict.outcome == "ok"


def test_too_few_samples_are_inconclusive_with_the_reason():
    assert smallest_p(3, 3) == pytest.approx(0.05)
    verdict = decide("optimized", FRACTION, [0.62, 0.61, 0.63], [0.40, 0.41, 0.42], RULE)
    assert verdict.outcome == "inconclusive"
    assert "3 and 3 passes cannot reach p < 0.05" in str(verdict)
    assert decide("optimized", FRACTION, [], [0.5] * 5, RULE).outcome == "inconclusive"


def test_a_large_but_noisy_drop_is_inconclusive_not_a_regression():
    verdict = decide(
        "optimized", FRACTION, [0.62, 0.40, 0.84, 0.63], [0.50, 0.70, 0.39, 0.51], RULE
    )
    assert verdict.outcome == "inconclusive"
    assert verdict.p_value > 0.05
    assert "worse beyond the tolerance, but not significantly" in str(verdict)


def test_cpu_is_worse_when_it_rises_and_accuracy_by_an_absolute_amount():
    rising = decide("v", CPU, noisy(1e-3, 5), noisy(1.3e-3, 5, seed=1), Rule(0.10))
    assert rising.outcome == "regression"
    assert rising.change == pytest.approx(1.3, rel=0.05)
    assert "% [+" in str(rising) and "tolerance +10%" in str(rising)
    falling = decide("v", CPU, noisy(1.3e-3, 5), noisy(1e-3, 5, seed=1), Rule(0.10))
    assert falling.outcome == "improvement"
    lost = decide("v", ACCURACY, noisy(0.90, 5, 0.005), noisy(0.85, 5, 0.005, 1), Rule(0.03))
    assert lost.outcome == "regression"
    assert lost.change == pytest.approx(-0.05, abs=0.01)
    within = decide("v", ACCURACY, noisy(0.90, 5, 0.005), noisy(0.88, 5, 0.005, 1), Rule(0.03))
    assert within.outcome == "ok"


def test_a_verdict_is_one_line_with_values_intervals_test_and_tolerance():
    line = str(decide("optimized", FRACTION, noisy(0.62, 5), noisy(0.50, 5, seed=1), RULE))
    assert "\n" not in line
    assert line.startswith("regression: optimized fraction_of_ceiling: baseline 0.6")
    assert "n=5, now 0.5" in line
    assert "; change -1" in line and "%, -" in line  # the change and its interval
    assert "mann-whitney p=0.00" in line and "at level 0.05" in line
    assert line.endswith("tolerance -10% (thresholds.toml:3 [defaults] max_throughput_drop)")


@pytest.fixture
def thresholds(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text(
        "[defaults]\nmax_throughput_drop = 0.1\nmax_cpu_increase = 0.15\n"
        '[statistics]\ntest = "mann-whitney"\nalpha = 0.01\n'
    )
    return gates.load_thresholds(path)


def test_the_baseline_gate_decides_from_the_saved_passes(thresholds):
    baseline = {"optimized": {"fraction_of_ceiling": saved(samples=noisy(0.62, 6))}}
    slower = {"optimized": {"fraction_of_ceiling": saved(samples=noisy(0.50, 6, seed=1))}}
    failures, verdicts = compare.compare_with_baseline(thresholds, slower, baseline, "run 0001")
    (failure,) = failures
    assert str(failure).startswith("GATE FAILED regression: optimized fraction_of_ceiling")
    assert "at level 0.01" in str(failure)
    assert "thresholds.toml:2 [defaults] max_throughput_drop" in str(failure)
    assert "[statistics], baseline run 0001)" in str(failure)
    same = {"optimized": {"fraction_of_ceiling": saved(samples=noisy(0.62, 6, seed=2))}}
    failures, verdicts = compare.compare_with_baseline(thresholds, same, baseline, "run 0001")
    assert failures == [] and [v.outcome for v in verdicts] == ["ok"]


def test_pipeline_cpu_per_example_is_gated_where_its_samples_were_saved(thresholds):
    baseline = {"optimized": {"cpu_s_per_example": saved(samples=noisy(1e-3, 6))}}
    costlier = {"optimized": {"cpu_s_per_example": saved(samples=noisy(1.3e-3, 6, seed=1))}}
    (failure,) = compare.check_baseline(thresholds, costlier, baseline, "run 0001")
    assert "optimized cpu_s_per_example" in str(failure) and "tolerance +15%" in str(failure)
    # A run saved before samples were kept: its single value against the tolerance.
    old = {"optimized": {"cpu_s_per_example": saved(1e-3)}}
    (failure,) = compare.check_baseline(
        thresholds, {"optimized": {"cpu_s_per_example": saved(1.2e-3)}}, old, "r"
    )
    assert "cpu_s_per_example = 0.0012, limit <= 0.00115" in str(failure)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[statistics]\ntest = "t-test"\n', ":2: test must be one of mann-whitney, bootstrap"),
        ("[statistics]\nalpha = 0.7\n", ":2: alpha must be a number in (0.0, 0.5), got 0.7"),
        ("[statistics]\nlevel = 0.05\n", ":2: unknown key 'level' in [statistics]"),
    ],
)
def test_a_bad_statistics_section_is_one_line_naming_the_line(tmp_path, text, message):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        gates.load_thresholds(path)
    assert message in str(caught.value)


def test_the_trials_find_the_smallest_drop_detected_nine_times_in_ten():
    from trials.gate_trials import Tally, smallest_detected

    shipped = gates.load_thresholds()
    steady = [noisy(0.62, 6, 0.01, seed) for seed in range(4)]
    smallest, rates = smallest_detected(steady, shipped)
    # Beyond the 10% tolerance, and found as soon as the drop clears it.
    assert smallest is not None and 0.1 < smallest <= 0.16
    assert rates[0.04] == 0.0
    # Runs that drift 20% apart hide a drop of the same size.
    drifting = [noisy(0.62 * level, 6, 0.01, 9) for level in (1.0, 0.8, 1.0, 0.8)]
    assert smallest_detected(drifting, shipped)[0] > 0.2
    assert Tally(3, 3).rate() == "3/3 [0.44, 1.00]"
    assert Tally(0, 20).rate() == "0/20 [0.00, 0.16]"


@pytest.mark.parametrize(
    ("regression", "lost"),
    [
        ("no_prefetch", ["a prefetch"]),
        ("no_cache", ["a cache"]),
        ("sequential_read", ["parallel reads (interleave)"]),
        ("serial_map", ["a parallel map"]),
        ("unvectorized_augment", ["a map after the batch (vectorized)"]),
        ("costly_augment", []),  # more work, no step lost: for the measurements to find
    ],
)
def test_a_lost_optimization_step_fails_against_the_baseline(thresholds, regression, lost):
    import pipelines
    from benchmarks.judging import structure
    from trials.inject import regressed

    optimized = pipelines.get("optimized")
    changed = regressed(regression, optimized)
    steps = changed.describe()
    # What the steps declare, and (for a run saved before that) what their words say.
    assert structure.lost(optimized.optimizations(), changed.optimizations()) == lost
    assert (
        structure.lost(structure.from_text(optimized.describe()), structure.from_text(steps))
        == lost
    )
    expected = (
        [
            f"GATE FAILED optimized: lost {lost[0]}: steps were {optimized.describe()}, now {steps}"
            " (from baseline r)"
        ]
        if lost
        else []
    )
    then = {"steps": optimized.describe(), "optimizations": optimized.optimizations()}
    now = {"steps": steps, "optimizations": changed.optimizations()}
    for before in (then, {"steps": then["steps"]}):  # a baseline saved before the counts
        failures = compare.check_baseline(
            thresholds, {"optimized": now}, {"optimized": before}, "r"
        )
        assert [str(f) for f in failures] == expected


def test_a_new_step_that_declares_its_speed_is_seen_whatever_its_words():
    import dataclasses as dc

    import pipelines
    from benchmarks.judging import structure

    @dc.dataclass(frozen=True)
    class MyPrefetch:
        buffer: int = 4

        def apply(self, ds, ctx):
            return ds.prefetch(self.buffer)

        def speed(self, batched):
            return ("prefetch",)

        def __str__(self):
            return f"prefetch({self.buffer})"

    optimized = pipelines.get("optimized")
    mine = dc.replace(optimized, steps=(*optimized.steps[:-1], MyPrefetch()))
    assert mine.optimizations() == optimized.optimizations()
    assert structure.lost(optimized.optimizations(), mine.optimizations()) == []
    without = dc.replace(optimized, steps=optimized.steps[:-1])
    assert structure.lost(mine.optimizations(), without.optimizations()) == ["a prefetch"]


def test_the_trials_estimate_base_against_head_from_windows_of_unchanged_runs():
    from trials.gate_trials import alternated

    shipped = gates.load_thresholds()
    steady = [noisy(0.62, 4, 0.02, seed) for seed in range(8)]
    found = alternated(steady, shipped)
    assert found[0.0] == (0, 6)  # three windows, both orientations: no alarm
    assert found[0.14] == (6, 6)  # twice the 7% tolerance: every one


def test_one_engine_pairs_the_same_samples_as_it_is_told(thresholds):
    """Passes that drift by +-20% hide a steady 10% loss from a comparison of two runs;
    paired pass by pass, as head and base timed in the same run are, it is plain."""
    drift = [1.0, 1.2, 0.8, 1.15, 0.85, 1.1, 0.9, 1.05]
    wobble = noisy(1.0, len(drift), spread=0.003, seed=3)
    base = [0.6 * d for d in drift]
    head = [0.54 * d * w for d, w in zip(drift, wobble, strict=True)]
    sides = [
        compare.Sides(
            "mine",
            {"fraction_of_ceiling": saved(samples=head)},
            "base mine@main",
            {"fraction_of_ceiling": saved(samples=base)},
        )
    ]
    strict = dataclasses.replace(
        thresholds,
        defaults={
            **thresholds.defaults,
            "max_throughput_drop": gates.Limit("max_throughput_drop", 0.05, "test"),
        },
    )
    _, (apart,) = compare.compare(strict, sides, compare.Across.RUNS)
    assert apart.outcome != "regression" and "mann-whitney" in str(apart)
    failures, (paired,) = compare.compare(strict, sides, compare.Across.SAME_RUN)
    assert paired.outcome == "regression" and "paired t" in str(paired)
    assert [f.metric for f in failures] == ["fraction_of_ceiling"]
