"""Deciding whether a metric regressed: two samples compared, not two numbers.

A run saves, per gated metric, one value per pass (``extra_info["samples"]``).
Against a baseline, `decide` compares the two samples as asv and Bencher do:

- the **change** is the ratio of the medians (current over baseline, turned so
  that below 1 is worse), or their difference for accuracy, with a bootstrap
  interval (resampling each side's passes);
- the **test** is a one-sided Mann-Whitney U test: is the current sample
  worse than the baseline's? (or, with ``test = "bootstrap"``, whether the
  bootstrap interval lies wholly on the worse side of no change.)

A regression is a change both significant (p below the level) and larger than
its tolerance. A change beyond the tolerance that is not significant is
**inconclusive**, and so is a comparison with too few passes on a side for
the test to reach the level at all. Each verdict is one line.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from benchmarks.measuring.intervals import t_quantile
from benchmarks.saving.metrics import Metric

Outcome = Literal["regression", "inconclusive", "ok", "improvement"]
TESTS = ("mann-whitney", "bootstrap")
BOOTSTRAP_RESAMPLES = 4000


@dataclasses.dataclass(frozen=True)
class Rule:
    """The tolerance, test and level a metric is decided with, and where they came from."""

    tolerance: float
    test: str = "mann-whitney"
    alpha: float = 0.05
    origin: str = "defaults"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One metric of one variant, decided against the baseline."""

    variant: str
    metric: Metric
    outcome: Outcome
    baseline: Sequence[float]
    current: Sequence[float]
    rule: Rule
    change: float | None = None  # current over baseline (ratio) or minus it (absolute)
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    reason: str = ""

    def __str__(self) -> str:
        m = self.metric
        before, after = _summary(self.baseline, m), _summary(self.current, m)
        head = f"{self.outcome}: {self.variant} {m.name}: baseline {before}, now {after}"
        if self.change is None:
            return f"{head}; {self.reason}"
        low, high = self.interval or (math.nan, math.nan)
        sign = "-" if m.higher_is_better else "+"
        if m.absolute:
            change = f"change {self.change:+.3f} [{low:+.3f}, {high:+.3f}]"
            tolerance = f"tolerance {sign}{self.rule.tolerance:g}"
        else:
            change = f"change {self.change - 1:+.1%} [{low - 1:+.1%}, {high - 1:+.1%}]"
            tolerance = f"tolerance {sign}{self.rule.tolerance:.0%}"
        p = "" if self.p_value is None else f" p={self.p_value:.3g}"
        test = f"{self.rule.test}{p} at level {self.rule.alpha:g}"
        tail = f"; {self.reason}" if self.reason else ""
        return f"{head}; {change}; {test}; {tolerance} ({self.rule.origin}){tail}"


def _summary(sample: Sequence[float], metric: Metric) -> str:
    """Median and range of a sample, e.g. ``0.62 [0.60-0.66] n=4``."""
    if not sample:
        return "none"
    digits = ".3f" if metric.absolute else ".3g"
    med = format(statistics.median(sample), digits)
    if len(sample) == 1:
        return f"{med} n=1"
    return f"{med} [{min(sample):{digits}}-{max(sample):{digits}}] n={len(sample)}"


def smallest_p(n_baseline: int, n_current: int) -> float:
    """The smallest one-sided p-value the U test can give with these sample sizes:
    every current value worse than every baseline value, 1 / C(n + m, n)."""
    return 1 / math.comb(n_baseline + n_current, n_baseline)


def _change(baseline: np.ndarray, current: np.ndarray, metric: Metric) -> np.ndarray:
    """Current against baseline, medians along the last axis: a ratio, or a difference."""
    before, after = np.median(baseline, axis=-1), np.median(current, axis=-1)
    return after - before if metric.absolute else after / before


def _worse_by(change: float, metric: Metric) -> float:
    """How much worse a change is (a fraction, or an absolute amount); negative: better."""
    moved = change if metric.absolute else change - 1
    return -moved if metric.higher_is_better else moved


def bootstrap_interval(
    baseline: Sequence[float], current: Sequence[float], metric: Metric, alpha: float, seed: int = 0
) -> tuple[float, float]:
    """The percentile bootstrap interval (1 - 2 alpha) of the change, each side resampled."""
    rng = np.random.default_rng(seed)
    before = rng.choice(np.asarray(baseline, float), (BOOTSTRAP_RESAMPLES, len(baseline)))
    after = rng.choice(np.asarray(current, float), (BOOTSTRAP_RESAMPLES, len(current)))
    low, high = np.quantile(_change(before, after, metric), [alpha, 1 - alpha])
    return float(low), float(high)


def _p_values(baseline: list[float], current: list[float], metric: Metric) -> tuple[float, float]:
    """One-sided Mann-Whitney p-values: (current worse, current better)."""
    worse, better = ("less", "greater") if metric.higher_is_better else ("greater", "less")
    from scipy import stats  # on first use (see intervals.t_quantile)

    test = stats.mannwhitneyu
    return (
        float(test(current, baseline, alternative=worse).pvalue),
        float(test(current, baseline, alternative=better).pvalue),
    )


def decide(
    variant: str,
    metric: Metric,
    baseline: Sequence[float],
    current: Sequence[float],
    rule: Rule,
) -> Verdict:
    """Whether ``current`` regressed from ``baseline`` beyond ``rule.tolerance``, significantly."""
    before, after = [float(x) for x in baseline], [float(x) for x in current]
    verdict = functools.partial(Verdict, variant, metric, baseline=before, current=after, rule=rule)
    if not before or not after:
        return verdict("inconclusive", reason="no samples on one side (saved before they were)")
    if rule.test == "mann-whitney" and smallest_p(len(before), len(after)) >= rule.alpha:
        return verdict(
            "inconclusive",
            reason=f"{len(before)} and {len(after)} passes cannot reach p < {rule.alpha:g}"
            " with the Mann-Whitney test (make more passes: --perf-passes)",
        )
    change = float(_change(np.asarray(before), np.asarray(after), metric))
    interval = bootstrap_interval(before, after, metric, rule.alpha)
    worse_by = _worse_by(change, metric)
    if rule.test == "mann-whitney":
        p_worse, p_better = _p_values(before, after, metric)
        significant_worse, significant_better = p_worse < rule.alpha, p_better < rule.alpha
        p: float | None = p_worse if worse_by > 0 else p_better
    else:
        # Significant: the whole interval lies on one side of no change.
        sides = [_worse_by(bound, metric) for bound in interval]
        significant_worse, significant_better = min(sides) > 0, max(sides) < 0
        p = None
    found = functools.partial(verdict, change=change, interval=interval, p_value=p)
    return _outcome(found, worse_by, rule.tolerance, significant_worse, significant_better)


def decide_paired(
    variant: str,
    metric: Metric,
    baseline: Sequence[float],
    current: Sequence[float],
    rule: Rule,
) -> Verdict:
    """`decide` for base and head measured in the same passes: ``baseline[i]`` and
    ``current[i]`` come from pass ``i``, so the machine's drift between passes cancels.

    The change is the geometric mean of the per-pass ratios (the mean difference for
    an absolute metric), with its t interval at the rule's level on each side; the test
    is a one-sided paired t-test on the log ratios (or differences). The outcome
    follows `decide`'s rule: a regression is beyond the tolerance and significant.
    """
    before, after = [float(x) for x in baseline], [float(x) for x in current]
    if len(before) != len(after):
        raise ValueError(f"paired samples need one value per pass: {len(before)}, {len(after)}")
    rule = dataclasses.replace(rule, test="paired t")
    verdict = functools.partial(Verdict, variant, metric, baseline=before, current=after, rule=rule)
    if len(before) < 2:
        return verdict("inconclusive", reason="one pass: no interval (make more: --perf-passes)")
    if not metric.absolute and min(before + after) <= 0:
        return verdict("inconclusive", reason="a value of 0 or below has no ratio")
    moved = [
        a - b if metric.absolute else math.log(a / b) for b, a in zip(before, after, strict=True)
    ]
    n, mean = len(moved), statistics.fmean(moved)
    spread = statistics.stdev(moved) / math.sqrt(n)
    margin = t_quantile(1 - rule.alpha, n - 1) * spread
    back = (lambda x: x) if metric.absolute else math.exp
    change, interval = back(mean), (back(mean - margin), back(mean + margin))
    # Positive: head worse than base.
    worse = -mean if metric.higher_is_better else mean
    p_worse = _p_above_zero(worse, spread, n)
    p_better = 1.0 - p_worse
    worse_by = _worse_by(change, metric)
    p = p_worse if worse_by > 0 else p_better
    found = functools.partial(verdict, change=change, interval=interval, p_value=p)
    return _outcome(found, worse_by, rule.tolerance, p_worse < rule.alpha, p_better < rule.alpha)


def _outcome(
    found: Callable[..., Verdict],
    worse_by: float,
    tolerance: float,
    significant_worse: bool,
    significant_better: bool,
) -> Verdict:
    """The rule both decisions share: a regression is worse beyond the tolerance and
    significant; beyond it but not significant is inconclusive."""
    if worse_by > tolerance and significant_worse:
        return found("regression")
    if worse_by > tolerance:
        return found("inconclusive", reason="worse beyond the tolerance, but not significantly")
    if -worse_by > tolerance and significant_better:
        return found("improvement")
    return found("ok")


def _p_above_zero(mean: float, spread: float, n: int) -> float:
    """One-sided t-test p-value that a mean of ``n`` paired values (standard error
    ``spread``) is not above 0; with no spread at all, 0 or 1."""
    if spread <= 0:
        return 0.0 if mean > 0 else 1.0
    from scipy import stats  # on first use (see intervals.t_quantile)

    return float(stats.t.sf(mean / spread, n - 1))
