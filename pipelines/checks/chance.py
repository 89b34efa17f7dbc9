"""How likely an observation is by chance: the statistical tests behind the random properties.

A property about randomness (a flip happens half the time, a new seed gives
a new order) can only be checked up to a false-failure rate. Every check here
fails when the observation's p-value is below `FALSE_FAILURE_RATE`, so a
correct pipeline fails one check in a million; a check whose sample could
not reach that level says so (``conclusive`` false) instead of passing or
failing on too little evidence.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from pipelines.augment import RandomChoice

FALSE_FAILURE_RATE = 1e-6
# Measured values may carry float32 rounding from the pipeline.
RANGE_TOLERANCE = 1e-3


def _stats() -> ModuleType:
    """scipy.stats, imported on first use: it takes about a second, and every run of the
    suite imports this module (the plugin checks contracts) while few test a random
    property (docs/measurements.md, "the test job's start-ups")."""
    from scipy import stats

    return stats


# A chi-square test is trusted where every cell expects at least this many values.
MIN_EXPECTED = 5
# Uniform choices are cut into this many equal bins for the independence test.
UNIFORM_BINS = 4


def choice_p_value(choice: RandomChoice, values: np.ndarray) -> tuple[float, str]:
    """The p-value of ``values`` under ``choice``'s stated distribution, and what was seen.

    Bernoulli: an exact two-sided binomial test of the rate. Uniform and
    integers: 0 if any value lies outside the stated range. Integers: a
    chi-square goodness-of-fit test over every level (a level never drawn, or
    drawn at the wrong share, fails it), or where the sample is too small for
    that a Kolmogorov-Smirnov test (conservative for integers). Uniform: a
    Kolmogorov-Smirnov test, and both ends of the range reached (the chance that
    no value came as close to an end as the closest did), Bonferroni-combined.
    """
    values = np.asarray(values)
    count = len(values)
    if choice.distribution == "bernoulli":
        hits = int(np.count_nonzero(values))
        p = _stats().binomtest(hits, count, choice.rate).pvalue
        return p, f"{hits} of {count} images, stated rate {choice.rate}"
    values = values.astype(np.float64)
    low, high = choice.low, choice.high
    seen = f"{count} values in [{values.min():.3g}, {values.max():.3g}], stated [{low}, {high}]"
    slack = RANGE_TOLERANCE * (high - low)
    if values.min() < low - slack or values.max() > high + slack:
        return 0.0, seen + " (outside the range)"
    if choice.distribution == "integers":
        levels = np.arange(low, high + 1)
        counts = np.array([np.count_nonzero(np.round(values) == level) for level in levels])
        if count / len(levels) >= MIN_EXPECTED:
            p = float(_stats().chisquare(counts).pvalue)
            shares = ", ".join(
                f"{int(level)}: {n}" for level, n in zip(levels, counts, strict=True)
            )
            return p, f"{seen}, per level {shares}"
        # Both distribution functions step only at the levels, so the largest
        # distance between them is at one of the levels.
        empirical = np.searchsorted(np.sort(values), levels + 0.5) / count
        distance = np.abs(empirical - (levels - low + 1) / len(levels)).max()
        p = float(_stats().kstwo.sf(distance, count))
        return p, seen + f", {len(np.unique(values))} distinct"
    ks = _stats().kstest(values, _stats().uniform(loc=low, scale=high - low).cdf).pvalue
    # No value within g of an end: probability (1 - g / width) ** count.
    width = high - low
    gaps = [max(values.min() - low, 0.0), max(high - values.max(), 0.0)]
    ends = [(1 - min(gap / width, 1.0)) ** count for gap in gaps]
    p = min(1.0, 3 * min(ks, *ends))
    return p, seen + f", {len(np.unique(np.round(values, 4)))} distinct"


def _categories(choice: RandomChoice, values: np.ndarray) -> np.ndarray:
    """Each value's category for a contingency table: its level, its truth, or its bin."""
    values = np.asarray(values)
    if choice.distribution == "bernoulli":
        return values.astype(bool).astype(int)
    if choice.distribution == "integers":
        return np.clip(np.round(values).astype(int) - int(choice.low), 0, None)
    position = (values.astype(np.float64) - choice.low) / (choice.high - choice.low)
    return np.clip((position * UNIFORM_BINS).astype(int), 0, UNIFORM_BINS - 1)


def independence_p_value(
    first: RandomChoice, first_values: np.ndarray, second: RandomChoice, second_values: np.ndarray
) -> float | None:
    """The p-value of a chi-square test that two choices, drawn for the same images, are
    independent (one must not predict the other: two choices read from one random
    stream would). None: too few images for every cell of the table to expect
    `MIN_EXPECTED` values."""
    a, b = _categories(first, first_values), _categories(second, second_values)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return None
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if expected.min() < MIN_EXPECTED:
        return None
    return float(_stats().chi2_contingency(table, correction=False).pvalue)


def smallest_choice_p_value(choice: RandomChoice, count: int) -> float:
    """The smallest p-value ``count`` values could give ``choice``: whether a test can fail.

    A choice that never happens (always its default) must be detectable.
    """
    if choice.distribution == "bernoulli":
        return _stats().binomtest(0, count, choice.rate).pvalue
    # All values at one point: the KS distance is at least about a half.
    return float(_stats().kstwo.sf(0.44, count))


def same_order_p_value(log_orders: float, repeats: int) -> float:
    """Chance that ``repeats`` fresh draws, each uniform over ``exp(log_orders)`` orders,
    all equal a given order."""
    return math.exp(-repeats * max(log_orders, 0.0))


def log_permutations(count: int) -> float:
    """log(count!): how many orders ``count`` things can come in (as a logarithm)."""
    return math.lgamma(count + 1)


def overlap_p_value(n: int, dropped: int, overlaps: list[int]) -> float:
    """Chance that independent uniform ``dropped``-subsets of ``n`` overlap this much.

    ``overlaps`` holds the sizes of the intersections of consecutive epochs'
    dropped sets; each is hypergeometric and, given the middle set, independent
    of the others, so their sum's law is a convolution. Returns P(sum >= seen).
    """
    pmf = np.array([1.0])
    one = _stats().hypergeom(n, dropped, dropped).pmf(np.arange(dropped + 1))
    for _ in overlaps:
        pmf = np.convolve(pmf, one)
    return float(pmf[sum(overlaps) :].sum())
