"""The report's figures: matplotlib, rendered to inline PNG (base64) so the page needs no files.

Each function takes plain data (what saved runs hold) and returns a
``data:image/png;base64,...`` URI.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# One colour per kind of stage, so the same work looks the same in every timeline.
KIND_COLOURS = {
    "open": "#8c564b",
    "read": "#d62728",
    "generator": "#e377c2",
    "map": "#1f77b4",
    "batch": "#9467bd",
    "wait": "#ff7f0e",
    "train": "#2ca02c",
    "test": "#17becf",
}


def to_data_uri(figure: Figure) -> str:
    """Render ``figure`` as an inline PNG and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def gantt(timeline: Mapping[str, Any], title: str) -> str:
    """A timeline as the reference lab's ``draw_timeline``: one row per stage, epochs marked."""
    stages = timeline["stages"]
    figure, axes = plt.subplots(figsize=(11, 0.42 * len(stages) + 1.2))
    for row, stage in enumerate(stages):
        rows = timeline["bars"][stage["name"]]
        bars = [(start, max(end - start, 1e-4)) for start, end, _ in rows]
        axes.broken_barh(bars, (row - 0.4, 0.8), facecolors=KIND_COLOURS.get(stage["kind"], "grey"))
    for number, (start, end) in enumerate(timeline["epochs"], start=1):
        axes.axvline(start, color="black", linestyle="--", linewidth=0.8)
        axes.text(start, len(stages) - 0.4, f" epoch {number}", va="bottom", fontsize=8)
        axes.axvline(end, color="grey", linestyle=":", linewidth=0.6)
    axes.set_yticks(range(len(stages)), [stage["name"] for stage in stages])
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the first epoch began")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    return to_data_uri(figure)


def throughput_bars(
    variants: Sequence[str],
    examples_per_s: Sequence[float],
    speedups: Sequence[float | None],
    ceiling: float | None,
    speedup_intervals: Sequence[Sequence[float] | None] = (),
) -> str:
    """Examples/s per variant (the ceiling as a line) and speedup over naive, with its
    95% interval as an error bar where the run measured one."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 0.35 * len(variants) + 1.5))
    positions = range(len(variants))
    left.barh(positions, examples_per_s, color="#1f77b4")
    if ceiling:
        left.axvline(ceiling, color="#2ca02c", linestyle="--", label="ceiling")
        # Above the plot, where it covers no bar.
        left.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2, fontsize=8)
    left.set_yticks(positions, variants)
    left.invert_yaxis()
    left.set_xlabel("training examples/s")
    values = [s or 0.0 for s in speedups]
    errors = [
        [value - interval[0], interval[1] - value] if interval else [0.0, 0.0]
        for value, interval in zip(
            values, list(speedup_intervals) or [None] * len(values), strict=True
        )
    ]
    right.barh(positions, values, color="#ff7f0e", xerr=list(zip(*errors, strict=True)), capsize=3)
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_yticks(positions, variants)
    right.invert_yaxis()
    right.set_xlabel("speedup over naive (x)")
    figure.suptitle("Throughput")
    return to_data_uri(figure)


def accuracy_curves(curves: Mapping[str, Sequence[float]]) -> str:
    """Test accuracy after each epoch, one line per variant."""
    figure, axes = plt.subplots(figsize=(8, 4))
    for variant, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, marker="o", label=variant)
    epochs = max((len(values) for values in curves.values()), default=1)
    axes.set_xticks(range(1, epochs + 1))
    axes.set_xlabel("epoch")
    axes.set_ylabel("test accuracy (fraction correct)")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    # Beside the plot, never over a line.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    axes.set_title("Test accuracy per epoch")
    return to_data_uri(figure)


@dataclasses.dataclass(frozen=True)
class Axis:
    """How a metric is plotted: its name, its unit, and the range its axis always shows
    (so a change of a few percent looks like one, not like a cliff)."""

    title: str
    unit: str
    low: float = 0.0
    high: float | None = None  # None: up to the data


def history(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    regressions: Mapping[str, Sequence[int]],
    axis: Axis,
    intervals: Mapping[str, Sequence[Sequence[float] | None]] | None = None,
) -> str:
    """A metric across saved runs, one line per variant, with its 95% interval where the run
    measured one; regressions marked with a red cross; the legend beside the plot."""
    figure, axes = plt.subplots(figsize=(11, 4))
    positions = list(range(len(labels)))
    for variant, values in series.items():
        points = [(x, v) for x, v in zip(positions, values, strict=True) if v is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        bounds = (intervals or {}).get(variant) or [None] * len(values)
        errors = [
            # An interval saved beside another value (an edited run) must not break the plot.
            [max(0.0, y - bounds[x][0]), max(0.0, bounds[x][1] - y)] if bounds[x] else [0.0, 0.0]
            for x, y in points
        ]
        axes.errorbar(
            xs, ys, yerr=list(zip(*errors, strict=True)), marker=".", capsize=3, label=variant
        )
        marked = [(x, values[x]) for x in regressions.get(variant, ()) if values[x] is not None]
        if marked:
            axes.plot(*zip(*marked, strict=True), "x", color="red", markersize=12, mew=2.5)
    axes.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel(f"{axis.title} ({axis.unit})")
    top = axis.high
    if top is None:
        top = max((v for values in series.values() for v in values if v is not None), default=1)
        top *= 1.15
    axes.set_ylim(axis.low, top)
    axes.grid(alpha=0.3)
    # Beside the plot, never over a line.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    axes.set_title(f"{axis.title} across saved runs (red cross: regression against the run before)")
    return to_data_uri(figure)


def step_times(steps: Sequence[Sequence[float]], title: str) -> str:
    """Per train step, the time waiting for input stacked under the step's own time, like
    the TF Profiler's step-time graph; epochs marked."""
    figure, axes = plt.subplots(figsize=(11, 3.2))
    positions = range(1, len(steps) + 1)
    waits = [1000 * wait for _, wait, _ in steps]
    computes = [1000 * step for _, _, step in steps]
    axes.bar(positions, waits, width=1.0, color=KIND_COLOURS["wait"], label="waiting for input")
    axes.bar(
        positions,
        computes,
        width=1.0,
        bottom=waits,
        color=KIND_COLOURS["train"],
        label="train step",
    )
    for index in range(1, len(steps)):
        if steps[index][0] != steps[index - 1][0]:
            axes.axvline(index + 0.5, color="black", linestyle="--", linewidth=0.8)
    axes.set_xlabel("train step (dashed line: a new epoch)")
    axes.set_ylabel("milliseconds")
    axes.set_ylim(0, None)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    axes.set_title(title)
    return to_data_uri(figure)
