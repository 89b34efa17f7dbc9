"""Interleaved passes, paired ratios and their intervals, on constructed timings."""

from __future__ import annotations

import math
import statistics

import pytest
from constructed import constructed_passes
from scipy import stats

from benchmarks.measuring.intervals import Estimate, geometric, mean, paired_ratio
from benchmarks.measuring.pass_figures import CEILING, pass_estimates, pass_figures, unreliable
from benchmarks.measuring.passes import Passes, PassPlan, Trial, run_passes
from benchmarks.report.summary import (
    FULL_EPOCH_COLUMNS,
    STARTUP_COLUMNS,
    STEADY_COLUMNS,
    summary_table,
)
from benchmarks.saving.metrics import EPOCH_S

TRIALS = [CEILING] + [Trial("training", v) for v in ("naive", "cache", "prefetch", "optimized")]


def recording(calls: list[Trial], seconds: float = 1.0, seeds: list[int] | None = None):
    def run_one(trial: Trial, seed: int) -> tuple[str, float]:
        calls.append(trial)
        if seeds is not None:
            seeds.append(seed)
        return f"result {len(calls)}", seconds

    return run_one


def test_each_pass_runs_every_trial_once_in_a_shuffled_recorded_order():
    calls: list[Trial] = []
    passes = run_passes(TRIALS, recording(calls), PassPlan(6, 6, math.inf), seed=11)
    assert passes.count == 6 and passes.stopped == "as asked"
    # The order recorded is the order run, and each pass holds every trial once.
    assert [trial for order in passes.orders for trial in order] == calls
    assert all(sorted(order) == sorted(TRIALS) for order in passes.orders)
    assert len({tuple(order) for order in passes.orders}) > 1  # not one fixed order
    # Where a trial ran differs from pass to pass (not only the order of the rest).
    assert len({order.index(CEILING) for order in passes.orders}) > 1
    saved = passes.to_dict()
    assert saved["seed"] == 11 and saved["passes"] == 6
    assert saved["orders"][0] == [str(trial) for trial in passes.orders[0]]
    # Seeded: the same seed gives the same orders, another seed others.
    again = run_passes(TRIALS, recording([]), PassPlan(6, 6, math.inf), seed=11)
    other = run_passes(TRIALS, recording([]), PassPlan(6, 6, math.inf), seed=12)
    assert again.orders == passes.orders and other.orders != passes.orders
    # Results are kept per trial in pass order.
    first = calls.index(TRIALS[2])
    assert passes.of(TRIALS[2])[0] == f"result {first + 1}"


def test_a_variant_and_its_base_run_side_by_side_in_every_pass():
    head, base = Trial("training", "mine"), Trial("training", "mine@main")
    trials = [*TRIALS, head, base]
    passes = run_passes(
        trials, recording([]), PassPlan(12, 12, math.inf), seed=5, together=[(head, base)]
    )
    for order in passes.orders:
        assert sorted(order) == sorted(trials)
        assert abs(order.index(head) - order.index(base)) == 1
    # Still shuffled: where the pair runs, and which of the two goes first.
    assert len({order.index(head) for order in passes.orders}) > 2
    assert {order.index(head) < order.index(base) for order in passes.orders} == {True, False}
    # A group whose trials are not all planned is ignored.
    alone = run_passes(
        TRIALS, recording([]), PassPlan(2, 2, math.inf), seed=5, together=[(head, base)]
    )
    assert all(sorted(order) == sorted(TRIALS) for order in alone.orders)


def test_each_pass_is_a_replicate_with_its_own_seed_shared_by_its_trials():
    calls: list[Trial] = []
    seeds: list[int] = []
    passes = run_passes(
        TRIALS, recording(calls, seeds=seeds), PassPlan(5, 5, math.inf), seed=3, run_seed=7
    )
    per_pass = [seeds[k * len(TRIALS) : (k + 1) * len(TRIALS)] for k in range(5)]
    # Every trial of a pass gets that pass's seed: comparisons stay paired.
    assert all(len(set(group)) == 1 for group in per_pass)
    assert [group[0] for group in per_pass] == passes.pass_seeds
    # Each pass its own seed, drawn from the run's seed: the same run seed repeats them.
    assert len(set(passes.pass_seeds)) == 5
    assert passes.to_dict()["pass_seeds"] == passes.pass_seeds
    again = run_passes(TRIALS, recording([]), PassPlan(5, 5, math.inf), seed=4, run_seed=7)
    other = run_passes(TRIALS, recording([]), PassPlan(5, 5, math.inf), seed=3, run_seed=8)
    assert again.pass_seeds == passes.pass_seeds
    assert not set(other.pass_seeds) & set(passes.pass_seeds)


def constant(value: float):
    return lambda passes: [Estimate(value, value * 0.9, value * 1.1, passes.count)]


def test_passes_are_added_until_the_intervals_are_precise():
    widths = iter([0.30, 0.20, 0.04, 0.01])  # after passes 3, 4, 5, 6

    def narrowing(passes: Passes) -> list[Estimate]:
        width = next(widths)
        return [Estimate(1.0, 1 - width, 1 + width, passes.count)]

    passes = run_passes(TRIALS, recording([]), PassPlan(3, 10, math.inf), 0, narrowing)
    assert passes.count == 5 and passes.stopped == "precise"


def test_trials_asked_for_the_first_passes_only_stop_after_the_fewest_passes():
    twins = [Trial("accuracy", "ceiling"), Trial("accuracy", "naive")]
    calls: list[Trial] = []
    passes = run_passes(
        TRIALS + twins,
        recording(calls),
        PassPlan(2, 5, math.inf),
        0,
        constant(2.0),
        first_passes_only=twins,
    )
    assert passes.count == 5
    assert all(len(passes.of(twin)) == 2 for twin in twins)
    assert all(len(passes.of(trial)) == 5 for trial in TRIALS)
    assert all(twin not in order for order in passes.orders[2:] for twin in twins)
    assert calls.count(twins[0]) == 2


def test_passes_stop_at_the_time_limit_and_at_the_most_passes():
    ticks = iter(range(10_000))  # every clock reading is one second later
    plan = PassPlan(2, 50, time_limit_s=40.0)
    passes = run_passes(TRIALS, recording([]), plan, 0, constant(2.0), lambda: next(ticks))
    # A pass reads the clock 2 times (start, end): the limit leaves no room for another.
    assert passes.stopped == "time limit" and 2 <= passes.count < 50
    assert passes.elapsed_s <= 40.0 + 2 * (2 + 1)
    capped = run_passes(TRIALS, recording([]), PassPlan(2, 4, math.inf), 0, constant(2.0))
    assert capped.count == 4 and capped.stopped == "max passes"


def test_ratios_are_paired_within_a_pass_so_a_drifting_machine_cancels_out():
    # The machine slows down 1x, 2x, 4x over the passes; cache is always twice as fast.
    drift = [1.0, 2.0, 4.0]
    passes = constructed_passes(
        {
            CEILING: [1.0 * d for d in drift],
            Trial("training", "naive"): [8.0 * d for d in drift],
            Trial("training", "augmented"): [5.0 * d for d in drift],
            Trial("training", "cache"): [4.0 * d for d in drift],
        }
    )
    cache = pass_figures(passes)[Trial("training", "cache")]
    assert cache.speedup_over_augmented.value == pytest.approx(1.25)
    assert cache.speedup_over_naive.value == pytest.approx(2.0)
    assert cache.speedup_over_naive.to_list() == pytest.approx([2.0, 2.0])
    assert cache.fraction_of_ceiling.value == pytest.approx(0.25)
    # Unpaired, the medians would say the same here, but the spread of either side is 4x.
    assert cache.epoch_s.half_width > 1.0
    figures = cache.figures()
    assert figures["ceiling_slowdown"].value == pytest.approx(4.0)
    assert figures["ceiling_slowdown"].to_list() == pytest.approx([4.0, 4.0])
    assert figures["input_bound"].value == pytest.approx(0.25)
    assert cache.epoch_s.n == 3


def test_an_interval_is_the_t_interval_of_the_log_ratios():
    ratios = [1.9, 2.0, 2.2, 2.1]
    logs = [math.log(r) for r in ratios]
    margin = stats.t.ppf(0.975, 3) * statistics.stdev(logs) / 2
    estimate = paired_ratio([r * 3 for r in ratios], [3.0] * 4)
    assert estimate.value == pytest.approx(math.exp(statistics.mean(logs)))
    assert estimate.low == pytest.approx(math.exp(statistics.mean(logs) - margin))
    assert estimate.high == pytest.approx(math.exp(statistics.mean(logs) + margin))
    assert geometric([2.0]).to_list() is None  # one pass: no interval
    share = mean([0.2, 0.4])
    assert share.value == pytest.approx(0.3)
    assert share.high - share.value == pytest.approx(stats.t.ppf(0.975, 1) * 0.1414213 / 1.4142135)
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])


def test_an_impossible_fraction_of_the_ceiling_is_reported_as_unreliable():
    passes = constructed_passes(
        {
            CEILING: [1.20, 1.26, 1.31],
            Trial("training", "naive"): [4.0, 4.1, 3.9],
            Trial("training", "optimized"): [1.00, 1.02, 1.01],  # "faster than the ceiling"
        }
    )
    (doubt,) = [
        d
        for d in unreliable(pass_figures(passes), 0.05)
        if d.trial.variant == "optimized" and d.metric == "fraction_of_ceiling"
    ]
    assert doubt.impossible and doubt.metric == "fraction_of_ceiling"
    assert str(doubt).startswith("unreliable measurement: optimized fraction_of_ceiling = 1.24 [")
    assert str(doubt).endswith("faster than the ceiling, which is impossible")


def test_a_wide_interval_is_reported_and_a_precise_one_is_not():
    passes = constructed_passes(
        {
            CEILING: [1.0, 1.0, 1.0],
            Trial("training", "naive"): [4.0, 4.0, 4.0],
            Trial("training", "cache"): [2.0, 3.0, 1.5],  # +-50% and more
            Trial("training", "optimized"): [1.5, 1.5, 1.5],
        }
    )
    doubts = unreliable(pass_figures(passes), 0.05)
    # Judged in steady state (the full-epoch ratios are reported, not judged).
    assert {(d.trial.variant, d.metric) for d in doubts} == {
        ("cache", "steady_speedup_over_naive"),
        ("cache", "steady_fraction_of_ceiling"),
    }
    assert all(not d.impossible for d in doubts)
    assert "wider than +-5% after 3 passes" in str(doubts[0])
    # The adaptive plan sees the same ratios: naive's speedup over itself is not
    # one, its fraction of the ceiling is.
    assert len(pass_estimates(passes)) == 5


def test_the_summary_table_shows_each_figure_with_its_interval():
    passes = constructed_passes(
        {
            CEILING: [1.0, 1.1, 1.0],
            Trial("training", "naive"): [4.0, 4.4, 4.0],
            Trial("training", "cache"): [2.0, 2.2, 2.1],
        }
    )
    infos = []
    for trial, figures in pass_figures(passes).items():
        infos.append({"kind": trial.kind, "variant": trial.variant, **figures.saved()})
    lines = summary_table(infos, STARTUP_COLUMNS + FULL_EPOCH_COLUMNS)
    assert lines[0].split()[:4] == ["variant", "first", "batch", "s"]
    (cache,) = [line for line in lines if line.startswith("cache")]
    speedup = pass_figures(passes)[Trial("training", "cache")].speedup_over_naive
    assert f"{speedup.value:.2f}x [{speedup.low:.2f}, {speedup.high:.2f}]" in cache
    (cache,) = [line for line in summary_table(infos, STEADY_COLUMNS) if line.startswith("cache")]
    steady = pass_figures(passes)[Trial("training", "cache")].steady_speedup_over_naive
    assert f"{steady.value:.2f}x [{steady.low:.2f}, {steady.high:.2f}]" in cache


def test_the_time_left_counts_every_pass_asked_for_past_the_time_limit():
    from benchmarks.measuring.passes import _remaining

    passes = Passes((Trial("training", "naive"),), seed=1)
    passes.orders = [[]] * 3  # three passes made, in 120 s: 40 s a pass
    exact = PassPlan(3, 10, 140.0).exactly(30)
    assert _remaining(passes, exact, before_pass_s=120.0, into_pass_s=10.0) == 27 * 40.0 - 10.0
    # Not asked for: the time limit bounds it (room for one more pass).
    assert _remaining(passes, PassPlan(3, 30, 140.0), 120.0, 10.0) == 20.0 + 40.0 - 10.0


def naive_and_ceiling_in_passes():
    """A run's records of `naive` and the ceiling, trained in three constructed passes."""
    from benchmarks.measuring.records import RunRecords

    seconds = {CEILING: [1.0, 1.3, 1.0], Trial("training", "naive"): [4.0, 6.0, 4.4]}
    passes = constructed_passes(seconds)
    records = RunRecords(dict)
    records.passes = passes
    for trial in seconds:
        records.training(trial.variant, trial.variant, passes.of(trial), kind=trial.kind)
    return records, passes


def test_a_trained_variant_saves_its_estimates_where_it_was_timed_in_the_passes():
    """Its epoch time is the passes' estimate with its interval, not the median of its
    runs written and then overwritten; timed on its own, it is the median."""
    from benchmarks.run.result import derive

    records, passes = naive_and_ceiling_in_passes()
    records.training("served", "naive_service", passes.of(Trial("training", "naive")))
    metrics = derive(records).metrics
    estimate = pass_figures(passes)[Trial("training", "naive")].epoch_s
    assert EPOCH_S.of(metrics["naive"]) == estimate.value
    assert EPOCH_S.interval_of(metrics["naive"]) == estimate.to_list()
    assert metrics["naive"]["passes"] == 3
    assert EPOCH_S.of(metrics["served"]) == 4.4 / 2  # the median run's, per epoch
    assert EPOCH_S.interval_of(metrics["served"]) is None


def test_a_record_saves_each_metric_as_one_value_with_its_interval_and_samples():
    """Schema 4: a figure timed in the passes keeps its value, interval and one sample a
    pass together; one recorded per run, its value and one sample a run; what is not a
    declared metric stays as recorded, and nothing is left in the old flat layout."""
    from benchmarks.run.result import derive
    from benchmarks.saving.metrics import EXAMPLES_PER_S, FRACTION_OF_CEILING

    records, passes = naive_and_ceiling_in_passes()
    info = derive(records).metrics["naive"]
    fraction = pass_figures(passes)[Trial("training", "naive")].fraction_of_ceiling
    assert FRACTION_OF_CEILING.estimate_of(info).value == fraction.value
    assert FRACTION_OF_CEILING.interval_of(info) == fraction.to_list()
    assert FRACTION_OF_CEILING.samples_of(info) == list(fraction.samples)
    rates = EXAMPLES_PER_S.estimate_of(info)
    assert rates.interval is None and len(rates.samples) == 3  # one a run
    assert rates.value == pytest.approx(640 * 2 / 4.4)  # the last run's
    assert info["rounds"] == 3 and isinstance(info["train_s"], float)
    assert "samples" not in info and not [key for key in info if key.endswith("_ci")]
