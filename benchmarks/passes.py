"""Randomized interleaved passes: how the timed benchmarks of a run are measured.

On a shared machine the load drifts over minutes. Timing one variant's
rounds back to back and then the next variant's puts that drift between
them, and a ratio of the two measures the drift as much as the variants.
Instead (Abedi and Brecht, ICPE 2017; Kalibera and Jones, 2013) a run makes
passes: in each, every timed trial (the ceiling, each variant's training,
each variant's pipeline alone, a traced training run) runs once, in an order
shuffled anew for each pass from a recorded seed. Ratios are then paired
within a pass (`benchmarks.intervals`), and the run adds passes while a
ratio's interval is wider than the precision asked for, up to a time limit.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from benchmarks.intervals import Estimate

# What a trial times: training through a variant, the ceiling (the same model
# on batches in memory), the pipeline alone, or training through a traced build.
KINDS = ("ceiling", "training", "pipeline", "traced")


@dataclasses.dataclass(frozen=True, order=True)
class Trial:
    """One timed thing a pass runs once."""

    kind: str
    variant: str

    def __str__(self) -> str:
        return self.variant if self.kind == "training" else f"{self.kind}:{self.variant}"


@dataclasses.dataclass(frozen=True)
class PassPlan:
    """How many passes: at least ``min_passes``; more while an interval is wider than
    ``precision`` (a fraction), up to ``max_passes`` and while the passes so far took
    less than ``time_limit_s`` with room for one more."""

    min_passes: int
    max_passes: int
    time_limit_s: float
    precision: float = 0.05

    def exactly(self, count: int) -> PassPlan:
        """``count`` passes, no more and no fewer (--perf-passes; one when untimed)."""
        return dataclasses.replace(self, min_passes=count, max_passes=count)


@dataclasses.dataclass
class Passes:
    """What the passes measured: per trial, one result and one wall time per pass."""

    trials: tuple[Trial, ...]
    seed: int
    orders: list[list[Trial]] = dataclasses.field(default_factory=list)
    results: dict[Trial, list[Any]] = dataclasses.field(default_factory=dict)
    seconds: dict[Trial, list[float]] = dataclasses.field(default_factory=dict)
    elapsed_s: float = 0.0
    # Why the run stopped adding passes: "precise", "time limit", "max passes", or
    # "as asked" (a fixed count: --perf-passes, or one pass when untimed).
    stopped: str = ""

    @property
    def count(self) -> int:
        """Passes made."""
        return len(self.orders)

    def of(self, trial: Trial) -> list[Any]:
        """The trial's results, one per pass, in pass order."""
        return self.results[trial]

    def to_dict(self) -> dict[str, Any]:
        """The plan as run, for the saved run: seed, count and each pass's order."""
        return {
            "seed": self.seed,
            "passes": self.count,
            "stopped": self.stopped,
            "elapsed_s": self.elapsed_s,
            "orders": [[str(trial) for trial in order] for order in self.orders],
        }


def run_passes(
    trials: Iterable[Trial],
    run_one: Callable[[Trial], tuple[Any, float]],
    plan: PassPlan,
    seed: int,
    estimates: Callable[[Passes], Iterable[Estimate]] = lambda passes: (),
    clock: Callable[[], float] = time.perf_counter,
) -> Passes:
    """Run ``trials`` in passes, each in a fresh random order, as ``plan`` says.

    ``run_one(trial)`` runs a trial once and returns its result and the seconds
    it timed (a fresh build is made first, untimed). ``estimates(passes)``:
    the ratios whose intervals decide whether another pass is needed (every
    one must be within the plan's precision).
    """
    ordered = tuple(sorted(set(trials)))
    passes = Passes(ordered, seed)
    passes.results = {trial: [] for trial in ordered}
    passes.seconds = {trial: [] for trial in ordered}
    rng = random.Random(seed)
    started = clock()
    while True:
        order = list(ordered)
        rng.shuffle(order)
        pass_started = clock()
        for trial in order:
            result, seconds = run_one(trial)
            passes.results[trial].append(result)
            passes.seconds[trial].append(seconds)
        passes.orders.append(order)
        passes.elapsed_s = clock() - started
        if passes.count < plan.min_passes:
            continue
        if passes.count >= plan.max_passes:
            passes.stopped = "as asked" if plan.min_passes == plan.max_passes else "max passes"
            break
        if all(e.precise(plan.precision) for e in estimates(passes)):
            passes.stopped = "precise"
            break
        if passes.elapsed_s + (clock() - pass_started) > plan.time_limit_s:
            passes.stopped = "time limit"
            break
    return passes
