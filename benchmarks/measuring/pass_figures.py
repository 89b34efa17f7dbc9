"""A run's figures from its interleaved passes: each trial's ratios paired within a pass.

Pure statistics over `benchmarks.measuring.passes.Passes`: speedups, fractions of
the ceiling, the traced and the observed runs against their plain twins, steady
state and start-up (`benchmarks.measuring.phases`), each an `Estimate` with its
interval; which of them decide whether another pass is needed (`JUDGED`,
`pass_estimates`, `startup_estimates`) and which cannot be trusted (`unreliable`).
The records of `benchmarks.measuring.records` carry them into each benchmark's
``extra_info``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from benchmarks.measuring.intervals import Estimate, geometric, mean, paired_ratio
from benchmarks.measuring.passes import UNOBSERVED, Passes, Trial
from benchmarks.measuring.phases import (
    epoch_start_s,
    first_batch_s,
    first_epoch_extra_s,
    steady_epochs,
    steady_rate,
)
from models.trainer import EpochStats, input_bound_of


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
