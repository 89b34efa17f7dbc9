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
from benchmarks.saving.metrics import (
    CEILING_SLOWDOWN,
    EPOCH_S,
    EPOCH_START_S,
    FIRST_BATCH_S,
    FIRST_EPOCH_EXTRA_S,
    FRACTION_OF_CEILING,
    INPUT_BOUND,
    OBSERVED_OVER_UNOBSERVED,
    RUNTIME_OVERHEAD,
    SPEEDUP_OVER_AUGMENTED,
    SPEEDUP_OVER_NAIVE,
    STEADY_CEILING_SLOWDOWN,
    STEADY_EXAMPLES_PER_S,
    STEADY_FRACTION_OF_CEILING,
    STEADY_INPUT_BOUND,
    STEADY_OBSERVED_OVER_UNOBSERVED,
    STEADY_RUNTIME_OVERHEAD,
    STEADY_SPEEDUP_OVER_AUGMENTED,
    STEADY_SPEEDUP_OVER_NAIVE,
    STEADY_TRACED_OVER_UNTRACED,
    STEADY_TRACING_OVERHEAD,
    TRACED_OVER_UNTRACED,
    TRACING_OVERHEAD,
    saved,
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
# (full epochs, steady state, the variant it is over).
SPEEDUP_REFERENCES = (
    (SPEEDUP_OVER_NAIVE, STEADY_SPEEDUP_OVER_NAIVE, "naive"),
    (SPEEDUP_OVER_AUGMENTED, STEADY_SPEEDUP_OVER_AUGMENTED, "augmented"),
)
REFERENCE_OF = {m.name: ref for *speedups, ref in SPEEDUP_REFERENCES for m in speedups}
# A traced run over its untraced twin, and an observed training run over its unobserved
# twin: full epochs and steady state.
TWIN_RATIOS = {
    "traced": (TRACED_OVER_UNTRACED, STEADY_TRACED_OVER_UNTRACED),
    "training": (OBSERVED_OVER_UNOBSERVED, STEADY_OBSERVED_OVER_UNOBSERVED),
}
# Figures derived from a ratio: (from, to, how).
DERIVED = (
    (FRACTION_OF_CEILING, CEILING_SLOWDOWN, Estimate.inverse),
    (TRACED_OVER_UNTRACED, TRACING_OVERHEAD, lambda ratio: ratio.shifted(-1)),
    (OBSERVED_OVER_UNOBSERVED, RUNTIME_OVERHEAD, lambda ratio: ratio.shifted(-1)),
    (STEADY_FRACTION_OF_CEILING, STEADY_CEILING_SLOWDOWN, Estimate.inverse),
    (STEADY_TRACED_OVER_UNTRACED, STEADY_TRACING_OVERHEAD, lambda ratio: ratio.shifted(-1)),
    (STEADY_OBSERVED_OVER_UNOBSERVED, STEADY_RUNTIME_OVERHEAD, lambda ratio: ratio.shifted(-1)),
)


# The ratios a run is judged by, and whose intervals decide whether it needs another
# pass: steady state (what a change to the pipeline's throughput moves), and what
# tracing costs there. The full-epoch ratios are reported beside them.
JUDGED = (
    STEADY_SPEEDUP_OVER_NAIVE.name,
    STEADY_SPEEDUP_OVER_AUGMENTED.name,
    STEADY_FRACTION_OF_CEILING.name,
    STEADY_TRACED_OVER_UNTRACED.name,
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
            SPEEDUP_OVER_NAIVE.name,
            SPEEDUP_OVER_AUGMENTED.name,
            FRACTION_OF_CEILING.name,
            TRACED_OVER_UNTRACED.name,
            OBSERVED_OVER_UNOBSERVED.name,
            STEADY_OBSERVED_OVER_UNOBSERVED.name,
            *JUDGED,
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def figures(self) -> dict[str, Estimate]:
        """Every figure by its saved name, the derived ones (slowdowns, overheads) included."""
        figures: dict[str, Estimate] = {EPOCH_S.name: self.epoch_s, **self.ratios()}
        singles = (
            INPUT_BOUND.name,
            STEADY_EXAMPLES_PER_S.name,
            STEADY_INPUT_BOUND.name,
            FIRST_BATCH_S.name,
            FIRST_EPOCH_EXTRA_S.name,
            EPOCH_START_S.name,
        )
        figures.update(
            {name: getattr(self, name) for name in singles if getattr(self, name) is not None}
        )
        for source, derived, how in DERIVED:
            ratio = figures.get(source.name)
            if ratio is not None:
                figures[derived.name] = how(ratio)
        return figures

    def saved(self) -> dict[str, dict[str, Any]]:
        """Each figure by its name as a run saves it: value, interval and samples in one
        nested value (`benchmarks.saving.metrics.Saved`)."""
        return {
            name: saved(estimate.value, estimate.to_list(), estimate.samples)
            for name, estimate in self.figures().items()
        }


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
    figures: dict[str, Estimate] = {EPOCH_S.name: geometric([t / epochs for t in times])}
    for full, steady, reference in SPEEDUP_REFERENCES:
        over = Trial(trial.kind, reference)
        if over in seconds and trial.kind != "traced":
            figures[full.name] = paired_ratio(seconds[over], times)
            if trial in rates and over in rates:
                figures[steady.name] = paired_ratio(rates[trial], rates[over])
    if CEILING in seconds and trial.kind == "training":
        figures[FRACTION_OF_CEILING.name] = paired_ratio(seconds[CEILING], times)
        figures[STEADY_FRACTION_OF_CEILING.name] = paired_ratio(rates[trial], rates[CEILING])
    # A traced run over its plain twin; a training run over its unobserved twin, where
    # it was timed without the readings too.
    if trial.kind in TWIN_RATIOS and untraced in seconds and untraced != trial:
        full, steady = TWIN_RATIOS[trial.kind]
        figures[full.name] = paired_ratio(times, seconds[untraced])
        figures[steady.name] = paired_ratio(rates[untraced], rates[trial])
    if trial in rates:
        positive = (0.0, math.inf)
        figures[INPUT_BOUND.name] = mean([input_bound_of(run) for run in runs], within=(0, 1))
        figures[STEADY_EXAMPLES_PER_S.name] = geometric(rates[trial])
        steady_waits = [input_bound_of(steady_epochs(run)) for run in runs]
        figures[STEADY_INPUT_BOUND.name] = mean(steady_waits, within=(0, 1))
        figures[FIRST_BATCH_S.name] = mean([first_batch_s(run) for run in runs], within=positive)
        if epochs > 1:
            extra = [first_epoch_extra_s(run) for run in runs]
            figures[FIRST_EPOCH_EXTRA_S.name] = mean(extra, within=positive)
            starts = [epoch_start_s(run) for run in runs]
            figures[EPOCH_START_S.name] = mean(starts, within=positive)
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
            reference = REFERENCE_OF.get(name)
            if name in JUDGED and reference != trial.variant:
                yield trial, name, estimate


def pass_estimates(passes: Passes) -> list[Estimate]:
    """The ratios whose intervals decide whether the run needs another pass."""
    return [estimate for _, _, estimate in judged_ratios(pass_figures(passes))]


# Start-up, head over base pass by pass (--perf-against): what a pair's start-up is judged
# by, so the passes go on until it is precise too.
STARTUP = {FIRST_BATCH_S.name: first_batch_s, FIRST_EPOCH_EXTRA_S.name: first_epoch_extra_s}


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
            found.append(Unreliable(trial, FRACTION_OF_CEILING.name, fraction, True, precision))
    return found
