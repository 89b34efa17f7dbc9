"""Why an optimization shows no steady-state gain: what the run's own figures allow.

A bare "1.05x [0.76, 1.45]" does not tell a user whether the change does
nothing here or whether the run could not tell. For every variant that
augments, measured against ``augmented`` (the single optimizations, and a
user's augmenting variants), whose
steady-state interval does not lie above 1, one line says which of three it is:

- **nothing to gain**: the reference waits for input so little of its steady
  time that no change to its input can gain more than a few percent
  (``1 / (1 - input_bound)``: with an infinitely fast pipeline the steps are left);
  for an overlap step (prefetch) the bound is tighter: overlapping the wait and
  the step can at most hide the shorter of the two;
- **not told apart**: the interval is wider than the run's precision; more
  passes would tell (how many, from the width so far);
- **no effect**: precise and with room to gain, yet no gain: what the change
  speeds is not where the reference's time goes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from benchmarks.measuring.intervals import t_quantile
from benchmarks.saving.metrics import DECLARED, STEADY_EXAMPLES_PER_S, STEADY_INPUT_BOUND
from benchmarks.saving.schema import Kind
from pipelines.steps import Prefetch
from pipelines.variants import Variant

# Below this bound, "nothing to gain": the most a change could give is within noise.
NOTHING_TO_GAIN = 1.05


def gain_bound(reference: Mapping[str, Any], overlap_only: bool) -> float:
    """The most a change to the reference's input can speed its steady state (x).

    ``overlap_only``: the change only overlaps input with training (a prefetch):
    it hides at most the shorter of the wait and the step.
    """
    wait = min(max(STEADY_INPUT_BOUND.of(reference) or 0.0, 0.0), 1.0)
    if overlap_only:
        return 1.0 / max(wait, 1.0 - wait)
    return math.inf if wait >= 1.0 else 1.0 / (1.0 - wait)


def adds_only_overlap(variant: Variant, reference: Variant) -> bool:
    """Whether ``variant`` is ``reference`` with prefetch steps added and nothing else."""
    kept = tuple(step for step in variant.steps if not isinstance(step, Prefetch))
    return kept == reference.steps and len(variant.steps) > len(reference.steps)


def per_batch_ms(info: Mapping[str, Any], batch_size: int) -> tuple[float, float]:
    """(wait, step) milliseconds per batch in steady state, from examples/s and input-bound."""
    rate = STEADY_EXAMPLES_PER_S.of(info) or 0.0
    if rate <= 0:
        return 0.0, 0.0
    batch_ms = 1000.0 * batch_size / rate
    wait = min(max(STEADY_INPUT_BOUND.of(info) or 0.0, 0.0), 1.0)
    return wait * batch_ms, (1.0 - wait) * batch_ms


def passes_needed(interval: list[float], value: float, passes: int, precision: float) -> int:
    """About how many passes would bring the interval's half-width within ``precision``:
    the per-pass spread the interval implies, and Student's t at each larger count."""
    low, high = interval
    half = max(math.log(high / value), math.log(value / low)) if low > 0 else math.inf
    if not math.isfinite(half) or passes < 2:
        return passes * 4
    spread = half * math.sqrt(passes) / t_quantile(0.975, passes - 1)
    needed = passes + 1
    while t_quantile(0.975, needed - 1) * spread / math.sqrt(needed) > math.log1p(precision):
        needed += 1
    return needed


def no_gain_line(
    name: str,
    info: Mapping[str, Any],
    reference_name: str,
    reference: Mapping[str, Any],
    overlap_only: bool,
    precision: float,
) -> str | None:
    """One line on why ``name`` shows no steady gain over ``reference_name`` (None: it does)."""
    speedup = DECLARED.get(f"steady_speedup_over_{reference_name}")
    if speedup is None:
        return None
    value, interval = speedup.of(info), speedup.interval_of(info)
    if value is None or not interval or interval[0] > 1.0:
        return None
    shown = f"{name}: {value:.2f}x [{interval[0]:.2f}, {interval[1]:.2f}] over {reference_name}"
    bound = gain_bound(reference, overlap_only)
    wait_ms, step_ms = per_batch_ms(reference, int(info.get("batch_size") or 1))
    share = STEADY_INPUT_BOUND.of(reference) or 0.0
    if bound < NOTHING_TO_GAIN:
        if overlap_only:
            why = (
                f"overlap hides at most the shorter of the wait for input ({wait_ms:.1f} ms a"
                f" batch) and the train step ({step_ms:.1f} ms)"
            )
        else:
            why = f"{reference_name} waits for input only {share:.0%} of its steady time"
        return f"{shown}: no effect possible on this machine: {why}; at most about {bound:.2f}x"
    low, high = interval
    if high / value > 1 + precision or value / low > 1 + precision:
        passes = int(info.get("passes") or 1)
        needed = passes_needed(interval, value, passes, precision)
        return (
            f"{shown}: not told apart from no change: the interval is wider than"
            f" +-{precision:.0%} after {passes} passes (about {needed} would do: --perf-passes);"
            f" up to about {bound:.2f}x was possible"
        )
    return (
        f"{shown}: no effect: {reference_name} waits for input {share:.0%} of its steady time"
        f" (up to about {bound:.2f}x possible), but not in what this change speeds up: see"
        f" {reference_name}'s timeline"
    )


def no_gain_lines(
    metrics: Mapping[str, Mapping[str, Any]],
    variants: Mapping[str, Variant],
    precision: float,
    reference_name: str = "augmented",
) -> list[str]:
    """A line per trained variant without a steady gain over ``reference_name``
    (`no_gain_line`); ``metrics``: each variant's ``extra_info`` by name."""
    reference = metrics.get(reference_name)
    base = variants.get(reference_name)
    if reference is None or base is None:
        return []
    lines = []
    for name, info in metrics.items():
        if name == reference_name or info.get("kind") != Kind.TRAINING or name not in variants:
            continue
        if not variants[name].contract.augments:  # not an optimization of the reference
            continue
        overlap_only = adds_only_overlap(variants[name], base)
        line = no_gain_line(name, info, reference_name, reference, overlap_only, precision)
        if line:
            lines.append(line)
    return lines
