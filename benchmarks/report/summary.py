"""The run's figures with their intervals, as a table for the end of the terminal output."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks.saving.schema import Kind

# (extra_info key, column heading, format of a value), per table: steady state (what
# a change to a pipeline's throughput moves), then start-up and full epochs.
STEADY_COLUMNS = (
    ("steady_examples_per_s", "steady examples/s", "{:.0f}"),
    ("steady_speedup_over_naive", "over naive", "{:.2f}x"),
    ("steady_speedup_over_augmented", "over augmented", "{:.2f}x"),
    ("steady_fraction_of_ceiling", "of the ceiling", "{:.2f}"),
    ("steady_input_bound", "input-bound", "{:.0%}"),
)
STARTUP_COLUMNS = (
    ("first_batch_s", "first batch s", "{:.3f}"),
    ("first_epoch_extra_s", "first epoch extra s", "{:.3f}"),
    ("epoch_start_s", "epoch start s", "{:.3f}"),
)
FULL_EPOCH_COLUMNS = (
    ("epoch_s", "full epoch s", "{:.3f}"),
    ("speedup_over_naive", "over naive", "{:.2f}x"),
    ("fraction_of_ceiling", "of the ceiling", "{:.2f}"),
)
COLUMNS = STEADY_COLUMNS + STARTUP_COLUMNS + FULL_EPOCH_COLUMNS


def figure_text(info: dict[str, Any], key: str, form: str, missing: str = "-") -> str:
    """``info[key]`` formatted, with its 95% interval (``key_ci``) in brackets when known."""
    if info.get(key) is None:
        return missing
    interval = info.get(f"{key}_ci")
    text = form.format(info[key])
    if interval:
        low, high = (form.format(bound).rstrip("x%") for bound in interval)
        text += f" [{low}, {high}]"
    return text


def summary_table(
    metrics: Iterable[dict[str, Any]], columns: tuple[tuple[str, str, str], ...] = COLUMNS
) -> list[str]:
    """Lines of a table: per trained variant (and the ceiling), each figure of ``columns``
    and its 95% interval (from the interleaved passes), read from the benchmarks'
    ``extra_info``."""
    rows = [
        [info["variant"], *(figure_text(info, key, form) for key, _, form in columns)]
        for info in metrics
        if info["kind"] in {Kind.CEILING, Kind.TRAINING}
    ]
    if not rows:
        return []
    header = ["variant", *(heading for _, heading, _ in columns)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
