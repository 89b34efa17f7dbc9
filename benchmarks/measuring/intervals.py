"""Ratios paired within a pass, and their confidence intervals.

A run makes several passes (`benchmarks.measuring.passes`); in each, every timed
benchmark runs once. A ratio between two benchmarks (speedup over naive,
fraction of the ceiling, traced over untraced) is taken within each pass,
where both met the same machine load, and then summarised over the passes.

The summary is the geometric mean of the paired ratios with a Student t
interval on their logarithms. Ratios of times are skewed (a pass slowed by
another job moves them far more upward than down); their logarithms are
close to symmetric. With the 3 to 8 passes a run can afford, a distribution-
free interval of the median would be the range of the passes at best, and a
bootstrap of it too narrow; the t interval is honest at these sizes: one
noisy pass widens it, and the run then adds passes (`benchmarks.measuring.passes`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

CONFIDENCE = 0.95


def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile. scipy.stats is imported here, on first use: at module level
    it added 0.8 s to every start of the suite, a refused option's too."""
    from scipy import stats

    return float(stats.t.ppf(probability, df))


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A measured quantity over ``n`` passes: its value and 95% interval (None with one pass)."""

    value: float
    low: float | None
    high: float | None
    n: int
    # The per-pass values it summarises: what a later run is compared with
    # (`benchmarks.judging.decide`), saved with the run.
    samples: tuple[float, ...] = dataclasses.field(default=(), compare=False)

    @property
    def interval_text(self) -> str:
        """``[low, high]`` in 3 significant figures, or ``[n=1]`` with one pass."""
        if self.low is None or self.high is None:
            return f"[n={self.n}]"
        return f"[{self.low:.3g}, {self.high:.3g}]"

    @property
    def half_width(self) -> float | None:
        """The interval's larger side as a fraction of the value (0.05: within +-5%)."""
        if self.low is None or self.high is None or not self.value:
            return None
        return max(self.high / self.value - 1, 1 - self.low / self.value)

    def precise(self, precision: float) -> bool:
        """Whether the interval is known and within ``precision`` (a fraction) of the value."""
        width = self.half_width
        return width is not None and width <= precision

    def excludes(self, bound: float) -> bool:
        """Whether the whole interval lies on one side of ``bound`` (1: a real change)."""
        if self.low is None or self.high is None:
            return False
        return self.low > bound or self.high < bound

    def shifted(self, by: float) -> Estimate:
        """The same estimate plus a constant (ratio - 1 is an overhead)."""
        move = lambda x: None if x is None else x + by  # noqa: E731
        samples = tuple(x + by for x in self.samples)
        return Estimate(self.value + by, move(self.low), move(self.high), self.n, samples)

    def inverse(self) -> Estimate:
        """1 / the estimate (a slowdown from a speedup); the interval turns over. Defined for
        a positive value; an interval reaching 0 or below has no upper bound inverted."""
        if self.value <= 0:
            raise ValueError(f"no inverse of a non-positive estimate: {self}")
        low = None if self.high is None else 1 / self.high
        high = None if self.low is None else (1 / self.low if self.low > 0 else math.inf)
        samples = tuple(1 / x if x else math.inf for x in self.samples)
        return Estimate(1 / self.value, low, high, self.n, samples)

    def to_list(self) -> list[float] | None:
        """``[low, high]`` for JSON, or None."""
        return None if self.low is None or self.high is None else [self.low, self.high]

    def __str__(self) -> str:
        return f"{self.value:.3g} {self.interval_text}"


def geometric(ratios: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Geometric mean of positive ``ratios`` and its t interval on the log scale."""
    if not ratios or min(ratios) <= 0:
        raise ValueError(f"ratios must be positive, got {list(ratios)}")
    logs = [math.log(r) for r in ratios]
    n, samples = len(logs), tuple(ratios)
    mean = sum(logs) / n
    if n < 2:
        return Estimate(math.exp(mean), None, None, n, samples)
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    margin = t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    low, high = math.exp(mean - margin), math.exp(mean + margin)
    return Estimate(math.exp(mean), low, high, n, samples)


def mean(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    within: tuple[float, float] = (-math.inf, math.inf),
) -> Estimate:
    """Arithmetic mean and its t interval, clipped to ``within``: for shares that can be
    0 (input-bound, within (0, 1))."""
    n = len(values)
    if not n:
        raise ValueError("no values")
    average, samples = sum(values) / n, tuple(values)
    if n < 2:
        return Estimate(average, None, None, n, samples)
    margin = t_quantile((1 + confidence) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    low, high = within
    return Estimate(average, max(low, average - margin), min(high, average + margin), n, samples)


def paired_ratio(above: Sequence[float], below: Sequence[float]) -> Estimate:
    """``above[i] / below[i]`` per pass, summarised (`geometric`).

    The two sequences are one value per pass, in pass order: pass ``i`` of
    one is paired with pass ``i`` of the other.
    """
    if len(above) != len(below):
        raise ValueError(f"paired values need one per pass each: {len(above)} and {len(below)}")
    return geometric([a / b for a, b in zip(above, below, strict=True)])
