"""The run's figures with their intervals, as a table for the end of the terminal output."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from benchmarks.saving import metrics
from benchmarks.saving.metrics import Metric
from benchmarks.saving.schema import Kind

# The columns, per table: steady state (what a change to a pipeline's throughput
# moves), then start-up and full epochs; each heading and format is its declaration's.
STEADY_COLUMNS = (
    metrics.STEADY_EXAMPLES_PER_S,
    metrics.STEADY_SPEEDUP_OVER_NAIVE,
    metrics.STEADY_SPEEDUP_OVER_AUGMENTED,
    metrics.STEADY_FRACTION_OF_CEILING,
    metrics.STEADY_INPUT_BOUND,
)
STARTUP_COLUMNS = (metrics.FIRST_BATCH_S, metrics.FIRST_EPOCH_EXTRA_S, metrics.EPOCH_START_S)
FULL_EPOCH_COLUMNS = (
    metrics.EPOCH_S,
    metrics.SPEEDUP_OVER_NAIVE,
    metrics.FRACTION_OF_CEILING,
)
COLUMNS = STEADY_COLUMNS + STARTUP_COLUMNS + FULL_EPOCH_COLUMNS


def figure_text(
    info: Mapping[str, Any], metric: Metric, form: str | None = None, missing: str = "-"
) -> str:
    """``metric``'s value in ``info`` formatted (``form``, or its declaration's), with its
    95% interval in brackets when known; ``missing`` where it was not measured."""
    value = metric.of(info)
    if value is None:
        return missing
    form = form or metric.form
    interval = metric.interval_of(info)
    text = form.format(value)
    if interval:
        low, high = (form.format(bound).rstrip("x%") for bound in interval)
        text += f" [{low}, {high}]"
    return text


def summary_table(
    infos: Iterable[Mapping[str, Any]], columns: tuple[Metric, ...] = COLUMNS
) -> list[str]:
    """Lines of a table: per trained variant (and the ceiling), each figure of ``columns``
    and its 95% interval (from the interleaved passes), read from the benchmarks'
    ``extra_info``."""
    rows = [
        [info["variant"], *(figure_text(info, metric) for metric in columns)]
        for info in infos
        if info["kind"] in {Kind.CEILING, Kind.TRAINING}
    ]
    if not rows:
        return []
    header = ["variant", *(metric.column for metric in columns)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
