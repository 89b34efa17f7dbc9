"""What a variant's steps do for its speed: the optimizations one change can lose.

A saved run records each variant's steps (`Variant.describe`). Against a
baseline, a variant that has fewer of an optimization than it had (a
prefetch, a cache, parallel reads, a parallel map, a map after the batch) has
lost it. Some of these losses cost little on one machine and much on
another: a prefetch after a parallel map costs about 1% on the two-core CPU
machine (the map's own buffer reads ahead), far more where the step time is
short. The gate names the loss instead of waiting for a machine that shows it.
"""

from __future__ import annotations

from collections import Counter

OPTIMIZATIONS = {
    "prefetch": "a prefetch",
    "cache": "a cache",
    "interleave": "parallel reads (interleave)",
    "parallel map": "a parallel map",
    "vectorized map": "a map after the batch (vectorized)",
}


def optimizations(steps: str) -> Counter[str]:
    """How many of each optimization a ``describe()`` line holds."""
    found: Counter[str] = Counter()
    batched = False
    for step in (part.strip() for part in steps.split("->")):
        if step == "prefetch":
            found["prefetch"] += 1
        elif step.startswith("cache"):
            found["cache"] += 1
        elif step == "interleave":
            found["interleave"] += 1
        elif step.startswith("map("):
            found["parallel map"] += step.endswith(", parallel)")
            found["vectorized map"] += batched
        batched = step.startswith("batch") or (batched and step != "unbatch")
    return found


def lost(before: str, now: str) -> list[str]:
    """The optimizations ``before`` had more of than ``now``, in words."""
    had, has = optimizations(before), optimizations(now)
    return [words for key, words in OPTIMIZATIONS.items() if has[key] < had[key]]
