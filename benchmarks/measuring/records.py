"""What each benchmark of a session measured, collected as it runs.

Every benchmark records what it measured here, keyed by the benchmark's name;
each record becomes its benchmark's ``extra_info`` (`to_extra_info`). The
fields that need two measurements of the same session (speedup over ``naive``,
slowdown against the ceiling, the traced runs' bottleneck analysis) are filled
in on copies, once every benchmark has run, by `benchmarks.run.result.derive`.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import Any, NamedTuple

import pipelines
from benchmarks.measuring.alternation import Alternation
from benchmarks.measuring.pass_figures import (
    PairedFigures,
    pass_figures,
    run_totals,
)
from benchmarks.measuring.passes import Passes, Trial
from benchmarks.saving.metrics import (
    ACCURACY_BELOW_REFERENCE,
    ALTERNATED,
    ALTERNATED_ALONE,
    CEILING_SLOWDOWN,
    CPU_S_PER_EXAMPLE,
    DECLARED,
    EPOCH_S,
    EXAMPLES_PER_S,
    FRACTION_OF_CEILING,
    INPUT_BOUND,
    SPEEDUP_OVER_NAIVE,
    TEST_ACCURACY,
    TRACING_OVERHEAD,
    YARDSTICK,
    nest,
)
from benchmarks.saving.schema import Kind
from models.trainer import EpochStats, input_bound_of
from pipelines.observing.runtime_model import Legend
from pipelines.observing.timeline import Timeline


class PipelineEpoch(NamedTuple):
    """One epoch of a pipeline iterated without a model."""

    batches: int
    elements: int
    seconds: float
    cpu_s: float


def _as_extra_info(
    record: Record, figures: dict[str, Any], samples: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    """A record's ``extra_info``: the run's setting, its kind and variant, ``figures``,
    its paired figures with their intervals when it was measured in the passes, and
    ``samples``: per metric, one value per run (what `benchmarks.judging.decide` compares).
    Each declared metric is saved as one nested value (`benchmarks.saving.metrics.Saved`)."""
    samples = samples or {}
    undeclared = samples.keys() - DECLARED.keys()
    if undeclared:
        raise ValueError(f"{record.variant}: samples of undeclared figures {sorted(undeclared)}")
    info = {**record.setting, "kind": record.kind, "variant": record.variant}
    info.update({name: value for name, value in figures.items() if name not in DECLARED})
    info.update(nest(figures, samples))
    paired = getattr(record, "paired", None)
    if paired is not None:
        estimated = paired.saved()
        twice = info.keys() & estimated.keys()
        if twice:
            raise ValueError(f"{record.variant}: {sorted(twice)} both estimated and recorded")
        info.update(estimated, passes=paired.epoch_s.n)
    return info


def _median_ratio_minus_one(above: list[float], below: list[float]) -> float:
    """Ratio of medians - 1: 0.05 is 5% more (0.0 if the lower median is 0)."""
    low = statistics.median(below)
    return statistics.median(above) / low - 1 if low else 0.0


@dataclasses.dataclass
class TrainingRecord:
    """A training benchmark (or the ceiling's): its runs, and the ratios derived later."""

    kind: str  # "training" or "ceiling"
    variant: str
    setting: dict[str, Any]  # the run's parameters (`PerfSession.common_info`)
    runs: list[list[EpochStats]]
    service: str | None = None
    service_workers: int | None = None
    # Whose accuracy its own is judged against (`Contract.accuracy_reference`).
    reference: str | None = "ceiling"
    # Filled in by `benchmarks.run.result.derive`: paired within passes (with intervals),
    # or, for benchmarks timed on their own, ratios of medians.
    paired: PairedFigures | None = None
    speedup_over_naive: float | None = None
    fraction_of_ceiling: float | None = None
    speedup_over_1_worker: float | None = None
    pipeline_cpu_s: float | None = None
    # The final test accuracy of the same run's reference (``reference``) minus this one's.
    accuracy_below_reference: float | None = None
    # --perf-against: its steady epochs' examples/s, round by round with its pair's
    # (`benchmarks.measuring.alternation`), and how the rounds went (the head's record only).
    alternated: list[float] | None = None
    alternation: dict[str, Any] | None = None
    # The same with the pipelines alone (`ALTERNATED_ALONE`), on a stand-in device.
    alternated_alone: list[float] | None = None
    # --perf-yardstick: per round, its steady epoch over the ceiling's.
    yardstick: list[float] | None = None
    # What names tf.data's runtime model's stages (`pipelines.observing.runtime_model.Legend`).
    legend: Legend | None = None

    @property
    def train_s(self) -> float:
        """Median over runs of the training time of all epochs."""
        return statistics.median(run_totals(self.runs, "wall_s"))

    def final_accuracies(self) -> list[float] | None:
        """Per run evaluated, the test accuracy after the last epoch (None: none was; on a
        stand-in device only the runs with real training beside them are)."""
        finals = [run[-1].test_accuracy for run in self.runs]
        return [final for final in finals if final is not None] or None

    def _evaluated_run(self) -> list[EpochStats]:
        """The last run with accuracy (or the last run, where none has)."""
        evaluated = [run for run in self.runs if run[-1].test_accuracy is not None]
        return (evaluated or self.runs)[-1]

    def final_accuracy(self) -> float | None:
        """Mean over runs of the test accuracy after the last epoch (None: not evaluated)."""
        finals = self.final_accuracies()
        return None if finals is None else statistics.fmean(finals)

    @property
    def cpu_s(self) -> float:
        """Median over runs of the process CPU time of the training loops."""
        return statistics.median(run_totals(self.runs, "cpu_s"))

    def to_extra_info(self) -> dict[str, Any]:
        """Medians over runs, per-epoch lists of the last run, and the derived ratios (an
        epoch's time and the input-bound share: estimated over the passes where it was
        timed in them, else medians and shares of its runs)."""
        last, evaluated = self.runs[-1], self._evaluated_run()
        figures = {
            "train_s": self.train_s,
            "epoch_times_s": [s.wall_s for s in last],
            EXAMPLES_PER_S.name: sum(s.examples for s in last) / self.train_s,
            "cpu_s": self.cpu_s,
            "train_accuracy": [s.train_accuracy for s in evaluated],
            "test_accuracy_per_epoch": [s.test_accuracy for s in evaluated],
            TEST_ACCURACY.name: evaluated[-1].test_accuracy,
            "rounds": len(self.runs),
        }
        if self.paired is None:
            figures[EPOCH_S.name] = self.train_s / len(last)
            figures[INPUT_BOUND.name] = input_bound_of(s for run in self.runs for s in run)
        if self.service is not None:
            figures.update(service=self.service, service_workers=self.service_workers)
        unpaired = {
            SPEEDUP_OVER_NAIVE.name: self.speedup_over_naive,
            FRACTION_OF_CEILING.name: self.fraction_of_ceiling,
            "speedup_over_1_worker": self.speedup_over_1_worker,
            "pipeline_cpu_s": self.pipeline_cpu_s,
            ACCURACY_BELOW_REFERENCE.name: self.accuracy_below_reference,
            # The variant judged against, where it was (the same run's ceiling or augmented).
            "accuracy_reference": (
                self.reference if self.accuracy_below_reference is not None else None
            ),
        }
        figures.update({key: value for key, value in unpaired.items() if value is not None})
        if self.fraction_of_ceiling:
            figures[CEILING_SLOWDOWN.name] = 1 / self.fraction_of_ceiling
        if self.variant in pipelines.VARIANTS:
            # What it is made of: a baseline comparison names a lost optimization.
            variant = pipelines.get(self.variant)
            figures["steps"] = variant.describe()
            figures["optimizations"] = variant.optimizations()
        samples = {
            EXAMPLES_PER_S.name: [
                sum(s.examples for s in run) / sum(s.wall_s for s in run) for run in self.runs
            ],
        }
        finals = self.final_accuracies()
        if finals is not None:
            samples[TEST_ACCURACY.name] = finals
        if self.alternated:
            samples[ALTERNATED.name] = self.alternated
        if self.alternated_alone:
            samples[ALTERNATED_ALONE.name] = self.alternated_alone
        if self.alternation:
            figures["alternation"] = self.alternation
        if self.yardstick:
            samples[YARDSTICK.name] = self.yardstick
            figures[YARDSTICK.name] = statistics.median(self.yardstick)
        return _as_extra_info(self, figures, samples)


@dataclasses.dataclass
class PipelineRecord:
    """A pipeline-only benchmark: one epoch per run, no model."""

    variant: str
    setting: dict[str, Any]
    runs: list[PipelineEpoch]
    paired: PairedFigures | None = None
    kind: str = Kind.PIPELINE

    def to_extra_info(self) -> dict[str, Any]:
        """Medians over runs, and the paired figures."""
        seconds = statistics.median(run.seconds for run in self.runs)
        # The CPU the pipeline spends per example: its work, whatever the machine's
        # load did to its wall time (a pipeline doing more work is caught even
        # where the model hides it in the training time).
        per_example = [run.cpu_s / max(run.elements, 1) for run in self.runs]
        figures = {
            "seconds": seconds,
            "cpu_s": statistics.median(run.cpu_s for run in self.runs),
            CPU_S_PER_EXAMPLE.name: statistics.median(per_example),
            "batches": self.runs[-1].batches,
            "elements": self.runs[-1].elements,
            "elements_per_s": self.runs[-1].elements / seconds if seconds else 0.0,
        }
        return _as_extra_info(self, figures, {CPU_S_PER_EXAMPLE.name: per_example})


@dataclasses.dataclass
class TimelineRecord:
    """A traced run: its timeline, and the bottleneck analysis derived later."""

    variant: str
    setting: dict[str, Any]
    stats: list[EpochStats]
    timeline: dict[str, Any]  # `Timeline.to_dict`, compact
    fits_in_memory: bool
    # Its bottleneck analysis (`benchmarks.diagnosing.bottleneck.Bottleneck.to_dict`).
    bottleneck: dict[str, Any] | None = None
    gate_figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    kind: str = Kind.TIMELINE
    # Every span, in the Trace Event Format (`Timeline.chrome_trace`): written
    # beside the report, not into the saved run, which keeps the compact form.
    trace: dict[str, Any] | None = None

    def to_extra_info(self) -> dict[str, Any]:
        """The timeline, and (once derived) its analysis and gated figures."""
        figures = {
            "epoch_times_s": [s.wall_s for s in self.stats],
            INPUT_BOUND.name: input_bound_of(self.stats),
            "fits_in_memory": self.fits_in_memory,
            "timeline": self.timeline,
        }
        if self.bottleneck is not None:
            figures["bottleneck"] = self.bottleneck
        return _as_extra_info(self, {**figures, **self.gate_figures})


@dataclasses.dataclass
class OverheadRecord:
    """Traced against untraced training runs of the same variant, paired within passes.

    Wall time is what the goal is about; CPU time (every thread of the
    process) is what tracing adds, and on a shared machine it is the
    steadier figure: other work slows a run down, it does not add to its CPU.
    """

    variant: str
    setting: dict[str, Any]
    untraced: list[list[EpochStats]]
    traced: list[list[EpochStats]]
    paired: PairedFigures | None = None
    kind: str = Kind.TRACING_OVERHEAD

    def overhead(self, field: str, epochs: slice = slice(None)) -> float:
        """Traced over untraced ``field`` (wall_s, cpu_s) of ``epochs``: medians' ratio - 1."""
        return _median_ratio_minus_one(
            run_totals(self.traced, field, epochs), run_totals(self.untraced, field, epochs)
        )

    def to_extra_info(self) -> dict[str, Any]:
        """Both sides' times and the overheads: the wall-time one paired within the passes
        with its interval where they were timed in them, else the medians' ratio."""
        figures = {
            "untraced_s": run_totals(self.untraced, "wall_s"),
            "traced_s": run_totals(self.traced, "wall_s"),
            "tracing_cpu_overhead": self.overhead("cpu_s"),
            # Where it goes: the first epoch stamps every read and decode; a
            # cached variant's later epochs stamp only its batches and maps.
            "tracing_overhead_first_epoch": self.overhead("wall_s", slice(0, 1)),
        }
        if self.paired is None:
            figures[TRACING_OVERHEAD.name] = self.overhead("wall_s")
        if min(map(len, self.untraced + self.traced)) > 1:
            figures["tracing_overhead_later_epochs"] = self.overhead("wall_s", slice(1, None))
        return _as_extra_info(self, figures)


@dataclasses.dataclass
class SuggestionsRecord:
    """A variant's suggestions, each applied to a copy, checked and timed
    (`benchmarks.diagnosing.verify`)."""

    variant: str
    setting: dict[str, Any]
    # One per change (`benchmarks.diagnosing.verify.Verified.to_dict`).
    verified: list[dict[str, Any]]
    verdict: str
    passes: int
    kind: str = Kind.SUGGESTIONS

    def to_extra_info(self) -> dict[str, Any]:
        """The verified suggestions and the verdict."""
        figures = {"verified_suggestions": self.verified, "verdict": self.verdict}
        return _as_extra_info(self, {**figures, "verification_passes": self.passes})


@dataclasses.dataclass
class CaptureRecord:
    """An epoch captured by the TensorFlow profiler (--perf-profiler): where it lies."""

    variant: str
    setting: dict[str, Any]
    folder: str
    kind: str = Kind.CAPTURE

    def to_extra_info(self) -> dict[str, Any]:
        """The capture's folder."""
        return _as_extra_info(self, {"capture_folder": self.folder})


Record = (
    TrainingRecord
    | PipelineRecord
    | TimelineRecord
    | OverheadRecord
    | SuggestionsRecord
    | CaptureRecord
)


class RunRecords:
    """What one session's benchmarks measured: benchmark name -> its typed record, and
    the passes and alternations they were timed in (`benchmarks.run.result.derive` makes the
    run's figures from them)."""

    def __init__(self, describe: Callable[[], dict[str, Any]]) -> None:
        """``describe()``: the parameters every figure carries (see
        `benchmarks.measuring.session.PerfSession.common_info`)."""
        self.describe = describe
        self.records: dict[str, Record] = {}
        # The interleaved passes the timed benchmarks read their rounds from (set once
        # they are all made), and their paired figures, derived once.
        self.passes: Passes | None = None
        # --perf-against: head name -> its steady epochs alternated with its base's.
        self.alternations: dict[str, Alternation] = {}
        # And with the pipelines alone (a stand-in device with a step only).
        self.alone_alternations: dict[str, Alternation] = {}
        # --perf-yardstick: variant name -> its steady epochs alternated with the ceiling's.
        self.yardsticks: dict[str, Alternation] = {}
        self._paired: dict[Trial, PairedFigures] | None = None

    def paired(self) -> dict[Trial, PairedFigures]:
        """Per trial, its figures paired within the passes (`pass_figures`), computed once."""
        if self._paired is None and self.passes is not None:
            self._paired = pass_figures(self.passes)
        return self._paired or {}

    def training(
        self,
        name: str,
        variant: str,
        runs: list[list[EpochStats]],
        kind: str = Kind.TRAINING,
        service: tuple[str, int | None] | None = None,
        reference: str | None = "ceiling",
        legend: Legend | None = None,
    ) -> TrainingRecord:
        """Record a training benchmark (``service``: its dispatcher and worker count;
        ``reference``: the variant its accuracy is judged against, or None;
        ``legend``: what names its runtime statistics' stages)."""
        address, workers = service or (None, None)
        record = TrainingRecord(
            kind,
            variant,
            self.describe(),
            runs,
            address,
            workers,
            reference=reference,
            legend=legend,
        )
        self.records[name] = record
        return record

    def pipeline(self, name: str, variant: str, runs: list[PipelineEpoch]) -> PipelineRecord:
        """Record a pipeline-only benchmark."""
        self.records[name] = record = PipelineRecord(variant, self.describe(), runs)
        return record

    def timeline(
        self,
        name: str,
        variant: str,
        stats: list[EpochStats],
        timeline: Timeline,
        fits_in_memory: bool,
    ) -> TimelineRecord:
        """Record a traced run (its bottleneck analysis is derived at the end)."""
        record = TimelineRecord(variant, self.describe(), stats, timeline.to_dict(), fits_in_memory)
        record.trace = timeline.chrome_trace()
        self.records[name] = record
        return record

    def suggestions(
        self, name: str, variant: str, verified: list[dict[str, Any]], verdict: str, passes: int
    ) -> SuggestionsRecord:
        """Record a variant's verified suggestions."""
        record = SuggestionsRecord(variant, self.describe(), verified, verdict, passes)
        self.records[name] = record
        return record

    def capture(self, name: str, variant: str, folder: str) -> CaptureRecord:
        """Record where ``variant``'s TensorFlow profiler capture lies."""
        self.records[name] = record = CaptureRecord(variant, self.describe(), folder)
        return record

    def timeline_of(self, variant: str) -> TimelineRecord | None:
        """The traced run of ``variant`` (None: it was not traced)."""
        return next(
            (
                r
                for r in self.records.values()
                if isinstance(r, TimelineRecord) and r.variant == variant
            ),
            None,
        )

    def training_of(self, variant: str) -> TrainingRecord | None:
        """The training benchmark of ``variant`` (None: it was not trained)."""
        return next(
            (
                r
                for r in self.records.values()
                if isinstance(r, TrainingRecord)
                and r.kind == Kind.TRAINING
                and r.variant == variant
            ),
            None,
        )

    def traces(self) -> dict[str, dict[str, Any]]:
        """Per traced variant, its run in the Trace Event Format."""
        return {
            record.variant: record.trace
            for record in self.records.values()
            if isinstance(record, TimelineRecord) and record.trace is not None
        }

    def tracing_overhead(
        self,
        name: str,
        variant: str,
        untraced: list[list[EpochStats]],
        traced: list[list[EpochStats]],
    ) -> OverheadRecord:
        """Record traced against untraced training runs of the same variant."""
        self.records[name] = record = OverheadRecord(variant, self.describe(), untraced, traced)
        return record
