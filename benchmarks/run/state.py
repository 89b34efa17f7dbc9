"""What the plugin keeps of a run between hooks: its stash keys and `RunState`, and the
measurements it doubts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from benchmarks.judging import gates
from benchmarks.judging.against import BaseProblem
from benchmarks.judging.decide import Verdict
from benchmarks.measuring.pass_figures import Unreliable, unreliable
from benchmarks.measuring.session import PerfOptions, PerfSession
from benchmarks.run.result import RunResult, derive
from pipelines.sources import Source

SESSION_KEY = pytest.StashKey[PerfSession]()
STATE_KEY = pytest.StashKey["RunState"]()


# --perf-against: each current variant's name -> its base version's (`pipelines.versions`).
PAIRS_KEY = pytest.StashKey[dict[str, str]]()
# What went wrong with --perf-against's bases, a line each (`base_versions`).
AGAINST_PROBLEMS_KEY = pytest.StashKey[list[BaseProblem]]()


@dataclasses.dataclass
class RunState:
    """What the plugin knows of a benchmark run, from collection to the terminal summary."""

    options: PerfOptions
    data: tuple[Source, Source]
    thresholds: gates.Thresholds
    # --perf-baseline: the saved run's path and its gated metrics.
    baseline: tuple[Path, dict[str, dict[str, Any]]] | None = None
    # Each compared metric's verdict against the baseline (`benchmarks.judging.decide`).
    verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    # --perf-against: each metric's verdict, head against base in the same passes.
    pair_verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    # Bad data stopped the run: nothing is gated, saved or reported.
    abandoned: bool = False
    # The run as pytest-benchmark saves it, once it has been written.
    run_json: dict[str, Any] | None = None
    # What the run measured, derived once after every benchmark ran (`run_result`).
    result: RunResult | None = None
    # The gates' failed checks, evaluated once after every benchmark ran.
    failures: list[gates.Failure] | None = None
    report: Path | None = None
    report_error: str | None = None
    # Ctrl-C: the run stopped part way (and is abandoned).
    interrupted: bool = False


def run_result(config: pytest.Config) -> RunResult:
    """The run's result (`benchmarks.run.result.derive`), made the first time it is asked
    for, once every benchmark has run: saving, gating and the terminal read the same."""
    state = config.stash[STATE_KEY]
    if state.result is None:
        state.result = derive(config.stash[SESSION_KEY].records)
    return state.result


def measurement_doubts(config: pytest.Config) -> list[Unreliable]:
    """The run's ratios that cannot be trusted (none when untimed or without passes)."""
    if SESSION_KEY not in config.stash or config.getoption("benchmark_disable", False):
        return []
    session = config.stash[SESSION_KEY]
    return unreliable(session.records.paired(), session.options.plan.precision)
