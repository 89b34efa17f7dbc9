"""What holds a variant's steady state below the ceiling, from the run's own figures.

On a stand-in device the ceiling is the device's own pace, and a pipeline that
keeps it fed reaches it. For every variant that mostly keeps up (it waits for input under
`MOSTLY_FED` of its steady time) but whose steady fraction of the ceiling lies
below `FED` (its interval's top below it), one line says where the rest goes: the
share it waits for input, the wait at the start of each later epoch (a fresh
iterator: files opened again, a shuffle buffer refilled) as a share of a steady
epoch, and its timeline's limiting stage. A variant that waits most of its time
is input-bound, and its bottleneck line already says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.saving.metrics import (
    EPOCH_S,
    EPOCH_START_S,
    EXAMPLES_PER_S,
    STEADY_EXAMPLES_PER_S,
    STEADY_FRACTION_OF_CEILING,
    STEADY_INPUT_BOUND,
)

# A pipeline that keeps the device fed reaches this fraction of the ceiling in steady state.
FED = 0.95
# Waiting for input less than this share of its steady time, a variant mostly keeps up.
MOSTLY_FED = 0.5


def steady_epoch_s(info: Mapping[str, Any]) -> float | None:
    """Seconds of one steady epoch: its examples at the steady rate (None: unknown)."""
    rate, examples_per_s, epoch_s = (
        STEADY_EXAMPLES_PER_S.of(info),
        EXAMPLES_PER_S.of(info),
        EPOCH_S.of(info),
    )
    if not rate or not examples_per_s or not epoch_s:
        return None
    return examples_per_s * epoch_s / rate


def held_back_line(
    variant: str, info: Mapping[str, Any], bottleneck: Mapping[str, Any] | None
) -> str | None:
    """The line for ``variant`` (None: it keeps the device fed, or was not measured so)."""
    fraction = STEADY_FRACTION_OF_CEILING.of(info)
    interval = STEADY_FRACTION_OF_CEILING.interval_of(info)
    top = interval[1] if interval and interval[1] is not None else fraction
    waits = STEADY_INPUT_BOUND.of(info)
    if fraction is None or top is None or top >= FED or (waits or 0) >= MOSTLY_FED:
        return None
    reasons = []
    if waits is not None:
        reasons.append(f"it waits for input {waits:.0%} of its steady time")
    start, epoch = EPOCH_START_S.of(info), steady_epoch_s(info)
    if start and epoch:
        reasons.append(
            f"each later epoch waits {start:.3f} s for its first batch, {start / epoch:.0%} of"
            " a steady epoch (a fresh iterator: files opened again, a shuffle buffer refilled)"
        )
    if bottleneck and bottleneck.get("limiting_stage"):
        stage = bottleneck["limiting_stage"]
        share = (bottleneck.get("share_of_input") or {}).get(stage)
        of_input = f" ({share:.0%} of input time)" if share is not None else ""
        reasons.append(f"its timeline's limiting stage: {stage}{of_input}")
    on = info.get("device", "the device")
    return (
        f"held back: {variant} keeps {on} fed {fraction:.2f} of its steady time (below"
        f" {FED}): " + "; ".join(reasons or ["no figure says why"])
    )


def held_back_lines(
    trained: Mapping[str, Mapping[str, Any]], bottlenecks: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """`held_back_line` for every trained variant that has one."""
    lines = [
        held_back_line(variant, info, bottlenecks.get(variant)) for variant, info in trained.items()
    ]
    return [line for line in lines if line]
