"""The HTML performance report: one self-contained page from saved runs.

Built at the end of a benchmark run (``--perf-report PATH``) or at any time
from storage::

    python -m benchmarks.report [--storage .benchmarks] [--output reports/perf.html] [--run ID]

It reads saved runs and never writes into storage; the page is written
atomically. Figures are inline PNGs (`benchmarks.report.figures`), so the file
needs no network and no other files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

import pipelines
from benchmarks.diagnosing.bottleneck import HIGH, MODERATE, tracing_caveat
from benchmarks.diagnosing.effects import no_gain_lines
from benchmarks.diagnosing.runtime_view import runtime_line, stage_rows
from benchmarks.judging.compare import compare_with_baseline
from benchmarks.judging.gates import (
    DEFAULT_THRESHOLDS,
    Failure,
    Thresholds,
    load_thresholds,
)
from benchmarks.measuring.passes import PRECISION
from benchmarks.report import figures
from benchmarks.report.summary import STARTUP_COLUMNS, STEADY_COLUMNS, figure_text
from benchmarks.saving import metrics, schema
from benchmarks.saving.schema import Kind, SavedRun
from benchmarks.saving.storage import find_saved_run, saved_runs, write_atomic
from pipelines.errors import DataError, InputError
from pipelines.plugins import add_plugin_argument, load_plugins

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_OUTPUT = Path("reports/perf.html")
DEFAULT_STORAGE = Path(".benchmarks")
# The trained variants' metrics a baseline comparison checks (the pipeline's CPU is
# a figure of another benchmark, shown in its table).
# The trends shown across saved runs: each with its name and unit, on an axis
# from zero (ratios and throughput) or over the whole range (accuracy).
HISTORY_METRICS = {
    metric.name: (metric, figures.Axis(metric.label, metric.unit, *bounds))
    for metric, bounds in (
        (metrics.EXAMPLES_PER_S, ()),
        (metrics.FRACTION_OF_CEILING, ()),
        (metrics.SPEEDUP_OVER_NAIVE, ()),
        (metrics.TEST_ACCURACY, (0.0, 1.0)),
    )
}


class NoRuns(DataError):
    """There is nothing to report on."""


@dataclasses.dataclass
class RunView:
    """One run, sorted by kind of benchmark: what the report shows of it."""

    label: str
    path: str | None
    datetime: str
    machine: dict[str, Any]
    commit: dict[str, Any]
    training: dict[str, dict[str, Any]]
    ceiling: dict[str, Any] | None
    pipeline: dict[str, dict[str, Any]]
    timelines: dict[str, dict[str, Any]]
    overhead: dict[str, Any] | None
    gates: dict[str, Any] | None
    # --perf-verify-suggestions: per variant, its verified suggestions and verdict.
    suggestions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # How the run measured: interleaved passes, their orders, the doubts about them.
    passes: dict[str, Any] | None = None

    @classmethod
    def of(cls, run: SavedRun, label: str) -> RunView:
        """A saved run's benchmarks, sorted by their kind (`benchmarks.saving.schema`)."""

        def infos(kind: Kind) -> dict[str, dict[str, Any]]:
            return {variant: dict(f.values) for variant, f in run.of_kind(kind).items()}

        return cls(
            label=label,
            path=str(run.path) if run.path else None,
            datetime=run.datetime,
            machine=run.machine,
            commit=run.commit,
            training=infos(Kind.TRAINING),
            ceiling=infos(Kind.CEILING).get("ceiling"),
            pipeline=infos(Kind.PIPELINE),
            timelines=infos(Kind.TIMELINE),
            overhead=next(iter(infos(Kind.TRACING_OVERHEAD).values()), None),
            gates=run.gates,
            suggestions=infos(Kind.SUGGESTIONS),
            passes=run.passes,
        )

    def verdict(self, variant: str) -> tuple[str, list[str]]:
        """("pass" | "fail" | "not gated", the failed checks' lines) for a variant."""
        if not self.gates or variant not in self.gates.get("checked", []):
            return "not gated", []
        lines = [
            str(Failure(**failure))
            for failure in self.gates["failures"]
            if failure["variant"] == variant
        ]
        return ("fail" if lines else "pass"), lines

    def summary(self) -> dict[str, Any]:
        """The run's setting, from any of its benchmarks."""
        sample = next(iter([*self.training.values(), *self.timelines.values()]), {})
        cpu = self.machine.get("cpu") or {}
        return {
            "when": self.datetime,
            "machine": self.machine.get("node", "?"),
            "cpu": cpu.get("brand_raw", "?"),
            "cpu_count": self.machine.get("cpu_count", "?"),
            "tensorflow": self.machine.get("tensorflow", "?"),
            "device": sample.get("device", self.machine.get("device", "?")),
            # On a stand-in: where its step time came from, and where accuracy was trained.
            "step_time_origin": sample.get("step_time_origin"),
            "accuracy_device": sample.get("accuracy_device"),
            "profile": sample.get("profile", self.machine.get("perf_profile", "?")),
            "dataset": sample.get("dataset", "?"),
            "model": sample.get("model", "?"),
            "epochs": sample.get("epochs", "?"),
            "batch_size": sample.get("batch_size", "?"),
            "corrupt_skipped": sample.get("corrupt_skipped", 0),
            "model_threads": sample.get("model_threads"),
            "commit": (self.commit.get("id") or "?")[:10]
            + (" (uncommitted changes)" if self.commit.get("dirty") else ""),
        }


def load_views(storage: Path) -> list[RunView]:
    """Every saved run under ``storage``, oldest first; a broken file is a `DataError` naming it."""
    views = []
    for path in saved_runs(storage):
        views.append(RunView.of(schema.load(path), path.name.split("_", 1)[0]))
    return views


def regressions(
    views: Sequence[RunView], thresholds: Thresholds | None
) -> dict[str, dict[str, list[int]]]:
    """Per metric and variant, the runs (indices) that fell beyond tolerance from the run before.

    The same comparison as ``--perf-baseline`` (`compare_with_baseline`: by
    the passes' samples where both runs saved them), run to run.
    """
    out: dict[str, dict[str, list[int]]] = {metric: {} for metric in HISTORY_METRICS}
    if thresholds is None:
        return out
    for index in range(1, len(views)):
        before = views[index - 1]
        failures, _ = compare_with_baseline(
            thresholds, views[index].training, before.training, before.label
        )
        for failure in failures:
            if failure.metric in out:
                out[failure.metric].setdefault(failure.variant, []).append(index)
    return out


def _variants_in_order(views: Sequence[RunView]) -> list[str]:
    seen: dict[str, None] = {}
    for view in views:
        for variant in view.training:
            seen.setdefault(variant, None)
    return list(seen)


def render(
    current: RunView,
    history: Sequence[RunView],
    thresholds: Thresholds | None = None,
    traces: Mapping[str, str] | None = None,
    captures: Mapping[str, str] | None = None,
) -> str:
    """The report page for ``current``, with the trends over ``history`` (which includes it).

    ``traces``, ``captures``: per variant, the relative link to its trace file and
    to its TensorFlow profiler capture, where they lie beside the report."""
    variants = list(current.training)
    rows = []
    for variant in variants:
        info = current.training[variant]
        verdict, lines = current.verdict(variant)
        rows.append({"variant": variant, "info": info, "verdict": verdict, "lines": lines})
    throughput = accuracy = None
    if variants:
        training = [current.training[v] for v in variants]
        throughput = figures.throughput_bars(
            variants,
            [metrics.EXAMPLES_PER_S.of(info) for info in training],
            [metrics.SPEEDUP_OVER_NAIVE.of(info) for info in training],
            metrics.EXAMPLES_PER_S.of(current.ceiling) if current.ceiling else None,
            [metrics.SPEEDUP_OVER_NAIVE.interval_of(info) for info in training],
        )
        accuracy = figures.accuracy_curves(
            {v: info["test_accuracy_per_epoch"] for v, info in zip(variants, training, strict=True)}
        )
    timelines = [
        _timeline_view(variant, info, (traces or {}).get(variant), (captures or {}).get(variant))
        for variant, info in current.timelines.items()
    ]
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.globals["figure"] = figure_text
    environment.globals["m"] = metrics
    return environment.get_template("report.html.j2").render(
        run=current,
        summary=current.summary(),
        rows=rows,
        ceiling=current.ceiling,
        pipeline=current.pipeline,
        throughput=throughput,
        accuracy=accuracy,
        timelines=timelines,
        **_phase_view(current),
        runtime=_runtime_view(current),
        overhead=current.overhead,
        tracing_caveat=tracing_caveat(current.overhead),
        suggestions=current.suggestions,
        history=history_figures(history, thresholds),
        runs=len(history),
        moderate=MODERATE,
        high=HIGH,
    )


# The report's steady-state and start-up table (the table of variants has the full epochs).
PHASE_COLUMNS = STEADY_COLUMNS + STARTUP_COLUMNS


def _phase_view(current: RunView) -> dict[str, Any]:
    """The template's steady-state and start-up table (`benchmarks.measuring.phases`): its rows (the
    ceiling, then each variant), its columns, and a line per variant without a steady gain."""
    phases = [("ceiling", current.ceiling)] if current.ceiling else []
    phases += current.training.items()
    no_gain = no_gain_lines(current.training, pipelines.VARIANTS, PRECISION)
    return {"phases": phases, "phase_columns": PHASE_COLUMNS, "no_gain": no_gain}


def _runtime_view(current: RunView) -> list[dict[str, Any]]:
    """Per trained variant with runtime statistics (or a reason for none): its line, a row
    per stage, and what reading them cost where it was measured."""
    shown = []
    for variant, info in current.training.items():
        traced = (current.timelines.get(variant) or {}).get("bottleneck")
        line = runtime_line(variant, info, traced)
        if line is None:
            continue
        runtime = info.get("runtime") or {}
        shown.append(
            {
                "variant": variant,
                "line": line,
                "rows": stage_rows(runtime) if runtime else [],
                "info": info if metrics.RUNTIME_OVERHEAD.of(info) is not None else None,
            }
        )
    return shown


def _timeline_view(
    variant: str, info: Mapping[str, Any], trace: str | None, capture: str | None
) -> dict[str, Any]:
    """What the report shows of one traced run: its Gantt chart, step chart and analysis."""
    timeline, analysis = info["timeline"], info.get("bottleneck")
    steps = timeline.get("steps") or []
    title = f"{variant}: each train step, input and compute"
    return {
        "variant": variant,
        "figure": figures.gantt(timeline, f"{variant}: traced run"),
        "bottleneck": analysis,
        # The analysis's own share (the untraced runs'), a field of it, not a saved figure.
        "waiting_share": analysis and analysis.get(metrics.INPUT_BOUND.name),
        "epoch_times_s": info.get("epoch_times_s", []),
        "trace": trace,
        "capture": capture,
        "steps": figures.step_times(steps, title) if steps else None,
        "input_share": _input_share(steps),
        "seen": stages_seen(timeline.get("stages", ())),
    }


def stages_seen(stages: Sequence[Mapping[str, Any]]) -> str:
    """How the pipeline's stages were seen, in words (a sentence, or empty)."""
    observed = [s["name"] for s in stages if s.get("observed")]
    if any(s.get("kind") == "function" for s in stages):
        return (
            "This pipeline function was timed from outside only (a run saved before the"
            " stages inside functions were seen): each batch from its request to its arrival."
        )
    if not observed:
        return ""
    return (
        f"Seen inside the pipeline function, from the tf.data calls it made while it built:"
        f" {', '.join(observed)} (the suite's reading, then each map and batch it called)."
        " A filter's predicate, a shuffle's buffer and files the function opens itself"
        " are not stages of their own: their time falls in the batch's, which counts"
        " only what no earlier stage accounts for."
    )


def history_figures(
    history: Sequence[RunView], thresholds: Thresholds | None
) -> list[dict[str, Any]]:
    """One trend figure per `HISTORY_METRICS` across the saved runs, regressions marked."""
    if len(history) < 2:
        return []
    marks = regressions(history, thresholds)
    order = _variants_in_order(history)
    labels = [f"{view.label} {view.datetime[:16]}" for view in history]
    out = []
    for name, (metric, axis) in HISTORY_METRICS.items():
        series = {v: [metric.of(view.training.get(v, {})) for view in history] for v in order}
        if not any(value is not None for values in series.values() for value in values):
            continue
        bounds = {
            v: [metric.interval_of(view.training.get(v, {})) for view in history] for v in order
        }
        out.append(
            {
                "metric": axis.title,
                "figure": figures.history(labels, series, marks[name], axis, bounds),
                "marked": {v: [history[i].label for i in idx] for v, idx in marks[name].items()},
            }
        )
    return out


def _input_share(steps: Sequence[Sequence[float]]) -> float | None:
    """Of the train steps' time, the share spent waiting for input (None: no steps)."""
    waiting = sum(wait for _, wait, _ in steps)
    total = waiting + sum(step for _, _, step in steps)
    return waiting / total if total else None


TRACES = "traces"
# The TensorFlow profiler's captures (--perf-profiler), one folder per variant.
CAPTURES = "profiles"


def file_stem(variant: str) -> str:
    """A variant's name as a file name: anything but [A-Za-z0-9_-] as ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", variant)


def trace_name(variant: str) -> str:
    """The file name of a variant's trace."""
    return file_stem(variant) + ".trace.json"


def write_traces(target: Path, traces: Mapping[str, Mapping[str, Any]]) -> None:
    """Write each traced run's Trace Event Format file into ``traces/`` beside ``target``."""
    folder = Path(target).parent / TRACES
    if traces:
        folder.mkdir(parents=True, exist_ok=True)
    for variant, trace in traces.items():
        write_atomic(folder / trace_name(variant), json.dumps(trace))


def write_report(
    target: Path,
    storage: Path,
    *,
    current: Mapping[str, Any] | None = None,
    run: str | None = None,
    thresholds: Thresholds | None = None,
) -> Path:
    """Build the report and write it atomically to ``target``; returns the path.

    Args:
        target: the HTML file to write.
        storage: pytest-benchmark's storage folder (read only).
        current: this run's JSON, if it comes from a run in progress (it may
            also be saved already; it is not counted twice).
        run: which saved run to show when ``current`` is not given: an id,
            a path, or "latest" (the default).
        thresholds: the gates' limits, for marking regressions in the history.

    Raises:
        NoRuns: nothing to report on.
        DataError: a saved run is broken (names the file) or ``run`` is unknown.
    """
    history = load_views(storage)
    if current is not None:
        view = RunView.of(schema.from_dict(current), "this run")
        saved = [v for v in history if v.datetime == view.datetime]
        if saved:
            view = saved[-1]
        else:
            history.append(view)
    else:
        if not history:
            raise NoRuns(storage, "no saved runs to report on (save one: python3 tasks.py bench)")
        chosen = find_saved_run(run or "latest", storage, option="--run")
        view = next((v for v in history if v.path == str(chosen)), None)
        if view is None:  # a run file outside storage
            view = RunView.of(schema.load(chosen), chosen.stem)
    beside = Path(target).parent
    traces = {
        variant: f"{TRACES}/{trace_name(variant)}"
        for variant in view.timelines
        if (beside / TRACES / trace_name(variant)).exists()
    }
    captures = {
        variant: f"{CAPTURES}/{file_stem(variant)}/"
        for variant in view.timelines
        if (beside / CAPTURES / file_stem(variant)).is_dir()
    }
    write_atomic(target, render(view, history, thresholds, traces, captures))
    return target.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: rebuild the report from storage."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description="Build the HTML performance report."
    )
    parser.add_argument("--storage", type=Path, default=DEFAULT_STORAGE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--run", default="latest", help="saved run to show: id, path or latest")
    parser.add_argument("--thresholds", type=Path, default=DEFAULT_THRESHOLDS)
    add_plugin_argument(parser)
    args = parser.parse_args(argv)
    try:
        load_plugins(args.plugin, "--plugin")
        thresholds = load_thresholds(args.thresholds, pipelines.VARIANTS)
        path = write_report(args.output, args.storage, run=args.run, thresholds=thresholds)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"performance report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
