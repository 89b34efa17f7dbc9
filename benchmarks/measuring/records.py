"""What each benchmark of a session measured, and the figures derived across them.

Every benchmark records its figures here (they become its ``extra_info``),
keyed by the benchmark's name. Ratios that need two measurements of the same
session (speedup over ``naive``, slowdown against the ceiling, the traced
runs' bottleneck analysis) are filled in at the end, by `RunRecords.derive`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import pipelines
from benchmarks.diagnosing.bottleneck import Bottleneck, StageTimes, analyze, stage_gate_figures
from benchmarks.diagnosing.runtime_view import missing_reason, runtime_view
from benchmarks.judging.gates import metrics_by_variant
from benchmarks.measuring.alternation import (
    ALTERNATED,
    ALTERNATED_ALONE,
    YARDSTICK,
    Alternation,
)
from benchmarks.measuring.intervals import Estimate, geometric, mean, paired_ratio
from benchmarks.measuring.passes import UNOBSERVED, Passes, Trial
from benchmarks.measuring.phases import (
    epoch_start_s,
    first_batch_s,
    first_epoch_extra_s,
    steady_epochs,
    steady_rate,
)
from benchmarks.saving.schema import Kind
from models.trainer import EpochStats, input_bound_of
from pipelines.runtime_model import Legend
from pipelines.timeline import Timeline


class PipelineEpoch(NamedTuple):
    """One epoch of a pipeline iterated without a model."""

    batches: int
    elements: int
    seconds: float
    cpu_s: float


def run_totals(
    runs: Iterable[Sequence[EpochStats]], field: str, epochs: slice = slice(None)
) -> list[float]:
    """Per training run, ``field`` (``wall_s`` or ``cpu_s``) summed over its ``epochs`` (all)."""
    return [sum(getattr(epoch, field) for epoch in run[epochs]) for run in runs]


CEILING = Trial("ceiling", "ceiling")
# Speedups are measured over these variants: the lab's baseline, and the one
# each single optimization (prefetch, interleave, ...) is added to.
SPEEDUP_REFERENCES = {"speedup_over_naive": "naive", "speedup_over_augmented": "augmented"}


# The ratios a run is judged by, and whose intervals decide whether it needs another
# pass: steady state (what a change to the pipeline's throughput moves), and what
# tracing costs there. The full-epoch ratios are reported beside them.
JUDGED = (
    "steady_speedup_over_naive",
    "steady_speedup_over_augmented",
    "steady_fraction_of_ceiling",
    "steady_traced_over_untraced",
)


@dataclasses.dataclass(frozen=True)
class PairedFigures:
    """One trial's figures over the run's passes, its ratios paired within each pass.

    Full epochs (``epoch_s`` and the ratios without a prefix: the lab's measure),
    steady state (``steady_*``: examples/s once warm) and start-up
    (``first_batch_s``, ``first_epoch_extra_s``, ``epoch_start_s``), as
    `benchmarks.measuring.phases` reads a run.
    """

    epoch_s: Estimate
    # Share of training time spent waiting for input (training runs only).
    input_bound: Estimate | None = None
    speedup_over_naive: Estimate | None = None
    speedup_over_augmented: Estimate | None = None
    fraction_of_ceiling: Estimate | None = None
    traced_over_untraced: Estimate | None = None
    steady_examples_per_s: Estimate | None = None
    steady_input_bound: Estimate | None = None
    first_batch_s: Estimate | None = None
    first_epoch_extra_s: Estimate | None = None
    epoch_start_s: Estimate | None = None
    steady_speedup_over_naive: Estimate | None = None
    steady_speedup_over_augmented: Estimate | None = None
    steady_fraction_of_ceiling: Estimate | None = None
    steady_traced_over_untraced: Estimate | None = None
    # Training that reads tf.data's runtime model over training that does not.
    observed_over_unobserved: Estimate | None = None
    steady_observed_over_unobserved: Estimate | None = None

    def ratios(self) -> dict[str, Estimate]:
        """The ratios measured (by name): full-epoch and steady-state."""
        names = (
            "speedup_over_naive",
            "speedup_over_augmented",
            "fraction_of_ceiling",
            "traced_over_untraced",
            "observed_over_unobserved",
            "steady_observed_over_unobserved",
            *JUDGED,
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def figures(self) -> dict[str, Estimate]:
        """Every figure by its saved name, the derived ones (slowdowns, overheads) included."""
        figures: dict[str, Estimate] = {"epoch_s": self.epoch_s, **self.ratios()}
        singles = (
            "input_bound",
            "steady_examples_per_s",
            "steady_input_bound",
            "first_batch_s",
            "first_epoch_extra_s",
            "epoch_start_s",
        )
        figures.update(
            {name: getattr(self, name) for name in singles if getattr(self, name) is not None}
        )
        for prefix in ("", "steady_"):
            fraction = figures.get(f"{prefix}fraction_of_ceiling")
            if fraction is not None:
                figures[f"{prefix}ceiling_slowdown"] = fraction.inverse()
            traced = figures.get(f"{prefix}traced_over_untraced")
            if traced is not None:
                figures[f"{prefix}tracing_overhead"] = traced.shifted(-1)
            observed = figures.get(f"{prefix}observed_over_unobserved")
            if observed is not None:
                figures[f"{prefix}runtime_overhead"] = observed.shifted(-1)
        return figures

    def to_extra_info(self) -> dict[str, Any]:
        """Each figure as ``name`` (its value) and ``name_ci`` (its 95% interval, or None)."""
        info: dict[str, Any] = {"passes": self.epoch_s.n, "samples": {}}
        for name, estimate in self.figures().items():
            info[name] = estimate.value
            info[f"{name}_ci"] = estimate.to_list()
            info["samples"][name] = list(estimate.samples)
        return info


def _epochs_of(result: Any) -> list[EpochStats] | None:
    """A trial's result as a training run (None: a pipeline iterated alone)."""
    return result if isinstance(result, list) else None


def pass_figures(passes: Passes) -> dict[Trial, PairedFigures]:
    """Per trial, its epoch time and its ratios, each paired within a pass.

    Speedups are over ``naive`` and ``augmented`` of the same kind (training or
    pipeline alone; `SPEEDUP_REFERENCES`), fractions of the ceiling are the
    ceiling's time over the trial's, and a traced run is set against the
    untraced training of its variant; each for full epochs and, for training
    runs, for steady state as well (`benchmarks.measuring.phases`).
    """
    seconds = passes.seconds
    rates = {
        trial: [steady_rate(run) for run in results]
        for trial, results in passes.results.items()
        if results and _epochs_of(results[0]) is not None
    }
    return {trial: _trial_figures(passes, trial, rates) for trial in seconds}


def _trial_figures(passes: Passes, trial: Trial, rates: dict[Trial, list[float]]) -> PairedFigures:
    """`pass_figures` of one trial (``rates``: each training run's steady examples/s)."""
    seconds, times = passes.seconds, passes.seconds[trial]
    runs = passes.results[trial]
    epochs = len(runs[0]) if _epochs_of(runs[0]) is not None else 1
    # The plain training run: without the runtime model's readings where it was timed so.
    untraced = Trial(UNOBSERVED, trial.variant)
    if untraced not in seconds:
        untraced = Trial("training", trial.variant)
    figures: dict[str, Estimate] = {"epoch_s": geometric([t / epochs for t in times])}
    for name, reference in SPEEDUP_REFERENCES.items():
        over = Trial(trial.kind, reference)
        if over in seconds and trial.kind != "traced":
            figures[name] = paired_ratio(seconds[over], times)
            if trial in rates and over in rates:
                figures[f"steady_{name}"] = paired_ratio(rates[trial], rates[over])
    if CEILING in seconds and trial.kind == "training":
        figures["fraction_of_ceiling"] = paired_ratio(seconds[CEILING], times)
        figures["steady_fraction_of_ceiling"] = paired_ratio(rates[trial], rates[CEILING])
    if trial.kind in ("traced", "training") and untraced.kind == UNOBSERVED:
        name = "traced_over_untraced" if trial.kind == "traced" else "observed_over_unobserved"
        figures[name] = paired_ratio(times, seconds[untraced])
        figures[f"steady_{name}"] = paired_ratio(rates[untraced], rates[trial])
    elif trial.kind == "traced" and untraced in seconds:
        figures["traced_over_untraced"] = paired_ratio(times, seconds[untraced])
        figures["steady_traced_over_untraced"] = paired_ratio(rates[untraced], rates[trial])
    if trial in rates:
        positive = (0.0, math.inf)
        figures["input_bound"] = mean([input_bound_of(run) for run in runs], within=(0, 1))
        figures["steady_examples_per_s"] = geometric(rates[trial])
        steady_waits = [input_bound_of(steady_epochs(run)) for run in runs]
        figures["steady_input_bound"] = mean(steady_waits, within=(0, 1))
        figures["first_batch_s"] = mean([first_batch_s(run) for run in runs], within=positive)
        if epochs > 1:
            extra = [first_epoch_extra_s(run) for run in runs]
            figures["first_epoch_extra_s"] = mean(extra, within=positive)
            starts = [epoch_start_s(run) for run in runs]
            figures["epoch_start_s"] = mean(starts, within=positive)
    return PairedFigures(**figures)


def judged_ratios(
    figures: dict[Trial, PairedFigures],
) -> Iterator[tuple[Trial, str, Estimate]]:
    """The ratios a run is judged by (`JUDGED`: steady state), of training and traced
    trials, each but a speedup over the trial's own variant (1 by construction)."""
    for trial, paired in figures.items():
        if trial.kind not in {"training", "traced"}:
            continue
        for name, estimate in paired.ratios().items():
            reference = SPEEDUP_REFERENCES.get(name.removeprefix("steady_"))
            if name in JUDGED and reference != trial.variant:
                yield trial, name, estimate


def pass_estimates(passes: Passes) -> list[Estimate]:
    """The ratios whose intervals decide whether the run needs another pass."""
    return [estimate for _, _, estimate in judged_ratios(pass_figures(passes))]


# Start-up, head over base pass by pass (--perf-against): what a pair's start-up is judged
# by, so the passes go on until it is precise too.
STARTUP = {"first_batch_s": first_batch_s, "first_epoch_extra_s": first_epoch_extra_s}


def startup_estimates(passes: Passes, pairs: Iterable[tuple[str, str]]) -> list[Estimate]:
    """Per `--perf-against` pair trained in ``passes``, its head's start-up over its base's
    (`STARTUP`), paired within each pass."""
    found = []
    for head, base in pairs:
        runs = [passes.results.get(Trial("training", name)) for name in (head, base)]
        if not all(runs):
            continue
        for figure in STARTUP.values():
            heads, bases = ([figure(run) for run in side] for side in runs)
            if min(heads + bases) > 0:
                found.append(paired_ratio(heads, bases))
    return found


@dataclasses.dataclass(frozen=True)
class Unreliable:
    """A measured ratio that cannot be trusted, as one line."""

    trial: Trial
    metric: str
    estimate: Estimate
    # Physically impossible (faster than the ceiling), not merely imprecise.
    impossible: bool
    precision: float

    def __str__(self) -> str:
        where = f"unreliable measurement: {self.trial} {self.metric} = {self.estimate}"
        if self.impossible:
            return f"{where}: faster than the ceiling, which is impossible"
        return (
            f"{where}: +-{self.estimate.half_width:.0%}, wider than +-{self.precision:.0%}"
            f" after {self.estimate.n} passes"
        )


def unreliable(figures: dict[Trial, PairedFigures], precision: float) -> list[Unreliable]:
    """The judged ratios (`judged_ratios`) that cannot be trusted: an interval wider than
    ``precision`` (a fraction); and a full-epoch fraction of the ceiling whose whole
    interval lies above 1 (faster than the model can train, start-up and all: the
    measurement is wrong)."""
    found = []
    for trial, name, estimate in judged_ratios(figures):
        if estimate.half_width is not None and not estimate.precise(precision):
            found.append(Unreliable(trial, name, estimate, False, precision))
    for trial, paired in figures.items():
        fraction = paired.fraction_of_ceiling
        if fraction is not None and fraction.low is not None and fraction.low > 1:
            found.append(Unreliable(trial, "fraction_of_ceiling", fraction, True, precision))
    return found


def _as_extra_info(
    record: Record, figures: dict[str, Any], samples: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    """A record's ``extra_info``: the run's setting, its kind and variant, ``figures``,
    its paired figures with their intervals when it was measured in the passes, and
    ``samples``: per metric, one value per run (what `benchmarks.judging.decide` compares)."""
    info = {**record.setting, "kind": record.kind, "variant": record.variant, **figures}
    paired = getattr(record, "paired", None)
    if paired is not None:
        info.update(paired.to_extra_info())
    info["samples"] = {**info.get("samples", {}), **(samples or {})}
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
    # Filled in by `RunRecords.derive`: paired within passes (with intervals),
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
    # The same with the pipelines alone (`ALTERNATED_ALONE`), where the device is a stand-in.
    alternated_alone: list[float] | None = None
    # --perf-yardstick: per round, its steady epoch over the ceiling's.
    yardstick: list[float] | None = None
    # What names tf.data's runtime model's stages (`pipelines.runtime_model.Legend`).
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
        """Medians over runs, per-epoch lists of the last run, and the derived ratios."""
        last, evaluated = self.runs[-1], self._evaluated_run()
        figures = {
            "train_s": self.train_s,
            "epoch_s": self.train_s / len(last),
            "epoch_times_s": [s.wall_s for s in last],
            "examples_per_s": sum(s.examples for s in last) / self.train_s,
            "cpu_s": self.cpu_s,
            "input_bound": input_bound_of(s for run in self.runs for s in run),
            "train_accuracy": [s.train_accuracy for s in evaluated],
            "test_accuracy_per_epoch": [s.test_accuracy for s in evaluated],
            "test_accuracy": evaluated[-1].test_accuracy,
            "rounds": len(self.runs),
        }
        if self.service is not None:
            figures.update(service=self.service, service_workers=self.service_workers)
        unpaired = {
            "speedup_over_naive": self.speedup_over_naive,
            "fraction_of_ceiling": self.fraction_of_ceiling,
            "speedup_over_1_worker": self.speedup_over_1_worker,
            "pipeline_cpu_s": self.pipeline_cpu_s,
            "accuracy_below_reference": self.accuracy_below_reference,
            # The variant judged against, where it was (the same run's ceiling or augmented).
            "accuracy_reference": (
                self.reference if self.accuracy_below_reference is not None else None
            ),
        }
        figures.update({key: value for key, value in unpaired.items() if value is not None})
        view = runtime_view(self.runs, self.legend)
        if view is not None:
            figures["runtime"] = view.to_dict()
        elif missing_reason(self.runs):
            figures["runtime_missing"] = missing_reason(self.runs)
        if self.fraction_of_ceiling:
            figures["ceiling_slowdown"] = 1 / self.fraction_of_ceiling
        if self.variant in pipelines.VARIANTS:
            # What it is made of: a baseline comparison names a lost optimization.
            variant = pipelines.get(self.variant)
            figures["steps"] = variant.describe()
            figures["optimizations"] = variant.optimizations()
        samples = {
            "examples_per_s": [
                sum(s.examples for s in run) / sum(s.wall_s for s in run) for run in self.runs
            ],
        }
        finals = self.final_accuracies()
        if finals is not None:
            samples["test_accuracy"] = finals
        if self.alternated:
            samples[ALTERNATED] = self.alternated
        if self.alternated_alone:
            samples[ALTERNATED_ALONE] = self.alternated_alone
        if self.alternation:
            figures["alternation"] = self.alternation
        if self.yardstick:
            samples[YARDSTICK] = self.yardstick
            figures[YARDSTICK] = statistics.median(self.yardstick)
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
            "cpu_s_per_example": statistics.median(per_example),
            "batches": self.runs[-1].batches,
            "elements": self.runs[-1].elements,
            "elements_per_s": self.runs[-1].elements / seconds if seconds else 0.0,
        }
        return _as_extra_info(self, figures, {"cpu_s_per_example": per_example})


@dataclasses.dataclass
class TimelineRecord:
    """A traced run: its timeline, and the bottleneck analysis derived later."""

    variant: str
    setting: dict[str, Any]
    stats: list[EpochStats]
    timeline: dict[str, Any]  # `Timeline.to_dict`, compact
    fits_in_memory: bool
    bottleneck: Bottleneck | None = None
    gate_figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    kind: str = Kind.TIMELINE
    # Every span, in the Trace Event Format (`Timeline.chrome_trace`): written
    # beside the report, not into the saved run, which keeps the compact form.
    trace: dict[str, Any] | None = None

    def to_extra_info(self) -> dict[str, Any]:
        """The timeline, and (after `RunRecords.derive`) its analysis and gated figures."""
        figures = {
            "epoch_times_s": [s.wall_s for s in self.stats],
            "input_bound": input_bound_of(self.stats),
            "fits_in_memory": self.fits_in_memory,
            "timeline": self.timeline,
        }
        if self.bottleneck is not None:
            figures["bottleneck"] = self.bottleneck.to_dict()
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
        """Both sides' times and the overheads; with passes, the paired one and its interval."""
        figures = {
            "untraced_s": run_totals(self.untraced, "wall_s"),
            "traced_s": run_totals(self.traced, "wall_s"),
            "tracing_overhead": self.overhead("wall_s"),
            "tracing_cpu_overhead": self.overhead("cpu_s"),
            # Where it goes: the first epoch stamps every read and decode; a
            # cached variant's later epochs stamp only its batches and maps.
            "tracing_overhead_first_epoch": self.overhead("wall_s", slice(0, 1)),
        }
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
    """The figures of one session's benchmarks: benchmark name -> its typed record.

    Each record becomes its benchmark's ``extra_info`` at one boundary,
    `metrics` (read when the run is saved, gated and reported).
    """

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
        """Record a traced run (its bottleneck analysis comes in `derive`)."""
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

    def analysis(self, variant: str) -> Bottleneck | None:
        """The bottleneck analysis of ``variant``'s traced run (None: it was not traced),
        available before `derive`, from the records so far."""
        record = self.timeline_of(variant)
        if record is None:
            return None
        untraced = next(
            (
                r
                for r in self.records.values()
                if isinstance(r, TrainingRecord)
                and r.kind == Kind.TRAINING
                and r.variant == variant
            ),
            None,
        )
        self._analyse(record, untraced)
        return record.bottleneck

    def verified_suggestions(self) -> dict[str, dict[str, Any]]:
        """Per variant whose suggestions were verified, its record's ``extra_info``."""
        return {
            r.variant: r.to_extra_info()
            for r in self.records.values()
            if isinstance(r, SuggestionsRecord)
        }

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

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Benchmark name -> its ``extra_info``: the one place records become dicts."""
        return {name: record.to_extra_info() for name, record in self.records.items()}

    def derive(self) -> None:
        """Fill in the ratios between benchmarks of this session (call once all have run).

        Benchmarks measured in the interleaved passes get ratios paired within
        each pass, with intervals; the rest (the tf.data service's runs, timed
        on their own) get ratios of medians.
        """
        paired = self.paired()
        for record in self.records.values():
            trial = Trial(
                "traced" if record.kind == Kind.TRACING_OVERHEAD else record.kind, record.variant
            )
            if isinstance(record, TrainingRecord | PipelineRecord | OverheadRecord):
                record.paired = paired.get(trial)
        training = {r.variant: r for r in self.records.values() if isinstance(r, TrainingRecord)}
        ceiling = training.pop("ceiling", None)
        naive = training.get("naive")
        one_worker = next((r for r in training.values() if r.service_workers == 1), None)
        for record in training.values():
            if naive and record.paired is None:
                record.speedup_over_naive = naive.train_s / record.train_s
            if ceiling and record.paired is None:
                record.fraction_of_ceiling = ceiling.train_s / record.train_s
            if ceiling and not record.service:
                # The CPU the pipeline costs beyond the model's own: where a
                # CPU-only machine's gap to the ceiling comes from. (Service
                # workers are other processes: their CPU is not in this one's.)
                record.pipeline_cpu_s = record.cpu_s - ceiling.cpu_s
            self._judge_accuracy(record, ceiling, training.get("augmented"))
            if one_worker and record.service_workers:
                record.speedup_over_1_worker = one_worker.train_s / record.train_s
        for record in self.records.values():
            if isinstance(record, TimelineRecord):
                self._analyse(record, training.get(record.variant))
        for field, found in (
            ("alternated", self.alternations),
            ("alternated_alone", self.alone_alternations),
        ):
            for alternation in found.values():
                head, base = training.get(alternation.head), training.get(alternation.base)
                if head and base:
                    setattr(head, field, alternation.head_rates)
                    setattr(base, field, alternation.base_rates)
        for alternation in self.alternations.values():
            if {alternation.head, alternation.base} <= training.keys():
                training[alternation.head].alternation = alternation.to_dict()
        for alternation in self.yardsticks.values():
            if alternation.head in training:
                training[alternation.head].yardstick = alternation.ratios()

    @staticmethod
    def _judge_accuracy(
        record: TrainingRecord, ceiling: TrainingRecord | None, augmented: TrainingRecord | None
    ) -> None:
        """Set how far the record's final test accuracy fell below its reference's.

        The reference trains the same model the same way, in the same run: the
        ceiling for a variant that does not augment, and `augmented` for one
        that does (random crops and flips slow learning down, more so on small
        real data; docs/measurements.md, 2026-11-30).
        `augmented` itself has none (an absolute floor can still be set).
        """
        reference = {"ceiling": ceiling, "augmented": augmented}.get(record.reference or "")
        if reference is None or reference is record:
            return
        # The mean over the runs (one per pass): a variant whose order or
        # augmentation differs run to run ends its few epochs at scattered accuracies.
        final, wanted = record.final_accuracy(), reference.final_accuracy()
        if final is not None and wanted is not None:
            record.accuracy_below_reference = wanted - final

    @staticmethod
    def _analyse(record: TimelineRecord, untraced: TrainingRecord | None) -> None:
        """The traced run's bottleneck analysis and gated figures."""
        # The untraced run's waiting share is the truer one, when there is one.
        runs = untraced.runs if untraced else [record.stats]
        input_bound = input_bound_of(s for run in runs for s in run)
        times = StageTimes.from_timeline(
            record.timeline, input_bound, pipelines.get(record.variant), record.fits_in_memory
        )
        record.bottleneck = analyze(times)
        record.gate_figures = stage_gate_figures(times, record.bottleneck, record.timeline)

    def bottlenecks(self) -> dict[str, dict[str, Any]]:
        """Per traced variant, its bottleneck analysis (after `derive`)."""
        return {
            r.variant: r.bottleneck.to_dict()
            for r in self.records.values()
            if isinstance(r, TimelineRecord) and r.bottleneck is not None
        }

    def gate_metrics(self) -> dict[str, dict[str, Any]]:
        """Per trained variant, the metrics the gates check (after `derive`)."""
        return metrics_by_variant(self.metrics.values())
