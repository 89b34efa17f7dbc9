"""What each benchmark of a session measured, and the figures derived across them.

Every benchmark records its figures here (they become its ``extra_info``),
keyed by the benchmark's name. Ratios that need two measurements of the same
session (speedup over ``naive``, slowdown against the ceiling, the traced
runs' bottleneck analysis) are filled in at the end, by `RunRecords.derive`.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import pipelines
from benchmarks.bottleneck import StageTimes, analyze, stage_gate_figures
from benchmarks.gates import metrics_by_variant
from benchmarks.intervals import Estimate, geometric, mean, paired_ratio
from benchmarks.passes import Passes, Trial
from models.trainer import EpochStats, input_bound_of
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


@dataclasses.dataclass(frozen=True)
class PairedFigures:
    """One trial's figures over the run's passes, its ratios paired within each pass."""

    epoch_s: Estimate
    # Share of training time spent waiting for input (training runs only).
    input_bound: Estimate | None = None
    speedup_over_naive: Estimate | None = None
    speedup_over_augmented: Estimate | None = None
    fraction_of_ceiling: Estimate | None = None
    traced_over_untraced: Estimate | None = None

    def ratios(self) -> dict[str, Estimate]:
        """The ratios measured (by name), without the epoch time."""
        named = {
            "speedup_over_naive": self.speedup_over_naive,
            "speedup_over_augmented": self.speedup_over_augmented,
            "fraction_of_ceiling": self.fraction_of_ceiling,
            "traced_over_untraced": self.traced_over_untraced,
        }
        return {name: value for name, value in named.items() if value is not None}

    def to_extra_info(self) -> dict[str, Any]:
        """Each figure as ``name`` (its value) and ``name_ci`` (its 95% interval, or None)."""
        figures: dict[str, Estimate] = {"epoch_s": self.epoch_s, **self.ratios()}
        if self.input_bound is not None:
            figures["input_bound"] = self.input_bound
        if self.fraction_of_ceiling is not None:
            figures["ceiling_slowdown"] = self.fraction_of_ceiling.inverse()
        if self.traced_over_untraced is not None:
            figures["tracing_overhead"] = self.traced_over_untraced.shifted(-1)
        info: dict[str, Any] = {"passes": self.epoch_s.n}
        for name, estimate in figures.items():
            info[name] = estimate.value
            info[f"{name}_ci"] = estimate.to_list()
        return info


def pass_figures(passes: Passes) -> dict[Trial, PairedFigures]:
    """Per trial, its epoch time and its ratios, each paired within a pass.

    Speedups are over ``naive`` and ``augmented`` of the same kind (training or
    pipeline alone; `SPEEDUP_REFERENCES`), fractions of the ceiling are the
    ceiling's time over the trial's, and a traced run is set against the
    untraced training of its variant.
    """
    seconds = passes.seconds
    figures = {}
    for trial, times in seconds.items():
        first = passes.results[trial][0]
        epochs = len(first) if isinstance(first, list) else 1
        untraced = seconds.get(Trial("training", trial.variant))
        speedups = {}
        for name, reference in SPEEDUP_REFERENCES.items():
            over = seconds.get(Trial(trial.kind, reference))
            if over and trial.kind != "traced":
                speedups[name] = paired_ratio(over, times)
        figures[trial] = PairedFigures(
            epoch_s=geometric([t / epochs for t in times]),
            input_bound=(
                mean([input_bound_of(run) for run in passes.results[trial]])
                if isinstance(first, list)
                else None
            ),
            **speedups,
            fraction_of_ceiling=(
                paired_ratio(seconds[CEILING], times)
                if CEILING in seconds and trial.kind == "training"
                else None
            ),
            traced_over_untraced=(
                paired_ratio(times, untraced) if untraced and trial.kind == "traced" else None
            ),
        )
    return figures


def pass_estimates(passes: Passes) -> list[Estimate]:
    """The ratios whose intervals decide whether the run needs another pass."""
    return [
        estimate
        for trial, figures in pass_figures(passes).items()
        if trial.kind in {"training", "traced"}
        for name, estimate in figures.ratios().items()
        if SPEEDUP_REFERENCES.get(name) != trial.variant
    ]


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


def unreliable(passes: Passes, precision: float) -> list[Unreliable]:
    """The measured ratios that cannot be trusted: an interval wider than ``precision``
    (a fraction), or a fraction of the ceiling whose whole interval lies above 1
    (faster than the model can train: the measurement is wrong)."""
    found = []
    for trial, figures in pass_figures(passes).items():
        if trial.kind not in {"training", "traced"}:
            continue
        for name, estimate in figures.ratios().items():
            if SPEEDUP_REFERENCES.get(name) == trial.variant:
                continue  # over itself: 1 by construction
            impossible = name == "fraction_of_ceiling" and estimate.excludes(1) and estimate.low > 1
            if impossible or (estimate.half_width is not None and not estimate.precise(precision)):
                found.append(Unreliable(trial, name, estimate, impossible, precision))
    return found


class RunRecords:
    """The figures of one session's benchmarks: benchmark name -> its ``extra_info``."""

    def __init__(self, describe: Callable[[str, str], dict[str, Any]]) -> None:
        """``describe(kind, variant)``: the parameters every figure carries (see
        `benchmarks.session.PerfSession.common_info`)."""
        self.describe = describe
        self.metrics: dict[str, dict[str, Any]] = {}
        # The interleaved passes the timed benchmarks read their rounds from.
        self.passes: Passes | None = None

    def training(
        self, name: str, variant: str, runs: list[list[EpochStats]], kind: str = "training"
    ) -> dict[str, Any]:
        """Metrics of a training benchmark: medians over rounds, per-epoch lists of the last."""
        train_s = statistics.median(run_totals(runs, "wall_s"))
        examples = sum(s.examples for s in runs[-1])
        last = runs[-1]
        info = {
            **self.describe(kind, variant),
            "train_s": train_s,
            "epoch_s": train_s / len(last),
            "epoch_times_s": [s.wall_s for s in last],
            "examples_per_s": examples / train_s,
            "cpu_s": statistics.median(run_totals(runs, "cpu_s")),
            "input_bound": input_bound_of(s for run in runs for s in run),
            "train_accuracy": [s.train_accuracy for s in last],
            "test_accuracy_per_epoch": [s.test_accuracy for s in last],
            "test_accuracy": last[-1].test_accuracy,
            "rounds": len(runs),
        }
        self.metrics[name] = info
        return info

    def pipeline(self, name: str, variant: str, runs: list[PipelineEpoch]) -> dict[str, Any]:
        """Metrics of a pipeline-only benchmark."""
        seconds = statistics.median(run.seconds for run in runs)
        info = {
            **self.describe("pipeline", variant),
            "seconds": seconds,
            "cpu_s": statistics.median(run.cpu_s for run in runs),
            "batches": runs[-1].batches,
            "elements": runs[-1].elements,
            "elements_per_s": runs[-1].elements / seconds if seconds else 0.0,
        }
        self.metrics[name] = info
        return info

    def timeline(
        self,
        name: str,
        variant: str,
        stats: list[EpochStats],
        timeline: Timeline,
        fits_in_memory: bool,
    ) -> dict[str, Any]:
        """Metrics of a traced run: its compact timeline (the bottleneck comes later)."""
        info = {
            **self.describe("timeline", variant),
            "epoch_times_s": [s.wall_s for s in stats],
            "input_bound": input_bound_of(stats),
            "fits_in_memory": fits_in_memory,
            "timeline": timeline.to_dict(),
        }
        self.metrics[name] = info
        return info

    def tracing_overhead(
        self,
        name: str,
        variant: str,
        untraced: list[list[EpochStats]],
        traced: list[list[EpochStats]],
    ) -> dict[str, Any]:
        """Traced against untraced training runs of the same variant, measured alternately.

        Wall time is what the goal is about; CPU time (every thread of the
        process) is what tracing adds, and on a shared machine it is the
        steadier figure: other work slows a run down, it does not add to its CPU.
        """
        untraced_s, traced_s = run_totals(untraced, "wall_s"), run_totals(traced, "wall_s")

        def overhead(field: str, epochs: slice = slice(None)) -> float:
            # Ratio of medians - 1: 0.05 is 5% more (0.0 if the untraced median is 0).
            below = statistics.median(run_totals(untraced, field, epochs))
            above = statistics.median(run_totals(traced, field, epochs))
            return above / below - 1 if below else 0.0

        info = {
            **self.describe("tracing_overhead", variant),
            "untraced_s": untraced_s,
            "traced_s": traced_s,
            "tracing_overhead": overhead("wall_s"),
            "tracing_cpu_overhead": overhead("cpu_s"),
            # Where it goes: the first epoch stamps every read and decode; a
            # cached variant's later epochs stamp only its batches and maps.
            "tracing_overhead_first_epoch": overhead("wall_s", slice(0, 1)),
        }
        if min(map(len, untraced + traced)) > 1:
            info["tracing_overhead_later_epochs"] = overhead("wall_s", slice(1, None))
        self.metrics[name] = info
        return info

    def derive(self) -> None:
        """Fill in the ratios between benchmarks of this session (call once all have run).

        Benchmarks measured in the interleaved passes get ratios paired within
        each pass, with intervals; the rest (the tf.data service's runs, timed
        on their own) get ratios of medians.
        """
        by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for info in self.metrics.values():
            by_kind.setdefault(info["kind"], {})[info["variant"]] = info
        training, pipeline = by_kind.get("training", {}), by_kind.get("pipeline", {})
        ceiling = by_kind.get("ceiling", {}).get("ceiling")
        naive = training.get("naive")
        paired = pass_figures(self.passes) if self.passes else {}
        for kind, infos in (("training", training), ("pipeline", pipeline)):
            for variant, info in infos.items():
                if Trial(kind, variant) in paired:
                    info.update(paired[Trial(kind, variant)].to_extra_info())
        for variant, info in by_kind.get("tracing_overhead", {}).items():
            if Trial("traced", variant) in paired:
                info.update(paired[Trial("traced", variant)].to_extra_info())
        if ceiling and CEILING in paired:
            ceiling.update(paired[CEILING].to_extra_info())
        for info in training.values():
            if naive and "speedup_over_naive" not in info:
                info["speedup_over_naive"] = naive["train_s"] / info["train_s"]
            if ceiling and "fraction_of_ceiling" not in info:
                info["ceiling_slowdown"] = info["train_s"] / ceiling["train_s"]
                info["fraction_of_ceiling"] = ceiling["train_s"] / info["train_s"]
            if ceiling and not info.get("service"):
                # The CPU the pipeline costs beyond the model's own: where a
                # CPU-only machine's gap to the ceiling comes from. (Service
                # workers are other processes: their CPU is not in this one's.)
                info["pipeline_cpu_s"] = info["cpu_s"] - ceiling["cpu_s"]
        one_worker = next((i for i in training.values() if i.get("service_workers") == 1), None)
        for info in training.values():
            if one_worker and info.get("service_workers"):
                info["speedup_over_1_worker"] = one_worker["train_s"] / info["train_s"]
        for variant, info in by_kind.get("timeline", {}).items():
            # The untraced run's waiting share is the truer one, when there is one.
            input_bound = training.get(variant, info)["input_bound"]
            times = StageTimes.from_timeline(
                info["timeline"], input_bound, pipelines.get(variant), info["fits_in_memory"]
            )
            analysis = analyze(times)
            info["bottleneck"] = analysis.to_dict()
            info.update(stage_gate_figures(times, analysis, info["timeline"]))

    def bottlenecks(self) -> dict[str, dict[str, Any]]:
        """Per traced variant, its bottleneck analysis (after `derive`)."""
        return {
            info["variant"]: info["bottleneck"]
            for info in self.metrics.values()
            if info["kind"] == "timeline" and "bottleneck" in info
        }

    def gate_metrics(self) -> dict[str, dict[str, Any]]:
        """Per trained variant, the metrics the gates check (after `derive`)."""
        return metrics_by_variant(self.metrics.values())
