"""Bottleneck analysis on constructed timings: the profiler's classes, limiting stage, advice."""

from __future__ import annotations

import pytest

from benchmarks.bottleneck import StageTimes, analyze, classify
from pipelines.timeline import TRAINER_STAGES
from pipelines.tracing import Stage

OPEN = Stage("open", "open")
READ = Stage("read", "read")
PARALLEL_READ = Stage("read", "read", parallel=True)
DECODE = Stage("map(decode)", "map")
PARALLEL_DECODE = Stage("map(decode)", "map", parallel=True)
BATCH = Stage("batch", "batch", batched=True)


def times(
    stages: tuple[Stage, ...],
    busy: list[dict[str, float]],
    input_bound: float,
    active: list[dict[str, float]] | None = None,
    **facts: bool,
) -> StageTimes:
    return StageTimes(
        stages=(*stages, *TRAINER_STAGES),
        busy_s=tuple(busy),
        active_s=tuple(active or busy),
        epoch_s=tuple(10.0 for _ in busy),
        input_bound=input_bound,
        **facts,
    )


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, "not input-bound"),
        (0.049, "not input-bound"),
        (0.05, "moderately input-bound"),
        (0.199, "moderately input-bound"),
        (0.20, "highly input-bound"),
        (0.9, "highly input-bound"),
    ],
)
def test_classes_follow_the_profiler(fraction, expected):
    assert classify(fraction) == expected


def test_a_sequential_map_that_dominates_is_told_to_parallelize_or_vectorize():
    busy = {"open": 0.2, "read": 1.0, "map(decode)": 6.1, "batch": 0.1, "train step": 3.0}
    result = analyze(times((OPEN, READ, DECODE, BATCH), [busy], 0.6, prefetches=True))
    assert result.classification == "highly input-bound"
    assert result.limiting_stage == "map(decode)"
    assert result.share_of_input["map(decode)"] == pytest.approx(6.1 / 7.4)
    assert result.suggestions[0] == (
        "map(decode) takes 82% of input time and runs sequentially: parallelize it"
        " (num_parallel_calls=AUTOTUNE) or vectorize it (batch before the map)"
    )


def test_a_parallel_stage_is_judged_by_its_wall_time_not_its_summed_calls():
    # 8 parallel decodes sum to 8 s but ran for 1 s of wall time; reading ran for 3 s.
    busy = {"open": 0.1, "read": 3.0, "map(decode)": 8.0}
    active = {"open": 0.1, "read": 3.0, "map(decode)": 1.0}
    result = analyze(times((OPEN, READ, PARALLEL_DECODE), [busy], 0.3, [active], caches=True))
    assert result.limiting_stage == "read"
    assert "read shards in parallel" in result.suggestions[0]


def test_open_and_read_dominating_the_first_epoch_suggest_a_cache_when_data_fits():
    first = {"open": 3.0, "read": 4.0, "map(decode)": 1.0}
    later = {"open": 3.0, "read": 4.0, "map(decode)": 1.0}
    stages = (OPEN, PARALLEL_READ, PARALLEL_DECODE)
    fits = analyze(times(stages, [first, later], 0.3, prefetches=True, fits_in_memory=True))
    assert any(
        s.startswith("open/read take 88% of the first epoch's input time and the data fits")
        and s.endswith("cache it after decoding")
        for s in fits.suggestions
    ), fits.suggestions
    too_big = analyze(times(stages, [first, later], 0.3, prefetches=True, fits_in_memory=False))
    assert not any("cache" in s for s in too_big.suggestions)
    cached = analyze(times(stages, [first, later], 0.3, prefetches=True, caches=True))
    assert not any("cache" in s for s in cached.suggestions)


def test_no_prefetch_while_waiting_suggests_one():
    busy = {"open": 0.1, "read": 2.0, "map(decode)": 1.0}
    result = analyze(times((OPEN, PARALLEL_READ, PARALLEL_DECODE), [busy], 0.12, caches=True))
    assert result.classification == "moderately input-bound"
    assert any(s.endswith("prefetch at the end of the pipeline") for s in result.suggestions)


def test_a_model_bound_run_points_at_the_model():
    busy = {"open": 0.1, "read": 2.0, "map(decode)": 1.0, "train step": 9.0}
    result = analyze(times((OPEN, READ, DECODE), [busy], 0.02))
    assert result.classification == "not input-bound"
    assert result.limiting_stage == "train step"
    assert result.suggestions[0].startswith("the model limits throughput")
    assert "not input-bound (2% waiting); limited by train step" in result.summary()
