"""What a stand-in run says of a variant: what holds its steady state back, and what a
change between base and head means for training on the device."""

from __future__ import annotations

import math

from benchmarks.diagnosing.held_back import held_back_line
from benchmarks.judging import compare, gates
from benchmarks.saving import metrics
from benchmarks.saving.schema import nested
from tests.constructed import by_variant

ALTERNATED, ALTERNATED_ALONE = metrics.ALTERNATED.name, metrics.ALTERNATED_ALONE.name

DEVICE = {"device": "stand-in 2.00 ms a step", "step_time_s": 0.002, "step_time_origin": "given"}


def fed(fraction: float, interval: list[float], **more) -> dict:
    info = {"steady_fraction_of_ceiling": fraction, "steady_fraction_of_ceiling_ci": interval}
    return nested({**DEVICE, **info, **more})


def test_a_variant_below_the_ceiling_is_told_where_its_steady_time_goes():
    info = fed(
        0.6,
        [0.57, 0.62],
        steady_input_bound=0.4,
        epoch_start_s=0.032,
        steady_examples_per_s=16000.0,
        examples_per_s=8000.0,
        epoch_s=0.25,
    )
    bottleneck = {"limiting_stage": "open", "share_of_input": {"open": 0.38}}
    line = held_back_line("optimized", info, bottleneck)
    assert line.startswith("held back: optimized keeps stand-in 2.00 ms a step fed 0.60")
    assert "it waits for input 40% of its steady time" in line
    # 2000 examples an epoch at 16000/s: a steady epoch of 0.125 s, 26% of it waiting.
    assert "each later epoch waits 0.032 s for its first batch, 26% of a steady epoch" in line
    assert "limiting stage: open (38% of input time)" in line


def test_a_variant_that_may_keep_the_device_fed_gets_no_line():
    assert held_back_line("mine", fed(0.93, [0.90, 0.96]), None) is None
    assert held_back_line("mine", {"device": "CPU"}, None) is None
    # Input-bound: its bottleneck line says what to change.
    assert held_back_line("slow", fed(0.05, [0.04, 0.06], steady_input_bound=0.95), None) is None


def paired_run(head_alone: float, head_paced: float, rounds: int = 12) -> dict:
    """Head and base metrics whose alternated rounds move by the given ratios (+-1%)."""
    wobble = [1 + 0.01 * math.sin(i) for i in range(rounds)]
    base = {ALTERNATED: [100.0 * w for w in wobble], ALTERNATED_ALONE: [300.0 * w for w in wobble]}
    head = {
        ALTERNATED: [100.0 * head_paced * w for w in reversed(wobble)],
        ALTERNATED_ALONE: [300.0 * head_alone * w for w in reversed(wobble)],
    }
    return by_variant(
        {"mine": {**DEVICE, "samples": head}, "mine@main": {**DEVICE, "samples": base}}
    )


def test_a_slower_pipeline_is_judged_alone_and_said_in_device_terms(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text(
        "[base_vs_head]\nmax_steady_throughput_drop = 0.03\nmax_alone_throughput_drop = 0.03\n"
    )
    thresholds = gates.load_thresholds(path)
    failures, verdicts = compare.compare_pairs(
        thresholds, paired_run(head_alone=0.5, head_paced=0.8), {"mine": "mine@main"}
    )
    by_metric = {v.metric.name: v for v in verdicts}
    alone, paced = by_metric[ALTERNATED_ALONE], by_metric[ALTERNATED]
    assert alone.outcome == paced.outcome == "regression"
    assert {f.metric for f in failures} == {ALTERNATED, ALTERNATED_ALONE}
    assert "the pipeline alone goes 50% slower" in str(alone)
    assert "training on stand-in 2.00 ms a step goes 20% slower" in str(alone)
    assert "training on stand-in 2.00 ms a step goes 20% slower" in str(paced)


def test_a_change_the_device_hides_is_caught_alone_and_said_to_cost_nothing():
    failures, verdicts = compare.compare_pairs(
        gates.load_thresholds(gates.DEFAULT_THRESHOLDS),
        paired_run(head_alone=0.7, head_paced=1.0),
        {"mine": "mine@main"},
    )
    by_metric = {v.metric.name: v for v in verdicts}
    assert by_metric[ALTERNATED_ALONE].outcome == "regression"
    assert by_metric[ALTERNATED].outcome == "ok"
    assert [f.metric for f in failures] == [ALTERNATED_ALONE]
    assert "training on stand-in 2.00 ms a step goes as fast" in str(by_metric[ALTERNATED_ALONE])
