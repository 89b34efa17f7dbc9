"""Base and head epoch by epoch: steady-state throughput of two versions, paired closely.

`--perf-against` times a variant and its base version in the same passes, but a
pass is two whole trials (a fresh model, a first epoch, the evaluations), so it
yields one ratio per half minute, and the ratio moves about 11% from pass to
pass. Here both versions are built once and trained on by one model, epoch
after epoch, in a random order within each round (head then base, or base then
head): only steady epochs are timed (each version's first epoch, its start-up,
is run before and left out), and the two epochs of a round are seconds apart,
so the machine's drift between them is small. A round's ratio moved about 6%
(log standard deviation) on two loaded cores, at about 4 s a round
(docs/measurements.md, 2026-12-03 evening): the rounds stop once the mean log
ratio's standard error is within `AlternationPlan.precision`.

The loop is here, free of TensorFlow (`alternate` takes the epoch runner);
`benchmarks.measuring.session.PerfSession.alternate` runs it on the session's model.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

BASE, HEAD = 0, 1
SIDES = ("base", "head")
# What it saves on the records, one per round: `benchmarks.saving.metrics.ALTERNATED`,
# `ALTERNATED_ALONE` and `YARDSTICK`.


@dataclasses.dataclass(frozen=True)
class AlternationPlan:
    """How many rounds: at least ``min_rounds``; more while the mean log ratio's standard
    error is above ``precision``, up to ``max_rounds`` and ``time_limit_s``."""

    min_rounds: int = 10
    max_rounds: int = 80
    time_limit_s: float = 150.0
    # A 5% loss is then caught 9 times in 10 (its estimate below the 3% tolerance at most
    # once in 10, and significant), and unchanged code passes the tolerance about once in
    # a hundred: (0.05 - 0.03) / 0.012 = 1.7 and 0.03 / 0.012 = 2.5 standard errors.
    precision: float = 0.012

    def to_dict(self) -> dict[str, Any]:
        """As saved with the run."""
        return dataclasses.asdict(self)


# An untimed run (the test job) makes two rounds: the code runs, nothing is judged.
UNTIMED = AlternationPlan(min_rounds=2, max_rounds=2, time_limit_s=math.inf)


@dataclasses.dataclass
class Alternation:
    """Steady epochs of a head and its base, round by round (examples/s per epoch)."""

    head: str
    base: str
    head_rates: list[float] = dataclasses.field(default_factory=list)
    base_rates: list[float] = dataclasses.field(default_factory=list)
    # Per round, which side ran first.
    first: list[str] = dataclasses.field(default_factory=list)
    warm_up_s: float = 0.0
    elapsed_s: float = 0.0
    stopped: str = ""

    @property
    def rounds(self) -> int:
        """Rounds made."""
        return len(self.head_rates)

    def log_ratios(self) -> list[float]:
        """Per round, log(head / base) of the epochs' examples/s."""
        return [math.log(ratio) for ratio in self.ratios()]

    def ratios(self) -> list[float]:
        """Per round, head / base (examples/s)."""
        return [h / b for h, b in zip(self.head_rates, self.base_rates, strict=True)]

    def standard_error(self) -> float:
        """Of the mean log ratio (infinite below two rounds)."""
        ratios = self.log_ratios()
        if len(ratios) < 2:
            return math.inf
        return statistics.stdev(ratios) / math.sqrt(len(ratios))

    def to_dict(self) -> dict[str, Any]:
        """As saved with the head's figures."""
        return {
            "base": self.base,
            "rounds": self.rounds,
            "first": self.first,
            "warm_up_s": self.warm_up_s,
            "elapsed_s": self.elapsed_s,
            "stopped": self.stopped,
        }

    def __str__(self) -> str:
        ratios = self.log_ratios()
        mean = math.exp(statistics.fmean(ratios)) if ratios else math.nan
        return (
            f"{self.head} against {self.base}, epoch by epoch: {self.rounds} rounds in"
            f" {self.elapsed_s:.0f} s, head/base {mean:.3f}"
            f" (standard error {self.standard_error():.1%}; stopped: {self.stopped})"
        )


def alternate(
    head: str,
    base: str,
    run_epoch: Callable[[int], float],
    plan: AlternationPlan,
    seed: int,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[Alternation], None] = lambda alternation: None,
) -> Alternation:
    """Alternate epochs of ``base`` (side `BASE`) and ``head`` (side `HEAD`) as ``plan`` says.

    ``run_epoch(side)`` trains one epoch on that side's dataset and returns its
    examples/s; each side's first epoch (its start-up) is run once before the rounds
    and not kept. ``seed``: the orders'. ``progress`` hears of each round made.
    """
    found = Alternation(head, base)
    rng = random.Random(seed)
    started = clock()
    for side in (BASE, HEAD):
        run_epoch(side)
    found.warm_up_s = clock() - started
    rounds_started = clock()
    while True:
        order = [BASE, HEAD]
        rng.shuffle(order)
        rates = {side: run_epoch(side) for side in order}
        found.base_rates.append(rates[BASE])
        found.head_rates.append(rates[HEAD])
        found.first.append(SIDES[order[0]])
        found.elapsed_s = clock() - rounds_started
        progress(found)
        if found.rounds < plan.min_rounds:
            continue
        if found.rounds >= plan.max_rounds:
            found.stopped = "max rounds"
            break
        if found.standard_error() <= plan.precision:
            found.stopped = "precise"
            break
        per_round = found.elapsed_s / found.rounds
        if found.elapsed_s + per_round > plan.time_limit_s:
            found.stopped = "time limit"
            break
    return found
