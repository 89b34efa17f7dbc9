"""Randomized interleaved passes: how the timed benchmarks of a run are measured.

On a shared machine the load drifts over minutes. Timing one variant's
rounds back to back and then the next variant's puts that drift between
them, and a ratio of the two measures the drift as much as the variants.
Instead (Abedi and Brecht, ICPE 2017; Kalibera and Jones, 2013) a run makes
passes: in each, every timed trial (the ceiling, each variant's training,
each variant's pipeline alone, a traced training run) runs once, in an order
shuffled anew for each pass from a recorded seed. Ratios are then paired
within a pass (`benchmarks.measuring.intervals`), and the run adds passes while a
ratio's interval is wider than the precision asked for, up to a time limit.

Each pass is an independent replicate: it has a seed of its own (model
initialisation, shuffles, augmentation), drawn from the run's seed, and every
trial of the pass uses it, so that ratios stay paired within the pass while a
sample over passes is a sample of replicates (with one seed for all, a
deterministic pipeline would give the same accuracy in every pass).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from benchmarks.measuring.intervals import Estimate

# What a trial times: training through a variant, the ceiling (the same model
# on batches in memory), the pipeline alone, or training through a traced build.
# "unobserved": training that does not read tf.data's runtime model (its overhead's base).
UNOBSERVED = "unobserved"
KINDS = ("ceiling", "training", "pipeline", "traced", UNOBSERVED)
# The interval a ratio should be within (a fraction either side) before passes stop.
PRECISION = 0.05


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
    precision: float = PRECISION

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
    # Each pass's own seed (`pass_seeds`), in pass order.
    pass_seeds: list[int] = dataclasses.field(default_factory=list)
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
            "pass_seeds": self.pass_seeds,
            "orders": [[str(trial) for trial in order] for order in self.orders],
        }


def pass_seeds(run_seed: int) -> Iterator[int]:
    """The seeds of a run's passes, one after another, drawn from the run's seed: the same
    run seed gives the same replicates, each pass its own."""
    rng = random.Random(run_seed)
    while True:
        yield rng.randrange(2**31)


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where the passes are, as a trial starts (for a progress line)."""

    pass_number: int  # 1-based
    max_passes: int
    trial: Trial
    position: int  # 1-based, within the pass
    trials: int
    elapsed_s: float
    # At most this long left, from the passes so far (None during the first pass).
    remaining_s: float | None


def run_passes(
    trials: Iterable[Trial],
    run_one: Callable[[Trial, int], tuple[Any, float]],
    plan: PassPlan,
    seed: int,
    estimates: Callable[[Passes], Iterable[Estimate]] = lambda passes: (),
    clock: Callable[[], float] = time.perf_counter,
    run_seed: int = 0,
    progress: Callable[[Progress], None] = lambda progress: None,
    together: Iterable[tuple[Trial, ...]] = (),
    first_passes_only: Iterable[Trial] = (),
) -> Passes:
    """Run ``trials`` in passes, each in a fresh random order, as ``plan`` says.

    ``run_one(trial, pass_seed)`` runs a trial once with its pass's seed and
    returns its result and the seconds it timed (a fresh build is made first,
    untimed). ``seed``: the orders' seed. ``run_seed``: what the passes' own
    seeds are drawn from (`pass_seeds`). ``estimates(passes)``: the ratios
    whose intervals decide whether another pass is needed (every one must be
    within the plan's precision). ``progress`` hears of every trial as it starts.
    ``together``: groups of trials run one right after the other in every pass (in a
    random order within the group), such as a variant and its base version: the
    less time between two measurements, the less of the machine's drift between them.
    ``first_passes_only``: trials run in the plan's first ``min_passes`` passes only (real
    training for accuracy beside a stand-in device: its figures need no more precision).
    """
    ordered = tuple(sorted(set(trials)))
    passes = Passes(ordered, seed)
    passes.results = {trial: [] for trial in ordered}
    passes.seconds = {trial: [] for trial in ordered}
    rng = random.Random(seed)
    seeds = pass_seeds(run_seed)
    started = clock()
    groups = _units(ordered, together)
    later = _without(groups, set(first_passes_only))
    while True:
        order = pass_order(groups if passes.count < plan.min_passes else later, rng)
        pass_seed = next(seeds)
        pass_started = clock()
        for position, trial in enumerate(order, start=1):
            now = clock()
            left = _remaining(passes, plan, pass_started - started, now - pass_started)
            at = (passes.count + 1, plan.max_passes, trial, position, len(order))
            progress(Progress(*at, now - started, left))
            result, seconds = run_one(trial, pass_seed)
            passes.results[trial].append(result)
            passes.seconds[trial].append(seconds)
        passes.orders.append(order)
        passes.pass_seeds.append(pass_seed)
        passes.elapsed_s = clock() - started
        passes.stopped = _why_stop(passes, plan, estimates, clock() - pass_started)
        if passes.stopped:
            break
    return passes


def _why_stop(
    passes: Passes,
    plan: PassPlan,
    estimates: Callable[[Passes], Iterable[Estimate]],
    last_pass_s: float,
) -> str:
    """Why the passes made so far are enough ("" while another is needed)."""
    if passes.count < plan.min_passes:
        return ""
    if passes.count >= plan.max_passes:
        return "as asked" if plan.min_passes == plan.max_passes else "max passes"
    if all(e.precise(plan.precision) for e in estimates(passes)):
        return "precise"
    if passes.elapsed_s + last_pass_s > plan.time_limit_s:
        return "time limit"
    return ""


def _without(units: list[list[Trial]], left_out: set[Trial]) -> list[list[Trial]]:
    """``units`` less the trials ``left_out`` (and the units they empty)."""
    kept = [[trial for trial in unit if trial not in left_out] for unit in units]
    return [unit for unit in kept if unit]


def _units(ordered: tuple[Trial, ...], together: Iterable[tuple[Trial, ...]]) -> list[list[Trial]]:
    """The trials as the units a pass shuffles: each group of ``together`` whose trials
    are all planned, and every other trial alone."""
    planned = set(ordered)
    groups = [list(group) for group in together if set(group) <= planned]
    grouped = {trial for group in groups for trial in group}
    return groups + [[trial] for trial in ordered if trial not in grouped]


def pass_order(units: list[list[Trial]], rng: random.Random) -> list[Trial]:
    """One pass's order: the units shuffled, and the trials within each unit."""
    units = [list(unit) for unit in units]
    rng.shuffle(units)
    for unit in units:
        rng.shuffle(unit)
    return [trial for unit in units for trial in unit]


def _remaining(
    passes: Passes, plan: PassPlan, before_pass_s: float, into_pass_s: float
) -> float | None:
    """At most how long the passes still take, ``into_pass_s`` into a pass that began
    ``before_pass_s`` after the first, from the mean pass so far (None: no pass made yet)."""
    if not passes.count:
        return None
    per_pass = before_pass_s / passes.count
    left = plan.max_passes - passes.count
    at_most = min(left * per_pass, max(plan.time_limit_s - before_pass_s, 0.0) + per_pass)
    # The time limit stops no pass before ``min_passes`` (all of them with --perf-passes).
    at_most = max(at_most, (plan.min_passes - passes.count) * per_pass)
    return max(at_most - into_pass_s, 0.0)
