"""The run's end-of-run sections in the terminal: figures with their intervals, verdicts
against a baseline or a base version, the gates' failures, the report's path."""

from __future__ import annotations

from typing import Any

import pytest

import pipelines
from benchmarks.diagnosing.bottleneck import Bottleneck, tracing_caveat
from benchmarks.diagnosing.effects import no_gain_lines
from benchmarks.diagnosing.held_back import held_back_lines
from benchmarks.diagnosing.runtime_view import runtime_lines
from benchmarks.judging.decide import Verdict
from benchmarks.report.summary import (
    FULL_EPOCH_COLUMNS,
    STARTUP_COLUMNS,
    STEADY_COLUMNS,
    summary_table,
)
from benchmarks.run.state import (
    AGAINST_PROBLEMS_KEY,
    SESSION_KEY,
    STATE_KEY,
    measurement_doubts,
    run_result,
)
from benchmarks.saving.schema import Kind

# How many of the records --skip-corrupt left out the terminal lists (the count is always shown).
SKIPPED_SHOWN = 10


def _write_measurements(terminalreporter: Any, config: pytest.Config) -> None:
    """The figures with their intervals, and a line per measurement not to be trusted."""
    session = config.stash[SESSION_KEY]
    passes = session.passes
    if passes is None:
        return
    terminalreporter.section(
        f"measurements: {passes.count} interleaved passes ({passes.stopped}),"
        f" 95% intervals; model threads: {session.options.model_threads or 'not limited'}"
    )
    terminalreporter.write_line(device_line(session))
    result = run_result(config)
    metrics = list(result.metrics.values())
    for title, columns in (
        ("steady state", STEADY_COLUMNS),
        ("start-up and full epochs", STARTUP_COLUMNS + FULL_EPOCH_COLUMNS),
    ):
        lines = summary_table(metrics, columns)
        if lines:
            terminalreporter.write_line(f"{title}:", bold=True)
        for line in lines:
            terminalreporter.write_line(line)
    trained = {info["variant"]: info for info in metrics if info["kind"] == Kind.TRAINING}
    for line in no_gain_lines(trained, pipelines.VARIANTS, session.options.plan.precision):
        terminalreporter.write_line(line, yellow=True)
    for line in held_back_lines(trained, result.bottlenecks):
        terminalreporter.write_line(line, yellow=True)
    _write_runtime(terminalreporter, trained, result.bottlenecks)
    for doubt in measurement_doubts(config):
        terminalreporter.write_line(str(doubt), red=doubt.impossible, yellow=not doubt.impossible)


def _write_runtime(
    terminalreporter: Any, trained: dict[str, Any], bottlenecks: dict[str, Any]
) -> None:
    """tf.data's runtime statistics of the timed runs, a line per variant."""
    lines = runtime_lines(trained, bottlenecks)
    if lines:
        terminalreporter.write_line(
            "tf.data's runtime statistics (read from the timed runs, no tracing):", bold=True
        )
    for line in lines:
        terminalreporter.write_line(line)


def device_line(session: Any) -> str:
    """What the timed figures were measured on, and where its step time came from."""
    step = session.step_time
    if step is None:
        return f"timed on: the real model ({session.common_info()['device']})"
    return (
        f"timed on: {step.describe()} ({step.origin}); accuracy from real training on"
        f" {session.common_info()['accuracy_device']}"
    )


def _write_verdicts(terminalreporter: Any, title: str, verdicts: list[Verdict]) -> None:
    """A section of verdict lines, coloured by outcome (none when there are none)."""
    if not verdicts:
        return
    if title:  # none: the section is open already
        terminalreporter.section(title)
    for verdict in verdicts:
        terminalreporter.write_line(
            str(verdict),
            red=verdict.outcome == "regression",
            yellow=verdict.outcome == "inconclusive",
            green=verdict.outcome in ("ok", "improvement"),
        )


def _write_alternations(
    terminalreporter: Any, config: pytest.Config, pair_verdicts: list[Verdict]
) -> None:
    """--perf-against's problems, verdicts and rounds; --perf-yardstick's rounds."""
    title = "head against base, in the same passes and epoch by epoch (--perf-against)"
    problems = config.stash.get(AGAINST_PROBLEMS_KEY, [])
    if problems:
        terminalreporter.section(title)
    for problem in problems:
        terminalreporter.write_line(problem.line, red=not problem.compared, yellow=problem.compared)
    _write_verdicts(terminalreporter, title if not problems else "", pair_verdicts)
    session = config.stash.get(SESSION_KEY, None)
    for alternation in session.records.alternations.values() if session else ():
        terminalreporter.write_line(str(alternation))
    for alternation in session.records.alone_alternations.values() if session else ():
        terminalreporter.write_line(f"pipelines alone: {alternation}")
    yardsticks = session.records.yardsticks if session else {}
    if yardsticks:
        terminalreporter.section("against the ceiling, epoch by epoch (--perf-yardstick)")
        for alternation in yardsticks.values():
            terminalreporter.write_line(str(alternation))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the records --skip-corrupt left out, then the gates' verdicts (a line per failure)."""
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    if state.interrupted:
        terminalreporter.write_line(
            "interrupted: the run stopped part way; nothing of it was saved, gated or reported",
            red=True,
        )
        return
    skipped = [line for source in state.data for line in source.skipped]
    if skipped:
        terminalreporter.section(f"{len(skipped)} corrupt records skipped (--skip-corrupt)")
        for line in skipped[:SKIPPED_SHOWN]:
            terminalreporter.write_line(line, yellow=True)
        if len(skipped) > SKIPPED_SHOWN:
            terminalreporter.write_line(f"... and {len(skipped) - SKIPPED_SHOWN} more", yellow=True)
    if state.failures is None:
        return
    _write_measurements(terminalreporter, config)
    _write_verdicts(terminalreporter, "against the baseline", state.verdicts)
    _write_alternations(terminalreporter, config, state.pair_verdicts)
    terminalreporter.section("performance gates")
    for failure in state.failures:
        terminalreporter.write_line(str(failure), red=True)
    if not state.failures:
        checked = ", ".join(sorted(run_result(config).gate_metrics)) or "nothing"
        terminalreporter.write_line(f"all gates passed ({checked})", green=True)
    result = run_result(config)
    if result.bottlenecks:
        terminalreporter.section("bottlenecks")
        overhead = next(iter(result.of_kind(Kind.TRACING_OVERHEAD)), None)
        caveat = tracing_caveat(overhead)
        if caveat:
            terminalreporter.write_line(caveat, yellow=True)
        for variant, analysis in result.bottlenecks.items():
            terminalreporter.write_line(f"{variant}: {Bottleneck(**analysis).summary()}")
    verified = result.verified_suggestions()
    if verified:
        terminalreporter.section("verified suggestions (each change applied to a copy)")
        for variant, info in verified.items():
            terminalreporter.write_line(f"{variant}: {info['verdict']}")
            for line in info["verified_suggestions"]:
                terminalreporter.write_line(f"    {line['line']}")
    if state.report:
        terminalreporter.write_line(f"performance report: {state.report}", bold=True)
    if state.report_error:
        terminalreporter.write_line(f"report not written: {state.report_error}", red=True)
