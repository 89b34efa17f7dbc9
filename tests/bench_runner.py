"""Running the benchmark suite in a subprocess, as a user would, for end-to-end tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pipelines.data.embedded import ensure_embedded

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = """
[defaults]
min_test_accuracy = 0.5
max_accuracy_drop = 0.1
max_throughput_drop = 0.9

[variants.optimized]
min_speedup = 1.3
"""
GATED = "test_training or test_ceiling"
# For runs whose accuracy nothing judges.
NO_ACCURACY_FLOOR = "[defaults]\nmin_test_accuracy = 0\n"


def small_data(fmt: str = "tfrecord") -> Path:
    """The folder of one format of the embedded ``check`` set (a third of smoke's training
    examples), for end-to-end runs that check what a run writes and says rather than its
    figures: the report's run took 72 s on the smoke set and 45 s on this one. Generated
    once, shared by every worker (`pipelines.data.embedded.ensure_embedded` locks and reuses it)."""
    return ensure_embedded("check").path(fmt)


def run_main(
    capsys: pytest.CaptureFixture[str], main: Callable[[Sequence[str]], int], *args: str
) -> subprocess.CompletedProcess[str]:
    """A command's ``main(args)`` in this process, as the subprocess result would be: for
    input it refuses before any work, without a second TensorFlow start-up."""
    try:
        status = main(list(args))
    except SystemExit as stopped:  # argparse's own refusals
        status = int(stopped.code or 0)
    said = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), status, said.out, said.err)


def suite_command(*args: str) -> list[str]:
    """``pytest benchmarks`` as a user types it, quiet, one pass, with ``args``."""
    command = [sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider"]
    return [*command, "--perf-passes", "1", *args]


def suite_from_anywhere(*args: str) -> list[str]:
    """``pytest $REPO/benchmarks`` as a user types it from their own folder, quiet, with
    ``args``."""
    command = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-q"]
    return [*command, "-p", "no:cacheprovider", *args]


def run_benchmarks(
    tmp_path: Path,
    *args: str,
    inject: str = "",
    select: str = GATED,
    variants: str = "naive,optimized",
    data: Path | None = None,
    thresholds_text: str = THRESHOLDS,
) -> subprocess.CompletedProcess[str]:
    """`pytest benchmarks` on ``variants``, 2 epochs, 2 passes, no latency, storage under tmp_path.

    ``inject`` names a regression from `trials.inject` (empty: none);
    ``select`` is the ``-k`` expression choosing benchmarks; ``data`` a ``--perf-data``
    folder (None: the embedded smoke set); ``thresholds_text`` the gates' file.
    """
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(thresholds_text)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks",
        "-p",
        "trials.inject",
        "-q",
        "-k",
        select,
        "--perf-variants",
        variants,
        "--perf-latency",
        "none",
        "--perf-epochs",
        "2",
        "--perf-passes",
        "2",
        "--perf-thresholds",
        str(thresholds),
        f"--benchmark-storage=file://{tmp_path / 'storage'}",
        *(["--perf-data", str(data)] if data is not None else []),
        *args,
    ]
    env = dict(os.environ, PERF_INJECT=inject)
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a hash of its bytes: compare two to see any change."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
