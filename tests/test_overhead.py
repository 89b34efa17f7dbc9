"""The tracing-overhead figures: ratios of medians, split by epoch, from constructed runs."""

from __future__ import annotations

import pytest

from benchmarks.measuring.records import RunRecords
from benchmarks.saving.metrics import TRACING_OVERHEAD
from models.trainer import EpochStats


def run(*walls: float) -> list[EpochStats]:
    """A training run whose epochs took ``walls`` seconds (CPU time: twice that)."""
    return [
        EpochStats(number, wall, 10, 640, 0.1, wall - 0.1, 1.0, 0.5, cpu_s=2 * wall)
        for number, wall in enumerate(walls, start=1)
    ]


def overhead(untraced: list[list[EpochStats]], traced: list[list[EpochStats]]) -> dict:
    records = RunRecords(dict)
    return records.tracing_overhead("t", "optimized", untraced, traced).to_extra_info()


def test_the_overhead_is_split_between_the_first_epoch_and_the_rest():
    untraced = [run(1.0, 0.5, 0.5), run(1.2, 0.6, 0.6), run(0.8, 0.4, 0.4)]
    # Tracing makes the first epoch 10% slower and the later ones 2% slower;
    # one traced run was disturbed, and the medians ignore it.
    traced = [run(1.1, 0.51, 0.51), run(5.0, 3.0, 3.0), run(0.88, 0.408, 0.408)]
    info = overhead(untraced, traced)
    assert info["tracing_overhead_first_epoch"] == pytest.approx(0.10)
    assert info["tracing_overhead_later_epochs"] == pytest.approx(0.02)
    assert TRACING_OVERHEAD.of(info) == pytest.approx(2.12 / 2.0 - 1)
    assert info["tracing_cpu_overhead"] == pytest.approx(2.12 / 2.0 - 1)
    assert info["untraced_s"] == pytest.approx([2.0, 2.4, 1.6])


def test_one_epoch_has_no_later_epochs_figure():
    info = overhead([run(1.0)], [run(1.05)])
    assert TRACING_OVERHEAD.of(info) == pytest.approx(info["tracing_overhead_first_epoch"])
    assert "tracing_overhead_later_epochs" not in info
