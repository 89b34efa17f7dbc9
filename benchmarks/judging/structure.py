"""What a variant's steps do for its speed: the optimizations one change can lose.

Each step declares what it does for speed (`pipelines.steps.Step.speed`), and a
saved run records each variant's counts (`Variant.optimizations`, the figure
``optimizations``) beside its steps in words. Against a baseline, a variant
that has fewer of an optimization than it had (a prefetch, a cache, parallel
reads, a parallel map, a map after the batch) has lost it. Some of these
losses cost little on one machine and much on another: a prefetch after a
parallel map costs about 1% on the two-core CPU machine (the map's own buffer
reads ahead), far more where the step time is short. The gate names the loss
instead of waiting for a machine that shows it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from pipelines.steps import SPEED


def from_text(steps: str) -> Counter[str]:
    """The counts of a run saved before they were (schema 1), read from its
    ``describe()`` line; the seed steps' words only."""
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


def optimizations(figures: Mapping[str, Any]) -> Counter[str] | None:
    """A saved variant's optimization counts: as declared (``optimizations``), or from
    its steps' words for an older run (None: it saved neither)."""
    declared = figures.get("optimizations")
    if isinstance(declared, Mapping):
        return Counter({str(k): int(v) for k, v in declared.items()})
    steps = figures.get("steps")
    return from_text(steps) if isinstance(steps, str) else None


def lost(before: Mapping[str, int], now: Mapping[str, int]) -> list[str]:
    """The optimizations ``before`` had more of than ``now``, in words."""
    return [words for key, words in SPEED.items() if now.get(key, 0) < before.get(key, 0)]
