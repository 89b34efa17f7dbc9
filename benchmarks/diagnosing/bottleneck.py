"""Bottleneck analysis: where a variant's time goes, what limits it, what to do about it.

It works on per-stage times (`StageTimes`), which a traced run's timeline
gives (`StageTimes.from_timeline`), or a test constructs by hand. The
input-bound classes follow the TensorFlow profiler's input-pipeline
analyzer: under 5% of step time waiting for input is not input-bound, 5 to
20% moderately, 20% or more highly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pipelines
from benchmarks.measuring.records import TimelineRecord, TrainingRecord
from benchmarks.saving.metrics import MAP_CONCURRENCY, TRACING_OVERHEAD
from models.trainer import input_bound_of
from pipelines.fixes import spared_by_cache
from pipelines.observing.timeline import UNEXPLAINED
from pipelines.observing.tracing import Stage
from pipelines.variants import Variant

MODERATE = 0.05
HIGH = 0.20
# Besides the limiting stage, a stage taking at least this share of input time
# gets its advice too.
SECONDARY_SHARE = 0.2
INPUT_KINDS = ("open", "read", "generator", "map", "batch", "function")


def classify(input_bound: float) -> str:
    """The profiler's class for an input-bound fraction."""
    if input_bound < MODERATE:
        return "not input-bound"
    if input_bound < HIGH:
        return "moderately input-bound"
    return "highly input-bound"


@dataclasses.dataclass(frozen=True)
class StageTimes:
    """What a variant's run spent per stage, and what the analysis needs to know of it.

    Attributes:
        stages: the traced stages, pipeline then trainer.
        busy_s: per epoch, per stage name, the summed span durations.
        active_s: per epoch, per stage name, the wall time with a span running.
        epoch_s: per epoch, its wall time.
        input_bound: fraction of training time spent waiting for input.
        caches: whether the variant has a cache step.
        prefetches: whether the variant ends with a prefetch (or similar overlap).
        fits_in_memory: whether the decoded data would fit in memory.
        attribution: per epoch, its wall time in named parts
            (`pipelines.observing.timeline.Timeline.attribution`); empty for older runs.
    """

    stages: tuple[Stage, ...]
    busy_s: tuple[Mapping[str, float], ...]
    active_s: tuple[Mapping[str, float], ...]
    epoch_s: tuple[float, ...]
    input_bound: float
    caches: bool = False
    prefetches: bool = False
    fits_in_memory: bool = True
    # The stages whose work is the same every epoch and a cache after decoding would
    # spare (`pipelines.fixes.spared_by_cache`); by default the ones that read.
    cacheable: frozenset[str] = frozenset({"open", "read", "generator"})
    attribution: tuple[Mapping[str, float], ...] = ()

    @classmethod
    def from_timeline(
        cls, timeline: Mapping[str, Any], input_bound: float, variant: Variant, fits_in_memory: bool
    ) -> StageTimes:
        """From a `Timeline.to_dict` form (what saved runs hold) and the variant's steps."""
        return cls(
            stages=tuple(Stage(**stage) for stage in timeline["stages"]),
            busy_s=tuple(timeline["busy_s"]),
            active_s=tuple(timeline["active_s"]),
            epoch_s=tuple(end - start for start, end in timeline["epochs"]),
            input_bound=input_bound,
            caches=variant.caches,
            cacheable=spared_by_cache(variant.steps),
            prefetches=variant.prefetches,
            fits_in_memory=fits_in_memory,
            attribution=tuple(timeline.get("attribution", ())),
        )

    def input_stages(self) -> list[Stage]:
        """The pipeline's stages (not the trainer's)."""
        return [stage for stage in self.stages if stage.kind in INPUT_KINDS]

    def total(self, field: str, epochs: Sequence[int] | None = None) -> dict[str, float]:
        """``busy_s`` or ``active_s`` summed over ``epochs`` (indices; all by default)."""
        per_epoch = getattr(self, field)
        chosen = range(len(per_epoch)) if epochs is None else epochs
        return {
            stage.name: sum(per_epoch[i].get(stage.name, 0.0) for i in chosen)
            for stage in self.stages
        }


@dataclasses.dataclass(frozen=True)
class Bottleneck:
    """The analysis of one variant."""

    input_bound: float
    classification: str
    # Per stage, the share of the epochs' wall time during which it ran (at most 1).
    share_of_epoch: dict[str, float]
    # Per input stage, its share of the input stages' running time: the limiting
    # stage is the one with the largest share.
    share_of_input: dict[str, float]
    limiting_stage: str
    suggestions: tuple[str, ...]
    # Per stage, how many of its calls ran at once on average while it ran.
    in_flight: dict[str, float] = dataclasses.field(default_factory=dict)
    # Every second of the epochs, attributed: share per part (sums to 1).
    time_shares: dict[str, float] = dataclasses.field(default_factory=dict)
    # The changes the suggestions name, as `pipelines.fixes.Fix` keys, in the
    # suggestions' order: what --perf-verify-suggestions applies and times.
    fixes: tuple[str, ...] = ()
    # How many epochs the traced run had (what a runtime view is compared over).
    epochs: int = 1

    def summary(self) -> str:
        """One line: class, limiting stage, first suggestion, what was not explained."""
        advice = self.suggestions[0] if self.suggestions else "nothing to suggest"
        unexplained = self.time_shares.get(UNEXPLAINED)
        tail = "" if unexplained is None else f"; {unexplained:.0%} of the epochs unexplained"
        return (
            f"{self.classification} ({self.input_bound:.0%} waiting);"
            f" limited by {self.limiting_stage}; {advice}{tail}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for extra_info and the report."""
        return dataclasses.asdict(self)


def analyze(times: StageTimes) -> Bottleneck:
    """Classify the run, find the stage that limits throughput, and suggest what to change."""
    busy = times.total("busy_s")
    active = times.total("active_s")
    wall = sum(times.epoch_s) or 1.0
    inputs = times.input_stages()
    # Running time, not summed calls: 19 reads in flight for 1 s are 1 s of the
    # epoch (and "19 in flight"), not 1900% of it.
    input_active = sum(active[s.name] for s in inputs) or 1.0
    share_of_epoch = {name: min(1.0, value / wall) for name, value in active.items()}
    share_of_input = {s.name: active[s.name] / input_active for s in inputs}
    in_flight = {name: busy[name] / value for name, value in active.items() if value > 0}
    context = {
        "in_flight": in_flight,
        "time_shares": time_shares(times),
        "epochs": len(times.epoch_s),
    }
    classification = classify(times.input_bound)

    if times.input_bound < MODERATE or not inputs:
        limiting = "train step"
        suggestions = [
            f"the model limits throughput (input waits are {times.input_bound:.0%} of"
            " training time): input-pipeline changes will not speed this up; look at the"
            " model, the batch size or the device"
        ]
        return Bottleneck(
            times.input_bound,
            classification,
            share_of_epoch,
            share_of_input,
            limiting,
            tuple(suggestions),
            **context,
        )

    # The stage the pipeline spent the most wall time in (the largest share of
    # input time shown): for a sequential stage its busy time, for a parallel
    # one the time any of its calls ran.
    limiting_stage = max(inputs, key=lambda s: share_of_input[s.name])
    said = _suggestions(times, limiting_stage, share_of_input)
    fixes = dict.fromkeys(key for _, keys in said for key in keys)
    return Bottleneck(
        times.input_bound,
        classification,
        share_of_epoch,
        share_of_input,
        limiting_stage.name,
        tuple(text for text, _ in said),
        **context,
        fixes=tuple(fixes),
    )


def time_shares(times: StageTimes) -> dict[str, float]:
    """The epochs' wall time attributed (`StageTimes.attribution`), as shares summing to 1."""
    total: dict[str, float] = {}
    for parts in times.attribution:
        for name, seconds in parts.items():
            total[name] = total.get(name, 0.0) + seconds
    wall = sum(total.values())
    return {name: seconds / wall for name, seconds in total.items()} if wall else {}


# Tracing may slow a run by this much before its timeline stops describing the run timed.
TRACING_TRUSTED = 0.05


def tracing_caveat(overhead: Mapping[str, Any] | None) -> str | None:
    """A line when tracing measurably slowed the traced run (its interval wholly above
    `TRACING_TRUSTED`); None when it did not, or was not measured. ``overhead``: the
    tracing-overhead benchmark's figures."""
    if not overhead or TRACING_OVERHEAD.of(overhead) is None:
        return None
    low, high = TRACING_OVERHEAD.interval_of(overhead) or (None, None)
    if low is None or low <= TRACING_TRUSTED:
        return None
    value = TRACING_OVERHEAD.of(overhead)
    return (
        f"the traced run of {overhead.get('variant', '?')} was {value:+.0%} [{low:+.0%},"
        f" {high:+.0%}] slower than the untraced one, more than {TRACING_TRUSTED:.0%}: its"
        " timeline describes a slower pipeline than the one timed; the analysis takes the"
        " input-bound share from the untraced runs and only the stages' shares from the"
        " timeline, and its seconds are the traced run's"
    )


def _suggestions(
    times: StageTimes, limiting: Stage, share: Mapping[str, float]
) -> list[tuple[str, tuple[str, ...]]]:
    """Each piece of advice, with the keys of the changes (`pipelines.fixes.Fix`) it names."""
    said: list[tuple[str, tuple[str, ...]]] = []
    percent = f"{share[limiting.name]:.0%}"
    if any(stage.kind == "function" for stage in times.input_stages()):
        # Whatever the function does inside (prefetch, cache, parallel calls)
        # is out of sight: advice about it would be a guess.
        return [
            (
                f"{limiting.name} is a pipeline function, timed only from outside (the trainer"
                f" waits {times.input_bound:.0%} of the time): the analysis cannot time its"
                " steps (what it built is in its steps line); register it as steps"
                " (pipelines.steps) to time each",
                (),
            )
        ]
    said.extend(_stage_advice(limiting, percent))
    # Removing the limiting stage leaves the next to limit: a stage that takes a
    # large share too gets its advice now, where a change can be made to it.
    for stage in times.input_stages():
        if stage is not limiting and share[stage.name] >= SECONDARY_SHARE:
            named = {key for _, keys in said for key in keys}
            advice = _stage_advice(stage, f"{share[stage.name]:.0%}")
            said.extend(a for a in advice if set(a[1]) - named)
    cache = _cache_advice(times)
    if cache:
        said.append(cache)
    if not times.prefetches:
        said.append(
            (
                f"the trainer waits {times.input_bound:.0%} of the time with nothing"
                " overlapping input and training: prefetch at the end of the pipeline",
                ("prefetch",),
            )
        )
    if not said:
        # Every class of input-bound run gets advice: here none of the step-level
        # fixes applies to the limiting stage.
        how = ("in parallel" if limiting.parallel else "sequentially") + (
            ", once per batch" if limiting.batched else ""
        )
        has = "a cache and a prefetch" if times.caches else "a prefetch"
        said.append(
            (
                f"{limiting.name} takes {percent} of input time and already runs {how}, with"
                f" {has} in the pipeline: make its work cheaper (move what does not need to"
                " be fresh before a cache), or give the input pipeline more cores"
                " (--perf-model-threads sets how many the model keeps)",
                (),
            )
        )
    return said


def _cache_advice(times: StageTimes) -> tuple[str, tuple[str, ...]] | None:
    """Advice to cache, where reading (a generator reads too) and deterministic decoding
    take a large share of the first epoch's input time, the same work every epoch, which
    a cache does once (None: no cache to advise)."""
    if not times.busy_s or times.caches or not times.fits_in_memory:
        return None
    first = times.busy_s[0]
    inputs = times.input_stages()
    first_input = sum(first.get(s.name, 0.0) for s in inputs) or 1.0
    spared = [s.name for s in inputs if s.name in times.cacheable and first.get(s.name)]
    share_spared = sum(first[name] for name in spared) / first_input
    if share_spared < SECONDARY_SHARE:
        return None
    return (
        f"{', '.join(spared)} take {share_spared:.0%} of the first epoch's input"
        " time, the same work every epoch, and the data fits in memory: cache"
        " it after decoding",
        ("cache",),
    )


def _stage_advice(stage: Stage, percent: str) -> list[tuple[str, tuple[str, ...]]]:
    """What to change about one input stage taking ``percent`` of input time."""
    if stage.kind in ("open", "read") and not stage.parallel:
        return [
            (
                f"{stage.name} takes {percent} of input time and runs one file at a time:"
                " read shards in parallel (interleave with num_parallel_calls)",
                ("parallel_read",),
            )
        ]
    if stage.kind == "generator":
        return [
            (
                f"records cross into Python one at a time through a generator ({percent} of"
                " input time): read the files with tf.data (TFRecordDataset, interleave)",
                ("tf_data_read", "parallel_read"),
            )
        ]
    if stage.kind == "map" and not stage.parallel:
        return [
            (
                f"{stage.name} takes {percent} of input time and runs sequentially:"
                " parallelize it (num_parallel_calls=AUTOTUNE) or vectorize it (batch before"
                " the map)",
                (f"parallelize:{stage.name}", f"vectorize:{stage.name}"),
            )
        ]
    if stage.kind == "map" and not stage.batched:
        return [
            (
                f"{stage.name} takes {percent} of input time, one example per call:"
                " vectorize it (batch before the map)",
                (f"vectorize:{stage.name}",),
            )
        ]
    if stage.kind == "open":
        # Opening includes making each file's reader (`traced_shard_reader`): with many
        # small files, that per-file cost is the bottleneck, not the bytes.
        return [
            (
                f"{stage.name} takes {percent} of input time even in parallel: each file"
                " costs a reader before its first byte (many small files): pack them into"
                " fewer, larger files (TFRecord shards), read more files at once, or cache"
                " after decoding so that later epochs open none",
                (),
            )
        ]
    if stage.kind == "read":
        return [
            (
                f"{stage.name} takes {percent} of input time even in parallel: read more"
                " files at once, or use larger files",
                (),
            )
        ]
    return []


# A stage's typical cost is gated against a baseline only when the stage takes
# at least this share of the input time (a slower stage that small cannot move
# throughput, and small CPU stages' medians are the noisiest) and recorded at
# least this many spans: a percentile over a few dozen opens, all started in
# one burst, measures thread start-up contention (their median moved 35-140 ms
# between unchanged runs in the gate trials).
GATED_STAGE_SHARE = 0.2
GATED_STAGE_SPANS = 200
GATE_FIGURES = (MAP_CONCURRENCY.name, "stage_p10_s")


def stage_gate_figures(
    times: StageTimes, analysis: Bottleneck, timeline: Mapping[str, Any]
) -> dict[str, Any]:
    """What the gates read from a traced run (``analysis``: `analyze` of its ``times``).

    ``map_concurrency``: of the map stages, the most calls that ever ran at
    once (1 when every map runs one call at a time). ``stage_p10_s``: the
    10th percentile span (`Timeline.p10_s`) of each input stage gated by
    `GATED_STAGE_SHARE` and `GATED_STAGE_SPANS`.
    """
    p10 = timeline.get("p10_s", {})
    counts = timeline.get("span_count", {})
    figures: dict[str, Any] = {
        "stage_p10_s": {
            stage: p10[stage]
            for stage, share in analysis.share_of_input.items()
            if stage in p10
            and share >= GATED_STAGE_SHARE
            and counts.get(stage, 0) >= GATED_STAGE_SPANS
        }
    }
    peaks = timeline.get("peak_concurrency", {})
    concurrency = [
        peaks[s.name] for s in times.input_stages() if s.kind == "map" and s.name in peaks
    ]
    if concurrency:
        figures[MAP_CONCURRENCY.name] = max(concurrency)
    return figures


def traced_analysis(
    traced: TimelineRecord, untraced: TrainingRecord | None
) -> tuple[Bottleneck, dict[str, Any]]:
    """A traced run's bottleneck analysis and the figures the gates read from it
    (`stage_gate_figures`). ``untraced``: the same variant's timed training, whose
    waiting share is the truer one, when there is one."""
    runs = untraced.runs if untraced else [traced.stats]
    input_bound = input_bound_of(s for run in runs for s in run)
    variant = pipelines.get(traced.variant)
    times = StageTimes.from_timeline(traced.timeline, input_bound, variant, traced.fits_in_memory)
    analysis = analyze(times)
    return analysis, stage_gate_figures(times, analysis, traced.timeline)
