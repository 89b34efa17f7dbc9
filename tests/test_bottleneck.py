"""Bottleneck analysis on constructed timings: the profiler's classes, limiting stage, advice."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from benchmarks.diagnosing.bottleneck import StageTimes, analyze, classify
from benchmarks.saving.schema import nested
from pipelines.observing.timeline import TEST_STEP as TEST
from pipelines.observing.timeline import TRAINER_STAGES
from pipelines.observing.tracing import Stage

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
        s.startswith("open, read take 88% of the first epoch's input time, the same work")
        and s.endswith("the data fits in memory: cache it after decoding")
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


def test_every_second_of_an_epoch_is_attributed_to_a_named_part():
    from pipelines.observing.timeline import (
        EVALUATION_START,
        ITERATOR_START,
        TEST_STEP,
        TRAIN_STEP,
        UNEXPLAINED,
        WAIT,
        Span,
        Timeline,
    )

    # Epoch 1 runs 0..10 s: the iterator starts (0.5 s), two waits and steps with a
    # 0.1 s gap, the test iterator starts (0.4 s), two test steps, 0.2 s to the end.
    spans = (
        Span(WAIT.name, 0.5, 1.5, 1),
        Span(TRAIN_STEP.name, 1.5, 4.0, 1),
        Span(WAIT.name, 4.1, 5.0, 1),
        Span(TRAIN_STEP.name, 5.0, 7.5, 1),
        Span(TEST_STEP.name, 7.9, 8.8, 1),
        Span(TEST_STEP.name, 8.8, 9.8, 1),
        Span("read", 0.6, 3.0, 1),  # a pipeline stage: inside the waits, not counted again
    )
    timeline = Timeline((Stage("read", "read"), WAIT, TRAIN_STEP, TEST_STEP), ((0.0, 10.0),), spans)
    parts = timeline.attribution(1)
    assert parts == pytest.approx(
        {
            WAIT.name: 1.9,
            TRAIN_STEP.name: 5.0,
            TEST_STEP.name: 1.9,
            ITERATOR_START: 0.5,
            EVALUATION_START: 0.4,
            UNEXPLAINED: 0.3,
        }
    )
    assert sum(parts.values()) == pytest.approx(10.0)
    shares = analyze(
        dataclasses.replace(
            times((READ,), [{"read": 2.4}], 0.19), attribution=(parts,), epoch_s=(10.0,)
        )
    ).time_shares
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares[UNEXPLAINED] == pytest.approx(0.03)


def test_the_limiting_stage_is_the_largest_share_and_concurrency_is_calls_in_flight():
    # 19 reads in flight for 2 s: 38 s of summed calls, 2 s of the 10 s epoch.
    busy = {"open": 0.5, "read": 38.0, "map(decode)": 3.0}
    active = {"open": 0.5, "read": 2.0, "map(decode)": 3.0}
    result = analyze(
        times((OPEN, PARALLEL_READ, DECODE), [busy], 0.3, [active], caches=True, prefetches=True)
    )
    assert result.limiting_stage == max(result.share_of_input, key=result.share_of_input.get)
    assert result.limiting_stage == "map(decode)"
    assert all(share <= 1.0 for share in result.share_of_epoch.values())
    assert result.share_of_epoch["read"] == pytest.approx(0.2)
    assert result.in_flight["read"] == pytest.approx(19.0)
    assert result.in_flight["map(decode)"] == pytest.approx(1.0)


def test_an_input_bound_run_with_every_fix_in_place_still_gets_advice():
    busy = {"open": 0.1, "read": 0.5, "map(augment)": 6.0}
    augment = Stage("map(augment)", "map", parallel=True, batched=True)
    result = analyze(
        times((OPEN, PARALLEL_READ, augment), [busy], 0.18, caches=True, prefetches=True)
    )
    assert result.classification == "moderately input-bound"
    (advice,) = result.suggestions
    assert advice.startswith("map(augment) takes 91% of input time and already runs in parallel")
    assert "make its work cheaper" in advice
    assert "nothing to suggest" not in result.summary()


def test_a_run_becomes_a_trace_event_file_with_a_track_per_stage_and_lane():
    import json

    from pipelines.observing.timeline import TRAIN_STEP, WAIT, Span, Timeline

    read = Stage("read", "read", parallel=True)
    spans = (
        Span("read", 0.0, 2.0, 1, (0,)),
        Span("read", 0.5, 1.0, 1, (1,)),  # in flight with the first: a second lane
        Span("read", 1.5, 3.0, 1, (2,)),  # the second lane is free again
        Span(WAIT.name, 0.0, 1.0, 1),
        Span(TRAIN_STEP.name, 1.0, 3.5, 1),
    )
    timeline = Timeline((read, WAIT, TRAIN_STEP, TEST), ((0.0, 4.0),), spans)
    trace = json.loads(json.dumps(timeline.chrome_trace()))
    events = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert sorted(names.values()) == sorted(
        ["epochs", "read", "read #2", "wait for input", "train step", "test step"]
    )
    complete = [e for e in events if e["ph"] == "X" and e["cat"] != "epoch"]
    assert len(complete) == len(spans)
    assert {e["name"] for e in complete} == {"read", WAIT.name, TRAIN_STEP.name}
    # Every span kept, in microseconds; no track holds two overlapping events.
    assert sorted((e["ts"], e["dur"]) for e in complete if e["name"] == "read") == [
        (0.0, 2e6),
        (0.5e6, 0.5e6),
        (1.5e6, 1.5e6),
    ]
    for track in {e["tid"] for e in complete}:
        on_it = sorted((e["ts"], e["ts"] + e["dur"]) for e in complete if e["tid"] == track)
        assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(on_it))


def test_a_span_ending_where_the_next_begins_does_not_overlap_it_once_rounded():
    from pipelines.observing.timeline import Span, Timeline

    read = Stage("read", "read")
    # Rounded to 0.1 us apart, 0.06 -> 0.1 and a duration of 10.08 -> 10.1 would
    # end at 10.2, past the next span's start (10.14 -> 10.1).
    spans = (Span("read", 0.06e-6, 10.14e-6, 1, (0,)), Span("read", 10.14e-6, 20e-6, 1, (1,)))
    timeline = Timeline((read, TEST), ((0.0, 1e-4),), spans)
    first, second = [
        e for e in timeline.chrome_trace()["traceEvents"] if e["ph"] == "X" and e["cat"] == "read"
    ]
    assert first["tid"] == second["tid"]  # one lane: they do not overlap
    assert first["ts"] + first["dur"] <= second["ts"] + 1e-9


def test_a_second_stage_with_a_large_share_gets_its_advice_too():
    # Reading limits; decoding, sequential, takes a third: removing the first
    # bottleneck would leave it to limit, so it is named now.
    busy = {"open": 0.1, "read": 5.0, "map(decode)": 3.0, "batch": 0.5}
    facts = {"prefetches": True, "caches": True}
    result = analyze(times((OPEN, READ, DECODE, BATCH), [busy], 0.6, **facts))
    assert result.limiting_stage == "read"
    assert result.fixes == ("parallel_read", "parallelize:map(decode)", "vectorize:map(decode)")
    assert result.suggestions[1].startswith("map(decode) takes 35% of input time")
    # Under a fifth of input time: not named.
    busy["map(decode)"] = 1.0
    result = analyze(times((OPEN, READ, DECODE, BATCH), [busy], 0.6, **facts))
    assert result.fixes == ("parallel_read",)


def test_each_suggestion_names_the_changes_it_would_make():
    busy = {"generator": 7.0, "map(decode)": 1.0, "batch": 0.5}
    stages = (Stage("generator", "generator"), DECODE, BATCH)
    result = analyze(times(stages, [busy], 0.8))
    # The generator reads the files: a cache after decoding spares it later epochs.
    assert result.fixes == ("tf_data_read", "parallel_read", "cache", "prefetch")
    function = analyze(times((Stage("function(f)", "function", batched=True),), [{}], 0.8))
    assert function.fixes == ()


def test_decoding_before_the_first_random_step_counts_for_the_cache_advice():
    augment = Stage("map(augment)", "map")
    first = {"read": 1.0, "map(decode)": 3.0, "map(augment)": 4.0}
    stages = (READ, DECODE, augment)
    spared = frozenset({"open", "read", "map(decode)"})
    result = analyze(times(stages, [first, first], 0.5, prefetches=True, cacheable=spared))
    assert result.suggestions[-1].startswith(
        "read, map(decode) take 50% of the first epoch's input time, the same work every epoch"
    )
    assert "cache" in result.fixes
    # Reading alone is an eighth: not worth a cache.
    result = analyze(times(stages, [first, first], 0.5, prefetches=True))
    assert "cache" not in result.fixes


def test_a_batch_waiting_on_a_slow_read_is_not_the_limiting_stage():
    from pipelines.observing.timeline import Span, Timeline

    # Many small files: 60 opens of 0.08 s and reads of 0.02 s, one at a time, while a
    # batch (behind a shuffle buffer that fills from them) waits from its request at
    # 0 s to 6.1 s; the batching itself takes the last 0.1 s.
    spans = []
    for k in range(60):
        spans.append(Span("open", 0.1 * k, 0.1 * k + 0.08, 1))
        spans.append(Span("read", 0.1 * k + 0.08, 0.1 * k + 0.1, 1))
    spans.append(Span("batch", 0.0, 6.1, 1))
    stages = (OPEN, READ, BATCH, *TRAINER_STAGES)
    timeline = Timeline(stages, ((0.0, 6.2),), tuple(spans))
    active = timeline.active_s(1)
    # The batch's own time is what no earlier stage accounts for: 0.1 s, not 6.1 s.
    assert active["batch"] == pytest.approx(0.1)
    assert active["open"] == pytest.approx(4.8) and active["read"] == pytest.approx(1.2)
    result = analyze(times((OPEN, READ, BATCH), [timeline.busy_s(1)], 0.9, [active]))
    assert result.limiting_stage == "open"
    assert result.share_of_input["batch"] < 0.02


def test_subtracting_intervals_keeps_only_what_no_other_covers():
    from pipelines.observing.timeline import subtract_intervals

    assert subtract_intervals([(0, 10)], [(1, 2), (4, 5)]) == [(0, 1), (2, 4), (5, 10)]
    assert subtract_intervals([(0, 1), (3, 4)], [(0.5, 3.5)]) == [(0, 0.5), (3.5, 4)]
    assert subtract_intervals([(0, 1)], [(0, 1)]) == []
    assert subtract_intervals([(0, 1)], []) == [(0, 1)]


def test_parallel_opens_that_dominate_are_named_as_the_small_files_bottleneck():
    parallel_open = Stage("open", "open", parallel=True)
    busy = {"open": 6.0, "read": 0.5, "batch": 0.1}
    result = analyze(times((parallel_open, PARALLEL_READ, BATCH), [busy], 0.6))
    assert result.limiting_stage == "open"
    assert "many small files" in result.suggestions[0]
    assert "larger files (TFRecord shards)" in result.suggestions[0]


def test_a_traced_run_measurably_slower_than_untraced_is_said_and_no_other():
    from benchmarks.diagnosing.bottleneck import tracing_caveat

    slowed = {"variant": "mine", "tracing_overhead": 0.22, "tracing_overhead_ci": [0.15, 0.29]}
    said = tracing_caveat(nested(slowed))
    assert said.startswith("the traced run of mine was +22% [+15%, +29%] slower than the untraced")
    assert "input-bound share from the untraced runs" in said
    # Within 5%, not told apart from 5%, or not measured: nothing to say.
    for quiet in (
        {"variant": "mine", "tracing_overhead": 0.01, "tracing_overhead_ci": [-0.05, 0.07]},
        {"variant": "mine", "tracing_overhead": 0.09, "tracing_overhead_ci": [0.02, 0.16]},
        {"variant": "mine", "tracing_overhead": 0.09},
        None,
    ):
        assert tracing_caveat(quiet and nested(quiet)) is None
