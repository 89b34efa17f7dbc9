"""The trial tools' one harness: the suite run in a process of its own, as a user runs it.

`trials.ab`, `gate_trials` and `power_trials` each run ``pytest benchmarks``
many times and read back what it saved; `run_suite` is how they all do it: its
output to a log, its saved run to a JSON file, and `RunFailed` where it did not finish.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# The repository the suite runs from.
ROOT = Path(__file__).resolve().parents[1]


class RunFailed(Exception):
    """A run of the suite that did not finish: where it ran, its exit code, its log."""


def run_suite(
    args: Sequence[str],
    output: Path,
    log: Path,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    suite: str = "benchmarks",
) -> int:
    """``python -m pytest SUITE -q -p no:cacheprovider ARGS --benchmark-json=OUTPUT`` in
    ``cwd``, with ``env`` over this process's environment, its output to ``log``.

    Returns its exit code: 0, or 1 where a gate of the run itself failed (a trial
    judges the saved run itself). Raises `RunFailed` on any other exit, or where no
    run was saved."""
    command = [sys.executable, "-m", "pytest", suite, "-q", "-p", "no:cacheprovider", *args]
    command.append(f"--benchmark-json={output}")
    with log.open("w") as out:
        code = subprocess.call(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if code not in (0, 1) or not output.exists():
        raise RunFailed(f"the run in {cwd} did not finish (exit {code}); its output: {log}")
    return code
